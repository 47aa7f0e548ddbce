# Run by `cmake --install` (cmake/TaskHubInstall.cmake, taskhub_install_config_file()): installs
# TASKHUB_KEEP_SOURCE as TASKHUB_KEEP_DESTINATION/TASKHUB_KEEP_NAME, unless a different file is
# there already (under DESTDIR): then that one is kept as it is and the new default goes beside it
# as NAME.dist.
set(_taskhub_target "$ENV{DESTDIR}${TASKHUB_KEEP_DESTINATION}/${TASKHUB_KEEP_NAME}")
set(_taskhub_keep FALSE)
if(IS_SYMLINK "${_taskhub_target}")
  set(_taskhub_keep TRUE)
elseif(EXISTS "${_taskhub_target}")
  file(SHA256 "${_taskhub_target}" _taskhub_old)
  file(SHA256 "${TASKHUB_KEEP_SOURCE}" _taskhub_new)
  if(NOT _taskhub_old STREQUAL _taskhub_new)
    set(_taskhub_keep TRUE)
  endif()
endif()
if(NOT _taskhub_keep)
  file(INSTALL DESTINATION "${TASKHUB_KEEP_DESTINATION}" TYPE FILE FILES "${TASKHUB_KEEP_SOURCE}"
       RENAME "${TASKHUB_KEEP_NAME}")
else()
  file(INSTALL DESTINATION "${TASKHUB_KEEP_DESTINATION}" TYPE FILE FILES "${TASKHUB_KEEP_SOURCE}"
       RENAME "${TASKHUB_KEEP_NAME}.dist")
  message(NOTICE
    "-- Kept the existing ${_taskhub_target} unchanged; the new default is "
    "${_taskhub_target}.dist (compare them: diff -u ${_taskhub_target} ${_taskhub_target}.dist)")
endif()
