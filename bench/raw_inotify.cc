// raw_inotify: the baseline of bench_file_drop. A bare inotify reader on one directory: for each
// IN_CLOSE_WRITE or IN_MOVED_TO it reads CLOCK_REALTIME at once and records "NAME S.NS"; with
// --spawn it then starts the recorder with posix_spawn (as the shell plugin starts a task's
// command) with the file name as its label, and reaps it. No event loop, no store, no engine: the
// best this machine does for "run something when a file lands". A file named STOP ends it.
//
//   raw_inotify DIR OUT [--spawn RECORDER FILE]
//
// Writes the stamps to OUT when it ends; prints the number of events and spawn errors as JSON.
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

extern char** environ;

namespace {

int64_t nowNs() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3 && !(argc == 6 && std::strcmp(argv[3], "--spawn") == 0)) {
        std::fprintf(stderr, "usage: raw_inotify DIR OUT [--spawn RECORDER FILE]\n");
        return 2;
    }
    const char* recorder = argc == 6 ? argv[4] : nullptr;
    const char* spawn_file = argc == 6 ? argv[5] : nullptr;
    const int fd = ::inotify_init1(IN_CLOEXEC);
    if (fd < 0 || ::inotify_add_watch(fd, argv[1], IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        std::perror(argv[1]);
        return 1;
    }
    std::string out;
    long events = 0, spawn_errors = 0;
    alignas(inotify_event) char buf[64 * 1024];
    bool stop = false;
    while (!stop) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            std::perror("read(inotify)");
            return 1;
        }
        const int64_t now = nowNs();
        for (char* p = buf; p < buf + n;) {
            auto* ev = reinterpret_cast<inotify_event*>(p);
            p += sizeof(inotify_event) + ev->len;
            if (ev->len == 0) continue;
            const std::string name = ev->name;
            if (name == "STOP") {
                stop = true;
                break;
            }
            ++events;
            out += name + " " + std::to_string(now / 1000000000) + "." + std::to_string(1000000000 + now % 1000000000).substr(1) + "\n";
            if (recorder == nullptr) continue;
            char* child_argv[] = {const_cast<char*>(recorder), const_cast<char*>(spawn_file),
                                  const_cast<char*>(name.c_str()), nullptr};
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
    if (FILE* f = std::fopen(argv[2], "w")) {
        std::fwrite(out.data(), 1, out.size(), f);
        std::fclose(f);
    }
    std::printf("{\"events\": %ld, \"spawn_errors\": %ld}\n", events, spawn_errors);
    return 0;
}
