#include "common/time_util.h"

#include <date/date.h>

#include <cstdio>
#include <ctime>

namespace taskhub {

int64_t nowMillis() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {

std::tm utcTm(int64_t epoch_s) {
    std::time_t t = static_cast<std::time_t>(epoch_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return tm;
}

int64_t floorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

} // namespace

std::string formatIsoMillis(int64_t epoch_ms) {
    int64_t s = floorDiv(epoch_ms, 1000);
    std::tm tm = utcTm(s);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(epoch_ms - s * 1000));
    return buf;
}

std::string formatIsoSeconds(std::chrono::sys_seconds t) {
    std::tm tm = utcTm(t.time_since_epoch().count());
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::string formatCompactUtc(std::chrono::sys_seconds t) {
    std::tm tm = utcTm(t.time_since_epoch().count());
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::optional<Millis> parseDuration(std::string_view text, std::string* err) {
    auto fail = [&](const std::string& why) -> std::optional<Millis> {
        *err = "invalid duration \"" + std::string(text) + "\": " + why +
               " (expected a number with a unit ms, s, m, h or d, like \"90s\", \"20m\", \"1h30m\")";
        return std::nullopt;
    };
    if (text.empty()) return fail("empty");
    int64_t total = 0;
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] < '0' || text[i] > '9') return fail("expected a digit at \"" + std::string(text.substr(i)) + "\"");
        int64_t n = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            n = n * 10 + (text[i] - '0');
            if (n > 100'000'000'000LL) return fail("number too large");
            ++i;
        }
        size_t u = i;
        while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
        std::string_view unit = text.substr(u, i - u);
        int64_t scale;
        if (unit == "ms") scale = 1;
        else if (unit == "s") scale = 1000;
        else if (unit == "m") scale = 60'000;
        else if (unit == "h") scale = 3'600'000;
        else if (unit == "d") scale = 86'400'000;
        else if (unit.empty()) return fail("missing unit after " + std::to_string(n));
        else return fail("unknown unit \"" + std::string(unit) + "\"");
        total += n * scale;
    }
    return Millis(total);
}

std::string formatDuration(Millis d) {
    int64_t ms = d.count();
    if (ms == 0) return "0s";
    std::string out;
    if (ms < 0) {
        out = "-";
        ms = -ms;
    }
    const struct {
        int64_t scale;
        const char* unit;
    } units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
    for (const auto& u : units) {
        if (ms >= u.scale) {
            out += std::to_string(ms / u.scale) + u.unit;
            ms %= u.scale;
        }
    }
    return out;
}

std::optional<std::chrono::sys_seconds> parseIsoInstant(std::string_view text, std::string* err) {
    const auto bad = [&](const std::string& what) -> std::optional<std::chrono::sys_seconds> {
        *err = "\"" + std::string(text) + "\" is not an instant: " + what +
               " (expected ISO 8601 with an offset, e.g. 2026-12-24T18:00:00+01:00 or 2026-12-24T17:00:00Z)";
        return std::nullopt;
    };
    size_t i = 0;
    const auto number = [&](size_t digits, int* out) {
        if (i + digits > text.size()) return false;
        int v = 0;
        for (size_t k = 0; k < digits; ++k) {
            char c = text[i + k];
            if (c < '0' || c > '9') return false;
            v = v * 10 + (c - '0');
        }
        i += digits;
        *out = v;
        return true;
    };
    const auto expect = [&](char c) {
        if (i < text.size() && text[i] == c) {
            ++i;
            return true;
        }
        return false;
    };
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (!number(4, &y) || !expect('-') || !number(2, &mo) || !expect('-') || !number(2, &d)) {
        return bad("the date must be YYYY-MM-DD");
    }
    if (!expect('T') && !expect(' ')) return bad("a time must follow the date after 'T'");
    if (!number(2, &h) || !expect(':') || !number(2, &mi)) return bad("the time must be HH:MM or HH:MM:SS");
    if (expect(':') && !number(2, &s)) return bad("the seconds must be two digits");
    const date::year_month_day ymd{date::year{y}, date::month{static_cast<unsigned>(mo)},
                                   date::day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) return bad("there is no day " + std::string(text.substr(0, 10)));
    if (h > 23 || mi > 59 || s > 59) return bad("the time of day is out of range");
    int offset_s = 0;
    if (expect('Z') || expect('z')) {
        offset_s = 0;
    } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
        const int sign = text[i] == '-' ? -1 : 1;
        ++i;
        int oh = 0, om = 0;
        const bool hours = number(2, &oh);
        expect(':'); // +01:00 or +0100
        if (!hours || !number(2, &om) || oh > 23 || om > 59) {
            return bad("the offset must be +HH:MM or -HH:MM");
        }
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return bad("the offset is missing");
    }
    if (i != text.size()) return bad("unexpected \"" + std::string(text.substr(i)) + "\" at the end");
    const auto local = date::sys_days(ymd) + std::chrono::hours(h) + std::chrono::minutes(mi) +
                       std::chrono::seconds(s);
    return std::chrono::sys_seconds(local - std::chrono::seconds(offset_s));
}

} // namespace taskhub
