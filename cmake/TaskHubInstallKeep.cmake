# Run by `cmake --install` (cmake/TaskHubInstall.cmake, taskhub_install_config_file()): installs
# TASKHUB_KEEP_SOURCE as TASKHUB_KEEP_DESTINATION/TASKHUB_KEEP_NAME, unless that file exists (under
# DESTDIR): then it is kept as it is and the new default goes beside it as NAME.dist.
set(_taskhub_target "$ENV{DESTDIR}${TASKHUB_KEEP_DESTINATION}/${TASKHUB_KEEP_NAME}")
if(NOT EXISTS "${_taskhub_target}" AND NOT IS_SYMLINK "${_taskhub_target}")
  file(INSTALL DESTINATION "${TASKHUB_KEEP_DESTINATION}" TYPE FILE FILES "${TASKHUB_KEEP_SOURCE}"
       RENAME "${TASKHUB_KEEP_NAME}")
else()
  file(INSTALL DESTINATION "${TASKHUB_KEEP_DESTINATION}" TYPE FILE FILES "${TASKHUB_KEEP_SOURCE}"
       RENAME "${TASKHUB_KEEP_NAME}.dist")
  message(NOTICE
    "-- Kept the existing ${_taskhub_target} unchanged; the new default is "
    "${_taskhub_target}.dist (compare them: diff -u ${_taskhub_target} ${_taskhub_target}.dist)")
endif()
