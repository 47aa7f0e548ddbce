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

} // namespace

void failpointPass(const char* name) noexcept {
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
