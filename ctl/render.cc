#include "render.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <iterator>
#include <optional>

#include <date/tz.h>

#include "common/time_util.h"
#include "model/states.h"
#include "term.h"

namespace taskhub::ctl {

namespace json = boost::json;

std::string jsonText(const json::value& v) {
    return validUtf8(json::serialize(v));
}

void printJson(const json::value& v, const std::string& indent) {
    const std::string in2 = indent + "  ";
    if (v.is_object()) {
        const auto& o = v.as_object();
        if (o.empty()) {
            std::cout << "{}";
            return;
        }
        std::cout << "{\n";
        size_t i = 0;
        for (const auto& kv : o) {
            std::cout << in2 << jsonText(json::string(kv.key())) << ": ";
            printJson(kv.value(), in2);
            std::cout << (++i < o.size() ? ",\n" : "\n");
        }
        std::cout << indent << "}";
    } else if (v.is_array()) {
        const auto& a = v.as_array();
        if (a.empty()) {
            std::cout << "[]";
            return;
        }
        std::cout << "[\n";
        for (size_t i = 0; i < a.size(); ++i) {
            std::cout << in2;
            printJson(a[i], in2);
            std::cout << (i + 1 < a.size() ? ",\n" : "\n");
        }
        std::cout << indent << "]";
    } else {
        std::cout << jsonText(v);
    }
}

void emitJson(const json::value& v) {
    printJson(v);
    std::cout << "\n";
}

// Text from the daemon as it may be shown on a terminal: control characters (C0, DEL and C1,
// e.g. in a dropped file's name or a task's message) are written as \xNN, so that no value can
// move the cursor, retitle the window or hide other output. `logs` alone prints what the task
// wrote as it is, as cat would.
std::string terminalSafe(std::string_view s) {
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        // U+2028, U+2029 (line and paragraph separators), U+202A..U+202E and U+2066..U+2069 (bidi
        // embeddings, overrides and isolates, which reorder what follows on the line): \u{XXXX}.
        if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
            static_cast<unsigned char>(s[i + 2]) >= 0xa8 && static_cast<unsigned char>(s[i + 2]) <= 0xae) {
            out += "\\u{20";
            out += kHex[(0x28 + static_cast<unsigned char>(s[i + 2]) - 0xa8) >> 4];
            out += kHex[(0x28 + static_cast<unsigned char>(s[i + 2]) - 0xa8) & 15];
            out += "}";
            i += 2;
            continue;
        }
        if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x81 &&
            static_cast<unsigned char>(s[i + 2]) >= 0xa6 && static_cast<unsigned char>(s[i + 2]) <= 0xa9) {
            out += "\\u{206";
            out += kHex[6 + static_cast<unsigned char>(s[i + 2]) - 0xa6];
            out += "}";
            i += 2;
            continue;
        }
        const bool c1 = c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                        static_cast<unsigned char>(s[i + 1]) <= 0x9f;
        if (c < 0x20 || c == 0x7f || c1) {
            if (c1) c = static_cast<unsigned char>(s[++i]);
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::string str(const json::value& v) {
    if (v.is_string()) return terminalSafe(v.as_string());
    if (v.is_null()) return "-";
    return json::serialize(v);
}

std::string field(const json::value& obj, const char* key) {
    if (!obj.is_object()) return "-";
    auto* p = obj.as_object().if_contains(key);
    return p ? str(*p) : "-";
}

std::string shortTime(const std::string& iso) {
    int64_t ms = isoToMs(iso);
    if (ms < 0 && iso.size() >= 20) {
        std::string err;
        if (auto t = parseIsoInstant(iso, &err)) ms = static_cast<int64_t>(t->time_since_epoch().count()) * 1000;
    }
    if (ms < 0) return iso;
    return formatInstant(ms, displayZone());
}

int64_t isoToMs(const std::string& iso) {
    // The daemon's form: "2026-11-22T10:23:17.123Z" (UTC, milliseconds), or without milliseconds.
    const bool millis = iso.size() == 24 && iso[19] == '.';
    if ((!millis && iso.size() != 20) || iso.back() != 'Z') return -1;
    std::tm tm{};
    const char* end = strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || end != iso.c_str() + 19) return -1;
    int frac = 0;
    if (millis) {
        for (size_t i = 20; i < 23; ++i) {
            if (iso[i] < '0' || iso[i] > '9') return -1;
            frac = frac * 10 + (iso[i] - '0');
        }
    }
    return static_cast<int64_t>(timegm(&tm)) * 1000 + frac;
}

std::string formatMs(int64_t ms) {
    char buf[32];
    if (ms < 1000) std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
    else if (ms < 60'000) std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
    else if (ms < 3'600'000)
        std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                      static_cast<long long>((ms / 1000) % 60));
    else
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                      static_cast<long long>((ms / 60'000) % 60));
    return buf;
}

namespace {

// A non-negative integer member of a usage object; nullopt when absent, null or not one.
std::optional<uint64_t> usageNumber(const json::value& usage, const char* key) {
    const auto* o = usage.if_object();
    const auto* v = o ? o->if_contains(key) : nullptr;
    if (!v) return std::nullopt;
    if (v->is_uint64()) return v->as_uint64();
    if (v->is_int64() && v->as_int64() >= 0) return static_cast<uint64_t>(v->as_int64());
    return std::nullopt;
}

std::string seconds(uint64_t us) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(us) / 1e6);
    return buf;
}

std::string bytesText(uint64_t b) {
    static const char* const kUnits[] = {"K", "M", "G", "T", "P", "E"};
    if (b < 1024) return std::to_string(b) + "B";
    double v = static_cast<double>(b) / 1024;
    size_t unit = 0;
    while (v >= 1024 && unit + 1 < std::size(kUnits)) {
        v /= 1024;
        ++unit;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%s", v, kUnits[unit]);
    return buf;
}

} // namespace

std::string cpuText(const json::value& usage) {
    auto user = usageNumber(usage, "cpu_user_us");
    auto system = usageNumber(usage, "cpu_system_us");
    if (!user || !system) return "-";
    return seconds(*user + *system);
}

std::string memoryText(const json::value& usage) {
    auto peak = usageNumber(usage, "memory_peak");
    return peak ? bytesText(*peak) : "-";
}

std::string usageEventText(const std::string& detail) {
    json::error_code ec;
    json::value v = json::parse(detail, ec);
    auto attempt = ec ? std::nullopt : usageNumber(v, "attempt");
    auto user = attempt ? usageNumber(v, "cpu_user_us") : std::nullopt;
    auto system = attempt ? usageNumber(v, "cpu_system_us") : std::nullopt;
    if (!user || !system) return detail;
    std::string out = "attempt " + std::to_string(*attempt) + ": cpu " + seconds(*user + *system) + " (user " +
                      seconds(*user) + ", system " + seconds(*system) + ")";
    if (auto peak = usageNumber(v, "memory_peak")) out += ", memory peak " + bytesText(*peak);
    if (auto oom = usageNumber(v, "oom_kills")) out += ", oom kills " + std::to_string(*oom);
    auto read = usageNumber(v, "io_read_bytes");
    auto written = usageNumber(v, "io_write_bytes");
    if (read && written) out += ", io read " + bytesText(*read) + " written " + bytesText(*written);
    return out + " (" + field(v, "source") + ")";
}

// From started to ended; "running" while it lasts, "-" before it started.
std::string duration(const json::value& o) {
    int64_t a = isoToMs(field(o, "started"));
    int64_t b = isoToMs(field(o, "ended"));
    if (a < 0) return "-";
    if (b < 0) return "running";
    return formatMs(b - a);
}

// Lines of a table, columns padded to the widest cell.
std::vector<std::string> tableLines(const std::vector<std::string>& head,
                                    const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w(head.size());
    for (size_t i = 0; i < head.size(); ++i) w[i] = displayWidth(head[i]);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], displayWidth(r[i]));
    std::vector<std::string> lines;
    auto line = [&](const std::vector<std::string>& r) {
        std::string out;
        for (size_t i = 0; i < r.size(); ++i) {
            out += r[i];
            if (i + 1 < r.size()) out += std::string(w[i] - displayWidth(r[i]) + 2, ' ');
        }
        while (!out.empty() && out.back() == ' ') out.pop_back();
        lines.push_back(out);
    };
    line(head);
    for (const auto& r : rows) line(r);
    return lines;
}

void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    for (const auto& l : tableLines(head, rows)) std::cout << l << "\n";
}

// The daemon's duration_ms (up to now while it lasts), as text; "-" before it started.
std::string elapsed(const json::value& o) {
    const auto* d = o.is_object() ? o.as_object().if_contains("duration_ms") : nullptr;
    if (!d || d->is_null()) return "-";
    if (d->is_int64()) return formatMs(d->as_int64());
    if (d->is_uint64()) return formatMs(static_cast<int64_t>(d->as_uint64()));
    return duration(o);
}

const json::array& arrayField(const json::value& o, const char* key) {
    static const json::array empty;
    const auto* p = o.is_object() ? o.as_object().if_contains(key) : nullptr;
    return p && p->is_array() ? p->as_array() : empty;
}

bool runEnded(std::string_view state) {
    auto s = model::parse<model::RunState>(state);
    return s && model::isFinal(*s);
}

bool taskEnded(std::string_view state) {
    auto s = model::parse<model::TaskState>(state);
    return s && model::isFinal(*s);
}

// A child run's id relative to the root of its tree: "<root>/sub.1/inner.1" -> "sub.1/inner.1".
std::string relativeRunId(const std::string& root, const std::string& id) {
    if (id.size() > root.size() + 1 && id.compare(0, root.size(), root) == 0 && id[root.size()] == '/')
        return id.substr(root.size() + 1);
    return id;
}

// What a task row says besides its state: its message, else why it waits; and the external
// handle of its attempt (a cluster job's id) when its plugin reported one.
std::string taskNote(const json::value& t) {
    std::string msg = field(t, "message");
    if (msg == "-") msg.clear();
    if (const std::string handle = field(t, "handle"); handle != "-" && !handle.empty())
        msg = "handle " + handle + (msg.empty() ? "" : "; " + msg);
    std::string waiting = field(t, "waiting");
    if (waiting != "-" && !waiting.empty()) msg += (msg.empty() ? "" : "; ") + waiting;
    return msg;
}

namespace {

// "1000 instances: 812 succeeded, 3 failed, 5 running, 180 pending" of a fan-out task's
// "instances" object; "" for another task.
std::string instancesText(const json::value& t) {
    const json::value* inst = t.is_object() ? t.as_object().if_contains("instances") : nullptr;
    if (!inst || !inst->is_object()) return "";
    std::string out = field(*inst, "count") + " instances:";
    std::string parts;
    for (const auto& kv : inst->as_object()) {
        if (kv.key() == "count") continue;
        parts += (parts.empty() ? " " : ", ") + str(kv.value()) + " " + std::string(kv.key());
    }
    return out + parts;
}

bool isInstance(const json::value& t) { return t.is_object() && t.as_object().contains("fan_out"); }

// "812/1000, 3 failed": a fan-out task's instances that ended, of all; "" for another task.
std::string fanOutProgressOf(const json::value& t) {
    const json::value* inst = t.is_object() ? t.as_object().if_contains("instances") : nullptr;
    if (!inst || !inst->is_object()) return "";
    auto n = [&](const char* k) {
        const json::value* v = inst->as_object().if_contains(k);
        return v && v->is_int64() ? v->as_int64() : 0;
    };
    const int64_t bad = n("failed") + n("cancelled");
    return std::to_string(n("succeeded") + bad) + "/" + std::to_string(n("count")) +
           (bad ? ", " + std::to_string(bad) + " failed" : "");
}

// At most this many instances of a fan-out are listed under it (those that failed, were
// cancelled or run now); `show --json` has them all.
constexpr int kInstancesShown = 20;

void taskRow(const json::value& t, const std::string& indent, std::vector<std::vector<std::string>>& rows) {
    const json::value* usage = t.is_object() ? t.as_object().if_contains("usage") : nullptr;
    const json::value none;
    rows.push_back({indent + field(t, "id"), paintState(field(t, "state")), field(t, "attempt"), field(t, "exit_code"),
                    elapsed(t), cpuText(usage ? *usage : none), memoryText(usage ? *usage : none), taskNote(t)});
}

// One row per task; the child runs of a workflow task follow it, indented, with their tasks; a
// fan-out's counts by state follow it, with its instances that failed, were cancelled or run.
// Columns: TASK, STATE, ATTEMPT, EXIT, DURATION, CPU, MEM, MESSAGE.
void treeRows(const std::string& root, const json::value& run, const std::string& indent,
              std::vector<std::vector<std::string>>& rows) {
    const auto& children = arrayField(run, "children");
    const auto& all = arrayField(run, "tasks");
    for (const auto& t : all) {
        if (isInstance(t)) continue;
        taskRow(t, indent, rows);
        if (std::string counts = instancesText(t); !counts.empty()) {
            rows.push_back({indent + "  " + field(t, "id") + "[*]", "-", "-", "-", "-", "-", "-", counts});
            int shown = 0, more = 0;
            for (const auto& i : all) {
                if (!isInstance(i) || field(i, "fan_out") != field(t, "id")) continue;
                const std::string st = field(i, "state");
                if (st == "succeeded" || st == "pending" || st == "ready" || st == "skipped") continue;
                if (shown++ < kInstancesShown) {
                    taskRow(i, indent + "  ", rows);
                } else {
                    ++more;
                }
            }
            if (more > 0)
                rows.push_back({indent + "  ...", "-", "-", "-", "-", "-", "-",
                                std::to_string(more) + " more instances not shown (taskhubctl show --json lists all)"});
        }
        for (const auto& c : children) {
            if (field(c, "parent_task") != field(t, "id")) continue;
            std::string msg = field(c, "message");
            rows.push_back({indent + "  run " + relativeRunId(root, field(c, "id")), paintState(field(c, "state")), "-", "-",
                            elapsed(c), "-", "-", field(c, "workflow") + (msg.empty() || msg == "-" ? "" : ": " + msg)});
            treeRows(root, c, indent + "    ", rows);
        }
    }
}

const std::vector<std::string> kTaskHead = {"TASK", "STATE", "ATTEMPT", "EXIT", "DURATION", "CPU", "MEM", "MESSAGE"};

} // namespace

std::string paramsText(const json::value& run) {
    const auto* p = run.is_object() ? run.as_object().if_contains("params") : nullptr;
    if (!p || !p->is_object() || p->as_object().empty()) return "";
    std::string out;
    for (const auto& kv : p->as_object()) {
        out += (out.empty() ? "" : ", ") + std::string(kv.key()) + "=" + str(kv.value());
    }
    return out;
}

std::string runStateText(const json::value& run) {
    const std::string absorbed = field(run, "failures_absorbed");
    if (absorbed == "0" || absorbed == "-") return paintState(field(run, "state"));
    return paintState(field(run, "state")) + " (" + absorbed + " absorbed)";
}

void printRunDetail(const json::value& run) {
    std::cout << "run       " << field(run, "id") << "\n"
              << "workflow  " << field(run, "workflow") << " (" << field(run, "trigger") << ")\n"
              << "state     " << paintState(field(run, "state")) << "\n";
    if (std::string absorbed = field(run, "failures_absorbed"); absorbed != "0" && absorbed != "-")
        std::cout << "absorbed  " << absorbed
                  << " task failure(s) the run went on from (on_failure = \"continue\"; events: failure_absorbed)\n";
    if (!field(run, "message").empty() && field(run, "message") != "-")
        std::cout << "message   " << field(run, "message") << "\n";
    if (std::string params = paramsText(run); !params.empty()) std::cout << "params    " << params << "\n";
    if (std::string parent = field(run, "parent_run"); !parent.empty() && parent != "-")
        std::cout << "parent    " << parent << " (task " << field(run, "parent_task") << ")\n";
    if (std::string lost = field(run, "lost"); lost != "0" && lost != "-")
        std::cout << "lost      " << lost << " attempt(s) interrupted by a taskhubd crash (events: lost, recovered)\n";
    if (const auto* d = run.as_object().if_contains("deadline"); d && d->is_object()) {
        const std::string state = field(*d, "state");
        std::cout << "deadline  ";
        if (state == "missed") {
            std::cout << "missed at " << shortTime(field(*d, "due")) << " (" << field(*d, "deadline")
                      << " after its scheduled instant " << shortTime(field(run, "scheduled")) << "): "
                      << field(*d, "reason");
            if (field(*d, "detected") != field(*d, "due")) std::cout << "; found " << shortTime(field(*d, "detected"));
        } else if (state == "met") {
            std::cout << "met (" << field(*d, "deadline") << " after its scheduled instant)";
        } else if (state == "pending") {
            std::cout << "due by " << shortTime(field(*d, "due")) << " (" << field(*d, "deadline")
                      << " after its scheduled instant)";
        } else {
            std::cout << "not checked (the firing came before the deadline was configured)";
        }
        std::cout << "\n";
    }
    std::cout << "started   " << shortTime(field(run, "started")) << "\n"
              << "ended     " << shortTime(field(run, "ended")) << "\n"
              << "duration  " << elapsed(run) << "\n\n";
    std::vector<std::vector<std::string>> rows;
    treeRows(field(run, "id"), run, "", rows);
    for (const auto& l : tableLines(kTaskHead, rows)) std::cout << l << "\n";
}

namespace {

// Task counts over the whole tree, by state.
void countTasks(const json::value& run, std::map<std::string, int>& counts) {
    for (const auto& t : arrayField(run, "tasks")) {
        if (!isInstance(t)) ++counts[field(t, "state")];
    }
    for (const auto& c : arrayField(run, "children")) countTasks(c, counts);
}

// "; convert 812/1000, 3 failed" for each fan-out of the tree that has not ended.
std::string fanOutProgress(const json::value& run) {
    std::string out;
    for (const auto& t : arrayField(run, "tasks")) {
        if (taskEnded(field(t, "state"))) continue;
        if (std::string p = fanOutProgressOf(t); !p.empty()) out += "; " + field(t, "id") + " " + p;
    }
    for (const auto& c : arrayField(run, "children")) out += fanOutProgress(c);
    return out;
}

} // namespace

// "progress: 3/7 tasks done (2 succeeded, 1 skipped); 2 running, 2 pending; run running, 4.1s"
std::string progressLine(const json::value& run) {
    std::map<std::string, int> counts;
    countTasks(run, counts);
    int total = 0, done = 0;
    std::string doneText, activeText;
    for (const auto& [state, n] : counts) {
        total += n;
        if (taskEnded(state)) {
            done += n;
            doneText += (doneText.empty() ? "" : ", ") + std::to_string(n) + " " + state;
        }
    }
    using model::TaskState;
    static constexpr TaskState kActive[] = {TaskState::Running, TaskState::Frozen, TaskState::Retrying,
                                            TaskState::Ready, TaskState::Pending};
    for (TaskState state : kActive) {
        if (auto it = counts.find(std::string(model::name(state))); it != counts.end()) {
            activeText += (activeText.empty() ? "" : ", ") + std::to_string(it->second) + " " + it->first;
        }
    }
    return "progress: " + std::to_string(done) + "/" + std::to_string(total) + " tasks done" +
           (doneText.empty() ? "" : " (" + doneText + ")") + (activeText.empty() ? "" : "; " + activeText) +
           fanOutProgress(run) + "; run " + field(run, "state") + ", " + elapsed(run);
}

// "a, b, c" of a JSON array of strings; "-" when empty.
std::string joinStrings(const json::value& arr) {
    std::string out;
    if (arr.is_array()) {
        for (const auto& v : arr.as_array()) out += (out.empty() ? "" : ", ") + str(v);
    }
    return out.empty() ? "-" : out;
}

namespace {

// One event of a run tree. label: "" for the root run's, else the child run's id relative to
// the root and "/"; task: "" (or "-") for an event of the run itself.
struct TreeEvent {
    int64_t seq;
    std::string label, task, kind, time, detail;
};

// The events of the run and its child runs in the store's recording order: a child's events
// come before the parent task's end that they caused, even within one millisecond.
std::vector<TreeEvent> treeEvents(const std::string& root, const json::value& run) {
    std::vector<TreeEvent> events;
    auto collect = [&](auto& self, const json::value& node) -> void {
        std::string label = field(node, "id") == root ? "" : relativeRunId(root, field(node, "id")) + "/";
        for (const auto& e : arrayField(node, "events")) {
            events.push_back({e.as_object().contains("seq") && e.at("seq").is_int64() ? e.at("seq").as_int64() : 0,
                              label, field(e, "task"), field(e, "kind"), field(e, "time"), field(e, "detail")});
        }
        for (const auto& c : arrayField(node, "children")) self(self, c);
    };
    collect(collect, run);
    std::stable_sort(events.begin(), events.end(),
                     [](const TreeEvent& a, const TreeEvent& b) { return a.seq < b.seq; });
    return events;
}

} // namespace

void printEvents(const std::string& root, const json::value& run) {
    size_t routine = 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : treeEvents(root, run)) {
        // A fan-out instance's routine events (task ids hold '[' only then) would bury the rest.
        if (e.task.find('[') != std::string::npos &&
            (e.kind == "ready" || e.kind == "start" || e.kind == "usage" ||
             (e.kind == "end" && e.detail.starts_with("succeeded")))) {
            ++routine;
            continue;
        }
        const std::string who = e.task.empty() ? e.label + "(run)" : e.label + e.task;
        const std::string detail = e.kind == "usage" ? terminalSafe(usageEventText(e.detail)) : e.detail;
        rows.push_back({shortTime(e.time), who, e.kind, detail});
    }
    for (const auto& l : tableLines({"TIME", "TASK", "EVENT", "DETAIL"}, rows)) std::cout << "  " << l << "\n";
    if (routine > 0) {
        std::cout << "  (" << routine << " events of fan-out instances not shown: ready, start, usage and "
                  << "succeeded ends; `show --json` has them all)\n";
    }
}

// Every attempt of the tasks (in the whole tree) that ran more than once, from the event log:
// when it started, how long it took and how it ended ("failed: exit code 1; retry 1 of 2 in 5s").
void printAttempts(const std::string& root, const json::value& run) {
    struct Attempt {
        std::string number, started, ended, outcome;
        std::string cpu = "-", memory = "-"; // from its "usage" event
    };
    bool any_usage = false;
    std::vector<std::string> order;
    std::map<std::string, std::vector<Attempt>> attempts;
    for (const auto& e : treeEvents(root, run)) {
        if (e.task.empty() || e.task == "-") continue;
        const std::string task = e.label + e.task;
        auto& list = attempts[task];
        if (e.kind == "start") {
            if (list.empty()) order.push_back(task);
            // "attempt 2" or "attempt 2: child run ..."
            std::string n = e.detail.rfind("attempt ", 0) == 0 ? e.detail.substr(8, e.detail.find(':') - 8) : "?";
            list.push_back({n, e.time, "", ""});
        } else if (e.kind == "usage") {
            // {"attempt":N,...}: recorded just before its attempt's end.
            json::error_code ec;
            json::value u = json::parse(e.detail, ec);
            if (ec) continue;
            const std::string n = field(u, "attempt");
            for (auto& at : list) {
                if (at.number != n) continue;
                at.cpu = cpuText(u);
                at.memory = memoryText(u);
                any_usage = true;
            }
        } else if (!list.empty() && list.back().ended.empty() &&
                   (e.kind == "end" || e.kind == "cancelled" || e.kind == "lost")) {
            list.back().ended = e.time;
            list.back().outcome = e.detail;
        }
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& task : order) {
        const auto& list = attempts[task];
        if (list.size() < 2) continue;
        for (const auto& at : list) {
            int64_t a = isoToMs(at.started), b = isoToMs(at.ended);
            std::vector<std::string> row = {task, at.number, shortTime(at.started),
                                            a < 0 ? "-" : b < 0 ? "running" : formatMs(b - a)};
            if (any_usage) {
                row.push_back(at.cpu);
                row.push_back(at.memory);
            }
            row.push_back(at.ended.empty() ? "" : at.outcome);
            rows.push_back(std::move(row));
        }
    }
    if (rows.empty()) return;
    std::cout << "\nATTEMPTS (tasks that ran more than once)\n";
    // CPU and MEM only where attempts were measured (a daemon before schema 9 recorded none).
    const std::vector<std::string> head =
        any_usage ? std::vector<std::string>{"TASK", "ATTEMPT", "STARTED", "DURATION", "CPU", "MEM", "OUTCOME"}
                  : std::vector<std::string>{"TASK", "ATTEMPT", "STARTED", "DURATION", "OUTCOME"};
    for (const auto& l : tableLines(head, rows)) {
        std::cout << "  " << l << "\n";
    }
}

namespace {

// The wall clock in the display zone, "13:21:28", for the lines of `watch`.
std::string clockNow() { return formatClock(nowMillis(), displayZone()); }

std::string isoNow() {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[48];
    std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
    return out;
}

} // namespace

// Prints what changed since the last poll: one line (or, with json_lines, one JSON object) per run or
// task whose state or attempt changed. seen maps "run\ntask" to "state#attempt".
void printChanges(bool json_lines, const std::string& root, const json::value& run,
                  std::map<std::string, std::string>& seen) {
    std::string id = field(run, "id");
    std::string label = id == root ? "" : relativeRunId(root, id) + "/";
    auto changed = [&](const std::string& key, const std::string& now) {
        auto& before = seen[key];
        if (before == now) return false;
        before = now;
        return true;
    };
    auto emit = [&](const std::string& task, const json::value& o, bool is_task) {
        std::string state = field(o, "state");
        std::string note = is_task ? taskNote(o) : field(o, "message");
        if (note == "-") note.clear();
        if (json_lines) {
            json::object line;
            line["time"] = isoNow();
            line["run"] = id;
            line["task"] = task;
            line["state"] = state;
            const auto* attempt = is_task ? o.as_object().if_contains("attempt") : nullptr;
            line["attempt"] = attempt ? *attempt : json::value(nullptr);
            const auto* d = o.as_object().if_contains("duration_ms");
            line["duration_ms"] = d ? *d : json::value(nullptr);
            line["message"] = note;
            std::cout << jsonText(line) << "\n";
            return;
        }
        std::string text = clockNow() + "  ";
        if (is_task) text += label + task + "  " + state + "  attempt " + field(o, "attempt");
        else text += "run " + (label.empty() ? id : label.substr(0, label.size() - 1)) + "  " + state;
        if (is_task ? taskEnded(state) : runEnded(state)) text += "  " + elapsed(o);
        if (!note.empty()) text += "  " + note;
        std::cout << text << "\n";
    };
    // In the order things happen: a run (or workflow task) starts before what it contains, and
    // ends after it.
    const bool ended = runEnded(field(run, "state"));
    if (!ended && changed(id + "\n", field(run, "state"))) emit("", run, false);
    for (const auto& t : arrayField(run, "tasks")) {
        const bool task_ended = taskEnded(field(t, "state"));
        auto children = [&] {
            for (const auto& c : arrayField(run, "children")) {
                if (field(c, "parent_task") == field(t, "id")) printChanges(json_lines, root, c, seen);
            }
        };
        if (task_ended) children();
        // Lines for people: a fan-out's instances only when one fails or is cancelled, and the
        // fan-out's progress when it moves ("convert  815/1000, 3 failed"). JSON lines: all of them.
        const std::string st = field(t, "state");
        const bool quiet = !json_lines && isInstance(t) && st != "failed" && st != "cancelled";
        if (!quiet && changed(id + "\n" + field(t, "id"), st + "#" + field(t, "attempt"))) {
            emit(field(t, "id"), t, true);
        }
        if (!json_lines && !task_ended) {
            if (std::string p = fanOutProgressOf(t); !p.empty() && changed(id + "\n" + field(t, "id") + "#fan", p)) {
                std::cout << clockNow() << "  " << label << field(t, "id") << "  " << p << "\n";
            }
        }
        if (!task_ended) children();
    }
    if (ended && changed(id + "\n", field(run, "state"))) emit("", run, false);
}

namespace {

struct TerminalSize {
    size_t rows = 24;
    size_t cols = 80;
};

TerminalSize terminalSize() {
    TerminalSize size;
    struct winsize ws {};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        size.rows = ws.ws_row;
        size.cols = ws.ws_col;
    }
    return size;
}

} // namespace

// Redraws the run's view in place: the previous frame (`drawn` lines) is overwritten.
void redraw(const json::value& run, size_t& drawn) {
    std::vector<std::string> lines;
    lines.push_back("run " + field(run, "id") + "  (" + field(run, "workflow") + ")");
    std::vector<std::vector<std::string>> rows;
    treeRows(field(run, "id"), run, "", rows);
    for (auto& l : tableLines(kTaskHead, rows)) lines.push_back(std::move(l));
    lines.push_back("");
    lines.push_back(progressLine(run));
    auto size = terminalSize();
    if (size.rows > 2 && lines.size() > size.rows - 1) {
        size_t hidden = lines.size() - (size.rows - 2);
        std::string progress = lines.back();
        lines.resize(size.rows - 3);
        lines.push_back("... " + std::to_string(hidden) + " more line(s) (the terminal is too small)");
        lines.push_back(progress);
    }
    std::string out;
    if (drawn > 0) out += "\x1b[" + std::to_string(drawn) + "F"; // to the start of the previous frame
    for (auto& l : lines) {
        if (displayWidth(l) >= size.cols) l = fitWidth(l, size.cols - 1);
        out += "\x1b[2K" + l + "\n";
    }
    out += "\x1b[J"; // clear what the previous frame had below
    std::cout << out << std::flush;
    drawn = lines.size();
}

} // namespace taskhub::ctl
