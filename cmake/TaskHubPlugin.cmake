# add_taskhub_plugin(NAME SOURCES... [INSTALL])
# Builds an executor plugin as a MODULE library named NAME.so (no "lib" prefix) that exports only
# the ABI entry symbol, and places it in ${CMAKE_BINARY_DIR}/plugins so that the dev config finds
# every plugin in one directory. INSTALL also installs it into the plugin directory.
function(add_taskhub_plugin name)
  cmake_parse_arguments(ARG "INSTALL" "OUTPUT_DIR" "SOURCES" ${ARGN})
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
  endif()
  add_library(${name} MODULE ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE taskhub_plugin_api taskhub_warnings)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR})
  target_link_options(${name} PRIVATE -Wl,--no-undefined -Wl,-z,now)
  if(ARG_INSTALL)
    install(TARGETS ${name} LIBRARY DESTINATION ${TASKHUB_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
