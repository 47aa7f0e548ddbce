// Failpoints: named places where a test build kills taskhubd on purpose, to check what a crash
// at exactly that moment leaves behind (tests/system/test_crash_recovery.py).
//
// Compiled in only when CMake's TASKHUB_FAILPOINTS is ON (scripts/test turns it on, scripts/demo
// off), and then only into the files that define or place failpoints; otherwise
// TASKHUB_FAILPOINT(name) compiles to nothing. In a build with failpoints, the environment
// variable TASKHUB_FAILPOINT=NAME[@N][:hang] makes the N-th time (default: the first) the daemon
// passes the failpoint NAME raise SIGKILL, after writing "FAILPOINT NAME hit N" to stderr; with
// ":hang" the thread that passes it sleeps for good instead (a wedged event loop, for the
// watchdog's test: tests/system/test_watchdog.py). TASKHUB_TEST_DELAY=NAME:MS makes every pass
// through NAME sleep MS milliseconds first (store_commit:2000 holds each commit back by 2 s).
//
// The failpoints:
//   task_starting_committed  an attempt's "starting" state is committed; its plugin is not called
//                            (on the event loop). Only attempts that wait for a durable start
//                            (at_most_once = true, plugins with TH_CAP_DURABLE_START) pass it.
//   task_started_uncommitted an attempt's plugin was called (a shell task's process runs) while
//                            the attempt's start is not yet committed (on the event loop, in the
//                            turn that started it): only its cgroup or its processes' environment
//                            tell a restart that it ran
//   store_commit             the store writer wrote a batch but has not committed it
//   file_watch_add           a file trigger's directory is about to be watched (inotify_add_watch);
//                            with TASKHUB_TEST_DELAY, the directory can be removed in between
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
