# add_taskhub_plugin(NAME SOURCES... [INSTALL] [OUTPUT_DIR DIR])
# TaskHub's own plugins (and the test fixtures and benchmark plugins): taskhub_add_plugin() of the
# installed SDK (cmake/TaskHubAddPlugin.cmake), with the project's warnings, and the output in
# ${CMAKE_BINARY_DIR}/plugins unless OUTPUT_DIR says otherwise, so that the dev config finds every
# plugin in one directory. INSTALL also installs it into the plugin directory.
include(TaskHubAddPlugin)

function(add_taskhub_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "OUTPUT_DIR" "")
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
  endif()
  taskhub_add_plugin(${name} OUTPUT_DIR ${ARG_OUTPUT_DIR} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE taskhub_warnings)
endfunction()
