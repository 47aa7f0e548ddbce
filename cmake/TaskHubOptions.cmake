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
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT TASKHUB_SANITIZE STREQUAL "")
  message(FATAL_ERROR "TASKHUB_SANITIZE must be empty, address or thread")
endif()
