// cron_next: how many CronExpr::next() computations one thread does per second on a mix of
// expressions and zones, next to a raw baseline measured in the same run. Driven by
// bench_cron_next.py; see docs/benchmarks.md.
//
//   cron_next [--seconds S]
//
// Every measurement calls its function on the same 4,096 pseudo-random instants spread over
// 2026-2035 (fixed seed), for each expression of the mix in turn, until S seconds (default 0.5)
// have passed. The baseline is the least any zone-aware next() has to do: look up the zone's
// offset at the instant (date::time_zone::get_info), step to the next whole minute of wall time
// with date::floor, split it into calendar fields (year_month_day, hh_mm_ss) and convert it back
// to UTC. Prints one JSON line: calls per second of next() over the whole mix and of the
// baseline (measured before and after next(), to show drift), and next()'s rate per expression.
#include "cron/cron.h"

#include <date/date.h>
#include <date/tz.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace {

using std::chrono::seconds;
using std::chrono::sys_seconds;
using taskhub::cron::CronExpr;

struct Case {
    const char* expr;
    const char* zone;
};

// Interval-like and fixed-hour expressions, plain and with the extensions, in zones with and
// without DST: what a machine's workflow files plausibly hold.
const Case kMix[] = {
    {"*/15 * * * *", "UTC"},
    {"30 2 * * *", "Europe/Berlin"},
    {"0 9 * * MON-FRI", "America/New_York"},
    {"@hourly", "Europe/Berlin"},
    {"0 */6 * * *", "Australia/Lord_Howe"},
    {"*/10 * * * * *", "UTC"},
    {"0 0 L * *", "Europe/Berlin"},
    {"0 8 15W * *", "America/New_York"},
    {"0 18 * * FRI#3", "UTC"},
    {"5 4 * * 0L", "Europe/Berlin"},
    {"H H * * *", "America/New_York"},
    {"H/15 9-17 * * 1-5", "Europe/Berlin"},
    {"0 0 13 * FRI", "UTC"},
    {"0 0 29 2 *", "UTC"},
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "cron_next: %s\nusage: cron_next [--seconds S]\n", why);
    std::exit(2);
}

std::vector<sys_seconds> instants() {
    std::mt19937_64 rng(20260329);
    const std::int64_t from = sys_seconds(date::sys_days(date::year{2026} / 1 / 1))
                                  .time_since_epoch()
                                  .count();
    const std::int64_t to = sys_seconds(date::sys_days(date::year{2036} / 1 / 1))
                                .time_since_epoch()
                                .count();
    std::uniform_int_distribution<std::int64_t> pick(from, to);
    std::vector<sys_seconds> out(4096);
    for (auto& t : out) t = sys_seconds(seconds(pick(rng)));
    return out;
}

// The baseline: offset lookup, next wall-clock minute, calendar fields, back to UTC.
sys_seconds nextMinuteBoundary(sys_seconds after, const date::time_zone* tz) {
    const date::sys_info info = tz->get_info(after);
    const auto wall = date::local_seconds((after + info.offset).time_since_epoch());
    const auto minute = date::floor<std::chrono::minutes>(wall) + std::chrono::minutes(1);
    const auto day = date::floor<date::days>(minute);
    const date::year_month_day ymd{day};
    const date::hh_mm_ss<std::chrono::minutes> tod{minute - day};
    const auto rebuilt = date::local_days(ymd) + tod.hours() + tod.minutes();
    return sys_seconds((rebuilt - info.offset).time_since_epoch());
}

struct Rate {
    double per_second = 0;
    std::int64_t checksum = 0; // keeps the results alive
};

// Calls f(instant) over all instants, repeatedly, for at least `budget` seconds.
template <typename F>
Rate measure(const std::vector<sys_seconds>& at, double budget, F&& f) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    std::int64_t calls = 0;
    std::int64_t checksum = 0;
    double elapsed = 0;
    do {
        for (const sys_seconds t : at) checksum += f(t);
        calls += static_cast<std::int64_t>(at.size());
        elapsed = std::chrono::duration<double>(clock::now() - start).count();
    } while (elapsed < budget);
    return {static_cast<double>(calls) / elapsed, checksum};
}

struct Parsed {
    CronExpr expr;
    const date::time_zone* tz;
};

} // namespace

int main(int argc, char** argv) {
    double budget = 0.5;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            budget = std::strtod(argv[++i], nullptr);
            if (!(budget > 0)) usage("--seconds needs a positive number");
        } else {
            usage((std::string("unknown argument ") + argv[i]).c_str());
        }
    }

    std::vector<Parsed> mix;
    for (const Case& c : kMix) {
        std::string err;
        auto expr = CronExpr::parse(c.expr, &err, "bench-workflow");
        if (!expr) usage((std::string("cannot parse ") + c.expr + ": " + err).c_str());
        mix.push_back({*expr, date::locate_zone(c.zone)});
    }
    const std::vector<sys_seconds> at = instants();
    const double share = budget / static_cast<double>(mix.size());
    const auto seconds_of = [](sys_seconds t) { return t.time_since_epoch().count(); };

    // Each function is run over the whole mix: one measurement per expression, the rate of the
    // mix being the total calls over the total time.
    const auto overMix = [&](auto&& call) {
        double total_time = 0;
        std::int64_t checksum = 0;
        std::vector<double> rates;
        for (const Parsed& p : mix) {
            const Rate r = measure(at, share, [&](sys_seconds t) { return call(p, t); });
            rates.push_back(r.per_second);
            total_time += static_cast<double>(at.size()) / r.per_second;
            checksum += r.checksum;
        }
        return std::tuple(static_cast<double>(at.size() * mix.size()) / total_time, rates,
                          checksum);
    };
    const auto baseline = [&](const Parsed& p, sys_seconds t) {
        return seconds_of(nextMinuteBoundary(t, p.tz));
    };
    const auto next = [&](const Parsed& p, sys_seconds t) {
        const auto n = p.expr.next(t, p.tz);
        return n ? seconds_of(*n) : 0;
    };

    // Warm-up: loads the zones and faults in the code.
    overMix(baseline);
    const auto [base_before, base_rates_before, c1] = overMix(baseline);
    const auto [next_rate, next_rates, c2] = overMix(next);
    const auto [base_after, base_rates_after, c3] = overMix(baseline);

    std::printf("{\"next_per_second\": %.0f, \"baseline_per_second\": [%.0f, %.0f], "
                "\"checksum\": %lld, \"expressions\": [",
                next_rate, base_before, base_after, static_cast<long long>(c1 + c2 + c3));
    for (std::size_t i = 0; i < mix.size(); ++i) {
        std::printf("%s{\"expr\": \"%s\", \"zone\": \"%s\", \"next_per_second\": %.0f}",
                    i == 0 ? "" : ", ", kMix[i].expr, kMix[i].zone, next_rates[i]);
    }
    std::printf("]}\n");
    return 0;
}
