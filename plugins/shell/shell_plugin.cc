#include "shell_plugin.h"

#include "direct_exec.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace taskhub::plugins::shell {
namespace {

constexpr const char* kShell = "/bin/sh";
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";
constexpr const char* kInheritedVariables[] = {"PATH", "HOME", "USER", "LOGNAME", "SHELL"};

std::string describeErrno(int err) {
    const char* text = strerrordesc_np(err);
    return text ? text : "error " + std::to_string(err);
}

// "SIGKILL"; falls back to the number for real-time signals, which have no abbreviation.
std::string signalName(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// What the child of spawn() needs, prepared by the parent beforehand: the child shares the
// parent's memory (CLONE_VM) and may only make system calls.
struct ChildPlan {
    // The shell: exec'd when there is no direct program, or when none of its paths could be
    // exec'd (the shell then reports the error in its own words). nullptr for an `argv` task,
    // which never runs a shell: the child then fails with the last exec error.
    const char* path;
    char* const* argv;
    char* const* envp;
    // The program itself, for a command without shell syntax (see direct_exec.h): the paths to
    // try in order, its argv, and its environment, whose PWD entry the child completes.
    const char* const* direct_paths = nullptr;
    size_t direct_count = 0;
    char* const* direct_argv = nullptr;
    char* const* direct_envp = nullptr;
    char* pwd_value = nullptr; // the value part of direct_envp's "PWD=" entry
    size_t pwd_capacity = 0;
    int log_fd = -1;         // stdout and stderr; -1: /dev/null
    // The attempt's cgroup directory, when the child must move itself there (the fallback for
    // kernels without clone3's CLONE_INTO_CGROUP): its first step writes "0" to cgroup.procs.
    int enter_cgroup = -1;
    const char* cwd = nullptr; // nullptr: the daemon's (or, with run_as, home)
    // run_as: become this account before anything else the task could notice, in cronie's order
    // (supplementary groups, gid, uid, then proof that root cannot be regained), and without a
    // cwd of its own start in `home` when that user can enter it, else in /.
    bool drop = false;
    uid_t uid = 0;
    gid_t gid = 0;
    const gid_t* groups = nullptr;
    size_t n_groups = 0;
    const char* home = nullptr;
    int error = 0;           // set by the child when a step failed
    const char* failed = nullptr;
};

// The 32-bit-id variants where the architecture has both (i386, arm); elsewhere the plain ones
// already take 32-bit ids.
#ifdef SYS_setgroups32
constexpr long kSysSetgroups = SYS_setgroups32, kSysSetresgid = SYS_setresgid32,
               kSysSetresuid = SYS_setresuid32, kSysSetuid = SYS_setuid32;
#else
constexpr long kSysSetgroups = SYS_setgroups, kSysSetresgid = SYS_setresgid, kSysSetresuid = SYS_setresuid,
               kSysSetuid = SYS_setuid;
#endif

// Errors after which execvp and the shells go on to the next PATH element.
bool tryNextCandidate(int err) {
    return err == ENOENT || err == ENOTDIR || err == EACCES || err == ELOOP ||
           err == ENAMETOOLONG || err == ESTALE || err == ENODEV || err == ETIMEDOUT;
}

[[noreturn]] void childFailed(ChildPlan* plan, const char* step) {
    plan->error = errno;
    plan->failed = step;
    ::syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

// Runs in the child of spawn(), which shares the daemon's memory until it execs. Only raw system
// calls here, as in glibc's own posix_spawn: a libc function, or an interposed one (a sanitizer's
// sigaction, a preloaded library), could change state the daemon itself relies on.
int childMain(void* arg) {
    auto* plan = static_cast<ChildPlan*>(arg);
    // Before anything else, so that nothing the task does can happen outside its cgroup.
    if (plan->enter_cgroup >= 0) {
        long procs = ::syscall(SYS_openat, (long)plan->enter_cgroup, "cgroup.procs", (long)(O_WRONLY | O_CLOEXEC));
        if (procs < 0) childFailed(plan, "cgroup");
        if (::syscall(SYS_write, procs, "0", 1L) != 1) childFailed(plan, "cgroup");
        ::syscall(SYS_close, procs);
    }
    // Every signal is blocked (the parent blocked them around clone): restore the default
    // dispositions before unblocking, so that no handler of the daemon ever runs in the child.
    // An all-zero kernel sigaction is SIG_DFL with no flags and an empty mask.
    alignas(16) unsigned char dfl[64] = {};
    for (long sig = 1; sig < NSIG; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, dfl, nullptr, 8L);
    }
    if (::syscall(SYS_setpgid, 0L, 0L) != 0) childFailed(plan, "setpgid");
    long out = plan->log_fd >= 0 ? plan->log_fd : ::syscall(SYS_openat, (long)AT_FDCWD, "/dev/null", (long)O_WRONLY);
    if (out < 0) childFailed(plan, "open /dev/null");
    if (out <= STDERR_FILENO) {
        // dup3 needs distinct descriptors; move it out of the way first.
        out = ::syscall(SYS_fcntl, out, (long)F_DUPFD, 3L);
        if (out < 0) childFailed(plan, "fcntl");
    }
    if (::syscall(SYS_dup3, out, (long)STDOUT_FILENO, 0L) < 0 || ::syscall(SYS_dup3, out, (long)STDERR_FILENO, 0L) < 0)
        childFailed(plan, "dup2");
    long in = ::syscall(SYS_openat, (long)AT_FDCWD, "/dev/null", (long)O_RDONLY);
    if (in < 0) childFailed(plan, "open /dev/null");
    if (in != STDIN_FILENO && ::syscall(SYS_dup3, in, (long)STDIN_FILENO, 0L) < 0) childFailed(plan, "dup2");
    // Raw system calls, not setuid(3): glibc's would act on every thread sharing this memory,
    // the daemon's own included. setres*id also clears the saved ids.
    if (plan->drop) {
        if (::syscall(kSysSetgroups, (long)plan->n_groups, plan->groups) != 0) childFailed(plan, "setgroups");
        if (::syscall(kSysSetresgid, (long)plan->gid, (long)plan->gid, (long)plan->gid) != 0)
            childFailed(plan, "setgid");
        if (::syscall(kSysSetresuid, (long)plan->uid, (long)plan->uid, (long)plan->uid) != 0)
            childFailed(plan, "setuid");
        if (plan->uid != 0 && ::syscall(kSysSetuid, 0L) == 0) {
            errno = EPERM;
            childFailed(plan, "regain");
        }
    }
    // After the switch, so that the directory is entered with the task user's permissions.
    if (plan->cwd != nullptr) {
        if (::syscall(SYS_chdir, plan->cwd) != 0) childFailed(plan, "cwd");
    } else if (plan->home != nullptr && ::syscall(SYS_chdir, plan->home) != 0 &&
               ::syscall(SYS_chdir, "/") != 0) {
        childFailed(plan, "cwd");
    }
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    unsigned long none = 0;
    ::syscall(SYS_rt_sigprocmask, (long)SIG_SETMASK, &none, nullptr, 8L);
    // Like the shell, the program gets PWD, the physical working directory. When that cannot be
    // read (a removed directory), the shell decides what to do about it.
    if (plan->direct_count > 0 &&
        (plan->pwd_value == nullptr || ::syscall(SYS_getcwd, plan->pwd_value, plan->pwd_capacity) > 0 ||
         plan->path == nullptr)) {
        for (size_t i = 0; i < plan->direct_count; ++i) {
            ::syscall(SYS_execve, plan->direct_paths[i], plan->direct_argv, plan->direct_envp);
            if (!tryNextCandidate(errno)) break; // e.g. ENOEXEC: a script the shell runs itself
        }
    }
    if (plan->path == nullptr) childFailed(plan, "exec");
    ::syscall(SYS_execve, plan->path, plan->argv, plan->envp);
    childFailed(plan, "exec");
}

// struct clone_args of <linux/sched.h> up to `cgroup` (CLONE_ARGS_SIZE_VER2), spelled out here:
// that header's CLONE_* macros clash with <sched.h>'s.
struct CloneArgs {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};
static_assert(sizeof(CloneArgs) == 88, "clone_args VER2 is 88 bytes");
constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL; // CLONE_INTO_CGROUP (Linux 5.7)

#if defined(__x86_64__) || defined(__aarch64__)
constexpr bool kHaveClone3 = true;
static_assert(SYS_clone3 == 435, "the trampolines below hard-code clone3's number");
#else
constexpr bool kHaveClone3 = false;
#endif

} // namespace
} // namespace taskhub::plugins::shell

// clone3 returns in the child on the new stack with the caller's registers, so no C++ code may run
// between the system call and the child's function: this small trampoline makes the call and, in
// the child (result 0), calls fn(arg) on the fresh stack and exits with its result; in the parent
// it returns the result (a pid, or -errno). fn and arg travel in registers the system call
// preserves. Our own words for what glibc's internal __clone3 does.
//   long taskhub_shell_clone3(CloneArgs* args, size_t size, int (*fn)(void*), void* arg)
#if defined(__x86_64__) || defined(__aarch64__)
extern "C" long taskhub_shell_clone3(void* args, size_t size, int (*fn)(void*), void* arg);
#endif
#if defined(__x86_64__)
// rdi = args, rsi = size, rdx = fn, rcx = arg. The syscall instruction clobbers rcx and r11, so
// fn and arg move to r8 and r9 first (clone3 takes two arguments and leaves both alone).
asm(R"(
    .pushsection .text
    .globl taskhub_shell_clone3
    .hidden taskhub_shell_clone3
    .type taskhub_shell_clone3, @function
    .p2align 4
taskhub_shell_clone3:
    endbr64
    movq %rdx, %r8
    movq %rcx, %r9
    movl $435, %eax
    syscall
    testq %rax, %rax
    jz 1f
    ret
1:
    xorl %ebp, %ebp
    andq $-16, %rsp
    movq %r9, %rdi
    callq *%r8
    movl %eax, %edi
    movl $60, %eax
    syscall
    hlt
    .size taskhub_shell_clone3, .-taskhub_shell_clone3
    .popsection
)");
#elif defined(__aarch64__)
// x0 = args, x1 = size, x2 = fn, x3 = arg; svc preserves every register but x0. bti c (a hint,
// a no-op without branch protection) marks the indirect-call target.
asm(R"(
    .pushsection .text
    .globl taskhub_shell_clone3
    .hidden taskhub_shell_clone3
    .type taskhub_shell_clone3, %function
    .p2align 2
taskhub_shell_clone3:
    hint #34
    mov x8, #435
    svc #0
    cbz x0, 1f
    ret
1:
    mov x29, xzr
    mov x30, xzr
    mov x0, x3
    blr x2
    mov x8, #93
    svc #0
    brk #0
    .size taskhub_shell_clone3, .-taskhub_shell_clone3
    .popsection
)");
#else
// No trampoline for this architecture: every contained spawn takes the fallback.
static long taskhub_shell_clone3(void*, size_t, int (*)(void*), void*) { return -ENOSYS; }
#endif

namespace taskhub::plugins::shell {
namespace {

// The kernel's struct rusage as waitid(2) fills it (glibc's waitid() has no rusage argument, and
// on 32-bit systems glibc's struct rusage uses 64-bit times that the system call does not).
struct KernelRusage {
    long utime_sec, utime_usec, stime_sec, stime_usec;
    long maxrss; // KiB
    long rest[13];
};

// waitid(P_PIDFD, ...) with the rusage of the collected child (and of its reaped descendants).
int waitWithUsage(int pidfd, siginfo_t* info, int options, KernelRusage* usage) {
    return static_cast<int>(::syscall(SYS_waitid, (long)P_PIDFD, (long)pidfd, info, (long)options, usage));
}

sdk::Rusage toRusage(const KernelRusage& ru) {
    sdk::Rusage usage;
    usage.cpu_user_us = static_cast<int64_t>(ru.utime_sec) * 1'000'000 + ru.utime_usec;
    usage.cpu_system_us = static_cast<int64_t>(ru.stime_sec) * 1'000'000 + ru.stime_usec;
    usage.max_rss_kb = ru.maxrss;
    return usage;
}

// The processes of a cgroup (dir: its directory descriptor) and of the cgroups below it, from
// their cgroup.procs. A task that may create cgroups of its own cannot nest deeper than the
// kernel's limit; this walk stops at kMaxDepth anyway (cgroup.kill reaches everything).
constexpr int kMaxCgroupDepth = 32;
void collectCgroupPids(int dir, int depth, std::vector<pid_t>* out) {
    int procs = ::openat(dir, "cgroup.procs", O_RDONLY | O_CLOEXEC);
    if (procs >= 0) {
        std::string text;
        char buf[4096];
        for (ssize_t n; (n = ::read(procs, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR);) {
            if (n > 0) text.append(buf, static_cast<size_t>(n));
        }
        ::close(procs);
        const char* p = text.data();
        const char* end = p + text.size();
        while (p < end) {
            pid_t pid = 0;
            auto [next, ec] = std::from_chars(p, end, pid);
            if (ec == std::errc() && pid > 0) out->push_back(pid);
            p = next;
            while (p < end && *p != '\n') ++p;
            if (p < end) ++p;
        }
    }
    if (depth >= kMaxCgroupDepth) return;
    int listing = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing < 0) return;
    DIR* d = ::fdopendir(listing);
    if (d == nullptr) {
        ::close(listing);
        return;
    }
    while (const dirent* e = ::readdir(d)) {
        if (e->d_type != DT_DIR || std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        int sub = ::openat(dir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) continue;
        collectCgroupPids(sub, depth + 1, out);
        ::close(sub);
    }
    ::closedir(d);
}

// SIGKILL to everything in the cgroup and below, atomically against forks (cgroup.kill, Linux
// 5.14). Where cgroup.kill is missing (an older kernel) or not ours to write (a runner's account
// that was delegated only cgroup.procs), SIGKILL to each process found until none is left.
// Returns 0, or the errno of the failure when processes remain.
int killCgroup(int dir) {
    int kill_file = ::openat(dir, "cgroup.kill", O_WRONLY | O_CLOEXEC);
    int err = errno;
    if (kill_file >= 0) {
        err = ::write(kill_file, "1", 1) == 1 ? 0 : errno;
        ::close(kill_file);
        if (err == 0) return 0;
    }
    for (int round = 0; round < 100; ++round) {
        std::vector<pid_t> pids;
        collectCgroupPids(dir, 0, &pids);
        if (pids.empty()) return 0;
        int sent = 0;
        for (pid_t pid : pids) sent += ::kill(pid, SIGKILL) == 0 || errno == ESRCH;
        if (sent == 0) return err; // none of them may be killed by us
    }
    return err != 0 ? err : EAGAIN; // still forking faster than it is killed
}

// Waits for an exited or SIGKILLed child without WNOHANG; used only where the child is known to
// be gone or going, so it does not block for long.
void reapBlocking(int pidfd) {
    siginfo_t info{};
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED) < 0 && errno == EINTR) {
    }
}

} // namespace

ShellPlugin::ShellPlugin(sdk::Host host, std::string_view config_json)
    : Plugin(host), config_(parseConfig(config_json)),
      clone3_works_(std::getenv("TASKHUB_SHELL_TEST_NO_CLONE3") == nullptr) {
    for (const char* name : kInheritedVariables) {
        const char* value = std::getenv(name);
        if (value == nullptr && std::strcmp(name, "PATH") == 0) value = kDefaultPath;
        if (value != nullptr) daemon_env_.push_back(std::string(name) + "=" + value);
    }
}

ShellPlugin::~ShellPlugin() {
    for (auto& [token, child] : children_) {
        if (child.watch_id != 0) host().unwatchFd(child.watch_id);
        if (child.grace_timer != 0) host().cancelTimer(child.grace_timer);
        killAll(child);
        reapBlocking(child.pidfd);
        ::close(child.pidfd);
        if (child.cgroup_fd >= 0) ::close(child.cgroup_fd);
        host().log(TH_LOG_WARN, "task " + child.task_id + " (pid " + std::to_string(child.pid) +
                                    ") was still running when the shell plugin was destroyed; killed its " +
                                    (child.cgroup_fd >= 0 ? "cgroup" : "process group"));
    }
}

void ShellPlugin::validate(std::string_view params_json) { parseParams(params_json); }

std::vector<std::string> ShellPlugin::environmentFor(const sdk::Task& task) const {
    std::vector<std::string> env = daemon_env_;
    if (task.run_as) {
        // The account's own, from the password database, as login(1) and cron set them.
        std::erase_if(env, [](const std::string& e) {
            return !e.starts_with("PATH=");
        });
        env.push_back("HOME=" + task.run_as->home);
        env.push_back("USER=" + task.run_as->user);
        env.push_back("LOGNAME=" + task.run_as->user);
        env.push_back("SHELL=" + task.run_as->shell);
    }
    env.reserve(env.size() + task.env.size());
    for (const std::string& entry : task.env) {
        size_t eq = entry.find('=');
        if (eq == 0 || eq == std::string::npos) {
            host().log(TH_LOG_WARN, "task " + task.task_id + ": ignoring environment entry '" +
                                        entry + "' (expected NAME=value)");
            continue;
        }
        std::string_view prefix(entry.data(), eq + 1); // "NAME="
        std::erase_if(env, [&](const std::string& e) { return e.starts_with(prefix); });
        env.push_back(entry);
    }
    return env;
}

ShellPlugin::Spawned ShellPlugin::spawn(const Params& params, const sdk::Task& task) {
    std::vector<std::string> env = environmentFor(task);
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (std::string& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string command = params.command;
    char arg0[] = "sh";
    char arg1[] = "-c";
    char* argv[] = {arg0, arg1, command.data(), nullptr};
    const bool argv_task = !params.argv.empty();
    ChildPlan plan{argv_task ? nullptr : kShell, argv, envp.data()};
    plan.log_fd = task.log_fd;
    const bool contained = task.cgroup_fd >= 0;
    plan.cwd = params.cwd.empty() ? nullptr : params.cwd.c_str();
    std::vector<gid_t> groups;
    if (task.run_as) {
        const sdk::Identity& id = *task.run_as;
        groups.assign(id.groups.begin(), id.groups.end());
        // An unprivileged daemon (tests, scripts/demo) may "switch" to itself; it cannot call
        // setgroups, and needs not.
        plan.drop = ::geteuid() == 0 || id.uid != ::geteuid();
        plan.uid = id.uid;
        plan.gid = id.gid;
        plan.groups = groups.data();
        plan.n_groups = groups.size();
        plan.home = id.home.empty() ? "/" : id.home.c_str();
    }

    // A command without shell syntax runs without the shell, with the environment the shell
    // would have given it: the same variables plus PWD (unless the task sets PWD itself, which
    // the shell treats specially). An `argv` task always runs that way.
    std::optional<std::vector<std::string>> words =
        argv_task ? std::optional(params.argv) : simpleCommandWords(params.command);
    std::vector<std::string> candidates;
    std::vector<const char*> candidate_ptrs;
    std::vector<char*> direct_argv;
    std::vector<char*> direct_envp;
    std::string pwd_entry;
    const char* search_path = nullptr;
    bool has_pwd = false;
    for (const std::string& e : env) {
        if (e.starts_with("PATH=")) search_path = e.c_str() + 5;
        if (e.starts_with("PWD=")) has_pwd = true;
    }
    if (words && (argv_task || (search_path != nullptr && !has_pwd))) {
        candidates = programCandidates(words->front(), search_path != nullptr ? search_path : kDefaultPath);
        for (const std::string& c : candidates) candidate_ptrs.push_back(c.c_str());
        for (std::string& w : *words) direct_argv.push_back(w.data());
        direct_argv.push_back(nullptr);
        direct_envp.assign(envp.begin(), envp.end() - 1);
        if (!has_pwd) {
            pwd_entry.assign("PWD=").resize(4 + PATH_MAX + 1, '\0');
            direct_envp.push_back(pwd_entry.data());
            plan.pwd_value = pwd_entry.data() + 4;
            plan.pwd_capacity = PATH_MAX + 1;
        }
        direct_envp.push_back(nullptr);
        plan.direct_paths = candidate_ptrs.data();
        plan.direct_count = candidate_ptrs.size();
        plan.direct_argv = direct_argv.data();
        plan.direct_envp = direct_envp.data();
    }

    // What posix_spawn does, without mapping and unmapping a child stack per call (in a
    // multi-threaded daemon every unmap is a TLB shootdown across CPUs): the child runs on
    // child_stack_, reused because calls arrive one at a time on the event loop, and CLONE_VFORK
    // holds this thread until the child has exec'd or failed. CLONE_PIDFD hands back the
    // descriptor the host watches for the child's exit. With a cgroup, clone3 starts the child
    // in it (CLONE_INTO_CGROUP); where the kernel cannot, the child moves itself there first.
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    char* top = child_stack_.get() + kChildStackSize;
    int pidfd = -1;
    pid_t pid = -1;
    int clone_error = 0;
    const char* how = "clone";
    bool use_clone = true;
    if (contained && kHaveClone3 && clone3_works_) {
        CloneArgs args{};
        args.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | kCloneIntoCgroup;
        args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
        args.exit_signal = SIGCHLD;
        args.stack = reinterpret_cast<uintptr_t>(child_stack_.get());
        args.stack_size = kChildStackSize;
        args.cgroup = static_cast<uint64_t>(task.cgroup_fd);
        long rc = taskhub_shell_clone3(&args, sizeof args, childMain, &plan);
        if (rc >= 0) {
            pid = static_cast<pid_t>(rc);
            use_clone = false;
        } else {
            clone_error = static_cast<int>(-rc);
            how = "clone3 into the attempt's cgroup";
            // No clone3 (before 5.3), or no CLONE_INTO_CGROUP (before 5.7: E2BIG for the larger
            // struct, EINVAL for the flag): the fallback below, for good.
            if (clone_error == ENOSYS || clone_error == E2BIG) clone3_works_ = false;
            use_clone = clone_error == ENOSYS || clone_error == E2BIG || clone_error == EINVAL;
        }
    }
    if (use_clone) {
        plan.enter_cgroup = contained ? task.cgroup_fd : -1;
        pid = ::clone(childMain, top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &plan, &pidfd);
        clone_error = errno;
        how = "clone";
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);

    const std::string failure =
        "cannot start " + (argv_task ? "'" + params.argv.front() + "'" : std::string(kShell)) + " for task " +
        task.task_id + ": ";
    if (pid < 0) throw std::runtime_error(failure + how + ": " + describeErrno(clone_error));
    if (plan.failed != nullptr) {
        reapBlocking(pidfd); // it has already exited
        ::close(pidfd);
        const std::string as_user =
            task.run_as ? " as user " + task.run_as->user + " (uid " + std::to_string(task.run_as->uid) + ")" : "";
        if (std::strcmp(plan.failed, "cwd") == 0 && !task.run_as)
            throw std::runtime_error(failure + "cwd '" + params.cwd + "': " + describeErrno(plan.error));
        if (std::strcmp(plan.failed, "cwd") == 0)
            throw std::runtime_error(failure + "cwd '" + (params.cwd.empty() ? "/" : params.cwd) +
                                     "' cannot be entered" + as_user + ": " + describeErrno(plan.error) +
                                     " (give that user search permission on it, or pick another cwd)");
        if (std::strcmp(plan.failed, "cgroup") == 0)
            throw std::runtime_error(failure + "cannot enter the attempt's cgroup (writing \"0\" to its "
                                     "cgroup.procs): " + describeErrno(plan.error));
        if (std::strcmp(plan.failed, "regain") == 0)
            throw std::runtime_error(failure + "after switching" + as_user +
                                     ", setuid(0) still succeeded: refusing to run with root regainable");
        if (task.run_as && (std::strcmp(plan.failed, "setgroups") == 0 ||
                            std::strcmp(plan.failed, "setgid") == 0 || std::strcmp(plan.failed, "setuid") == 0))
            throw std::runtime_error(failure + "cannot switch to user " + task.run_as->user + " (uid " +
                                     std::to_string(task.run_as->uid) + ", gid " +
                                     std::to_string(task.run_as->gid) + "): " + plan.failed + ": " +
                                     describeErrno(plan.error) +
                                     (::geteuid() != 0 ? " (run_as needs taskhubd to run as root)" : ""));
        throw std::runtime_error(failure + plan.failed + ": " + describeErrno(plan.error));
    }
    return {pid, pidfd};
}

void ShellPlugin::execute(const sdk::Task& task) {
    Params params = parseParams(task.params_json);
    auto [it, inserted] = children_.try_emplace(task.token);
    if (!inserted)
        throw std::runtime_error("attempt token " + std::to_string(task.token) + " of task " +
                                 task.task_id + " is already running");
    Child& child = it->second;
    child.task_id = task.task_id;
    try {
        // Our own: the host's descriptor is valid only until complete().
        if (task.cgroup_fd >= 0) {
            child.cgroup_fd = ::fcntl(task.cgroup_fd, F_DUPFD_CLOEXEC, 3);
            if (child.cgroup_fd < 0)
                throw std::runtime_error("cannot start task " + task.task_id +
                                         ": duplicating its cgroup descriptor: " + describeErrno(errno));
        }
        Spawned spawned = spawn(params, task);
        child.pid = spawned.pid;
        child.pidfd = spawned.pidfd;
    } catch (...) {
        if (child.cgroup_fd >= 0) ::close(child.cgroup_fd);
        children_.erase(it);
        throw;
    }
    uint64_t token = task.token;
    child.watch_id = host().watchFd(child.pidfd, [this, token](int) { onExit(token); });
    if (child.watch_id == 0) {
        killAll(child);
        reapBlocking(child.pidfd);
        ::close(child.pidfd);
        if (child.cgroup_fd >= 0) ::close(child.cgroup_fd);
        children_.erase(it);
        throw std::runtime_error("cannot watch /bin/sh for task " + task.task_id +
                                 ": the host refused to watch its pidfd");
    }
    // The command leads its own process group (setpgid in childMain): after a crash of the
    // daemon, the next start stops that whole group (or, with cgroups, the host's cgroup).
    host().reportProcess(token, child.pid, child.pid);
}

void ShellPlugin::killAll(const Child& child) const {
    if (child.cgroup_fd < 0) {
        ::kill(-child.pid, SIGKILL);
        return;
    }
    if (int err = killCgroup(child.cgroup_fd); err != 0) {
        host().log(TH_LOG_WARN, "task " + child.task_id + ": cannot kill its cgroup (cgroup.kill): " +
                                    describeErrno(err) + "; sending SIGKILL to its process group instead");
        ::kill(-child.pid, SIGKILL);
    }
}

int ShellPlugin::signalAll(const Child& child, int sig) const {
    if (child.cgroup_fd < 0) return ::kill(-child.pid, sig) == 0 || errno == ESRCH ? 0 : errno;
    // The main process first: it is in the cgroup too, but surely meant even if reading the
    // cgroup fails.
    int first_error = ::kill(child.pid, sig) == 0 || errno == ESRCH ? 0 : errno;
    std::vector<pid_t> pids;
    collectCgroupPids(child.cgroup_fd, 0, &pids);
    for (pid_t pid : pids) {
        if (pid == child.pid) continue;
        if (::kill(pid, sig) != 0 && errno != ESRCH && first_error == 0) first_error = errno;
    }
    return first_error;
}

void ShellPlugin::onExit(uint64_t token) {
    auto it = children_.find(token);
    if (it == children_.end()) return;
    Child& child = it->second;
    child.watch_id = 0;

    // The leader is a zombie until reaped below, so its pid cannot have been reused as a group
    // id yet: this reaches exactly the processes the command left behind (with a cgroup, every
    // one of them, wherever they went).
    if (child.stop != Stop::none) killAll(child);

    siginfo_t info{};
    KernelRusage ru{};
    int rc;
    do {
        rc = waitWithUsage(child.pidfd, &info, WEXITED | WNOHANG, &ru);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0 && info.si_pid == 0) {
        // Readable without a state change to collect: wait for the real exit.
        child.watch_id = host().watchFd(child.pidfd, [this, token](int) { onExit(token); });
        if (child.watch_id != 0) return;
        // Without a watch nothing would ever reap it: end it now instead.
        killAll(child);
        do {
            rc = waitWithUsage(child.pidfd, &info, WEXITED, &ru);
        } while (rc < 0 && errno == EINTR);
    }
    int wait_error = rc < 0 ? errno : 0;

    th_outcome outcome = TH_OUTCOME_FAILED;
    int exit_code = -1;
    std::string message;
    sdk::Rusage usage;
    if (rc < 0) {
        // Only when something else collected the status: the daemon ignores SIGCHLD or waits
        // for any child.
        message = "exit status of /bin/sh (pid " + std::to_string(child.pid) +
                  ") is unavailable: " + describeErrno(wait_error);
    } else {
        usage = toRusage(ru);
        if (info.si_code == CLD_EXITED) {
            exit_code = info.si_status;
            outcome = exit_code == 0 ? TH_OUTCOME_SUCCEEDED : TH_OUTCOME_FAILED;
            message = "exit code " + std::to_string(exit_code);
        } else {
            exit_code = 128 + info.si_status;
            outcome = TH_OUTCOME_FAILED;
            message = "killed by signal " + std::to_string(info.si_status) + " (" +
                      signalName(info.si_status) + ")";
            if (info.si_code == CLD_DUMPED) message += ", core dumped";
        }
    }
    if (child.stop == Stop::sigterm) {
        outcome = TH_OUTCOME_CANCELLED;
        message = "cancelled (SIGTERM)";
    } else if (child.stop == Stop::sigkill) {
        outcome = TH_OUTCOME_CANCELLED;
        message = "cancelled (SIGKILL after " + config_.kill_grace + " grace)";
    }

    if (child.grace_timer != 0) host().cancelTimer(child.grace_timer);
    ::close(child.pidfd);
    if (child.cgroup_fd >= 0) ::close(child.cgroup_fd);
    children_.erase(it);
    // Last: the host may start the next attempt from inside complete().
    host().complete(token, outcome, exit_code, message, usage);
}

void ShellPlugin::cancel(uint64_t token) {
    auto it = children_.find(token);
    if (it == children_.end()) return;
    Child& child = it->second;
    if (child.stop != Stop::none) return;

    // Exited but not yet reaped: the pending pidfd callback reports how it really ended.
    siginfo_t info{};
    if (::waitid(P_PIDFD, static_cast<id_t>(child.pidfd), &info,
                 WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid != 0)
        return;

    child.stop = Stop::sigterm;
    signalAll(child, SIGTERM);
    if (child.suspended) {
        // A stopped process acts on SIGTERM only once it continues.
        signalAll(child, SIGCONT);
        child.suspended = false;
    }
    child.grace_timer =
        host().addTimer(config_.kill_grace_ms, [this, token] { onGraceExpired(token); });
    if (child.grace_timer == 0) {
        host().log(TH_LOG_WARN, "task " + child.task_id +
                                    ": the host refused a grace timer; sending SIGKILL at once");
        child.stop = Stop::sigkill;
        killAll(child);
    }
}

void ShellPlugin::onGraceExpired(uint64_t token) {
    auto it = children_.find(token);
    if (it == children_.end()) return;
    Child& child = it->second;
    child.grace_timer = 0;
    child.stop = Stop::sigkill;
    host().log(TH_LOG_WARN, "task " + child.task_id + " did not stop within " + config_.kill_grace +
                                " of SIGTERM; sending SIGKILL to " +
                                (child.cgroup_fd >= 0 ? std::string("its cgroup (cgroup.kill)")
                                                      : "process group " + std::to_string(child.pid)));
    killAll(child);
}

void ShellPlugin::signalGroup(const Child& child, int sig, const char* why) const {
    int err = signalAll(child, sig);
    if (err == 0) return;
    throw std::runtime_error("cannot " + std::string(why) + " task " + child.task_id + " (" +
                             (child.cgroup_fd >= 0 ? std::string("its cgroup")
                                                   : "process group " + std::to_string(child.pid)) +
                             "): " + describeErrno(err));
}

void ShellPlugin::suspend(uint64_t token) {
    auto it = children_.find(token);
    if (it == children_.end()) return;
    Child& child = it->second;
    if (child.suspended || child.stop != Stop::none) return;
    signalGroup(child, SIGSTOP, "suspend");
    child.suspended = true;
}

void ShellPlugin::resume(uint64_t token) {
    auto it = children_.find(token);
    if (it == children_.end()) return;
    Child& child = it->second;
    if (!child.suspended) return;
    signalGroup(child, SIGCONT, "resume");
    child.suspended = false;
}

sdk::Health ShellPlugin::health() {
    if (::access(kShell, X_OK) == 0) return {TH_HEALTH_OK, "/bin/sh is executable"};
    return {TH_HEALTH_UNHEALTHY, std::string("cannot execute /bin/sh: ") + describeErrno(errno)};
}

} // namespace taskhub::plugins::shell

TASKHUB_PLUGIN(taskhub::plugins::shell::ShellPlugin, "shell", TASKHUB_PLUGIN_VERSION,
               "Runs a command line as /bin/sh -c does, in its own process group (and the attempt's cgroup)",
               TH_CAP_CANCEL | TH_CAP_HEALTH_CHECK | TH_CAP_SUSPEND | TH_CAP_RUN_AS | TH_CAP_CGROUP,
               TH_THREADS_SERIAL)
