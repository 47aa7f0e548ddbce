// raw_spawn: the baseline the shell benchmark is measured against. Starts COUNT processes with
// posix_spawn, keeping PARALLEL of them in flight, reaps each with waitpid, and prints one JSON
// line with the rate. No event loop, no store, no logging: the fastest this machine can start
// and reap that many processes at that parallelism, measured in the same run as the daemon.
//
//   raw_spawn [--count N] [--parallel P] [--plugin-like] [--log-dir DIR] [--cgroup-dir DIR]
//             -- PROGRAM [ARGS...]
//
// --plugin-like repeats what plugins/shell does for each attempt besides exec: its own process
// group, default signal dispositions, stdin from /dev/null, stdout/stderr on a per-attempt log
// file opened in --log-dir, closefrom(3) and a scrubbed environment. It is a diagnostic that
// separates the cost of the spawn set-up from the cost of the daemon around it; it is not the
// headline baseline.
//
// --cgroup-dir DIR (a directory in cgroup2, e.g. /sys/fs/cgroup/unified/x) measures what a cgroup
// per child costs the kernel, the physical part of taskhubd's containment: each child gets a new
// cgroup DIR/cN (mkdir), is started in it with clone3(CLONE_INTO_CGROUP), and after it is reaped
// the cgroup is removed (rmdir). Children are started with clone3 in fork style (CLONE_VFORK,
// no shared memory) whether or not --cgroup-dir is given when --clone3 is given, so that
// `--clone3` and `--clone3 --cgroup-dir DIR` differ only in the cgroup.
#include <linux/sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

struct Options {
    long count = 2000;
    long parallel = 2;
    bool plugin_like = false;
    std::string log_dir;
    bool clone3 = false;
    std::string cgroup_dir;
    std::vector<char*> argv; // PROGRAM ARGS... nullptr
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "raw_spawn: %s\nusage: raw_spawn [--count N] [--parallel P] [--plugin-like] "
                 "[--log-dir DIR] -- PROGRAM [ARGS...]\n",
                 why);
    std::exit(2);
}

long positive(const char* flag, const char* text) {
    char* end = nullptr;
    long v = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || v <= 0) {
        std::fprintf(stderr, "raw_spawn: %s needs a positive integer, found '%s'\n", flag, text);
        std::exit(2);
    }
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (i + 1 < argc && a == "--count") o.count = positive("--count", argv[++i]);
        else if (i + 1 < argc && a == "--parallel") o.parallel = positive("--parallel", argv[++i]);
        else if (i + 1 < argc && a == "--log-dir") o.log_dir = argv[++i];
        else if (a == "--plugin-like") o.plugin_like = true;
        else if (a == "--clone3") o.clone3 = true;
        else if (i + 1 < argc && a == "--cgroup-dir") o.cgroup_dir = argv[++i];
        else usage(("unknown or incomplete argument '" + a + "'").c_str());
    }
    if (i >= argc) usage("no PROGRAM given after --");
    for (; i < argc; ++i) o.argv.push_back(argv[i]);
    o.argv.push_back(nullptr);
    if (o.plugin_like && o.log_dir.empty()) usage("--plugin-like needs --log-dir");
    return o;
}

void check(int rc, const char* what) {
    if (rc != 0) {
        std::fprintf(stderr, "raw_spawn: %s: %s\n", what, std::strerror(rc));
        std::exit(1);
    }
}

// Spawns one child; with --plugin-like, also opens its log file (closed once the child runs,
// as the daemon closes it when the attempt ends; closing at spawn changes nothing measurable).
// clone3 in fork style, into the cgroup `cgroup_fd` when it is >= 0.
pid_t cloneOne(const Options& o, int cgroup_fd) {
    clone_args args{};
    args.flags = CLONE_VFORK | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
    args.exit_signal = SIGCHLD;
    args.cgroup = cgroup_fd >= 0 ? static_cast<uint64_t>(cgroup_fd) : 0;
    long pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        ::execve(o.argv[0], o.argv.data(), environ);
        ::_exit(127);
    }
    if (pid < 0) {
        std::fprintf(stderr, "raw_spawn: clone3: %s\n", std::strerror(errno));
        std::exit(1);
    }
    return static_cast<pid_t>(pid);
}

pid_t spawnOne(const Options& o, long n, char** envp) {
    if (o.clone3) {
        if (o.cgroup_dir.empty()) return cloneOne(o, -1);
        const std::string dir = o.cgroup_dir + "/c" + std::to_string(n);
        if (::mkdir(dir.c_str(), 0755) != 0) {
            std::fprintf(stderr, "raw_spawn: mkdir %s: %s\n", dir.c_str(), std::strerror(errno));
            std::exit(1);
        }
        const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            std::fprintf(stderr, "raw_spawn: open %s: %s\n", dir.c_str(), std::strerror(errno));
            std::exit(1);
        }
        pid_t pid = cloneOne(o, fd);
        ::close(fd);
        return pid;
    }
    if (!o.plugin_like) {
        pid_t pid = -1;
        check(posix_spawn(&pid, o.argv[0], nullptr, nullptr, o.argv.data(), environ), "posix_spawn");
        return pid;
    }
    std::string log = o.log_dir + "/t" + std::to_string(n) + ".1.log";
    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) {
        std::fprintf(stderr, "raw_spawn: cannot open %s: %s\n", log.c_str(), std::strerror(errno));
        std::exit(1);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    check(posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETPGROUP),
          "posix_spawnattr_setflags");
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, log_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, log_fd, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid = -1;
    check(posix_spawn(&pid, o.argv[0], &fa, &attr, o.argv.data(), envp), "posix_spawn");
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(log_fd);
    return pid;
}

} // namespace

int main(int argc, char** argv) {
    Options o = parse(argc, argv);

    std::vector<std::string> env_storage;
    for (const char* name : {"PATH", "HOME", "USER", "LOGNAME", "SHELL"}) {
        if (const char* v = std::getenv(name)) env_storage.push_back(std::string(name) + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);

    long started = 0, reaped = 0, failed = 0, in_flight = 0;
    std::vector<std::pair<pid_t, long>> children; // pid, n (for the cgroup to remove)
    auto t0 = std::chrono::steady_clock::now();
    while (reaped < o.count) {
        while (in_flight < o.parallel && started < o.count) {
            children.emplace_back(spawnOne(o, started, envp.data()), started);
            ++started;
            ++in_flight;
        }
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            std::fprintf(stderr, "raw_spawn: waitpid: %s\n", std::strerror(errno));
            return 1;
        }
        --in_flight;
        ++reaped;
        for (auto it = children.begin(); it != children.end(); ++it) {
            if (it->first != pid) continue;
            if (!o.cgroup_dir.empty()) {
                const std::string dir = o.cgroup_dir + "/c" + std::to_string(it->second);
                if (::rmdir(dir.c_str()) != 0) {
                    std::fprintf(stderr, "raw_spawn: rmdir %s: %s\n", dir.c_str(), std::strerror(errno));
                    return 1;
                }
            }
            children.erase(it);
            break;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::string cmd;
    for (char* a : o.argv) {
        if (a == nullptr) break;
        if (!cmd.empty()) cmd += ' ';
        cmd += a;
    }
    std::printf("{\"command\": \"%s\", \"count\": %ld, \"parallel\": %ld, \"plugin_like\": %s, "
                "\"clone3\": %s, \"cgroups\": %s, \"failed\": %ld, \"seconds\": %.6f, \"per_second\": %.1f}\n",
                cmd.c_str(), o.count, o.parallel, o.plugin_like ? "true" : "false", o.clone3 ? "true" : "false",
                o.cgroup_dir.empty() ? "false" : "true", failed, seconds,
                static_cast<double>(o.count) / seconds);
    return failed == 0 ? 0 : 1;
}
