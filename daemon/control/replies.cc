// The JSON shapes of the control channel's answers (replies.h); code moved from commands.cc.
#include "control/replies.h"

#include <algorithm>

#include "common/time_util.h"

namespace taskhub::control {

namespace json = boost::json;

json::value isoOrNull(const std::optional<int64_t>& ms) {
    return ms ? json::value(formatIsoMillis(*ms)) : json::value(nullptr);
}

json::object nameValuesJson(const store::NameValues& values) {
    json::object o;
    for (const auto& [name, value] : values) o[name] = value;
    return o;
}

json::object outputsJson(const store::NameValues& plain, const store::NameValues& typed) {
    json::object o = nameValuesJson(plain);
    for (const auto& [name, text] : typed) {
        json::error_code ec;
        json::value v = json::parse(text, ec);
        o[name] = ec ? json::value(json::string(text)) : std::move(v); // checked when published
    }
    return o;
}

// Milliseconds from started to ended, or to now while it lasts; null before it started.
json::value durationMs(const std::optional<int64_t>& started, const std::optional<int64_t>& ended) {
    if (!started) return nullptr;
    return std::max<int64_t>(0, (ended ? *ended : nowMillis()) - *started);
}

json::object usageJson(const cgroup::Usage& u) {
    auto opt = [](const std::optional<uint64_t>& v) { return v ? json::value(*v) : json::value(nullptr); };
    json::object o;
    o["source"] = cgroup::toString(u.source);
    o["cpu_user_us"] = u.cpu_user_us;
    o["cpu_system_us"] = u.cpu_system_us;
    o["memory_peak"] = opt(u.memory_peak);
    o["oom_kills"] = opt(u.oom_kills);
    o["io_read_bytes"] = opt(u.io_read_bytes);
    o["io_write_bytes"] = opt(u.io_write_bytes);
    return o;
}

namespace {

// The fan-out tasks of a run (those with a recorded list): id -> number of items.
std::map<std::string, size_t, std::less<>> fanOuts(const store::RunRecord& r) {
    std::map<std::string, size_t, std::less<>> out;
    for (const auto& t : r.tasks) {
        if (t.items.empty()) continue;
        std::error_code ec;
        auto v = json::parse(t.items, ec);
        out[t.task_id] = !ec && v.is_array() ? v.as_array().size() : 0;
    }
    return out;
}

// The fan-out an instance id ("convert[7]") belongs to, or "" for another task.
std::string_view fanOutOf(const std::string& task_id, const std::map<std::string, size_t, std::less<>>& fans) {
    auto open = task_id.find('[');
    if (open == std::string::npos || task_id.back() != ']') return {};
    std::string_view base(task_id.data(), open);
    return fans.count(base) ? base : std::string_view();
}

} // namespace

// waiting: why ready tasks have not started (Services::waitingReasons), for `show`; may be null.
json::object runJson(const store::RunRecord& r, bool with_tasks,
                     const std::map<std::string, std::string>* waiting, bool compact) {
    json::object o;
    o["id"] = r.id;
    o["workflow"] = r.workflow;
    o["trigger"] = model::name(r.trigger);
    o["state"] = model::name(r.state);
    o["message"] = r.message;
    o["version"] = r.version;
    o["scheduled"] = isoOrNull(r.scheduled_ms);
    o["created"] = formatIsoMillis(r.created_ms);
    o["started"] = isoOrNull(r.started_ms);
    o["ended"] = isoOrNull(r.ended_ms);
    o["duration_ms"] = durationMs(r.started_ms, r.ended_ms);
    o["params"] = nameValuesJson(r.params);
    o["parent_run"] = r.parent_run;
    o["parent_task"] = r.parent_task;
    o["depth"] = r.depth;
    o["lost"] = r.lost;
    o["failures_absorbed"] = r.failures_absorbed;
    if (with_tasks) {
        json::array tasks;
        const auto fans = fanOuts(r);
        // Instances by state, per fan-out: those without a row yet are pending.
        std::map<std::string, std::map<std::string, int64_t>, std::less<>> by_state;
        std::map<std::string, int64_t, std::less<>> omitted;
        const auto leftOut = [compact](const store::TaskRecord& t) {
            return compact && t.state == model::TaskState::Succeeded;
        };
        for (const auto& t : r.tasks) {
            if (auto f = fanOutOf(t.task_id, fans); !f.empty()) {
                ++by_state[std::string(f)][std::string(model::name(t.state))];
                if (leftOut(t)) ++omitted[std::string(f)];
            }
        }
        for (const auto& t : r.tasks) {
            if (leftOut(t) && !fanOutOf(t.task_id, fans).empty()) continue;
            json::object to;
            to["id"] = t.task_id;
            if (auto f = fanOutOf(t.task_id, fans); !f.empty()) to["fan_out"] = f;
            if (auto f = fans.find(t.task_id); f != fans.end()) {
                json::object inst;
                int64_t seen = 0;
                for (const auto& [state, n] : by_state[t.task_id]) {
                    inst[state] = n;
                    seen += n;
                }
                const int64_t pending = static_cast<int64_t>(f->second) - seen;
                if (pending > 0) inst["pending"] = pending + (inst.contains("pending") ? inst["pending"].as_int64() : 0);
                inst["count"] = f->second;
                to["instances"] = std::move(inst);
                if (compact) to["instances_omitted"] = omitted[t.task_id];
            }
            to["plugin"] = t.plugin;
            to["state"] = model::name(t.state);
            to["attempt"] = t.attempt;
            to["exit_code"] = t.exit_code ? json::value(*t.exit_code) : json::value(nullptr);
            to["message"] = t.message;
            to["started"] = isoOrNull(t.started_ms);
            to["ended"] = isoOrNull(t.ended_ms);
            to["duration_ms"] = durationMs(t.started_ms, t.ended_ms);
            to["outputs"] = outputsJson(t.outputs, t.json_outputs);
            to["child_run"] = t.child_run;
            to["pid"] = t.pid ? json::value(*t.pid) : json::value(nullptr);
            to["handle"] = t.handle.empty() ? json::value(nullptr) : json::value(t.handle);
            to["usage"] = t.usage ? json::value(usageJson(*t.usage)) : json::value(nullptr);
            if (t.leftovers) {
                json::object lo;
                lo["found"] = t.leftovers->found;
                lo["action"] = cgroup::toString(t.leftovers->action);
                to["leftovers"] = std::move(lo);
            } else {
                to["leftovers"] = nullptr;
            }
            json::value why = nullptr;
            if (waiting) {
                if (auto it = waiting->find(t.task_id); it != waiting->end()) why = json::string(it->second);
            }
            to["waiting"] = std::move(why);
            tasks.push_back(std::move(to));
        }
        o["tasks"] = std::move(tasks);
    }
    return o;
}

json::array eventsJson(const std::vector<store::EventRecord>& events) {
    json::array out;
    for (const auto& e : events) {
        json::object eo;
        eo["time"] = formatIsoMillis(e.ts_ms);
        eo["task"] = e.task_id;
        eo["kind"] = e.kind;
        eo["detail"] = e.detail;
        eo["seq"] = e.seq;
        out.push_back(std::move(eo));
    }
    return out;
}

namespace {

// Each task's "attempts": [{"attempt": N, "usage": {...}}] from the run's "usage" events, one per
// measured attempt (an attempt nothing measured has none).
void addAttempts(json::object& run, const std::vector<store::EventRecord>& events) {
    std::map<std::string, json::array> by_task;
    for (const auto& e : events) {
        if (e.kind != "usage") continue;
        auto parsed = store::parseUsageDetail(e.detail);
        if (!parsed) continue;
        json::object a;
        a["attempt"] = parsed->first;
        a["usage"] = usageJson(parsed->second);
        by_task[e.task_id].push_back(std::move(a));
    }
    auto* tasks = run.if_contains("tasks");
    if (!tasks || !tasks->is_array()) return;
    for (auto& t : tasks->as_array()) {
        auto& to = t.as_object();
        auto it = by_task.find(std::string(to["id"].as_string()));
        to["attempts"] = it == by_task.end() ? json::array() : std::move(it->second);
    }
}

} // namespace

// Child runs are at most max_nesting_depth (1..100) below their root; this only guards against
// a damaged database whose parent links form a loop.
constexpr int kMaxTreeDepth = 128;

// A run with its tasks (and why ready ones wait) and, under "children", its child runs, each
// with its own events and children.
std::vector<store::EventRecord> compactEvents(const std::vector<store::EventRecord>& events, size_t* omitted) {
    std::vector<store::EventRecord> out;
    out.reserve(events.size());
    for (const auto& e : events) {
        // Task ids hold '[' only for fan-out instances.
        if (e.task_id.find('[') != std::string::npos &&
            (e.kind == "ready" || e.kind == "start" || e.kind == "usage" ||
             (e.kind == "end" && e.detail.starts_with("succeeded")))) {
            ++*omitted;
            continue;
        }
        out.push_back(e);
    }
    return out;
}

json::object runTreeJson(Services& services, const store::RunRecord& r, int depth,
                         const std::vector<store::EventRecord>* events, bool compact) {
    auto waiting = services.waitingReasons(r.id);
    json::object o = runJson(r, true, &waiting, compact);
    std::vector<store::EventRecord> own;
    if (events == nullptr) {
        own = services.events(r.id);
        events = &own;
    }
    addAttempts(o, *events);
    json::array children;
    if (depth < kMaxTreeDepth) {
        for (const auto& child : services.children(r.id)) {
            size_t ignored = 0;
            const auto child_events =
                compact ? compactEvents(services.events(child.id), &ignored) : services.events(child.id);
            json::object co = runTreeJson(services, child, depth + 1, &child_events, compact);
            co["events"] = eventsJson(child_events);
            children.push_back(std::move(co));
        }
    }
    o["children"] = std::move(children);
    return o;
}

json::object workflowJson(const WorkflowInfo& w, bool detail) {
    json::object o;
    o["name"] = w.name;
    o["file"] = w.file;
    o["description"] = w.description;
    o["timezone"] = w.timezone;
    o["version"] = w.version;
    json::array triggers;
    for (size_t i = 0; i < w.triggers.size(); ++i) {
        json::object t;
        t["kind"] = w.triggers[i].kind;
        t["text"] = w.triggers[i].text;
        t["cron"] = w.triggers[i].cron.empty() ? json::value(nullptr) : json::value(w.triggers[i].cron);
        t["state"] = w.triggers[i].state.empty() ? json::value(nullptr) : json::value(w.triggers[i].state);
        int64_t next = i < w.next_fire_ms.size() ? w.next_fire_ms[i] : 0;
        t["next"] = next ? json::value(formatIsoMillis(next)) : json::value(nullptr);
        triggers.push_back(std::move(t));
    }
    o["triggers"] = std::move(triggers);
    if (w.paused) {
        json::object p;
        p["since"] = formatIsoMillis(w.paused->since_ms);
        p["by"] = w.paused->by;
        o["paused"] = std::move(p);
    } else {
        o["paused"] = nullptr;
    }
    o["last_run"] = w.last_run ? json::value(runJson(*w.last_run, false)) : json::value(nullptr);
    o["task_count"] = w.task_count;
    o["deadline"] = w.deadline_s ? json::value(formatDuration(std::chrono::seconds(w.deadline_s))) : json::value(nullptr);
    if (detail) {
        o["overlap"] = w.overlap;
        if (!w.file_overlap.empty()) o["file_overlap"] = w.file_overlap;
        o["on_failure"] = w.on_failure;
        o["params"] = nameValuesJson(w.params);
        json::array tasks;
        for (const auto& t : w.tasks) {
            json::object to;
            to["id"] = t.id;
            to["plugin"] = t.plugin;
            to["workflow"] = t.workflow;
            json::array deps;
            for (const auto& d : t.depends_on) deps.push_back(json::string(d));
            to["depends_on"] = std::move(deps);
            to["run_as"] = t.run_as;
            to["params"] = json::parse(t.params_json);
            tasks.push_back(std::move(to));
        }
        o["tasks"] = std::move(tasks);
        json::array misses;
        for (const auto& m : w.deadline_misses) misses.push_back(deadlineMissJson(m));
        o["deadline_misses"] = std::move(misses);
    }
    return o;
}

json::object deadlineMissJson(const store::DeadlineMissRecord& m) {
    json::object o;
    o["run_id"] = m.run_id;
    o["scheduled"] = formatIsoMillis(m.scheduled_ms);
    o["due"] = formatIsoMillis(m.due_ms);
    o["deadline"] = formatDuration(std::chrono::seconds(m.deadline_s));
    o["detected"] = formatIsoMillis(m.detected_ms);
    o["run_state"] = m.run_state ? json::value(model::name(*m.run_state)) : json::value(nullptr);
    o["reason"] = m.reason;
    return o;
}

void addDeadline(Services& services, const store::RunRecord& r, bool detail, json::object& o) {
    const bool firing = r.parent_run.empty() && r.scheduled_ms &&
                        (r.trigger == model::TriggerSource::Cron || r.trigger == model::TriggerSource::Every ||
                         r.trigger == model::TriggerSource::At);
    auto miss = firing ? services.deadlineMiss(r.id) : std::nullopt;
    o["deadline_missed_ms"] = miss ? json::value(miss->due_ms) : json::value(nullptr);
    if (!detail) return;
    const int64_t deadline_s = firing ? services.deadlineSeconds(r.workflow) : 0;
    if (!miss && deadline_s == 0) {
        o["deadline"] = nullptr;
        return;
    }
    json::object d;
    if (miss) {
        d["deadline"] = formatDuration(std::chrono::seconds(miss->deadline_s));
        d["due"] = formatIsoMillis(miss->due_ms);
        d["state"] = "missed";
        d["detected"] = formatIsoMillis(miss->detected_ms);
        d["reason"] = miss->reason;
    } else {
        const int64_t due = *r.scheduled_ms + deadline_s * 1000;
        d["deadline"] = formatDuration(std::chrono::seconds(deadline_s));
        d["due"] = formatIsoMillis(due);
        // Met: it succeeded by its due instant. Otherwise, before the due instant it is still
        // pending; after it, a firing without a recorded miss was not checked (it came before
        // the deadline was configured, or the watch has yet to look at it).
        const bool met = r.state == model::RunState::Succeeded && r.ended_ms && *r.ended_ms <= due;
        d["state"] = met ? "met" : nowMillis() < due ? "pending" : "not_checked";
        d["detected"] = nullptr;
        d["reason"] = nullptr;
    }
    o["deadline"] = std::move(d);
}

json::object pluginJson(const PluginStatus& p) {
    json::object o;
    o["name"] = p.name;
    o["version"] = p.version;
    o["description"] = p.description;
    o["file"] = p.file;
    o["abi"] = std::to_string(p.abi_major) + "." + std::to_string(p.abi_minor);
    json::array caps;
    for (const auto& cap : p.capabilities) caps.push_back(json::string(cap));
    o["capabilities"] = std::move(caps);
    o["thread_safety"] = p.thread_safety;
    o["isolation"] = p.isolation;
    o["state"] = p.state;
    o["message"] = p.message;
    o["since"] = formatIsoMillis(p.since_ms);
    o["last_check"] = p.last_check_ms ? json::value(formatIsoMillis(p.last_check_ms)) : json::value(nullptr);
    o["failures"] = p.failures;
    o["checks"] = p.checks;
    o["running"] = p.running;
    o["max_concurrency"] = p.max_concurrency;
    json::object health;
    health["interval_ms"] = p.health_interval_ms;
    health["timeout_ms"] = p.health_timeout_ms;
    health["unhealthy_after"] = p.unhealthy_after;
    health["healthy_after"] = p.healthy_after;
    health["on_unhealthy"] = p.on_unhealthy;
    o["health"] = std::move(health);
    return o;
}

json::array notificationsJson(const std::vector<store::NotificationRecord>& notes) {
    json::array out;
    for (const auto& n : notes) {
        json::object o;
        o["id"] = n.id;
        o["event"] = model::name(n.event);
        o["kind"] = model::name(n.kind);
        o["target"] = n.target;
        o["state"] = model::name(n.state);
        o["attempts"] = n.attempts;
        o["created"] = formatIsoMillis(n.created_ms);
        o["sent"] = isoOrNull(n.sent_ms);
        o["next_attempt"] = n.state == model::NotifyState::Pending ? json::value(formatIsoMillis(n.next_attempt_ms))
                                                                    : json::value(nullptr);
        o["last_error"] = n.last_error;
        out.push_back(std::move(o));
    }
    return out;
}

} // namespace taskhub::control
