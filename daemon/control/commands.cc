// The command table of the control protocol: {name, summary, access, handler}. Handlers turn
// arguments into Services calls and records into answers (their JSON shapes are in replies.h);
// nothing else lives here.
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <string_view>

#include "common/time_util.h"
#include "control/log_throttle.h"
#include "control/replies.h"
#include "control/server.h"

#include <taskhub/suggest.hpp>

namespace taskhub::control {

namespace json = boost::json;

namespace {

constexpr int kProtoVersion = 1;

enum class Access { ReadOnly, Mutating };

// Why a command was refused: the error code and message of its answer.
struct Error {
    std::string code;
    std::string message;
};

using Reply = std::function<void(json::value)>;
using Fail = std::function<void(Error)>;

struct Context {
    Services& services;
    const Caller& caller;
    const json::object& args;
    uint64_t mark; // Services::writeMark() when the request arrived
    Reply ok;
    Fail fail;
};

struct Command {
    const char* name;
    const char* summary;
    Access access;
    // false: *err is the answer; true: the handler answers through Context::ok / fail, perhaps later.
    bool (*handler)(Context&, Error* err);
};

// ---- argument access ----

// Each sets *out (nullopt, the default or false when the argument is absent or null) or says in
// *err why the argument is not usable.

bool optString(Context& c, const char* key, std::optional<std::string>* out, Error* err) {
    auto it = c.args.find(key);
    if (it == c.args.end() || it->value().is_null()) {
        *out = std::nullopt;
        return true;
    }
    if (!it->value().is_string()) {
        *err = {"bad_request", std::string("argument '") + key + "' must be a string"};
        return false;
    }
    *out = std::string(it->value().as_string());
    return true;
}

bool needString(Context& c, const char* key, std::string* out, Error* err) {
    std::optional<std::string> v;
    if (!optString(c, key, &v, err)) return false;
    if (!v || v->empty()) {
        *err = {"bad_request", std::string("missing argument '") + key + "'"};
        return false;
    }
    *out = std::move(*v);
    return true;
}

bool optInt(Context& c, const char* key, int64_t def, int64_t min, int64_t max, int64_t* out, Error* err) {
    auto it = c.args.find(key);
    if (it == c.args.end() || it->value().is_null()) {
        *out = def;
        return true;
    }
    if (!it->value().is_int64() && !it->value().is_uint64()) {
        *err = {"bad_request", std::string("argument '") + key + "' must be an integer"};
        return false;
    }
    int64_t v = it->value().is_int64() ? it->value().as_int64() : static_cast<int64_t>(it->value().as_uint64());
    if (v < min || v > max) {
        *err = {"bad_request", std::string("argument '") + key + "' must be between " + std::to_string(min) +
                                   " and " + std::to_string(max)};
        return false;
    }
    *out = v;
    return true;
}

bool optBool(Context& c, const char* key, bool* out, Error* err) {
    auto it = c.args.find(key);
    if (it == c.args.end() || it->value().is_null()) {
        *out = false;
        return true;
    }
    if (!it->value().is_bool()) {
        *err = {"bad_request", std::string("argument '") + key + "' must be true or false"};
        return false;
    }
    *out = it->value().as_bool();
    return true;
}

// ---- handlers ----

bool cmdHelp(Context& c, Error* err);

bool cmdStatus(Context& c, Error*) {
    auto s = c.services.status();
    json::object o;
    o["version"] = s.version;
    o["abi"] = s.abi;
    o["timezone"] = s.timezone;
    o["pid"] = s.pid;
    o["started"] = formatIsoMillis(s.started_ms);
    o["uptime_s"] = (nowMillis() - s.started_ms) / 1000;
    o["config"] = s.config_file;
    o["state_dir"] = s.state_dir;
    o["workflows"] = s.workflows;
    o["workflow_errors"] = s.workflow_errors;
    o["plugins"] = s.plugins;
    o["plugins_refused"] = s.plugins_refused;
    o["plugins_unhealthy"] = s.plugins_unhealthy;
    o["active_runs"] = s.active_runs;
    o["queued_runs"] = s.queued_runs;
    o["running_tasks"] = s.running_tasks;
    o["waiting_tasks"] = s.waiting_tasks;
    o["worker_threads"] = s.worker_threads;
    o["worker_threads_max"] = s.worker_threads_max;
    o["runs_started"] = s.runs_started;
    o["shutting_down"] = s.shutting_down;
    o["store_problem"] = s.store_problem.empty() ? json::value(nullptr) : json::value(s.store_problem);
    {
        const auto& m = s.metrics;
        json::object metrics;
        if (m.textfile.empty()) {
            metrics["textfile"] = nullptr;
        } else {
            json::object t;
            t["path"] = m.textfile;
            t["last_write"] = m.textfile_written_ms ? json::value(formatIsoMillis(m.textfile_written_ms)) : nullptr;
            t["error"] = m.textfile_error.empty() ? json::value(nullptr) : json::value(m.textfile_error);
            t["error_since"] =
                m.textfile_error_since_ms ? json::value(formatIsoMillis(m.textfile_error_since_ms)) : nullptr;
            metrics["textfile"] = std::move(t);
        }
        if (m.listen.empty()) {
            metrics["listen"] = nullptr;
        } else {
            json::object l;
            l["address"] = m.listen;
            l["serving"] = m.listen_serving;
            l["error"] = m.listen_error.empty() ? json::value(nullptr) : json::value(m.listen_error);
            l["scrapes"] = m.scrapes;
            metrics["listen"] = std::move(l);
        }
        o["metrics"] = std::move(metrics);
        const auto& n = s.notifications;
        json::object no;
        no["pending"] = n.pending;
        no["sent"] = n.sent;
        no["failed"] = n.failed;
        no["dropped"] = n.dropped;
        no["failed_attempts"] = n.failed_attempts;
        no["last_error"] = n.last_error.empty() ? json::value(nullptr) : json::value(n.last_error);
        no["last_error_at"] = n.last_error_ms ? json::value(formatIsoMillis(n.last_error_ms)) : json::value(nullptr);
        no["mbox"] = n.mbox.empty() ? json::value(nullptr) : json::value(n.mbox);
        o["notifications"] = std::move(no);
    }
    {
        const auto& ci = s.containment;
        json::object co;
        co["mode"] = ci.cgroup ? "cgroup" : "process-group";
        co["base"] = ci.cgroup ? json::value(ci.base) : json::value(nullptr);
        json::array controllers;
        for (const auto& name : ci.controllers) controllers.emplace_back(name);
        co["controllers"] = std::move(controllers);
        co["reason"] = ci.cgroup ? json::value(nullptr) : json::value(ci.reason);
        o["containment"] = std::move(co);
    }
    o["proto"] = kProtoVersion;
    c.ok(std::move(o));
    return true;
}

bool cmdMetrics(Context& c, Error*) {
    json::object o;
    o["content_type"] = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    o["text"] = c.services.metrics();
    c.ok(std::move(o));
    return true;
}

bool cmdList(Context& c, Error*) {
    json::array wfs;
    for (const auto& w : c.services.workflows()) wfs.push_back(workflowJson(w, false));
    json::array errors;
    for (const auto& p : c.services.workflowProblems()) {
        json::object e;
        e["file"] = p.file;
        e["message"] = p.message;
        errors.push_back(std::move(e));
    }
    json::object o;
    o["workflows"] = std::move(wfs);
    o["errors"] = std::move(errors);
    c.ok(std::move(o));
    return true;
}

// Above this many fan-out instance rows, `show` answers a caller with max_answer_size compactly.
constexpr size_t kCompactShowInstances = 500;

bool cmdShow(Context& c, Error* err) {
    std::string name;
    if (!needString(c, "name", &name, err)) return false;
    if (auto w = c.services.workflow(name)) {
        json::object o;
        o["kind"] = "workflow";
        o["workflow"] = workflowJson(*w, true);
        c.ok(std::move(o));
        return true;
    }
    if (auto r = c.services.run(name)) {
        json::object o;
        o["kind"] = "run";
        auto events = c.services.events(name);
        // A caller whose answers are bounded gets a run with many fan-out instances without the
        // instances that succeeded and their routine events (counted in "omitted").
        size_t instance_rows = 0;
        for (const auto& t : r->tasks) instance_rows += t.task_id.find('[') != std::string::npos;
        const bool compact = c.caller.max_answer_size != 0 && instance_rows > kCompactShowInstances;
        size_t events_omitted = 0;
        if (compact) events = compactEvents(events, &events_omitted);
        auto run = runTreeJson(c.services, *r, 0, &events, compact);
        if (compact) {
            json::object om;
            om["reason"] = "the answer is bounded by max_answer_size; ask as root (or the daemon's user) for every "
                           "instance";
            om["events"] = events_omitted;
            o["omitted"] = std::move(om);
        }
        addDeadline(c.services, *r, true, run);
        o["run"] = std::move(run);
        o["events"] = eventsJson(events);
        o["notifications"] = notificationsJson(c.services.notifications(name));
        c.ok(std::move(o));
        return true;
    }
    // A workflow whose file did not load: say why, as `run` does.
    std::string msg = "no workflow or run named '" + name + "'";
    for (const auto& p : c.services.workflowProblems()) {
        if (std::filesystem::path(p.file).stem() == name) msg += " (its file failed to load: " + p.message + ")";
    }
    *err = {"not_found", msg};
    return false;
}

// Refuses a change while the state database cannot be written: it could not be made durable,
// and the client should hear why now rather than wait for the disk (new runs are refused by the
// engine with the same reason).
bool storeWritable(Context& c, Error* err) {
    auto problem = c.services.status().store_problem;
    if (problem.empty()) return true;
    *err = {"unavailable", "taskhubd accepts no changes now: " + problem};
    return false;
}

// The error for a change that is not durable: lost, or kept until the database can be written.
Error notDurable(Services& services, const std::string& what) {
    auto problem = services.status().store_problem;
    if (problem.empty()) return {"store_failed", what + " could not be committed to the state database"};
    return {"store_failed", what + " is not committed yet (taskhubd keeps it and writes it once it can): " + problem};
}

// Answers with the run as stored, once everything written so far is durable: what the client
// is told is never lost, and it reads its own writes. `what` names the change for the error.
void replyRunWhenDurable(Services& services, uint64_t mark, const std::string& id, const Reply& ok,
                         const Fail& fail, const std::string& what) {
    services.whenDurable(mark, [&services, id, ok, fail, what](bool durable) {
        if (!durable) {
            fail(notDurable(services, what));
            return;
        }
        auto r = services.run(id);
        if (!r) {
            fail({"internal", "run " + id + " is missing from the state database"});
            return;
        }
        ok(runJson(*r, true));
    });
}

// args.params: an object of strings, in the order given.
bool paramsArg(Context& c, store::NameValues* out, Error* err) {
    out->clear();
    auto it = c.args.find("params");
    if (it == c.args.end() || it->value().is_null()) return true;
    if (!it->value().is_object()) {
        *err = {"bad_request", "argument 'params' must be an object of strings, like {\"date\": \"2026-11-22\"}"};
        return false;
    }
    for (const auto& kv : it->value().as_object()) {
        std::string name(kv.key());
        if (name.empty()) {
            *err = {"bad_request", "argument 'params' has an empty param name"};
            return false;
        }
        if (!kv.value().is_string()) {
            *err = {"bad_request", "argument 'params': the value of '" + name + "' must be a string, found " +
                                       json::serialize(kv.value())};
            return false;
        }
        out->emplace_back(std::move(name), std::string(kv.value().as_string()));
    }
    return true;
}

bool cmdRun(Context& c, Error* err) {
    std::string wf;
    bool wait = false;
    store::NameValues params;
    if (!needString(c, "workflow", &wf, err) || !optBool(c, "wait", &wait, err) || !paramsArg(c, &params, err)) {
        return false;
    }
    auto out = c.services.trigger(wf, params, c.caller);
    if (!out.ok) {
        *err = {out.code.empty() ? "conflict" : out.code, out.error};
        return false;
    }
    Services& services = c.services;
    auto ok = c.ok;
    auto fail = c.fail;
    std::string id = out.run_id;
    uint64_t mark = c.mark;
    if (!wait) {
        replyRunWhenDurable(services, mark, id, ok, fail, "run " + id);
        return true;
    }
    // A firing recorded as skipped (overlap, max_active_runs) has ended already, and the store
    // reads it only once it is committed: then whenRunEnds knows no such run yet.
    if (!services.whenRunEnds(id, [&services, mark, id, ok, fail] {
            replyRunWhenDurable(services, mark, id, ok, fail, "run " + id);
        })) {
        replyRunWhenDurable(services, mark, id, ok, fail, "run " + id);
    }
    return true;
}

bool cmdWait(Context& c, Error* err) {
    std::string id;
    if (!needString(c, "run", &id, err)) return false;
    Services& services = c.services;
    auto ok = c.ok;
    auto fail = c.fail;
    uint64_t mark = c.mark;
    if (!services.whenRunEnds(id, [&services, mark, id, ok, fail] {
            replyRunWhenDurable(services, mark, id, ok, fail, "run " + id);
        })) {
        *err = {"not_found", "no run with id " + id};
        return false;
    }
    return true;
}

// An ISO 8601 instant argument (with its offset), as epoch milliseconds.
bool optInstant(Context& c, const char* key, std::optional<int64_t>* out, Error* err) {
    std::optional<std::string> text;
    if (!optString(c, key, &text, err)) return false;
    if (!text) {
        *out = std::nullopt;
        return true;
    }
    std::string why;
    auto t = parseIsoInstant(*text, &why);
    if (!t) {
        *err = {"bad_request", std::string("argument '") + key + "': " + why};
        return false;
    }
    *out = std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
    return true;
}

bool cmdRuns(Context& c, Error* err) {
    RunQuery q;
    int64_t limit = 0;
    bool all = false;
    if (!optString(c, "workflow", &q.workflow, err) || !optString(c, "state", &q.state, err) ||
        !optInstant(c, "since", &q.since_ms, err) || !optInstant(c, "until", &q.until_ms, err) ||
        !optInt(c, "limit", 50, 1, 100000, &limit, err) || !optBool(c, "all", &all, err)) {
        return false;
    }
    q.limit = static_cast<size_t>(limit);
    // Child runs are listed when asked for, or when their workflow is named.
    q.top_level_only = !all && !q.workflow;
    // A caller with an answer limit never makes the daemon load more runs than could fit in it
    // (a run takes more than kMinRunJsonBytes): more than that would be refused anyway.
    constexpr size_t kMinRunJsonBytes = 200;
    const size_t asked = q.limit;
    if (c.caller.max_answer_size != 0) q.limit = std::min(q.limit, c.caller.max_answer_size / kMinRunJsonBytes);
    auto found = c.services.runs(q);
    if (found.size() == q.limit && q.limit < asked) {
        *err = {"too_large", "more than " + std::to_string(q.limit) + " runs match, more than fit in " +
                                 "max_answer_size = " + std::to_string(c.caller.max_answer_size) +
                                 " ([control] in taskhub.toml); ask for fewer (limit) or narrow the query"};
        return false;
    }
    json::array runs;
    for (const auto& r : found) {
        auto ro = runJson(r, false);
        addDeadline(c.services, r, false, ro);
        runs.push_back(std::move(ro));
    }
    c.ok(std::move(runs));
    return true;
}

// A change Services refused: its code (conflict when it gives none) and message.
Error changeRefused(const ChangeOutcome& out) {
    return {out.code.empty() ? "conflict" : out.code, out.error};
}

// Answers a change to a run once it is durable, with the run as stored then.
bool replyChange(Context& c, const ChangeOutcome& out, const std::string& id, const std::string& what, Error* err) {
    if (!out.ok) {
        *err = changeRefused(out);
        return false;
    }
    replyRunWhenDurable(c.services, c.mark, id, c.ok, c.fail, what);
    return true;
}

bool cmdCancel(Context& c, Error* err) {
    std::string id;
    std::optional<std::string> task_arg;
    if (!storeWritable(c, err) || !needString(c, "run", &id, err) || !optString(c, "task", &task_arg, err)) {
        return false;
    }
    std::string task = task_arg.value_or("");
    return replyChange(c, c.services.cancel(id, task, c.caller), id,
                       task.empty() ? "the cancellation of " + id
                                    : "the cancellation of task '" + task + "' of " + id,
                       err);
}

// Answers a change to a workflow's schedule once it is durable, with the workflow as it is then.
bool replyWorkflowChange(Context& c, const ChangeOutcome& out, const std::string& name, const std::string& what,
                         Error* err) {
    if (!out.ok) {
        *err = changeRefused(out);
        return false;
    }
    Services& services = c.services;
    auto ok = c.ok;
    auto fail = c.fail;
    services.whenDurable(c.mark, [&services, name, ok, fail, what](bool durable) {
        if (!durable) return fail(notDurable(services, what));
        auto w = services.workflow(name);
        if (!w) return fail({"not_found", "workflow '" + name + "' is no longer loaded"});
        ok(workflowJson(*w, false));
    });
    return true;
}

// pause/resume take a run (args.run) or a workflow's schedule (args.workflow), not both: *wf is
// the workflow, or nullopt for a run.
bool workflowTarget(Context& c, std::optional<std::string>* wf, Error* err) {
    if (!optString(c, "workflow", wf, err)) return false;
    if (*wf && c.args.contains("run")) {
        *err = {"bad_request", "give either 'run' or 'workflow', not both"};
        return false;
    }
    return true;
}

bool cmdPause(Context& c, Error* err) {
    std::optional<std::string> wf;
    bool freeze = false;
    if (!storeWritable(c, err) || !workflowTarget(c, &wf, err)) return false;
    if (wf) {
        if (!optBool(c, "freeze", &freeze, err)) return false;
        if (freeze) {
            *err = {"bad_request", "'freeze' applies to runs; pausing workflow '" + *wf +
                                       "' stops its schedule and touches no running task"};
            return false;
        }
        return replyWorkflowChange(c, c.services.pauseWorkflow(*wf, c.caller), *wf, "pausing workflow " + *wf, err);
    }
    std::string id;
    if (!needString(c, "run", &id, err) || !optBool(c, "freeze", &freeze, err)) return false;
    return replyChange(c, c.services.pause(id, freeze, c.caller), id, "pausing " + id, err);
}

bool cmdResume(Context& c, Error* err) {
    std::optional<std::string> wf;
    if (!storeWritable(c, err) || !workflowTarget(c, &wf, err)) return false;
    if (wf) {
        return replyWorkflowChange(c, c.services.resumeWorkflow(*wf, c.caller), *wf, "resuming workflow " + *wf,
                                   err);
    }
    std::string id;
    if (!needString(c, "run", &id, err)) return false;
    return replyChange(c, c.services.resume(id, c.caller), id, "resuming " + id, err);
}

bool cmdRetry(Context& c, Error* err) {
    std::string id;
    std::optional<std::string> task;
    bool downstream = false;
    if (!storeWritable(c, err) || !needString(c, "run", &id, err) || !optString(c, "task", &task, err) ||
        !optBool(c, "downstream", &downstream, err)) {
        return false;
    }
    return replyChange(c, c.services.retry(id, task.value_or(""), downstream, c.caller), id, "the retry of " + id,
                       err);
}

// The most bytes `text` takes as a JSON string's content: control characters may become \u00XX.
size_t jsonEscapedSize(std::string_view text) {
    size_t n = 0;
    for (unsigned char ch : text) n += ch < 0x20 ? 6 : (ch == '"' || ch == '\\') ? 2 : 1;
    return n;
}

// Room for a log's content in an answer of at most max_answer bytes (0: no limit) that also
// carries these strings and the fixed fields.
size_t logContentRoom(size_t max_answer, std::initializer_list<std::string_view> others) {
    if (max_answer == 0) return SIZE_MAX;
    size_t fixed = 512;
    for (auto s : others) fixed += jsonEscapedSize(s);
    return max_answer > fixed ? max_answer - fixed : 0;
}

// Shortens a log chunk whose escaped content would not fit in `room`: a tail keeps its end (and
// says earlier output is not shown), a read from an offset keeps its start and moves next_offset
// back, so that a client that pages on next_offset gets the rest with its next request.
void fitLogChunk(LogChunk& chunk, size_t room, bool from_offset) {
    if (jsonEscapedSize(chunk.content) <= room) return;
    size_t used = 0;
    size_t keep = 0;
    if (from_offset) {
        while (keep < chunk.content.size()) {
            size_t w = jsonEscapedSize(std::string_view(chunk.content).substr(keep, 1));
            if (used + w > room) break;
            used += w;
            ++keep;
        }
        chunk.next_offset -= chunk.content.size() - keep;
        chunk.content.resize(keep);
    } else {
        while (keep < chunk.content.size()) {
            size_t w = jsonEscapedSize(std::string_view(chunk.content).substr(chunk.content.size() - keep - 1, 1));
            if (used + w > room) break;
            used += w;
            ++keep;
        }
        chunk.content.erase(0, chunk.content.size() - keep);
        chunk.truncated = true;
    }
}

bool cmdLogs(Context& c, Error* err) {
    std::string run;
    std::string task;
    int64_t attempt = 0;
    int64_t max_bytes = 0;
    if (!needString(c, "run", &run, err) || !needString(c, "task", &task, err) ||
        !optInt(c, "attempt", 0, 0, 1000, &attempt, err) || !optInt(c, "max_bytes", 1 << 20, 1, 16 << 20, &max_bytes, err)) {
        return false;
    }
    std::optional<uint64_t> offset;
    if (c.args.contains("offset") && !c.args.at("offset").is_null()) {
        int64_t from = 0;
        if (!optInt(c, "offset", 0, 0, INT64_MAX, &from, err)) return false;
        offset = static_cast<uint64_t>(from);
    }
    // A caller with an answer limit is sent what fits; it pages on next_offset for the rest.
    const size_t room = logContentRoom(c.caller.max_answer_size, {run, task});
    if (room == 0) {
        *err = {"too_large", "the run and task ids leave no room for log content"};
        return false;
    }
    const size_t ask = std::min(static_cast<size_t>(max_bytes), room);
    auto chunk = c.services.taskLog(run, task, static_cast<int>(attempt), ask, offset);
    if (!chunk.found) {
        *err = {"not_found", chunk.error};
        return false;
    }
    fitLogChunk(chunk, logContentRoom(c.caller.max_answer_size, {run, task, chunk.path}), offset.has_value());
    json::object o;
    o["run"] = run;
    o["task"] = task;
    o["attempt"] = chunk.attempt;
    o["path"] = chunk.path;
    o["content"] = chunk.content;
    o["truncated"] = chunk.truncated;
    o["next_offset"] = chunk.next_offset;
    o["dropped"] = chunk.dropped;
    o["active"] = chunk.active;
    c.ok(std::move(o));
    return true;
}

bool cmdReload(Context& c, Error*) {
    c.services.reload(c.caller, [ok = c.ok](const ReloadOutcome& r) {
        json::object o;
        o["loaded"] = r.loaded;
        o["failed"] = r.failed;
        json::array problems;
        for (const auto& p : r.problems) problems.push_back(json::string(p));
        o["problems"] = std::move(problems);
        ok(std::move(o));
    });
    return true;
}

bool cmdNext(Context& c, Error* err) {
    std::string wf;
    int64_t n = 0;
    if (!needString(c, "workflow", &wf, err) || !optInt(c, "n", 5, 1, 10000, &n, err)) return false;
    auto out = c.services.upcoming(wf, static_cast<size_t>(n));
    if (!out.found) {
        *err = {"not_found", out.error};
        return false;
    }
    json::array firings;
    for (const auto& f : out.firings) {
        json::object fo;
        fo["trigger"] = f.trigger;
        fo["trigger_text"] = f.trigger_text;
        fo["scheduled"] = formatIsoMillis(f.scheduled_ms);
        fo["due"] = formatIsoMillis(f.due_ms);
        fo["local"] = f.local;
        firings.push_back(std::move(fo));
    }
    json::object o;
    o["workflow"] = out.workflow;
    o["timezone"] = out.timezone;
    o["firings"] = std::move(firings);
    o["note"] = out.note;
    c.ok(std::move(o));
    return true;
}

// The longest from/to a backfill takes: an ISO 8601 time with its offset is 25 characters.
constexpr size_t kMaxTimeArg = 64;
// What one instant of a backfill's answer takes at most, besides the workflow name in its run id
// (its fields are ISO times, names and a DST note).
constexpr size_t kBackfillInstantJsonBytes = 320;

bool cmdBackfill(Context& c, Error* err) {
    BackfillRequest req;
    int64_t max_active = 1;
    if (!needString(c, "workflow", &req.workflow, err) || !needString(c, "from", &req.from, err) ||
        !needString(c, "to", &req.to, err) || !optInt(c, "max_active", 1, 1, 1000, &max_active, err) ||
        !optBool(c, "dry_run", &req.dry_run, err)) {
        return false;
    }
    for (const auto* arg : {&req.from, &req.to}) {
        if (arg->size() > kMaxTimeArg) {
            *err = {"bad_request", std::string("argument '") + (arg == &req.from ? "from" : "to") + "' is " +
                                       std::to_string(arg->size()) + " bytes; a time takes at most " +
                                       std::to_string(kMaxTimeArg)};
            return false;
        }
    }
    if (!req.dry_run && !storeWritable(c, err)) return false;
    req.max_active = static_cast<int>(max_active);
    // Every instant is in the answer, which must fit what this caller may be sent.
    if (c.caller.max_answer_size != 0) {
        req.max_instants = c.caller.max_answer_size / (kBackfillInstantJsonBytes + req.workflow.size());
    }
    BackfillOutcome out = c.services.backfill(req, c.caller);
    if (!out.ok) {
        *err = {out.code.empty() ? "bad_request" : out.code, out.error};
        return false;
    }
    json::array instants;
    for (const auto& i : out.instants) {
        json::object o;
        o["run"] = i.run_id;
        o["scheduled"] = formatIsoMillis(i.scheduled_ms);
        o["local"] = i.local;
        o["trigger"] = i.trigger;
        o["trigger_index"] = i.trigger_index;
        o["dst"] = i.dst.empty() ? json::value(nullptr) : json::value(i.dst);
        o["dst_text"] = i.dst_text;
        o["recorded"] = i.recorded;
        o["state"] = i.state.empty() ? json::value(nullptr) : json::value(i.state);
        instants.push_back(std::move(o));
    }
    json::array left_out;
    for (const auto& l : out.left_out) left_out.push_back(json::string(l));
    json::object o;
    o["workflow"] = out.workflow;
    o["timezone"] = out.timezone;
    o["overlap"] = out.overlap;
    o["from"] = formatIsoMillis(out.from_ms);
    o["to"] = formatIsoMillis(out.to_ms);
    o["max_active"] = out.max_active;
    o["dry_run"] = out.dry_run;
    o["created"] = out.created;
    o["recorded"] = out.recorded;
    o["left_out"] = std::move(left_out);
    o["instants"] = std::move(instants);
    if (out.dry_run) {
        c.ok(std::move(o));
        return true;
    }
    // Answered once the runs are durable: a backfill the client was told of is never lost.
    Services& services = c.services;
    auto ok = c.ok;
    auto fail = c.fail;
    const std::string what = "the backfill of " + out.workflow;
    services.whenDurable(c.mark, [&services, ok, fail, what, o = std::move(o)](bool durable) mutable {
        if (!durable) return fail(notDurable(services, what));
        ok(std::move(o));
    });
    return true;
}

bool cmdPlugins(Context& c, Error*) {
    json::array loaded;
    for (const auto& p : c.services.plugins()) loaded.push_back(pluginJson(p));
    json::array refused;
    for (const auto& r : c.services.refusedPlugins()) {
        json::object o;
        o["file"] = r.file;
        o["name"] = r.name;
        o["reason"] = r.reason;
        refused.push_back(std::move(o));
    }
    json::object o;
    o["plugins"] = std::move(loaded);
    o["refused"] = std::move(refused);
    c.ok(std::move(o));
    return true;
}

bool cmdPluginShow(Context& c, Error* err) {
    std::string name;
    int64_t n = 0;
    if (!needString(c, "name", &name, err) || !optInt(c, "history", 50, 1, 10000, &n, err)) return false;
    auto p = c.services.plugin(name, static_cast<int>(n));
    if (!p) {
        std::vector<std::string> names;
        for (const auto& q : c.services.plugins()) names.push_back(q.name);
        std::string msg = "no plugin named '" + name + "' is loaded";
        if (auto best = sdk::closestKey(name, names); !best.empty()) msg += " (did you mean '" + best + "'?)";
        for (const auto& r : c.services.refusedPlugins()) {
            if (r.name == name) msg = "plugin '" + name + "' was refused: " + r.file + ": " + r.reason;
        }
        *err = {"not_found", msg};
        return false;
    }
    json::object o = pluginJson(*p);
    json::array history;
    for (const auto& t : p->history) {
        json::object h;
        h["at"] = formatIsoMillis(t.at_ms);
        h["from"] = t.from;
        h["to"] = t.to;
        h["message"] = t.message;
        history.push_back(std::move(h));
    }
    o["history"] = std::move(history);
    c.ok(std::move(o));
    return true;
}

// Sends a sample to each notification target of a workflow and answers once all are through.
bool cmdNotifyTest(Context& c, Error* err) {
    std::string wf;
    if (!needString(c, "workflow", &wf, err)) return false;
    auto ok = c.ok;
    std::string code, why;
    if (!c.services.notifyTest(
            wf,
            [ok](std::vector<NotifyTestResult> results) {
                json::array out;
                for (const auto& r : results) {
                    json::object o;
                    o["target"] = r.target;
                    o["ok"] = r.ok;
                    o["detail"] = r.detail;
                    out.push_back(std::move(o));
                }
                json::object o;
                o["results"] = std::move(out);
                ok(std::move(o));
            },
            &code, &why)) {
        *err = {code.empty() ? "not_found" : code, why};
        return false;
    }
    return true;
}

const Command kCommands[] = {
    {"help", "list the commands this daemon understands", Access::ReadOnly, cmdHelp},
    {"status", "daemon health and counters", Access::ReadOnly, cmdStatus},
    {"metrics", "the daemon's metrics as OpenMetrics text (Prometheus)", Access::ReadOnly, cmdMetrics},
    {"list", "loaded workflows with next firing and last run; files that failed to load", Access::ReadOnly, cmdList},
    {"show", "one workflow (args: name) or one run with tasks, events and child runs (args: name = run id)", Access::ReadOnly, cmdShow},
    {"runs", "runs, newest first; child runs only with all or workflow (args: workflow, state, since, until, limit, all)", Access::ReadOnly, cmdRuns},
    {"logs", "a task attempt's output, or the part of it from offset on; active while more may come (args: run, task, attempt, max_bytes, offset)", Access::ReadOnly, cmdLogs},
    {"wait", "answer when a run has ended (args: run)", Access::ReadOnly, cmdWait},
    {"next", "a workflow's next firings of its time triggers (args: workflow, n)", Access::ReadOnly, cmdNext},
    {"plugins", "loaded plugins with version, ABI, isolation, health and running tasks; refused plugin files", Access::ReadOnly, cmdPlugins},
    {"plugin_show", "one plugin with the history of its health transitions (args: name, history)", Access::ReadOnly, cmdPluginShow},
    {"run", "trigger a workflow now (args: workflow, params, wait)", Access::Mutating, cmdRun},
    {"backfill", "create the runs a workflow's time triggers would have fired in a past range, as queued runs started as its overlap policy admits them; dry_run: list them only (args: workflow, from, to, max_active, dry_run)", Access::Mutating, cmdBackfill},
    {"cancel", "cancel a queued, running or paused run and its child runs, or one task (args: run, task)", Access::Mutating, cmdCancel},
    {"pause", "start no new task of a running run and its child runs; freeze: also stop running tasks' processes (args: run, freeze); or pause a workflow's schedule (args: workflow)", Access::Mutating, cmdPause},
    {"resume", "resume a paused run and its child runs (args: run); or a workflow's schedule, with catch-up (args: workflow)", Access::Mutating, cmdResume},
    {"retry", "re-run failed and cancelled tasks of a finished run as new attempts (args: run, task, downstream)", Access::Mutating, cmdRetry},
    {"reload", "re-read the workflows directory", Access::Mutating, cmdReload},
    {"notify_test", "send a sample notification to each target of a workflow and report each outcome (args: workflow)", Access::Mutating, cmdNotifyTest},
};

bool cmdHelp(Context& c, Error*) {
    json::array cmds;
    for (const auto& cmd : kCommands) {
        json::object o;
        o["name"] = cmd.name;
        o["summary"] = cmd.summary;
        o["access"] = cmd.access == Access::ReadOnly ? "read-only" : "mutating";
        cmds.push_back(std::move(o));
    }
    c.ok(std::move(cmds));
    return true;
}

// An answer as the protocol promises it: UTF-8. Run params and outputs can hold bytes that are
// not (a dropped file's name is passed to its task byte for byte); each invalid sequence is shown
// as U+FFFD here, as the store does for event details. Valid text is returned as it is.
std::string validUtf8(std::string text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    // The length of the valid sequence starting at i, or 0.
    auto sequence = [&](size_t i) -> size_t {
        const unsigned c = p[i];
        if (c < 0x80) return 1;
        size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (len == 0 || i + len > n) return 0;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return 0;
        }
        if (c == 0xe0 && p[i + 1] < 0xa0) return 0; // overlong
        if (c == 0xed && p[i + 1] > 0x9f) return 0; // surrogate
        if (c == 0xf0 && p[i + 1] < 0x90) return 0; // overlong
        if (c == 0xf4 && p[i + 1] > 0x8f) return 0; // beyond U+10FFFF
        return len;
    };
    size_t i = 0;
    while (i < n) {
        size_t len = sequence(i);
        if (len == 0) break;
        i += len;
    }
    if (i == n) return text;
    std::string out(text, 0, i);
    while (i < n) {
        size_t len = sequence(i);
        if (len == 0) {
            out += "\xef\xbf\xbd";
            ++i;
        } else {
            out.append(text, i, len);
            i += len;
        }
    }
    return out;
}

std::string errorLine(const json::value& id, const std::string& code, const std::string& message) {
    json::object o;
    o["proto"] = kProtoVersion;
    if (!id.is_null()) o["id"] = id;
    o["ok"] = false;
    json::object e;
    e["code"] = code;
    e["message"] = message;
    o["error"] = std::move(e);
    return validUtf8(json::serialize(o));
}

} // namespace

void handleRequest(Services& services, const Caller& caller, const std::string& line,
                   std::function<void(std::string)> reply) {
    json::value id;
    json::error_code ec;
    json::value req = json::parse(line, ec);
    if (ec) {
        reply(errorLine(id, "bad_request", "request is not valid JSON: " + ec.message()));
        return;
    }
    if (!req.is_object()) {
        reply(errorLine(id, "bad_request", "request must be a JSON object"));
        return;
    }
    const auto& obj = req.as_object();
    if (auto it = obj.find("id"); it != obj.end()) id = it->value();
    auto proto = obj.find("proto");
    if (proto == obj.end() || !proto->value().is_int64() || proto->value().as_int64() != kProtoVersion) {
        reply(errorLine(id, "unsupported_proto",
                        "request must carry \"proto\": " + std::to_string(kProtoVersion)));
        return;
    }
    auto cmdIt = obj.find("cmd");
    if (cmdIt == obj.end() || !cmdIt->value().is_string()) {
        reply(errorLine(id, "bad_request", "request needs \"cmd\": a command name (try \"help\")"));
        return;
    }
    std::string name(cmdIt->value().as_string());
    const Command* cmd = nullptr;
    for (const auto& c : kCommands) {
        if (name == c.name) cmd = &c;
    }
    if (!cmd) {
        reply(errorLine(id, "unknown_command", "unknown command '" + name + "' (try \"help\")"));
        return;
    }
    auto args = std::make_shared<json::object>();
    if (auto a = obj.find("args"); a != obj.end() && !a->value().is_null()) {
        if (!a->value().is_object()) {
            reply(errorLine(id, "bad_request", "\"args\" must be a JSON object"));
            return;
        }
        *args = a->value().as_object();
    }
    if (cmd->access == Access::Mutating && !caller.may_mutate) {
        // The audit trail of refusals; throttled, since the peer decides how many there are.
        static LogThrottle refused_log(20);
        if (std::string suffix; refused_log.admit(&suffix)) {
            spdlog::warn("CTRL_COMMAND_REFUSED {} pid {}: mutating command '{}' refused, this peer may only read{}",
                         caller.actor, caller.pid, name, suffix);
        }
        reply(errorLine(id, "forbidden",
                        "command '" + name + "' changes state; uid " + std::to_string(caller.uid) +
                            " may only use read-only commands (ask for membership of the admin group)"));
        return;
    }
    auto shared_reply = std::make_shared<std::function<void(std::string)>>(std::move(reply));
    const uint64_t mark = services.writeMark();
    auto execute = [&services, caller, cmd, args, id, shared_reply, mark] {
        const size_t max_answer = caller.max_answer_size;
        Context ctx{services, caller, *args, mark,
                    [id, shared_reply, max_answer, name = std::string(cmd->name)](json::value data) {
                        json::object o;
                        o["proto"] = kProtoVersion;
                        if (!id.is_null()) o["id"] = id;
                        o["ok"] = true;
                        o["data"] = std::move(data);
                        std::string answer = validUtf8(json::serialize(o));
                        if (max_answer != 0 && answer.size() + 1 > max_answer) {
                            answer = errorLine(id, "too_large",
                                             "the answer to '" + name + "' would be " + std::to_string(answer.size() + 1) +
                                                 " bytes, more than max_answer_size = " + std::to_string(max_answer) +
                                                 " ([control] in taskhub.toml); ask for less (a smaller limit, n or "
                                                 "history)");
                        }
                        (*shared_reply)(std::move(answer));
                    },
                    [id, shared_reply](Error e) { (*shared_reply)(errorLine(id, e.code, e.message)); }};
        // Boost.JSON and the standard library may throw (bad_alloc, a damaged stored value):
        // this is the edge where their exceptions become the answer.
        try {
            Error err;
            if (!cmd->handler(ctx, &err)) ctx.fail(std::move(err));
        } catch (const std::exception& e) {
            ctx.fail({"internal", e.what()});
        }
    };
    if (cmd->access == Access::ReadOnly) {
        // Reads wait for the writes made so far to be committed, so that an answer never shows
        // less than an earlier answer did.
        services.whenDurable(mark, [execute](bool) { execute(); });
    } else {
        execute();
    }
}

} // namespace taskhub::control
