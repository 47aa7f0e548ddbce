# Build options shared by every TaskHub target.
option(TASKHUB_WERROR "Treat compiler warnings as errors (CI builds)" OFF)
set(TASKHUB_SANITIZE "" CACHE STRING "Sanitizer build: empty, address (ASan+UBSan) or thread")

add_library(taskhub_warnings INTERFACE)
target_compile_options(taskhub_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wimplicit-fallthrough
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor>
  $<$<BOOL:${TASKHUB_WERROR}>:-Werror>)

if(TASKHUB_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(TASKHUB_SANITIZE STREQUAL "thread")
  # -Wno-tsan: libstdc++'s atomic_thread_fence, which TSan does not model, is not ours to fix.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(NOT TASKHUB_SANITIZE STREQUAL "")
  message(FATAL_ERROR "TASKHUB_SANITIZE must be empty, address or thread")
endif()

# Code size is memory: the idle daemon's resident set is mostly the text of what it links. -O2
# instead of -O3, and unused sections dropped at link time, took 0.35 MB off the idle daemon
# (docs/benchmarks.md) at no measurable cost in speed.
string(REPLACE "-O3" "-O2" CMAKE_C_FLAGS_RELEASE "${CMAKE_C_FLAGS_RELEASE}")
string(REPLACE "-O3" "-O2" CMAKE_CXX_FLAGS_RELEASE "${CMAKE_CXX_FLAGS_RELEASE}")
add_compile_options(-ffunction-sections -fdata-sections)
add_link_options(-Wl,--gc-sections)

# A module that runs at start, on request or once per run (control requests, notifications, the
# daemon's wiring), never per task, is compiled for size: its code stays resident once it has run.
# Not the configuration: -Os made loading a 20,000-task workflow 35 % slower.
function(taskhub_optimise_for_size target)
  target_compile_options(${target} PRIVATE $<$<CONFIG:Release,RelWithDebInfo>:-Os>)
endfunction()
