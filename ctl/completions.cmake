# Writes the taskhubctl completion scripts into OUT with the built TASKHUBCTL (ctl/CMakeLists.txt):
# bash as taskhubctl, zsh as _taskhubctl, fish as taskhubctl.fish.
file(MAKE_DIRECTORY ${OUT})
foreach(pair "bash;taskhubctl" "zsh;_taskhubctl" "fish;taskhubctl.fish")
  list(GET pair 0 shell)
  list(GET pair 1 name)
  execute_process(COMMAND ${TASKHUBCTL} completion ${shell} OUTPUT_FILE ${OUT}/${name}.tmp RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    file(REMOVE ${OUT}/${name}.tmp)
    message(FATAL_ERROR "taskhubctl completion ${shell} failed: ${rc}")
  endif()
  file(RENAME ${OUT}/${name}.tmp ${OUT}/${name})
endforeach()
