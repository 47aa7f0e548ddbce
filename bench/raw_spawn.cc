// raw_spawn: the baseline the shell benchmark is measured against. Starts COUNT processes with
// posix_spawn, keeping PARALLEL of them in flight, reaps each with waitpid, and prints one JSON
// line with the rate. No event loop, no store, no logging: the fastest this machine can start
// and reap that many processes at that parallelism, measured in the same run as the daemon.
//
//   raw_spawn [--count N] [--parallel P] [--plugin-like] [--log-dir DIR] -- PROGRAM [ARGS...]
//
// --plugin-like repeats what plugins/shell does for each attempt besides exec: its own process
// group, default signal dispositions, stdin from /dev/null, stdout/stderr on a per-attempt log
// file opened in --log-dir, closefrom(3) and a scrubbed environment. It is a diagnostic that
// separates the cost of the spawn set-up from the cost of the daemon around it; it is not the
// headline baseline.
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
pid_t spawnOne(const Options& o, long n, char** envp) {
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
    auto t0 = std::chrono::steady_clock::now();
    while (reaped < o.count) {
        while (in_flight < o.parallel && started < o.count) {
            spawnOne(o, started, envp.data());
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
                "\"failed\": %ld, \"seconds\": %.6f, \"per_second\": %.1f}\n",
                cmd.c_str(), o.count, o.parallel, o.plugin_like ? "true" : "false", failed, seconds,
                static_cast<double>(o.count) / seconds);
    return failed == 0 ? 0 : 1;
}
