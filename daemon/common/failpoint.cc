#include "common/failpoint.h"

#if defined(TASKHUB_FAILPOINTS) && TASKHUB_FAILPOINTS

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

namespace taskhub {

namespace {

struct Armed {
    std::string name; // empty: none armed
    long at = 1;
    bool hang = false;
    std::atomic<long> passes{0};

    Armed() {
        const char* spec = std::getenv("TASKHUB_FAILPOINT");
        if (!spec || !*spec) return;
        name = spec;
        if (name.size() > 5 && name.compare(name.size() - 5, 5, ":hang") == 0) {
            hang = true;
            name.resize(name.size() - 5);
        }
        if (auto at_sign = name.find('@'); at_sign != std::string::npos) {
            at = std::strtol(name.c_str() + at_sign + 1, nullptr, 10);
            if (at < 1) at = 1;
            name.resize(at_sign);
        }
    }
};

Armed& armed() {
    static Armed a;
    return a;
}

// TASKHUB_TEST_DELAY=NAME:MS: every pass through the failpoint NAME sleeps MS milliseconds first
// (e.g. store_commit:2000 holds each commit back, so that a test can crash taskhubd while a
// write is known not to be on disk yet).
struct Delay {
    std::string name; // empty: none
    long ms = 0;

    Delay() {
        const char* spec = std::getenv("TASKHUB_TEST_DELAY");
        if (!spec || !*spec) return;
        std::string s = spec;
        auto colon = s.rfind(':');
        if (colon == std::string::npos) return;
        ms = std::strtol(s.c_str() + colon + 1, nullptr, 10);
        if (ms > 0) name = s.substr(0, colon);
    }
};

Delay& delay() {
    static Delay d;
    return d;
}

} // namespace

void failpointPass(const char* name) noexcept {
    if (Delay& d = delay(); !d.name.empty() && d.name == name) ::usleep(static_cast<useconds_t>(d.ms) * 1000);
    Armed& a = armed();
    if (a.name.empty() || a.name != name) return;
    long n = ++a.passes;
    if (n != a.at) return;
    std::fprintf(stderr, "FAILPOINT %s hit %ld: %s\n", name, n, a.hang ? "hanging" : "SIGKILL");
    std::fflush(stderr);
    if (a.hang) {
        for (;;) ::pause(); // signal handlers may wake it: it sleeps again
    }
    std::raise(SIGKILL);
}

} // namespace taskhub

#endif
