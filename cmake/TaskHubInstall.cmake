# Install rules that keep `cmake --install` honest (docs/operations.md, "Installing from source"):
# the paths compiled into the binaries and written into the config and the unit come from the
# prefix configured with -DCMAKE_INSTALL_PREFIX, so an install to another prefix is refused; an
# existing config file is never overwritten; systemd's directories come from systemd.pc.

# The paths of this installation, absolute (GNUInstallDirs' FULL_ forms: a /usr prefix gives /etc).
set(TASKHUB_SYSCONF_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/taskhub")
set(TASKHUB_CONFIG_FILE "${TASKHUB_SYSCONF_DIR}/taskhub.toml")
set(TASKHUB_WORKFLOWS_DIR "${TASKHUB_SYSCONF_DIR}/workflows.d")
set(TASKHUB_PLUGIN_DIR "${CMAKE_INSTALL_FULL_LIBDIR}/taskhub/plugins")
set(TASKHUB_RUNNER_PATH "${CMAKE_INSTALL_FULL_LIBEXECDIR}/taskhub/taskhub-runner")
# taskhubd's state and socket stay where the unit's StateDirectory= and RuntimeDirectory= put them,
# whatever the prefix: systemd creates /var/lib/taskhub and /run/taskhub, never <prefix>/var/...
set(TASKHUB_STATE_DIR "/var/lib/taskhub")
set(TASKHUB_SOCKET_PATH "/run/taskhub/taskhub.sock")

# The header the binaries take these paths from (daemon/config/daemon_config.h, daemon/app/app.cc).
configure_file(${CMAKE_CURRENT_LIST_DIR}/install_paths.h.in
               ${PROJECT_BINARY_DIR}/generated/taskhub_install_paths.h @ONLY)
set(TASKHUB_GENERATED_INCLUDE_DIR ${PROJECT_BINARY_DIR}/generated)

# Refuses `cmake --install --prefix X` for an X other than the configured prefix (the compiled-in
# paths would point at the configured one). Runs first, whatever component is installed; DESTDIR
# is not a prefix and works as usual.
function(taskhub_install_prefix_guard)
  install(CODE "set(TASKHUB_CONFIGURED_PREFIX \"${CMAKE_INSTALL_PREFIX}\")" ALL_COMPONENTS)
  install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/TaskHubInstallGuard.cmake ALL_COMPONENTS)
endfunction()

# Installs SOURCE as DESTINATION/NAME unless $DESTDIR/DESTINATION/NAME exists; then the new
# default goes beside it as NAME.dist and the existing file is kept byte for byte
# (cmake/TaskHubInstallKeep.cmake). DESTINATION is absolute.
function(taskhub_install_config_file SOURCE DESTINATION NAME)
  install(CODE "set(TASKHUB_KEEP_SOURCE \"${SOURCE}\")
set(TASKHUB_KEEP_DESTINATION \"${DESTINATION}\")
set(TASKHUB_KEEP_NAME \"${NAME}\")")
  install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/TaskHubInstallKeep.cmake)
endfunction()

# Sets OUT to systemd's directory VARIABLE (systemdsystemunitdir, sysusersdir, catalogdir) as
# `pkg-config systemd` names it for this prefix: for a prefix other than /usr, systemd.pc's
# prefix is redefined to it (so /usr/local gets /usr/local/lib/systemd/system, which systemd
# searches). Without pkg-config or systemd.pc: FALLBACK under the prefix. A non-empty cache
# variable CACHE_NAME overrides all of it.
function(taskhub_systemd_dir OUT CACHE_NAME VARIABLE FALLBACK)
  set(${CACHE_NAME} "" CACHE STRING
      "Where to install systemd's ${VARIABLE} files (empty: pkg-config --variable=${VARIABLE} systemd)")
  if(NOT "${${CACHE_NAME}}" STREQUAL "")
    set(${OUT} "${${CACHE_NAME}}" PARENT_SCOPE)
    return()
  endif()
  find_program(TASKHUB_PKG_CONFIG NAMES pkg-config pkgconf)
  set(dir "")
  if(TASKHUB_PKG_CONFIG)
    set(defines "")
    if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
      # root_prefix/rootprefix: Debian 12's systemd.pc puts system units under ${rootprefix}.
      foreach(var prefix root_prefix rootprefix)
        list(APPEND defines "--define-variable=${var}=${CMAKE_INSTALL_PREFIX}")
      endforeach()
    endif()
    execute_process(COMMAND ${TASKHUB_PKG_CONFIG} ${defines} --variable=${VARIABLE} systemd
                    OUTPUT_VARIABLE dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      set(dir "")
    endif()
  endif()
  if(dir STREQUAL "")
    set(dir "${CMAKE_INSTALL_PREFIX}/${FALLBACK}")
  endif()
  set(${OUT} "${dir}" PARENT_SCOPE)
endfunction()
