// The core's shared helpers: recording events, runs and tasks; expanding templates.
#include "engine/engine_state.h"

#include <algorithm>

#include "common/time_util.h"
#include "store/store.h"

namespace taskhub::engine {

Core::Core(asio::io_context& i, store::Store& s, PluginPort& p, EngineClock& c, EngineOptions o)
    : io(i), store(s), plugins(p), clock(c), opts(std::move(o)), queues(opts.max_running_tasks, opts.plugin_max_concurrency),
      state_dir(opts.state_dir.string()) {}

Core::~Core() {
    if (opts.cgroups) {
        for (auto& cg : kept_cgroups) opts.cgroups->cancelWaits(*cg);
    }
}

void Core::event(const std::string& run_id, const std::string& task_id,
                 const std::string& kind,
           const std::string& detail) {
    store.addEvent(nowMillis(), run_id, task_id, kind, detail);
}

void Core::notifyRunEnded(const store::RunRecord& rec, const std::vector<const store::TaskRecord*>& tasks) {
    for (auto* o : observers) o->runEnded(rec, tasks);
}

void Core::saveRun(Run& run) { store.updateRun(run.rec); }

void Core::saveTask(Run& run, uint32_t t) {
    store.upsertTask(run.rec.id, static_cast<int>(t), run.tasks[t].rec);
}

void Core::setState(Run& run, uint32_t t, TS st) {
    auto& task = run.tasks[t];
    if (task.st == TS::Ready) --ready_tasks;
    if (st == TS::Ready) ++ready_tasks;
    task.st = st;
    task.rec.state = st;
}

Run* Core::findRun(const std::string& id) {
    auto it = runs.find(id);
    return it == runs.end() ? nullptr : it->second.get();
}


expr::Lookup Core::lookupFor(const Run& run, std::string* err) const {
    return [&run, err](const expr::Ref& ref) -> std::optional<std::string> {
        // A path that cannot be followed: unknown, and the first reason goes to *err.
        auto failed = [&](const std::string& why) -> std::optional<std::string> {
            if (err != nullptr && err->empty()) *err = refPathError(ref, why);
            return std::nullopt;
        };
        std::string why;
        switch (ref.kind) {
        case expr::Ref::Item:
        case expr::Ref::Index: return std::nullopt;
        case expr::Ref::Param: {
            const std::string* v = findValue(run.rec.params, ref.name);
            if (v == nullptr) return std::nullopt;
            if (ref.path.empty()) return *v;
            auto value = expr::navigate(*v, ref.path, &why);
            return value ? value : failed(why);
        }
        case expr::Ref::TaskState:
        case expr::Ref::Output: break;
        }
        auto idx = run.wf->graph.index(ref.task);
        if (!idx) return std::nullopt;
        const auto& task = run.tasks[*idx];
        if (ref.kind == expr::Ref::TaskState) return model::nameString(task.rec.state);
        if (const std::string* json = findValue(task.rec.json_outputs, ref.name)) {
            auto value = expr::navigate(*json, ref.path, &why);
            return value ? value : failed(why);
        }
        const std::string* v = findValue(task.rec.outputs, ref.name);
        if (v == nullptr) return std::nullopt;
        auto value = expr::navigateText(*v, ref.path, &why);
        return value ? value : failed(why);
    };
}

std::string Core::expand(const Run& run, const std::string& text, std::string* err) const {
    return expand(run, kNoFan, text, err);
}

std::string Core::expand(const Run& run, uint32_t t, const std::string& text, std::string* err) const {
    if (text.find("${") == std::string::npos) return text;
    std::string ignored; // validated at load; a bad template stays as written
    if (auto tpl = expr::Template::parse(text, &ignored))
        return tpl->expand(t == kNoFan ? lookupFor(run, err) : lookupFor(run, t, err));
    return text;
}

} // namespace taskhub::engine
