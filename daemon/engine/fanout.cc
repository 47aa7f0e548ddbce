// Fan-out (`foreach`): a task that runs once per item of a list decided when it becomes ready.
// Its instances are tasks of the same run (engine_state.h, FanOut), each with its own attempts,
// retries, timeout, log and outputs; the fan-out task itself runs nothing and ends when its last
// instance has ended. Its dependents' trigger rules count every instance (dag::Progress::widen).
#include "engine/engine_state.h"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "common/log.h"
#include "common/time_util.h"
#include "model/json_text.h"
#include "store/store.h"

namespace taskhub::engine {

namespace {

namespace json = boost::json;

const char* jsonKind(const json::value& v) {
    switch (v.kind()) {
    case json::kind::object: return "a JSON object";
    case json::kind::string: return "a string";
    case json::kind::bool_: return "a boolean";
    case json::kind::null: return "null";
    default: return "a number";
    }
}

// The most bytes the gathered outputs of a fan-out's instances may take in the fan-out task's
// record (each array of the instances' values of one output name counts).
constexpr size_t kMaxGatheredOutputs = size_t{16} << 20;

} // namespace

expr::Lookup Core::lookupFor(const Run& run, uint32_t t, std::string* err) const {
    const TaskRun& task = run.tasks[t];
    if (!task.isInstance()) return lookupFor(run, err);
    const auto& item = run.tasks[task.fan_task].fan->items[task.item];
    return [this, &run, &item, index = task.item, err](const expr::Ref& ref) -> std::optional<std::string> {
        if (ref.kind == expr::Ref::Index) return std::to_string(index);
        if (ref.kind == expr::Ref::Item) {
            if (ref.path.empty()) return config::itemText(item);
            std::string why;
            if (auto value = expr::navigate(item, ref.path, &why)) return value;
            if (err != nullptr && err->empty()) *err = refPathError(ref, why);
            return std::nullopt;
        }
        return lookupFor(run, err)(ref);
    };
}

std::optional<std::vector<std::string>> Core::fanItems(Run& run, uint32_t t, std::string* err) {
    const auto& task = run.tasks[t];
    const config::FanOutDef& fan = task.def->fan;
    const std::string where = "foreach";
    std::string text;
    std::string shown; // what the list came from, for messages
    if (!fan.literal.empty()) {
        text = fan.literal;
        shown = where + " (a literal list)";
    } else {
        std::string ignored; // validated when the file was loaded
        auto tpl = expr::Template::parse(fan.source, &ignored);
        if (!tpl || tpl->refs().size() != 1) {
            *err = where + " = \"" + fan.source + "\" is not one reference";
            return std::nullopt;
        }
        const expr::Ref& ref = tpl->refs().front();
        shown = where + " = \"" + fan.source + "\"";
        std::string path_err;
        auto value = lookupFor(run, &path_err)(ref);
        if (!value) {
            *err = shown + ": " +
                   (!path_err.empty()                ? path_err
                    : ref.kind == expr::Ref::Param ? "the run has no param '" + ref.name + "'"
                                                   : "task '" + ref.task + "' published no output '" + ref.name + "'") +
                   "; a fan-out needs a list (a JSON array) there";
            return std::nullopt;
        }
        text = std::move(*value);
    }
    std::error_code ec;
    json::parse_options po;
    po.max_depth = 64;
    json::value v = json::parse(text, ec, {}, po);
    if (ec) {
        *err = shown + " is not a list: \"" + config::shownText(text) + "\" (" + std::to_string(text.size()) +
               " bytes) is not JSON; a fan-out needs a JSON array such as [\"a\", \"b\"]";
        return std::nullopt;
    }
    if (!v.is_array()) {
        *err = shown + " is " + jsonKind(v) + ", not a list (\"" + config::shownText(text) +
               "\"); a fan-out needs a JSON array such as [\"a\", \"b\"]";
        return std::nullopt;
    }
    const auto& a = v.as_array();
    if (a.size() > opts.max_foreach_items) {
        *err = shown + " has " + std::to_string(a.size()) + " items; a fan-out may have at most " +
               std::to_string(opts.max_foreach_items) + " (taskhub.toml max_foreach_items)";
        return std::nullopt;
    }
    if (run.tasks.size() + a.size() > static_cast<size_t>(store::Store::kMaxTasksPerRun)) {
        *err = shown + " has " + std::to_string(a.size()) + " items; with the run's " +
               std::to_string(run.tasks.size()) + " tasks and instances that is over the " +
               std::to_string(store::Store::kMaxTasksPerRun) + " one run can hold";
        return std::nullopt;
    }
    std::vector<std::string> items;
    items.reserve(a.size());
    for (const auto& e : a) items.push_back(model::jsonText(e));
    return items;
}

bool Core::makeInstances(Run& run, uint32_t t, std::vector<std::string> items, std::string* err) {
    auto& task = run.tasks[t];
    const config::FanOutDef& def = task.def->fan;
    const size_t n = items.size();
    std::vector<std::string> ids(n);
    if (def.key.empty()) {
        for (size_t i = 0; i < n; ++i) ids[i] = task.def->id + "[" + std::to_string(i) + "]";
    } else {
        auto keys = config::instanceKeys(def.key, items, err);
        if (!keys) return false;
        for (size_t i = 0; i < n; ++i) ids[i] = task.def->id + "[" + (*keys)[i] + "]";
    }
    auto fan = std::make_unique<FanOut>();
    fan->first = static_cast<uint32_t>(run.tasks.size());
    fan->items = std::move(items);
    for (uint32_t i = 0; i < n; ++i) {
        TaskRun& in = run.tasks.emplace_back();
        in.def = task.def;
        in.fan_task = t;
        in.item = i;
        in.rec.task_id = std::move(ids[i]);
        in.rec.kind = task.rec.kind;
        in.rec.plugin = task.rec.plugin;
    }
    run.unfinished += n;
    task.fan = std::move(fan);
    return true;
}

std::optional<TS> Core::expandFanOut(Run& run, uint32_t t, std::string* why) {
    auto& task = run.tasks[t];
    if (task.fan) {
        // Retried or recovered: the instances exist already; the list is never expanded again.
        setState(run, t, TS::Running);
        task.rec.ended_ms.reset();
        saveTask(run, t);
        return std::nullopt;
    }
    std::string err;
    auto items = fanItems(run, t, &err);
    task.rec.started_ms = nowMillis();
    task.rec.attempt = 1;
    task.rec.outputs.clear();
    task.rec.json_outputs.clear();
    if (!items) {
        *why = err;
        return TS::Failed;
    }
    if (items->empty()) {
        task.rec.outputs = {{"count", "0"}, {"succeeded", "0"}, {"failed", "0"}};
        const bool skip = task.def->fan->on_empty == config::FanOutDef::OnEmpty::Skip;
        *why = std::string("foreach: the list is empty, so there are no instances") +
               (skip ? " (on_empty = \"skip\")" : "");
        return skip ? TS::Skipped : TS::Succeeded;
    }
    std::string list = "[";
    for (const auto& item : *items) list += (list.size() > 1 ? "," : "") + item;
    list += "]";
    const size_t n = items->size();
    if (!makeInstances(run, t, std::move(*items), &err)) {
        *why = err;
        return TS::Failed;
    }
    task.rec.items = std::move(list);
    setState(run, t, TS::Running);
    saveTask(run, t);
    const auto& fan = task.def->fan.get();
    event(run.rec.id, task.rec.task_id, "expanded",
          std::to_string(n) + (n == 1 ? " instance" : " instances") + " (" + run.tasks[task.fan->first].rec.task_id +
              (n > 1 ? " ... " + run.tasks[task.fan->first + n - 1].rec.task_id : "") + ")" +
              (fan.max_parallel ? ", at most " + std::to_string(fan.max_parallel) + " at once" : ""));
    run.progress.widen(t, static_cast<uint32_t>(n));
    return std::nullopt;
}

void Core::startInstances(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    if (!task.fan || isFinal(task.st)) return;
    FanOut& fan = *task.fan;
    const uint32_t limit = task.def->fan->max_parallel ? task.def->fan->max_parallel : UINT32_MAX;
    const bool may_start = !run.stop_state || (run.fail_fast_stop && runsAfterFailure(task.def->trigger_rule));
    while (may_start && fan.active < limit && fan.next < fan.count()) {
        const uint32_t i = fan.first + fan.next++;
        if (run.tasks[i].st != TS::Pending) continue;
        ++fan.active;
        markReady(run, i);
    }
    if (fan.ended == fan.count()) endFanOut(run, t);
}

void Core::instanceEnded(Run& run, uint32_t i, TS state) {
    auto& inst = run.tasks[i];
    const uint32_t t = inst.fan_task;
    auto& task = run.tasks[t];
    if (!task.fan) return;
    FanOut& fan = *task.fan;
    if (inst.item < fan.next && fan.active > 0) --fan.active;
    ++fan.ended;
    if (state == TS::Succeeded) {
        ++fan.succeeded;
    } else if (state == TS::Failed) {
        ++fan.failed;
    } else {
        ++fan.cancelled;
    }
    if (state != TS::Succeeded && fan.first_failure.empty()) {
        fan.first_failure = inst.rec.task_id + " " + model::nameString(state) +
                            (inst.rec.message.empty() ? "" : ": " + inst.rec.message);
    }
    const uint32_t bad = fan.failed + fan.cancelled;
    // Failures of its own, not instances cancelled because the fan-out or its run is being stopped.
    if (!fan.over && bad > task.def->fan->allowedFailures(fan.count()) && !run.stop_state && !task.cancel_requested) {
        fan.over = true;
        // The fan-out has failed whatever its other instances do: under fail_fast the run stops
        // now, as it would for a task that failed (unless the run absorbs the fan-out's failure).
        if (!run.stop_state && run.wf->on_failure == config::OnFailure::FailFast && !absorbsFailure(*task.def)) {
            if (run.first_failure.empty()) run.first_failure = "task '" + task.rec.task_id + "' failed: " + fan.first_failure;
            stopRun(run, model::RunState::Failed, "cancelled: " + run.first_failure + " (on_failure = fail_fast)", true);
        }
    }
    startInstances(run, t);
}

std::pair<uint32_t, uint32_t> Core::fanParts(const Run& run, uint32_t t) const {
    const auto& task = run.tasks[t];
    const uint32_t n = task.fan->count();
    // A fan-out that succeeded within max_failures: its tolerated failures count as successes.
    if (task.st == TS::Succeeded) return {n, 0};
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n; ++i) ok += run.tasks[task.fan->first + i].st == TS::Succeeded;
    return {ok, n - ok};
}

void Core::endFanOut(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    FanOut& fan = *task.fan;
    const auto& def = task.def->fan.get();
    const uint32_t n = fan.count();
    const uint32_t bad = fan.failed + fan.cancelled;
    const uint32_t allowed = def.allowedFailures(n);
    const std::string tolerance = "max_failures = " + std::to_string(def.max_failures) +
                                  (def.max_failures_percent ? "%, " + std::to_string(allowed) + " of " + std::to_string(n) : "");

    // The instances' outputs, gathered per name in item order (null where an instance has none),
    // as typed outputs (JSON arrays): an instance's plain output is a string in it, a typed one
    // the JSON value it is.
    task.rec.outputs = {{"count", std::to_string(n)}, {"succeeded", std::to_string(fan.succeeded)},
                        {"failed", std::to_string(bad)}};
    task.rec.json_outputs.clear();
    // First what each name would cost (its values, a null for each instance without it), without
    // building anything: many instances with many names must not make the daemon hold names x
    // instances. Names beyond the budget are left out as they are met.
    std::vector<std::string> names;
    std::unordered_map<std::string, size_t> cost; // name -> bytes it would take
    std::unordered_set<std::string> left_out;     // the first of the names left out
    bool more_left_out = false;
    size_t budget = 0;
    const size_t per_name = 5 * size_t{n} + 2; // "[null,null,...]"
    auto leaveOut = [&](const std::string& k) {
        if (left_out.size() < 100) left_out.insert(k);
        else if (!left_out.count(k)) more_left_out = true;
    };
    auto count = [&](const std::string& k, size_t value_bytes) {
        if (k == "count" || k == "succeeded" || k == "failed") return;
        auto it = cost.find(k);
        if (it == cost.end()) {
            if (budget + per_name > kMaxGatheredOutputs) return leaveOut(k);
            budget += per_name;
            it = cost.emplace(k, per_name).first;
            names.push_back(k);
        }
        it->second += value_bytes;
        budget += value_bytes;
    };
    for (uint32_t i = 0; i < n; ++i) {
        const auto& rec = run.tasks[fan.first + i].rec;
        for (const auto& [k, v] : rec.outputs) count(k, v.size() + 2);
        for (const auto& [k, v] : rec.json_outputs) count(k, v.size());
    }
    // Then the names that fit, in one pass over the instances: at most some 16 MiB / 5n of them.
    std::unordered_map<std::string_view, json::array> gathered;
    size_t planned = 0;
    for (const auto& name : names) {
        if (planned + cost[name] > kMaxGatheredOutputs) {
            leaveOut(name);
            continue;
        }
        planned += cost[name];
        gathered[name].resize(n);
    }
    for (uint32_t i = 0; i < n; ++i) {
        const auto& rec = run.tasks[fan.first + i].rec;
        for (const auto& [k, v] : rec.outputs) {
            if (auto it = gathered.find(k); it != gathered.end()) it->second[i] = json::string(v);
        }
        for (const auto& [k, v] : rec.json_outputs) {
            auto it = gathered.find(k);
            if (it == gathered.end()) continue;
            std::error_code ec;
            json::value parsed = json::parse(v, ec); // checked when it was published
            it->second[i] = ec ? json::value(json::string(v)) : std::move(parsed);
        }
    }
    size_t bytes = 0;
    for (const auto& name : names) {
        auto it = gathered.find(name);
        if (it == gathered.end()) continue;
        std::string text = model::jsonText(it->second);
        it->second = json::array(); // freed as it goes
        if (bytes + text.size() > kMaxGatheredOutputs) {
            leaveOut(name);
            continue;
        }
        bytes += text.size();
        task.rec.json_outputs.emplace_back(name, std::move(text));
    }
    std::vector<std::string> left(left_out.begin(), left_out.end());
    std::sort(left.begin(), left.end());
    std::string dropped;
    for (size_t i = 0; i < left.size() && i < 5; ++i) dropped += (i ? ", " : "") + left[i];
    if (left.size() > 5 || more_left_out)
        dropped += " and " + (more_left_out ? std::string("more") : std::to_string(left.size() - 5) + " more");

    TS state = TS::Succeeded;
    std::string message;
    // Cancelled as a whole: the fan-out itself, or its run.
    const bool stopped = task.cancel_requested || run.stop_state.has_value();
    if (fan.over || fan.failed > allowed || (bad > allowed && !stopped)) {
        state = TS::Failed;
        message = std::to_string(bad) + " of " + std::to_string(n) + " instances did not succeed (" + tolerance +
                  "); first: " + fan.first_failure;
    } else if (stopped && fan.cancelled > 0) {
        state = TS::Cancelled;
        message = std::to_string(fan.cancelled) + " of " + std::to_string(n) + " instances were cancelled: " +
                  (task.cancel_requested ? task.cancel_reason : run.stop_reason);
    } else {
        message = std::to_string(fan.succeeded) + " of " + std::to_string(n) + " instances succeeded";
        if (bad > 0) message += ", " + std::to_string(bad) + " did not (within " + tolerance + "; first: " + fan.first_failure + ")";
    }
    if (!dropped.empty()) {
        message += "; the instances' outputs " + dropped + " were not gathered: together over " +
                   std::to_string(kMaxGatheredOutputs >> 20) + " MiB";
    }
    task.rec.ended_ms = nowMillis();
    settle(run, t, state, message);
    if (state == TS::Failed && run.wf->on_failure == config::OnFailure::FailFast && !run.stop_state &&
        !absorbsFailure(*task.def)) {
        stopRun(run, model::RunState::Failed, "cancelled: " + run.first_failure + " (on_failure = fail_fast)", true);
    }
    const auto [ok, failed] = fanParts(run, t);
    std::vector<uint32_t> now_ready, now_skipped;
    run.progress.finishParts(t, ok, failed, &now_ready, &now_skipped);
    settleSkipped(run, now_skipped);
    for (uint32_t r : now_ready) admit(run, r);
}

void Core::recountFanOut(Run& run, uint32_t t) {
    FanOut& fan = *run.tasks[t].fan;
    fan.next = fan.active = fan.ended = fan.succeeded = fan.failed = fan.cancelled = 0;
    fan.over = false;
    fan.first_failure.clear();
    for (uint32_t i = 0; i < fan.count(); ++i) {
        const auto& in = run.tasks[fan.first + i];
        if (!isFinal(in.st)) continue;
        ++fan.ended;
        if (in.st == TS::Succeeded) {
            ++fan.succeeded;
        } else {
            ++(in.st == TS::Failed ? fan.failed : fan.cancelled);
            if (fan.first_failure.empty())
                fan.first_failure = in.rec.task_id + " " + model::nameString(in.st) +
                                    (in.rec.message.empty() ? "" : ": " + in.rec.message);
        }
    }
}

bool Core::restoreFanOuts(Run& run, const store::RunRecord& rec, std::string* err) {
    const size_t nstatic = run.wf->tasks.size();
    std::unordered_map<std::string_view, const store::TaskRecord*> rows;
    for (size_t i = nstatic; i < rec.tasks.size(); ++i) rows.emplace(rec.tasks[i].task_id, &rec.tasks[i]);
    for (uint32_t t = 0; t < nstatic; ++t) {
        auto& task = run.tasks[t];
        if (task.def->fan.get().empty() || task.rec.items.empty()) continue;
        std::error_code ec;
        auto v = json::parse(task.rec.items, ec);
        if (ec || !v.is_array()) {
            *err = "the recorded list of fan-out task '" + task.def->id + "' is not a JSON array";
            return false;
        }
        std::vector<std::string> items;
        items.reserve(v.as_array().size());
        for (const auto& e : v.as_array()) items.push_back(model::jsonText(e));
        if (!makeInstances(run, t, std::move(items), err)) return false;
        run.unfinished -= task.fan->count(); // the caller counts what is unfinished
        for (uint32_t i = 0; i < task.fan->count(); ++i) {
            auto& in = run.tasks[task.fan->first + i];
            if (auto it = rows.find(in.rec.task_id); it != rows.end()) in.rec = *it->second;
        }
        run.progress.widen(t, task.fan->count());
    }
    return true;
}

} // namespace taskhub::engine
