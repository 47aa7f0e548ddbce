// raw_timer: the baseline of bench_trigger_lateness. Wakes once per second at whole seconds of
// CLOCK_REALTIME (plus --offset-ms) from a timerfd armed with TFD_TIMER_ABSTIME, reads the clock
// at once and records how late it woke. With --spawn it then starts the recorder with posix_spawn
// (as the shell plugin starts a task's command) and reaps it; the recorder stamps its own start
// into FILE with the label "raw@NANOSECONDS" (the scheduled instant). No event loop, no store, no
// plugin: the best this machine does for "run something at second S".
//
//   raw_timer --start EPOCH_SECONDS --count N [--offset-ms MS] [--spawn RECORDER FILE]
//
// Prints one JSON line: the scheduled instants (ns), the wake-up lateness of each (ns), and the
// time the process spent runnable but waiting for a CPU (ns, from /proc/self/schedstat).
#include <spawn.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "raw_timer: %s\nusage: raw_timer --start EPOCH_SECONDS --count N [--offset-ms MS] "
                 "[--spawn RECORDER FILE]\n",
                 why);
    std::exit(2);
}

long long number(const char* flag, const char* text) {
    char* end = nullptr;
    long long v = std::strtoll(text, &end, 10);
    if (end == text || *end != '\0' || v < 0) {
        std::fprintf(stderr, "raw_timer: %s needs a non-negative integer, found '%s'\n", flag, text);
        std::exit(2);
    }
    return v;
}

int64_t nowNs() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

} // namespace

int main(int argc, char** argv) {
    long long start = -1, count = -1, offset_ms = 0;
    const char* recorder = nullptr;
    const char* file = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&] {
            if (i + 1 >= argc) usage((a + " needs a value").c_str());
            return argv[++i];
        };
        if (a == "--start") {
            start = number("--start", value());
        } else if (a == "--count") {
            count = number("--count", value());
        } else if (a == "--offset-ms") {
            offset_ms = number("--offset-ms", value());
        } else if (a == "--spawn") {
            recorder = value();
            file = value();
        } else {
            usage(("unknown argument " + a).c_str());
        }
    }
    if (start < 0 || count <= 0) usage("--start and --count are required");
    if (offset_ms >= 1000) usage("--offset-ms must be below 1000");

    int tfd = ::timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
    if (tfd < 0) {
        std::perror("timerfd_create");
        return 1;
    }
    std::vector<int64_t> scheduled, late;
    long spawn_errors = 0;
    std::string label;
    for (long long i = 0; i < count; ++i) {
        const int64_t when = (start + i) * 1000000000LL + offset_ms * 1000000LL;
        if (when <= nowNs()) continue; // started too late for this one: not counted
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(when / 1000000000);
        its.it_value.tv_nsec = static_cast<long>(when % 1000000000);
        if (::timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
            std::perror("timerfd_settime");
            return 1;
        }
        uint64_t expirations = 0;
        ssize_t r;
        do {
            r = ::read(tfd, &expirations, sizeof expirations);
        } while (r < 0 && errno == EINTR);
        const int64_t woke = nowNs();
        if (r != sizeof expirations) {
            std::perror("read(timerfd)");
            return 1;
        }
        scheduled.push_back(when);
        late.push_back(woke - when);
        if (recorder != nullptr) {
            label = "raw@" + std::to_string(when);
            char* child_argv[] = {const_cast<char*>(recorder), const_cast<char*>(file), label.data(), nullptr};
            pid_t pid = 0;
            if (::posix_spawn(&pid, recorder, nullptr, nullptr, child_argv, environ) != 0) {
                ++spawn_errors;
                continue;
            }
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++spawn_errors;
        }
    }
    ::close(tfd);
    // How long this process was runnable but waited for a CPU (the machine's share of lateness).
    long long run_delay_ns = -1;
    if (FILE* f = std::fopen("/proc/self/schedstat", "r")) {
        long long on_cpu = 0;
        if (std::fscanf(f, "%lld %lld", &on_cpu, &run_delay_ns) != 2) run_delay_ns = -1;
        std::fclose(f);
    }

    std::printf("{\"scheduled_ns\": [");
    for (size_t i = 0; i < scheduled.size(); ++i)
        std::printf("%s%lld", i ? ", " : "", static_cast<long long>(scheduled[i]));
    std::printf("], \"wake_late_ns\": [");
    for (size_t i = 0; i < late.size(); ++i)
        std::printf("%s%lld", i ? ", " : "", static_cast<long long>(late[i]));
    std::printf("], \"spawn_errors\": %ld, \"run_delay_ns\": %lld}\n", spawn_errors, run_delay_ns);
    return 0;
}
