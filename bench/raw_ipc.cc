// The raw baseline of the plugin_dispatch benchmark: what handing a task to another process and
// hearing back costs with nothing around it. A parent and a forked child on a socketpair; the
// parent sends --messages messages of 100 bytes (a 4-byte length and a payload, the size of a
// small execute frame), at most --window of them unanswered, several per write as they fit; the
// child answers each with a message of the same size, several per write. No JSON, no event loop,
// no plugin: two system calls per batch on each side and the wake-ups between the processes.
//
//   raw_ipc [--messages N] [--window W] [--reps R]
//   prints {"ns_per_message": median over R, "runs_ns": [...], "messages": N, "window": W}
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kMessage = 100;

bool writeAll(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) return false;
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// The child: answers every complete message until end of file.
[[noreturn]] void echo(int fd) {
    std::vector<char> in(65536), out(65536 + kMessage, 'r');
    size_t partial = 0;
    for (;;) {
        ssize_t r = ::read(fd, in.data(), in.size());
        if (r <= 0) ::_exit(0);
        partial += static_cast<size_t>(r);
        const size_t whole = partial / kMessage;
        partial %= kMessage;
        if (whole > 0 && !writeAll(fd, out.data(), whole * kMessage)) ::_exit(1);
    }
}

double once(size_t messages, size_t window) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::exit(1);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(sv[0]);
        echo(sv[1]);
    }
    ::close(sv[1]);
    const int fd = sv[0];
    std::vector<char> out(window * kMessage, 's'), in(65536);
    size_t sent = 0, answered = 0, partial = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (answered < messages) {
        const size_t room = std::min(window - (sent - answered), messages - sent);
        if (room > 0) {
            if (!writeAll(fd, out.data(), room * kMessage)) std::exit(1);
            sent += room;
        }
        ssize_t r = ::read(fd, in.data(), in.size());
        if (r <= 0) std::exit(1);
        partial += static_cast<size_t>(r);
        answered += partial / kMessage;
        partial %= kMessage;
    }
    const auto t1 = std::chrono::steady_clock::now();
    ::close(fd);
    ::waitpid(pid, nullptr, 0);
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(messages);
}

} // namespace

int main(int argc, char** argv) {
    size_t messages = 10000, window = 1000, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        size_t v = std::strtoull(argv[i + 1], nullptr, 10);
        if (a == "--messages") messages = v;
        else if (a == "--window") window = v;
        else if (a == "--reps") reps = v;
        else {
            std::fprintf(stderr, "usage: raw_ipc [--messages N] [--window W] [--reps R]\n");
            return 2;
        }
    }
    if (messages == 0 || window == 0 || reps == 0) return 2;
    std::vector<double> runs;
    for (size_t i = 0; i < reps; ++i) runs.push_back(once(messages, window));
    std::vector<double> sorted = runs;
    std::sort(sorted.begin(), sorted.end());
    std::printf("{\"ns_per_message\": %.1f, \"runs_ns\": [", sorted[sorted.size() / 2]);
    for (size_t i = 0; i < runs.size(); ++i) std::printf("%s%.1f", i ? ", " : "", runs[i]);
    std::printf("], \"messages\": %zu, \"window\": %zu}\n", messages, window);
    return 0;
}
