// cron_fuzz: a libFuzzer target for the cron parser and next(). Each input is an expression
// text; it is parsed without and with a hash key, and when it parses, next() is called a few
// times in UTC and two DST zones under several DST policies. Aborts (a crash for libFuzzer)
// when:
//   - parse() fails without saying why;
//   - a hash key turns a valid expression into an invalid one, or changes the firings of an
//     expression that parses without it (the key may only matter to "H");
//   - next() returns an instant that is not strictly later than the one it was given.
// ASan and UBSan (-fno-sanitize-recover) report memory errors and undefined behaviour.
//
// Built only with clang and -DTASKHUB_FUZZ=ON -DTASKHUB_SANITIZE=address; scripts/test runs it
// for a bounded time on the seed corpus in tests/fuzz/corpus/cron/ with tests/fuzz/cron.dict.
#include "cron/cron.h"

#include <date/date.h>
#include <date/tz.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace {

using std::chrono::seconds;
using std::chrono::sys_seconds;
using taskhub::cron::CronExpr;
using taskhub::cron::DstPolicy;

[[noreturn]] void fail(const char* what, std::string_view text) {
    std::fprintf(stderr, "cron_fuzz: %s for \"%.*s\"\n", what, static_cast<int>(text.size()),
                 text.data());
    std::abort();
}

// A start instant in 2000-2035 derived from the input, so that the search starts at varied
// points of the calendar and of the zones' transitions.
sys_seconds startFor(std::string_view text) {
    std::uint64_t h = 0xcbf29ce484222325;
    for (char c : text) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3;
    }
    const std::int64_t from = 946684800;   // 2000-01-01 00:00:00 UTC
    const std::int64_t span = 1136073600;  // to 2036-01-01
    return sys_seconds(seconds(from + static_cast<std::int64_t>(h % span)));
}

void checkNext(const CronExpr& expr, std::string_view text) {
    static const date::time_zone* const zones[] = {date::locate_zone("UTC"),
                                                   date::locate_zone("Europe/Berlin"),
                                                   date::locate_zone("Australia/Lord_Howe")};
    static const DstPolicy policies[] = {
        {},
        {DstPolicy::Gap::Skip, DstPolicy::Fold::Second},
        {DstPolicy::Gap::RunAfter, DstPolicy::Fold::Both},
    };
    for (const date::time_zone* tz : zones) {
        for (const DstPolicy& policy : policies) {
            sys_seconds t = startFor(text);
            for (int i = 0; i < 4; ++i) {
                const std::optional<sys_seconds> next = expr.next(t, tz, policy);
                if (!next) break;
                if (*next <= t) fail("next() did not move forward", text);
                t = *next;
            }
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::string err;
    const std::optional<CronExpr> plain = CronExpr::parse(text, &err);
    if (!plain && err.empty()) fail("parse() failed without a message", text);
    std::string keyed_err;
    const std::optional<CronExpr> keyed = CronExpr::parse(text, &keyed_err, "fuzz-workflow");
    if (!keyed && keyed_err.empty()) fail("parse() with a key failed without a message", text);
    if (plain && !keyed) fail("a hash key made a valid expression invalid", text);
    if (!keyed) return 0;

    checkNext(*keyed, text);
    if (plain) {
        const date::time_zone* berlin = date::locate_zone("Europe/Berlin");
        if (plain->next(startFor(text), berlin) != keyed->next(startFor(text), berlin)) {
            fail("the hash key changed an expression without H", text);
        }
    }
    return 0;
}
