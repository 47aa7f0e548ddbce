# taskhub_add_plugin(NAME [INSTALL] [OUTPUT_DIR DIR] SOURCES source...)
#
# Builds a TaskHub executor plugin: a MODULE library NAME.so (no "lib" prefix) that links
# TaskHub::plugin, exports nothing but th_plugin_entry (hidden visibility; TH_EXPORT marks the
# entry), and resolves every symbol when it is linked (-Wl,--no-undefined, so a missing library
# fails the build and not taskhubd's dlopen) and when it is loaded (-Wl,-z,now).
#
#   INSTALL     also install NAME.so into ${CMAKE_INSTALL_LIBDIR}/taskhub/plugins under the
#               installing project's prefix: with the prefix /usr that is the directory the
#               packaged taskhubd scans (its default plugin_dirs).
#   OUTPUT_DIR  where the build puts NAME.so (default: CMake's default for the target).
#
# This file is shared: TaskHub's own build uses it through add_taskhub_plugin()
# (cmake/TaskHubPlugin.cmake), and `find_package(TaskHub)` gives it to plugin authors.
include_guard(GLOBAL)

function(taskhub_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "INSTALL" "OUTPUT_DIR" "SOURCES")
  if(NOT ARG_SOURCES AND NOT ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "taskhub_add_plugin(${name}): no SOURCES given")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE TaskHub::plugin)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR})
  endif()
  target_link_options(${name} PRIVATE -Wl,--no-undefined -Wl,-z,now)
  if(ARG_INSTALL)
    include(GNUInstallDirs)
    install(TARGETS ${name} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/taskhub/plugins)
  endif()
endfunction()
