# Run by `cmake --install` first (cmake/TaskHubInstall.cmake, taskhub_install_prefix_guard()):
# TASKHUB_CONFIGURED_PREFIX is the prefix the tree was configured with, CMAKE_INSTALL_PREFIX the
# one this install uses (--prefix changes it; DESTDIR does not).
function(taskhub_normal_prefix path out)
  get_filename_component(p "${path}" ABSOLUTE)
  string(REGEX REPLACE "(.)/+$" "\\1" p "${p}")
  set(${out} "${p}" PARENT_SCOPE)
endfunction()
taskhub_normal_prefix("${TASKHUB_CONFIGURED_PREFIX}" _taskhub_configured)
taskhub_normal_prefix("${CMAKE_INSTALL_PREFIX}" _taskhub_installing)
if(NOT _taskhub_configured STREQUAL _taskhub_installing)
  message(FATAL_ERROR
    "TaskHub was configured for the prefix ${_taskhub_configured}, and that prefix is compiled into "
    "taskhubd and taskhubctl and written into taskhub.toml and the systemd unit; installing it to "
    "${_taskhub_installing} would leave them pointing at ${_taskhub_configured}. Configure the build "
    "with -DCMAKE_INSTALL_PREFIX=${_taskhub_installing}, build, and install without --prefix "
    "(DESTDIR=DIR stages an install below DIR).")
endif()
