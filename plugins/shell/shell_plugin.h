// The "shell" executor: runs a task's `command` with /bin/sh -c, or, for a command without any
// shell syntax, execs the program itself as the shell would (see direct_exec.h).
//
// Each attempt is one child process (started like posix_spawn does, with clone(CLONE_VM |
// CLONE_VFORK), but on one child stack reused for every spawn) in a process group of its own, with
// stdin from /dev/null, stdout and stderr on the attempt's log file, no other inherited
// descriptors and a scrubbed environment (PATH, HOME, USER, LOGNAME and SHELL of the daemon plus
// the task's env entries, which win). With th_task.run_as (TH_CAP_RUN_AS, see docs/workflow-format.md,
// "run_as") the child becomes that account before exec, in cronie's order (supplementary groups,
// gid, uid, then a check that setuid(0) fails), gets the account's HOME, USER, LOGNAME and SHELL
// instead of the daemon's, and starts in cwd, else the account's home, else /, entered as the
// account. The plugin never blocks: it reaps the child through a pidfd
// the host watches on its event loop, so a running command holds no thread. Reaping collects the
// child's rusage (CPU times, peak RSS), reported in th_result (ABI 1.4).
//
// Cgroups (TH_CAP_CGROUP, ABI 1.4): with th_task.cgroup_fd the child starts inside the attempt's
// cgroup, before it can run any of the task's code: clone3 with CLONE_INTO_CGROUP (same flags and
// reused stack as above; a small trampoline per architecture, x86_64 and aarch64). Elsewhere, and
// on kernels without it (clone3 failing with ENOSYS, E2BIG or EINVAL), today's clone, and the
// child's first step writes "0" to the cgroup's cgroup.procs; if that fails the spawn fails and
// says so. Test hook: TASKHUB_SHELL_TEST_NO_CLONE3 set in the environment when an instance is
// created forces that fallback for the instance (tests/unit/plugins/shell_test.cc).
//
// Suspending (`taskhubctl pause --freeze`) sends SIGSTOP to the group (with a cgroup: to every
// process in it), resuming SIGCONT. With cgroups the host freezes the cgroup itself instead.
//
// Cancelling sends SIGTERM to the group and, after kill_grace, SIGKILL; a suspended group also
// gets SIGCONT, so that it can act on the SIGTERM. Once the group leader
// has exited after a cancel, the whole group is SIGKILLed at once, so nothing it started in the
// background survives the attempt. With a cgroup the same happens to the cgroup, which nothing
// escapes (setsid, double forks): SIGTERM to every process in it (cgroup.procs, recursively) and
// to the main process, SIGKILL through cgroup.kill. Either way the process group is kept (setpgid).
// A command that ends on its own is not followed up: like cron, the plugin leaves whatever it
// deliberately started in the background running (with a cgroup, the host's `leftovers` decide).
//
// Threading: TH_THREADS_SERIAL and non-blocking, so every call (execute, cancel, the fd and timer
// callbacks) arrives on the host's event-loop thread, one at a time; no locking is needed.
#ifndef TASKHUB_PLUGINS_SHELL_SHELL_PLUGIN_H
#define TASKHUB_PLUGINS_SHELL_SHELL_PLUGIN_H

#include "shell_params.h"

#include <taskhub/plugin.hpp>

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace taskhub::plugins::shell {

class ShellPlugin final : public sdk::Plugin {
public:
    // ABI 1.3 shell_params: `command` is shell text, so the host escapes the value of each of its
    // templates for the shell context it sits in (and refuses unsafe contexts at load time).
    // `argv` needs no escaping: each element is one argument of an exec without a shell.
    static constexpr const char* kShellParams[] = {"command", nullptr};

    // Reads the [plugins.shell] settings and snapshots the daemon's PATH, HOME, USER, LOGNAME and
    // SHELL. Throws std::invalid_argument on a bad setting.
    ShellPlugin(sdk::Host host, std::string_view config_json);
    // A conforming host destroys the instance only after every attempt completed. Should a child
    // still run, its group is SIGKILLed and reaped here so the plugin never leaves a process.
    ~ShellPlugin() override;

    // Throws sdk::InvalidParam; see parseParams().
    void validate(std::string_view params_json) override;
    // Spawns the attempt's shell. Throws std::runtime_error, so the attempt does not start, when
    // the parameters are bad or the process cannot be started (e.g. a missing cwd).
    void execute(const sdk::Task& task) override;
    // SIGTERM now, SIGKILL after kill_grace. No-op for an unknown or finished token, or when the
    // attempt is already being cancelled.
    void cancel(uint64_t token) override;
    // SIGSTOP / SIGCONT to the attempt's process group. No-op for an unknown or finished token,
    // for an attempt being cancelled (suspend only), or when already in the requested state.
    // Throws std::runtime_error when the signal cannot be sent.
    void suspend(uint64_t token) override;
    void resume(uint64_t token) override;
    // OK when /bin/sh is executable.
    sdk::Health health() override;

private:
    enum class Stop { none, sigterm, sigkill };

    // One running attempt. pid is also the process group id.
    struct Child {
        pid_t pid = -1;
        int pidfd = -1;
        int cgroup_fd = -1; // our duplicate of th_task.cgroup_fd; -1: a process group only
        uint64_t watch_id = 0;
        uint64_t grace_timer = 0;
        Stop stop = Stop::none;
        bool suspended = false;
        std::string task_id;
    };

    std::vector<std::string> environmentFor(const sdk::Task& task) const;
    struct Spawned {
        pid_t pid;
        int pidfd;
    };
    Spawned spawn(const Params& params, const sdk::Task& task);
    void onExit(uint64_t token);
    void onGraceExpired(uint64_t token);
    // Sends sig to the group of a running attempt; ESRCH (all gone, the exit is being reported)
    // counts as done. Throws std::runtime_error on any other error.
    void signalGroup(const Child& child, int sig, const char* why) const;
    // sig to the attempt's process group, or with a cgroup to its main process and every process
    // in the cgroup. Returns 0 or the first errno other than ESRCH.
    int signalAll(const Child& child, int sig) const;
    // SIGKILL to the process group, or with a cgroup to everything in it (cgroup.kill).
    void killAll(const Child& child) const;

    static constexpr size_t kChildStackSize = 64 * 1024;

    Config config_;
    // 16-byte aligned (new[] of char is aligned for any fundamental type): the stack pointers
    // both clone variants derive from it need it.
    std::unique_ptr<char[]> child_stack_ = std::make_unique<char[]>(kChildStackSize);
    // Cleared for good when clone3 turned out missing (ENOSYS) or without CLONE_INTO_CGROUP
    // (E2BIG); false from the start under the test hook.
    bool clone3_works_ = true;
    std::vector<std::string> daemon_env_; // "NAME=value" taken from the daemon at creation
    std::unordered_map<uint64_t, Child> children_; // by attempt token
};

} // namespace taskhub::plugins::shell

#endif // TASKHUB_PLUGINS_SHELL_SHELL_PLUGIN_H
