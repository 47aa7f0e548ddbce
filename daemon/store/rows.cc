// How records are spelled in the store's columns: name/value lists and event blocks as JSON, and
// a run read back from its row.
#include "store/internal.h"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <climits>

#include "model/json_text.h"

namespace taskhub::store {

namespace json = boost::json;

// NameValues as a JSON object text in their order, and back. The store writes these columns
// itself; a value that does not parse (edited by hand) reads as empty and is logged.
std::string toJsonObject(const NameValues& values) {
    if (values.empty()) return std::string(kEmptyJsonObject);
    json::object o;
    o.reserve(values.size());
    for (const auto& [name, value] : values) o[name] = value;
    return json::serialize(o);
}

NameValues fromJsonObject(const std::string& text, const char* what) {
    NameValues out;
    if (text == kEmptyJsonObject) return out;
    json::error_code ec;
    // Params can carry bytes that are not UTF-8 (a dropped file's name); they are kept as they are.
    json::parse_options opts;
    opts.allow_invalid_utf8 = true;
    json::value v = json::parse(text, ec, {}, opts);
    if (ec || !v.is_object()) {
        spdlog::error("STORE_BAD_JSON {} is not a JSON object: {}", what, text.substr(0, 200));
        return out;
    }
    out.reserve(v.get_object().size());
    for (const auto& [name, value] : v.get_object()) {
        if (value.is_string()) {
            out.emplace_back(name, value.get_string());
        } else {
            out.emplace_back(name, json::serialize(value));
        }
    }
    return out;
}

// A task's outputs column: one JSON object, plain outputs as strings and typed ones as the JSON
// values they are (their compact text pasted in: it was checked when published).
std::string outputsToJson(const NameValues& plain, const NameValues& typed) {
    if (typed.empty()) return toJsonObject(plain);
    std::string out = plain.empty() ? "{" : toJsonObject(plain);
    if (!plain.empty()) out.back() = ',';
    bool first = true;
    for (const auto& [name, value] : typed) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::string_view(name));
        out += ':';
        out += value;
    }
    out += '}';
    return out;
}

void outputsFromJson(const std::string& text, NameValues* plain, NameValues* typed) {
    plain->clear();
    typed->clear();
    if (text == kEmptyJsonObject) return;
    json::error_code ec;
    json::parse_options opts;
    opts.allow_invalid_utf8 = true; // a plain output may hold any bytes
    opts.max_depth = 1000;          // typed ones were checked for at most 64 when published
    json::value v = json::parse(text, ec, {}, opts);
    if (ec || !v.is_object()) {
        spdlog::error("STORE_BAD_JSON tasks.outputs is not a JSON object: {}", text.substr(0, 200));
        return;
    }
    for (const auto& [name, value] : v.get_object()) {
        if (value.is_string()) {
            plain->emplace_back(name, value.get_string());
        } else {
            typed->emplace_back(name, model::jsonText(value));
        }
    }
}

// Appends v as a JSON string. Bytes that are not valid UTF-8 become U+FFFD, so that every block
// parses (event details can carry a plugin's or a process's bytes).
void appendJsonString(std::string& out, std::string_view v) {
    static const char kHex[] = "0123456789abcdef";
    out += '"';
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    const auto* end = p + v.size();
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            const auto* run = p;
            while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') ++p;
            out.append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
            continue;
        }
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                out += "\\u00";
                out += kHex[c >> 4];
                out += kHex[c & 15];
            }
            ++p;
            continue;
        }
        // A multi-byte sequence: its length from the lead byte, then continuation bytes, no
        // overlong forms, no surrogates, nothing above U+10FFFF.
        size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = n != 0 && static_cast<size_t>(end - p) >= n;
        for (size_t i = 1; ok && i < n; ++i) ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 3) ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
        if (ok && n == 4) ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
        if (ok) {
            out.append(reinterpret_cast<const char*>(p), n);
            p += n;
        } else {
            out += "\xef\xbf\xbd";
            ++p;
        }
    }
    out += '"';
}

// One event as an element of a block: [seq,ts_ms,"task","kind","detail"].
void appendEvent(std::string& out, int64_t seq, int64_t ts_ms, std::string_view task_id, std::string_view kind,
                 std::string_view detail) {
    if (!out.empty()) out += ',';
    char num[24]; // an int64 needs at most 20
    out += '[';
    out.append(num, std::to_chars(num, num + sizeof num, seq).ptr);
    out += ',';
    out.append(num, std::to_chars(num, num + sizeof num, ts_ms).ptr);
    out += ',';
    appendJsonString(out, task_id);
    out += ',';
    appendJsonString(out, kind);
    out += ',';
    appendJsonString(out, detail);
    out += ']';
}

// The events of one block, appended to out; a block that does not parse (edited by hand) is
// logged and left out.
void readEventBlock(const std::string& run_id, const std::string& text, std::vector<EventRecord>& out) {
    json::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_array()) {
        spdlog::error("STORE_BAD_JSON event_blocks of run {} is not a JSON array: {}", run_id, text.substr(0, 200));
        return;
    }
    for (const auto& e : v.get_array()) {
        const auto* a = e.if_array();
        if (!a || a->size() != 5 || !(*a)[0].is_int64() || !(*a)[1].is_int64() || !(*a)[2].is_string() ||
            !(*a)[3].is_string() || !(*a)[4].is_string()) {
            spdlog::error("STORE_BAD_JSON an event of run {} is not [seq, ts_ms, task, kind, detail]: {}", run_id,
                          json::serialize(e).substr(0, 200));
            continue;
        }
        EventRecord r;
        r.seq = (*a)[0].get_int64();
        r.ts_ms = (*a)[1].get_int64();
        r.run_id = run_id;
        r.task_id = (*a)[2].get_string();
        r.kind = (*a)[3].get_string();
        r.detail = (*a)[4].get_string();
        out.push_back(std::move(r));
    }
}

namespace {

constexpr char kindLetter(model::TaskKind kind) { return kind == model::TaskKind::Workflow ? 'w' : 'p'; }

void appendCounted(std::string& out, std::string_view v) {
    char num[24];
    out.append(num, std::to_chars(num, num + sizeof num, v.size()).ptr);
    out += ':';
    out += v;
}

// Reads "LEN:BYTES" at the front of *text into *v; false when the text does not hold one.
bool takeCounted(std::string_view* text, std::string_view* v) {
    size_t len = 0;
    const char* end = text->data() + text->size();
    auto [p, ec] = std::from_chars(text->data(), end, len);
    if (ec != std::errc() || p == end || *p != ':' || static_cast<size_t>(end - p - 1) < len) return false;
    *v = std::string_view(p + 1, len);
    text->remove_prefix(static_cast<size_t>(p + 1 + len - text->data()));
    return true;
}

} // namespace

void Store::TaskList::add(std::string_view task_id, std::string_view plugin, model::TaskKind kind) {
    text_ += kindLetter(kind);
    appendCounted(text_, task_id);
    appendCounted(text_, plugin);
    ++size_;
}

std::optional<std::vector<TaskRecord>> Store::TaskList::parse(std::string_view text) {
    std::vector<TaskRecord> out;
    while (!text.empty()) {
        const char kind = text.front();
        text.remove_prefix(1);
        std::string_view id, plugin;
        if ((kind != 'p' && kind != 'w') || !takeCounted(&text, &id) || !takeCounted(&text, &plugin) ||
            out.size() >= static_cast<size_t>(kMaxTasksPerRun)) {
            return std::nullopt;
        }
        TaskRecord& t = out.emplace_back();
        t.task_id = id;
        t.plugin = plugin;
        t.kind = kind == 'w' ? model::TaskKind::Workflow : model::TaskKind::Plugin;
    }
    return out;
}

void logBadName(const char* what, const std::string& text) {
    spdlog::error("STORE_BAD_VALUE {} is not a known name: '{}'", what, text.substr(0, 200));
}

RunRecord readRun(const Stmt& s) {
    RunRecord r;
    r.id = s.text(0);
    r.workflow = s.text(1);
    r.trigger = nameFromColumn(s.text(2), model::TriggerSource::Manual, "runs.trigger");
    r.state = nameFromColumn(s.text(3), model::RunState::Failed, "runs.state");
    r.message = s.text(4);
    r.version = s.text(5);
    r.scheduled_ms = s.opt(6);
    r.created_ms = s.i64(7);
    r.started_ms = s.opt(8);
    r.ended_ms = s.opt(9);
    r.params = fromJsonObject(s.text(10), "runs.params");
    r.parent_run = s.text(11);
    r.parent_task = s.text(12);
    r.depth = static_cast<int>(s.i64(13));
    r.lost = static_cast<int>(s.i64(14));
    r.skip_cause = nameFromColumn(s.text(15), model::SkipCause::None, "runs.skip_cause");
    r.failures_absorbed = static_cast<int>(s.i64(16));
    return r;
}

// A task from a row of kSelectTasks.
TaskRecord readTask(const Stmt& t) {
    TaskRecord tr;
    tr.task_id = t.text(0);
    tr.plugin = t.text(1);
    tr.state = nameFromColumn(t.text(2), model::TaskState::Failed, "tasks.state");
    tr.attempt = static_cast<int>(t.i64(3));
    if (auto x = t.opt(4)) tr.exit_code = static_cast<int>(*x);
    tr.message = t.text(5);
    tr.started_ms = t.opt(6);
    tr.ended_ms = t.opt(7);
    outputsFromJson(t.text(8), &tr.outputs, &tr.json_outputs);
    tr.child_run = t.text(9);
    tr.pid = t.opt(10);
    tr.pgid = t.opt(11);
    tr.proc_start = t.opt(12);
    tr.kind = nameFromColumn(t.text(13), model::TaskKind::Plugin, "tasks.kind");
    readUsage(t, 14, tr);
    tr.handle = t.text(24);
    tr.items = t.text(25);
    return tr;
}


namespace {

std::optional<uint64_t> unsignedColumn(const Stmt& s, int c) {
    auto v = s.opt(c);
    if (!v) return std::nullopt;
    return static_cast<uint64_t>(std::max<int64_t>(0, *v));
}

} // namespace

void readUsage(const Stmt& s, int first, TaskRecord& t) {
    const std::string source = s.text(first + 6);
    if (auto user = unsignedColumn(s, first); user && !source.empty()) {
        cgroup::Usage u;
        u.source = source == "rusage" ? cgroup::Usage::Source::Rusage : cgroup::Usage::Source::Cgroup;
        if (source != "rusage" && source != "cgroup") logBadName("tasks.usage_source", source);
        u.cpu_user_us = *user;
        u.cpu_system_us = unsignedColumn(s, first + 1).value_or(0);
        u.memory_peak = unsignedColumn(s, first + 2);
        u.oom_kills = unsignedColumn(s, first + 3);
        u.io_read_bytes = unsignedColumn(s, first + 4);
        u.io_write_bytes = unsignedColumn(s, first + 5);
        t.usage = u;
    }
    if (auto found = s.opt(first + 7)) {
        const std::string action = s.text(first + 8);
        if (action != "kill" && action != "keep") logBadName("tasks.leftovers_action", action);
        t.leftovers = cgroup::LeftoverReport{static_cast<int>(std::clamp<int64_t>(*found, 0, INT32_MAX)),
                                             action == "keep" ? cgroup::Leftovers::Keep : cgroup::Leftovers::Kill};
    }
}

namespace {

json::value optionalNumber(const std::optional<uint64_t>& v) {
    return v ? json::value(*v) : json::value(nullptr);
}

std::optional<uint64_t> optionalField(const json::object& o, const char* key, bool* ok) {
    const auto* v = o.if_contains(key);
    if (!v || v->is_null()) return std::nullopt;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0) return static_cast<uint64_t>(v->get_int64());
    *ok = false;
    return std::nullopt;
}

} // namespace

std::string usageDetail(int attempt, const cgroup::Usage& u) {
    json::object o;
    o["attempt"] = attempt;
    o["source"] = cgroup::toString(u.source);
    o["cpu_user_us"] = u.cpu_user_us;
    o["cpu_system_us"] = u.cpu_system_us;
    o["memory_peak"] = optionalNumber(u.memory_peak);
    o["oom_kills"] = optionalNumber(u.oom_kills);
    o["io_read_bytes"] = optionalNumber(u.io_read_bytes);
    o["io_write_bytes"] = optionalNumber(u.io_write_bytes);
    return json::serialize(o);
}

std::optional<std::pair<int, cgroup::Usage>> parseUsageDetail(const std::string& detail) {
    json::error_code ec;
    json::value v = json::parse(detail, ec);
    if (ec || !v.is_object()) return std::nullopt;
    const auto& o = v.get_object();
    const auto* attempt = o.if_contains("attempt");
    const auto* source = o.if_contains("source");
    if (!attempt || !attempt->is_int64() || attempt->get_int64() < 0 || attempt->get_int64() > INT32_MAX ||
        !source || !source->is_string()) {
        return std::nullopt;
    }
    bool ok = true;
    cgroup::Usage u;
    u.source = source->get_string() == "rusage" ? cgroup::Usage::Source::Rusage : cgroup::Usage::Source::Cgroup;
    u.cpu_user_us = optionalField(o, "cpu_user_us", &ok).value_or(0);
    u.cpu_system_us = optionalField(o, "cpu_system_us", &ok).value_or(0);
    u.memory_peak = optionalField(o, "memory_peak", &ok);
    u.oom_kills = optionalField(o, "oom_kills", &ok);
    u.io_read_bytes = optionalField(o, "io_read_bytes", &ok);
    u.io_write_bytes = optionalField(o, "io_write_bytes", &ok);
    if (!ok) return std::nullopt;
    return std::make_pair(static_cast<int>(attempt->get_int64()), u);
}

} // namespace taskhub::store
