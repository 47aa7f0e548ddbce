#include "cron/cron.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <vector>

#include <date/date.h>
#include <date/tz.h>

namespace taskhub::cron {
namespace {

constexpr std::int64_t kSecondsPerDay = 86400;
// Long enough for "0 0 29 2 *" across a skipped leap year (2096 -> 2104).
constexpr std::int64_t kSearchHorizon = 8 * 366 * kSecondsPerDay;
// More than any zone has ever shifted its offset at once (a day: Samoa 2011, Alaska 1867), so
// folds only need looking at within this distance of a period's ends.
constexpr std::int64_t kMaxShift = 2 * kSecondsPerDay;

constexpr std::array<std::string_view, 12> kMonthNames = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames = {"SUN", "MON", "TUE", "WED",
                                                       "THU", "FRI", "SAT"};

// The order is part of the "H" rule: the field's position in the six-field form is hashed.
enum class FieldKind { Second, Minute, Hour, DayOfMonth, Month, DayOfWeek };

struct FieldSpec {
    FieldKind kind;
    std::string_view name;
    int min;
    int max;
    // Upper end of "*" and "a/n"; below max only for day-of-week, where 7 is an alias of 0.
    int implicit_max;
    // Upper end of "H" and "H/n": 28 in day-of-month so that every month has the day (Jenkins).
    int hash_max;
    std::string_view allowed;
    const std::string_view* names; // names[i] is the value min + i
    std::size_t name_count;
};

constexpr FieldSpec kSecondField{FieldKind::Second, "second", 0, 59, 59, 59, "0-59", nullptr, 0};
constexpr FieldSpec kMinuteField{FieldKind::Minute, "minute", 0, 59, 59, 59, "0-59", nullptr, 0};
constexpr FieldSpec kHourField{FieldKind::Hour, "hour", 0, 23, 23, 23, "0-23", nullptr, 0};
constexpr FieldSpec kDayOfMonthField{
    FieldKind::DayOfMonth, "day-of-month", 1, 31, 31, 28, "1-31", nullptr, 0};
constexpr FieldSpec kMonthField{FieldKind::Month,   "month", 1, 12, 12, 12, "1-12 or JAN-DEC",
                                kMonthNames.data(), kMonthNames.size()};
constexpr FieldSpec kDayOfWeekField{FieldKind::DayOfWeek, "day-of-week",    0, 7, 6, 6,
                                    "0-7 or SUN-SAT",     kDayNames.data(), kDayNames.size()};

struct Macro {
    std::string_view name;
    std::string_view fields; // empty for @reboot, which has no fields
};

constexpr std::array<Macro, 8> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
    {"@reboot", ""},
}};

bool isBlank(char c) { return c == ' ' || c == '\t'; }

char upper(char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); }

bool isDigits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
    });
}

bool isLetters(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalpha(static_cast<unsigned char>(c)) != 0;
    });
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return upper(x) == upper(y); });
}

bool isDayName(std::string_view s) {
    return std::any_of(kDayNames.begin(), kDayNames.end(),
                       [s](std::string_view name) { return equalsIgnoreCase(s, name); });
}

std::vector<std::string_view> splitBlanks(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && isBlank(text[i])) ++i;
        const std::size_t start = i;
        while (i < text.size() && !isBlank(text[i])) ++i;
        if (i > start) out.push_back(text.substr(start, i - start));
    }
    return out;
}

// The value of a digit string, saturated at 10000 (beyond every field's range).
int smallNumber(std::string_view digits) {
    int value = 0;
    for (char c : digits) {
        value = std::min(value * 10 + (c - '0'), 10000);
    }
    return value;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// "minute field "2x": ", the start of a message about one list element.
std::string about(const FieldSpec& f, std::string_view element) {
    return std::string(f.name) + " field " + quoted(element) + ": ";
}

std::string expectedMessage(const FieldSpec& f, std::string_view element) {
    return about(f, element) + "expected a number, name, range or step (allowed " +
           std::string(f.allowed) + ")";
}

std::string outOfRange(std::string_view what, std::string_view text, int lo, int hi) {
    return std::string(what) + " " + std::string(text) + " out of range " + std::to_string(lo) +
           "-" + std::to_string(hi);
}

// The value behind "H": FNV-1a (64 bits) over the bytes of the key followed by one byte, the
// field's position in the six-field form (second 0 ... day-of-week 5), then MurmurHash3's fmix64
// finaliser so that the low bits, which "mod n" keeps, depend on every byte. Part of the user
// contract (docs/scheduling.md): changing it moves every job that uses H.
std::uint64_t fieldHash(std::string_view key, FieldKind kind) {
    std::uint64_t h = 0xcbf29ce484222325;
    const auto feed = [&h](unsigned char byte) {
        h ^= byte;
        h *= 0x100000001b3;
    };
    for (char c : key) feed(static_cast<unsigned char>(c));
    feed(static_cast<unsigned char>(kind));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccd;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53;
    h ^= h >> 33;
    return h;
}

// What one field selects: plain values (bit v for value v), and for day-of-month and
// day-of-week the elements that depend on the month.
struct FieldSet {
    std::uint64_t values = 0;
    MonthRelativeDays relative;
};

void addValue(const FieldSpec& f, int v, FieldSet* out) {
    const int value = (f.kind == FieldKind::DayOfWeek && v == 7) ? 0 : v;
    out->values |= std::uint64_t{1} << value;
}

// One number or name; `element` is the list element it came from, for messages.
bool parseValue(const FieldSpec& f, std::string_view token, std::string_view element, int* out,
                std::string* err) {
    if (isDigits(token)) {
        const int value = smallNumber(token);
        if (value < f.min || value > f.max) {
            *err = outOfRange(f.name, token, f.min, f.max);
            return false;
        }
        *out = value;
        return true;
    }
    if (f.names != nullptr && isLetters(token)) {
        for (std::size_t i = 0; i < f.name_count; ++i) {
            if (equalsIgnoreCase(token, f.names[i])) {
                *out = f.min + static_cast<int>(i);
                return true;
            }
        }
        *err = about(f, element) + "unknown name " + quoted(token) + " (allowed " +
               std::string(f.allowed) + ")";
        return false;
    }
    *err = expectedMessage(f, element);
    return false;
}

// "a-b" with a <= b, numbers or names.
bool parseRange(const FieldSpec& f, std::string_view range, std::string_view element, int* lo,
                int* hi, std::string* err) {
    const std::size_t dash = range.find('-');
    const std::string_view first = range.substr(0, dash);
    const std::string_view last = range.substr(dash + 1);
    if (first.empty() || last.empty()) {
        *err = expectedMessage(f, element);
        return false;
    }
    if (!parseValue(f, first, element, lo, err) || !parseValue(f, last, element, hi, err)) {
        return false;
    }
    if (*lo > *hi) {
        *err = std::string(f.name) + " range " + std::string(range) +
               " is reversed (start must be <= end)";
        return false;
    }
    return true;
}

// The syntactic form of a list element. The extensions share letters with the names ("W" in
// WED, "L" in JUL), so an element is an extension only in these exact shapes.
enum class Form {
    Plain,          // "*", "?", n, a-b, and steps of those
    Hashed,         // H, H(a-b), H/n, H(a-b)/n
    LastDay,        // L, L-n
    LastWeekday,    // LW
    NearestWeekday, // nW
    LastOfWeekday,  // nL, FRIL
    NthOfWeekday,   // n#k, FRI#k
};

Form formOf(std::string_view e) {
    if (upper(e[0]) == 'H' && (e.size() == 1 || e[1] == '(' || e[1] == '/')) return Form::Hashed;
    if (e.find('#') != std::string_view::npos) return Form::NthOfWeekday;
    if (equalsIgnoreCase(e, "LW")) return Form::LastWeekday;
    if (equalsIgnoreCase(e, "L") || (upper(e[0]) == 'L' && e.size() > 1 && e[1] == '-')) {
        return Form::LastDay;
    }
    if (e.size() > 1) {
        const std::string_view prefix = e.substr(0, e.size() - 1);
        if (upper(e.back()) == 'W' && isDigits(prefix)) return Form::NearestWeekday;
        if (upper(e.back()) == 'L' && (isDigits(prefix) || isDayName(prefix))) {
            return Form::LastOfWeekday;
        }
    }
    return Form::Plain;
}

// Whether the form may stand in field f; if not, says where it belongs.
bool formAllowed(const FieldSpec& f, Form form, std::string_view element, std::string* err) {
    const bool dom = f.kind == FieldKind::DayOfMonth;
    const bool dow = f.kind == FieldKind::DayOfWeek;
    std::string_view rule;
    switch (form) {
    case Form::Plain:
    case Form::Hashed: return true;
    case Form::LastDay:
        if (dom) return true;
        rule = dow ? "\"L\" alone is only allowed in day-of-month (in day-of-week, \"5L\" is the "
                     "last Friday of the month)"
                   : "\"L\" is only allowed in day-of-month and day-of-week";
        break;
    case Form::LastWeekday:
    case Form::NearestWeekday:
        if (dom) return true;
        rule = "\"W\" is only allowed in day-of-month";
        break;
    case Form::LastOfWeekday:
        if (dow) return true;
        rule = dom ? "\"nL\" is only allowed in day-of-week (in day-of-month, \"L\" is the last "
                     "day of the month)"
                   : "\"L\" is only allowed in day-of-month and day-of-week";
        break;
    case Form::NthOfWeekday:
        if (dow) return true;
        rule = "\"#\" is only allowed in day-of-week";
        break;
    }
    *err = about(f, element) + std::string(rule);
    return false;
}

bool parseLastDay(const FieldSpec& f, std::string_view element, FieldSet* out,
                  std::string* err) {
    int before = 0;
    if (element.size() > 1) {
        const std::string_view digits = element.substr(2);
        if (!isDigits(digits)) {
            *err = expectedMessage(f, element);
            return false;
        }
        before = smallNumber(digits);
        if (before > 30) {
            *err = about(f, element) + outOfRange("offset", digits, 0, 30);
            return false;
        }
    }
    out->relative.before_last |= std::uint32_t{1} << before;
    return true;
}

bool parseNthOfWeekday(const FieldSpec& f, std::string_view element, FieldSet* out,
                       std::string* err) {
    const std::size_t hash = element.find('#');
    const std::string_view day = element.substr(0, hash);
    const std::string_view nth = element.substr(hash + 1);
    if (day.empty() || !isDigits(nth)) {
        *err = expectedMessage(f, element);
        return false;
    }
    int weekday = 0;
    if (!parseValue(f, day, element, &weekday, err)) return false;
    const int k = smallNumber(nth);
    if (k < 1 || k > 5) {
        *err = about(f, element) + outOfRange("occurrence", nth, 1, 5);
        return false;
    }
    out->relative.nth_of_weekday |= std::uint64_t{1} << (5 * (weekday % 7) + k - 1);
    return true;
}

bool parseHashed(const FieldSpec& f, std::string_view element, std::string_view hash_key,
                 FieldSet* out, std::string* err) {
    const auto syntaxError = [&] {
        *err = about(f, element) + "expected H, H(a-b), H/n or H(a-b)/n (allowed " +
               std::string(f.allowed) + ")";
        return false;
    };
    std::string_view rest = element.substr(1);
    int lo = f.min;
    int hi = f.hash_max;
    if (rest.starts_with('(')) {
        const std::size_t close = rest.find(')');
        if (close == std::string_view::npos) return syntaxError();
        const std::string_view range = rest.substr(1, close - 1);
        if (range.find('-') == std::string_view::npos) return syntaxError();
        if (!parseRange(f, range, element, &lo, &hi, err)) return false;
        rest = rest.substr(close + 1);
    }
    const int width = hi - lo + 1;
    int step = 0;
    if (!rest.empty()) {
        if (rest[0] != '/' || !isDigits(rest.substr(1))) return syntaxError();
        step = smallNumber(rest.substr(1));
        if (step < 1 || step > width) {
            *err = about(f, element) + outOfRange("step", rest.substr(1), 1, width);
            return false;
        }
    }
    if (hash_key.empty()) {
        *err = about(f, element) +
               "H needs a workflow name to hash (none was given to the parser)";
        return false;
    }
    const std::uint64_t h = fieldHash(hash_key, f.kind);
    if (step == 0) {
        addValue(f, lo + static_cast<int>(h % static_cast<std::uint64_t>(width)), out);
        return true;
    }
    for (int v = lo + static_cast<int>(h % static_cast<std::uint64_t>(step)); v <= hi;
         v += step) {
        addValue(f, v, out);
    }
    return true;
}

bool parsePlain(const FieldSpec& f, std::string_view element, FieldSet* out, std::string* err) {
    std::string_view base = element;
    int step = 1;
    bool has_step = false;
    if (const std::size_t slash = element.find('/'); slash != std::string_view::npos) {
        base = element.substr(0, slash);
        const std::string_view step_text = element.substr(slash + 1);
        if (!isDigits(step_text)) {
            *err = expectedMessage(f, element);
            return false;
        }
        step = smallNumber(step_text);
        if (step == 0) {
            *err = std::string(f.name) + " step " + std::string(step_text) +
                   " must be at least 1";
            return false;
        }
        if (step > f.max) {
            *err = std::string(f.name) + " " + outOfRange("step", step_text, 1, f.max);
            return false;
        }
        has_step = true;
    }

    int lo = 0;
    int hi = 0;
    const bool is_question =
        base == "?" && (f.kind == FieldKind::DayOfMonth || f.kind == FieldKind::DayOfWeek);
    if (base == "*" || is_question) {
        lo = f.min;
        hi = f.implicit_max;
    } else if (base.find('-') != std::string_view::npos) {
        if (!parseRange(f, base, element, &lo, &hi, err)) return false;
    } else {
        if (!parseValue(f, base, element, &lo, err)) return false;
        hi = has_step ? f.implicit_max : lo;
    }
    for (int v = lo; v <= hi; v += step) addValue(f, v, out);
    return true;
}

bool parseElement(const FieldSpec& f, std::string_view element, std::string_view hash_key,
                  FieldSet* out, std::string* err) {
    const Form form = formOf(element);
    if (!formAllowed(f, form, element, err)) return false;
    const std::string_view prefix = element.substr(0, element.size() - 1);
    int value = 0;
    switch (form) {
    case Form::Plain: return parsePlain(f, element, out, err);
    case Form::Hashed: return parseHashed(f, element, hash_key, out, err);
    case Form::LastDay: return parseLastDay(f, element, out, err);
    case Form::LastWeekday: out->relative.last_weekday = true; return true;
    case Form::NearestWeekday:
        if (!parseValue(f, prefix, element, &value, err)) return false;
        out->relative.nearest_weekday |= std::uint32_t{1} << value;
        return true;
    case Form::LastOfWeekday:
        if (!parseValue(f, prefix, element, &value, err)) return false;
        out->relative.last_of_weekday |= static_cast<std::uint8_t>(1u << (value % 7));
        return true;
    case Form::NthOfWeekday: return parseNthOfWeekday(f, element, out, err);
    }
    return false;
}

bool parseField(const FieldSpec& f, std::string_view text, std::string_view hash_key,
                FieldSet* out, std::string* err) {
    *out = FieldSet{};
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = text.find(',', start);
        const std::string_view element =
            text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
        if (element.empty()) {
            *err = about(f, text) + "empty list element";
            return false;
        }
        if (!parseElement(f, element, hash_key, out, err)) return false;
        if (comma == std::string_view::npos) return true;
        start = comma + 1;
    }
}

int nextBit(std::uint64_t mask, int from) {
    if (from >= 64) return -1;
    const std::uint64_t rest = mask & (~std::uint64_t{0} << from);
    return rest == 0 ? -1 : std::countr_zero(rest);
}

std::int64_t daysFromCivil(int year, unsigned month, unsigned day) {
    return date::sys_days(date::year{year} / date::month{month} / date::day{day})
        .time_since_epoch()
        .count();
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

} // namespace

std::optional<CronExpr> CronExpr::parse(std::string_view text, std::string* err,
                                        std::string_view hash_key) {
    CronExpr expr;
    expr.text_ = std::string(text);
    const std::vector<std::string_view> words = splitBlanks(text);
    if (words.empty() || !words.front().starts_with('@')) {
        if (!expr.parseFields(text, hash_key, err)) return std::nullopt;
        return expr;
    }
    const std::string_view name = words.front();
    const auto macro = std::find_if(kMacros.begin(), kMacros.end(), [name](const Macro& m) {
        return equalsIgnoreCase(name, m.name);
    });
    if (macro == kMacros.end()) {
        *err = "unknown macro " + quoted(name) +
               " (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, "
               "@reboot)";
        return std::nullopt;
    }
    if (words.size() > 1) {
        *err = "macro " + quoted(name) + " must stand alone, but is followed by " +
               quoted(words[1]);
        return std::nullopt;
    }
    if (macro->fields.empty()) {
        expr.reboot_ = true;
        return expr;
    }
    if (!expr.parseFields(macro->fields, hash_key, err)) return std::nullopt;
    return expr;
}

bool CronExpr::parseFields(std::string_view text, std::string_view hash_key, std::string* err) {
    const std::vector<std::string_view> words = splitBlanks(text);
    if (words.size() != 5 && words.size() != 6) {
        *err = "expected 5 or 6 fields, found " + std::to_string(words.size());
        return false;
    }
    has_seconds_ = words.size() == 6;
    const std::size_t first = has_seconds_ ? 1 : 0;
    FieldSet set;

    if (has_seconds_) {
        if (!parseField(kSecondField, words[0], hash_key, &set, err)) return false;
        seconds_ = std::bitset<60>(set.values);
    } else {
        seconds_.reset();
        seconds_.set(0);
    }
    if (!parseField(kMinuteField, words[first], hash_key, &set, err)) return false;
    minutes_ = std::bitset<60>(set.values);
    if (!parseField(kHourField, words[first + 1], hash_key, &set, err)) return false;
    hours_ = std::bitset<24>(set.values);
    if (!parseField(kDayOfMonthField, words[first + 2], hash_key, &set, err)) return false;
    days_of_month_ = std::bitset<32>(set.values);
    month_relative_.before_last = set.relative.before_last;
    month_relative_.last_weekday = set.relative.last_weekday;
    month_relative_.nearest_weekday = set.relative.nearest_weekday;
    if (!parseField(kMonthField, words[first + 3], hash_key, &set, err)) return false;
    months_ = std::bitset<13>(set.values);
    if (!parseField(kDayOfWeekField, words[first + 4], hash_key, &set, err)) return false;
    days_of_week_ = std::bitset<7>(set.values);
    month_relative_.last_of_weekday = set.relative.last_of_weekday;
    month_relative_.nth_of_weekday = set.relative.nth_of_weekday;

    hour_wildcard_ = hours_.all();
    // Vixie/cronie: only the first character decides, so "*/2" counts as unrestricted.
    const auto restricted = [](std::string_view field) {
        return field.front() != '*' && field.front() != '?';
    };
    dom_restricted_ = restricted(words[first + 2]);
    dow_restricted_ = restricted(words[first + 4]);
    return true;
}

std::uint64_t CronExpr::matchingDaysOfMonth(int year, unsigned month) const {
    const date::year_month_day_last last{date::year{year} / date::month{month} / date::last};
    const unsigned last_day = static_cast<unsigned>(last.day());
    const unsigned first_weekday =
        date::weekday(date::sys_days(date::year{year} / date::month{month} / 1)).c_encoding();
    // Bit k of `week` says whether day k+1 of the month has a matching weekday; the pattern
    // repeats every 7 days.
    const std::uint64_t dow = days_of_week_.to_ullong();
    const std::uint64_t week = ((dow >> first_weekday) | (dow << (7 - first_weekday))) & 0x7f;
    std::uint64_t by_weekday = (week | week << 7 | week << 14 | week << 21 | week << 28) << 1;
    std::uint64_t by_day = days_of_month_.to_ullong();
    if (month_relative_.before_last != 0 || month_relative_.last_weekday ||
        month_relative_.nearest_weekday != 0 || month_relative_.last_of_weekday != 0 ||
        month_relative_.nth_of_weekday != 0) {
        const MonthDays days = monthRelativeDays(last_day, first_weekday);
        by_day |= days.by_day;
        by_weekday |= days.by_weekday;
    }
    const std::uint64_t days = (dom_restricted_ && dow_restricted_) ? (by_day | by_weekday)
                                                                    : (by_day & by_weekday);
    const std::uint64_t in_month = (std::uint64_t{1} << (last_day + 1)) - 2;
    return days & in_month;
}

// Days are 1..last_day; weekdays 0..6 with Sunday 0.
CronExpr::MonthDays CronExpr::monthRelativeDays(unsigned last_day,
                                                unsigned first_weekday) const {
    const auto weekdayOf = [first_weekday](unsigned day) { return (first_weekday + day - 1) % 7; };
    const auto bit = [](unsigned day) { return std::uint64_t{1} << day; };
    const MonthRelativeDays& r = month_relative_;
    MonthDays out;

    for (std::uint32_t b = r.before_last; b != 0; b &= b - 1) {
        const unsigned before = static_cast<unsigned>(std::countr_zero(b));
        if (before < last_day) out.by_day |= bit(last_day - before);
    }
    if (r.last_weekday) {
        const unsigned wd = weekdayOf(last_day);
        out.by_day |= bit(wd == 6 ? last_day - 1 : wd == 0 ? last_day - 2 : last_day);
    }
    // Quartz's nearest weekday: Saturday moves to the Friday before, Sunday to the Monday
    // after, unless that leaves the month (the 1st on a Saturday gives Monday the 3rd, the last
    // day on a Sunday gives Friday two days before).
    for (std::uint32_t b = r.nearest_weekday; b != 0; b &= b - 1) {
        const unsigned day = static_cast<unsigned>(std::countr_zero(b));
        if (day > last_day) continue;
        const unsigned wd = weekdayOf(day);
        unsigned target = day;
        if (wd == 6) target = day == 1 ? 3 : day - 1;
        if (wd == 0) target = day == last_day ? day - 2 : day + 1;
        out.by_day |= bit(target);
    }
    for (unsigned b = r.last_of_weekday; b != 0; b &= b - 1) {
        const unsigned wd = static_cast<unsigned>(std::countr_zero(b));
        out.by_weekday |= bit(last_day - (weekdayOf(last_day) + 7 - wd) % 7);
    }
    for (std::uint64_t b = r.nth_of_weekday; b != 0; b &= b - 1) {
        const unsigned index = static_cast<unsigned>(std::countr_zero(b));
        const unsigned wd = index / 5;
        const unsigned day = 1 + (wd + 7 - first_weekday) % 7 + 7 * (index % 5);
        if (day <= last_day) out.by_weekday |= bit(day);
    }
    return out;
}

std::optional<std::int64_t> CronExpr::nextMatchingWall(std::int64_t from,
                                                       std::int64_t limit) const {
    if (from >= limit) return std::nullopt;
    const std::uint64_t second_bits = seconds_.to_ullong();
    const std::uint64_t minute_bits = minutes_.to_ullong();
    const std::uint64_t hour_bits = hours_.to_ullong();
    const std::uint64_t month_bits = months_.to_ullong();

    std::int64_t day_number = floorDiv(from, kSecondsPerDay);
    const std::int64_t second_of_day = from - day_number * kSecondsPerDay;
    const date::year_month_day ymd{date::sys_days(date::days(day_number))};
    int year = static_cast<int>(ymd.year());
    int month = static_cast<int>(static_cast<unsigned>(ymd.month()));
    int day = static_cast<int>(static_cast<unsigned>(ymd.day()));
    int hour = static_cast<int>(second_of_day / 3600);
    int minute = static_cast<int>(second_of_day / 60 % 60);
    int second = static_cast<int>(second_of_day % 60);

    std::uint64_t day_bits = 0;
    int day_bits_key = -1;
    const auto startMonth = [&](int y, int m) {
        year = y;
        month = m;
        day = 1;
        hour = minute = second = 0;
        day_number = daysFromCivil(year, static_cast<unsigned>(month), 1);
    };

    while (day_number * kSecondsPerDay < limit) {
        if (((month_bits >> month) & 1) == 0) {
            const int next_month = nextBit(month_bits, month + 1);
            if (next_month > 0) {
                startMonth(year, next_month);
            } else {
                startMonth(year + 1, nextBit(month_bits, 1));
            }
            continue;
        }
        if (const int key = year * 16 + month; key != day_bits_key) {
            day_bits = matchingDaysOfMonth(year, static_cast<unsigned>(month));
            day_bits_key = key;
        }
        const int next_day = nextBit(day_bits, day);
        if (next_day < 0) {
            if (month == 12) {
                startMonth(year + 1, 1);
            } else {
                startMonth(year, month + 1);
            }
            continue;
        }
        if (next_day != day) {
            day_number += next_day - day;
            day = next_day;
            hour = minute = second = 0;
        }
        const int next_hour = nextBit(hour_bits, hour);
        if (next_hour < 0) {
            ++day;
            ++day_number;
            hour = minute = second = 0;
            continue;
        }
        if (next_hour != hour) {
            hour = next_hour;
            minute = second = 0;
        }
        const int next_minute = nextBit(minute_bits, minute);
        if (next_minute < 0) {
            ++hour;
            minute = second = 0;
            continue;
        }
        if (next_minute != minute) {
            minute = next_minute;
            second = 0;
        }
        const int next_second = nextBit(second_bits, second);
        if (next_second < 0) {
            ++minute;
            second = 0;
            continue;
        }
        const std::int64_t wall =
            day_number * kSecondsPerDay + hour * 3600 + minute * 60 + next_second;
        if (wall >= limit) return std::nullopt;
        return wall;
    }
    return std::nullopt;
}

// The timeline is walked one zone period (constant UTC offset) at a time. Inside a period wall
// time grows with real time, so the first matching wall time found there is also the earliest
// instant; periods are visited in real-time order. A spring-forward gap lies between two periods
// and is checked when entering the later one; a fall-back fold is the overlap of two periods'
// wall ranges, where the policy decides which pass fires.
std::optional<std::chrono::sys_seconds> CronExpr::next(std::chrono::sys_seconds after,
                                                       const date::time_zone* tz,
                                                       const DstPolicy& policy) const {
    if (reboot_) return std::nullopt;
    using std::chrono::seconds;
    using std::chrono::sys_seconds;
    const std::int64_t horizon = after.time_since_epoch().count() + kSearchHorizon;
    const bool fixed_hour = !hour_wildcard_;

    date::sys_info period = tz->get_info(after);
    std::optional<date::sys_info> following;
    std::optional<std::int64_t> previous_offset; // offset before period.begin, when known
    std::int64_t start = after.time_since_epoch().count() + 1;

    while (true) {
        const std::int64_t begin = period.begin.time_since_epoch().count();
        const std::int64_t end = period.end.time_since_epoch().count();
        const std::int64_t offset = period.offset.count();
        if (begin > horizon) return std::nullopt;

        const auto previousOffset = [&] {
            if (!previous_offset) {
                previous_offset = tz->get_info(period.begin - seconds(1)).offset.count();
            }
            return *previous_offset;
        };
        const auto followingOffset = [&] {
            if (!following) following = tz->get_info(period.end);
            return following->offset.count();
        };

        if (start <= begin && fixed_hour && policy.gap == DstPolicy::Gap::RunAfter &&
            previousOffset() < offset &&
            nextMatchingWall(begin + previousOffset(), begin + offset)) {
            return sys_seconds(seconds(begin));
        }

        const std::int64_t wall_begin = begin + offset;
        const std::int64_t wall_end = std::min(end, horizon + 1) + offset;
        std::int64_t from = start + offset;
        while (auto wall = nextMatchingWall(from, wall_end)) {
            if (fixed_hour && policy.fold != DstPolicy::Fold::Both) {
                // Second pass of a fold at the start of this period.
                if (policy.fold == DstPolicy::Fold::First && *wall < wall_begin + kMaxShift &&
                    *wall < begin + previousOffset()) {
                    from = begin + previousOffset();
                    continue;
                }
                // First pass of a fold at the end of this period.
                if (policy.fold == DstPolicy::Fold::Second &&
                    *wall >= end + offset - kMaxShift && *wall >= end + followingOffset()) {
                    break;
                }
            }
            return sys_seconds(seconds(*wall - offset));
        }

        if (end > horizon) return std::nullopt;
        previous_offset = offset;
        period = following ? *following : tz->get_info(period.end);
        following.reset();
        start = end;
    }
}

} // namespace taskhub::cron
