// Failpoints: named places where a test build kills taskhubd on purpose, to check what a crash
// at exactly that moment leaves behind (tests/system/test_crash_recovery.py).
//
// Compiled in only when CMake's TASKHUB_FAILPOINTS is ON (scripts/test turns it on, scripts/demo
// off), and then only into the files that define or place failpoints; otherwise
// TASKHUB_FAILPOINT(name) compiles to nothing. In a build with failpoints, the environment
// variable TASKHUB_FAILPOINT=NAME[@N][:hang] makes the N-th time (default: the first) the daemon
// passes the failpoint NAME raise SIGKILL, after writing "FAILPOINT NAME hit N" to stderr; with
// ":hang" the thread that passes it sleeps for good instead (a wedged event loop, for the
// watchdog's test: tests/system/test_watchdog.py).
//
// The failpoints:
//   task_starting_committed  an attempt's "starting" state is committed; its plugin is not called
//                            (on the event loop)
//   store_commit             the store writer wrote a batch but has not committed it
#ifndef TASKHUB_COMMON_FAILPOINT_H
#define TASKHUB_COMMON_FAILPOINT_H

#if defined(TASKHUB_FAILPOINTS) && TASKHUB_FAILPOINTS
namespace taskhub {
// Counts a pass through the failpoint `name`; kills the process when it is the one asked for.
void failpointPass(const char* name) noexcept;
} // namespace taskhub
#define TASKHUB_FAILPOINT(name) ::taskhub::failpointPass(name)
#else
#define TASKHUB_FAILPOINT(name) ((void)0)
#endif

#endif // TASKHUB_COMMON_FAILPOINT_H
