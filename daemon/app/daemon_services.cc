#include "app/daemon_services.h"

#include "app/workflow_loader.h"

#include <utility>

#include <date/tz.h>
#include <spdlog/spdlog.h>
#include <taskhub/suggest.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "cgroup/cgroup.h"
#include "common/time_util.h"
#include "common/trust.h"
#include "engine/engine.h"
#include "engine/task_output.h"
#include "metrics/metrics.h"
#include "metrics_export/http_listener.h"
#include "metrics_export/textfile_writer.h"
#include "notify/notifier.h"
#include "plugin_host/plugin_host.h"
#include "pool/worker_pool.h"
#include "store/store.h"

#include <taskhub/plugin_api.h>
#include "triggers/plan.h"
#include "triggers/file_watch.h"
#include "triggers/deadline.h"
#include "triggers/scheduler.h"

#ifndef TASKHUB_VERSION
#define TASKHUB_VERSION "0.0.0"
#endif

namespace taskhub::app {

namespace fs = std::filesystem;

config::FileReader trustedReader(config::WorkflowLimits limits) {
    return [limits](const fs::path& p, std::string* text) -> std::optional<std::string> {
        std::string why;
        auto opened = trust::openTrusted(p, trust::Kind::RegularFile, trust::processOwners(), &why);
        if (!opened) return why;
        // Bounded before it is read; the loader checks the text read once more.
        struct stat st {};
        if (::fstat(opened->fd.get(), &st) == 0 && static_cast<uint64_t>(st.st_size) > limits.max_file_size) {
            return config::fileSizeProblem(static_cast<uint64_t>(st.st_size), limits);
        }
        std::string err;
        if (!trust::readAll(opened->fd.get(), text, &err)) return "cannot read " + p.string() + ": " + err;
        return std::nullopt;
    };
}

std::optional<std::string> trustedDirectoryProblem(const fs::path& dir) {
    std::string why;
    if (trust::openTrusted(dir, trust::Kind::Directory, trust::processOwners(), &why)) return std::nullopt;
    return why;
}

config::WorkflowDefaults workflowDefaults(const config::DaemonConfig& cfg, const cgroup::Support& containment) {
    config::WorkflowDefaults d{cfg.timezone, trustedReader(cfg.workflow_limits), trustedDirectoryProblem,
                               cfg.workflow_limits};
    d.default_run_as = cfg.default_run_as;
    d.containment = containment;
    return d;
}

cgroup::Support probedContainment(const config::DaemonConfig& cfg) {
    cgroup::Support s;
    if (cfg.containment == cgroup::Containment::ProcessGroup) {
        s.why_not = "[daemon] containment = \"process-group\" in taskhub.toml";
        return s;
    }
    const cgroup::Probe p = cgroup::probe();
    s.cgroups = p.why_not.empty();
    s.why_not = p.why_not;
    if (s.cgroups) s.controllers = p.controllers;
    s.hint = p.hint;
    return s;
}

DaemonServices::DaemonServices(Modules m)
    : m_(m), started_ms_(nowMillis()),
      directory_(m.config->workflows_dir, workflowDefaults(*m.config, m.containment), *m.plugins) {}

control::ReloadOutcome DaemonServices::loadWorkflows() { return settleReload(directory_.reloadAll()); }

void DaemonServices::reloadWorkflows(std::function<void(const control::ReloadOutcome&)> done) {
    if (loader_ == nullptr) {
        auto out = loadWorkflows();
        if (done) done(out);
        return;
    }
    loader_->add([this, done](const config::PluginCatalog& plugins) -> std::function<void()> {
        auto batch = directory_.prepareAll(plugins);
        return [this, batch, done] {
            auto out = settleReload(directory_.apply(*batch));
            if (done) done(out);
        };
    });
}

control::ReloadOutcome DaemonServices::settleReload(const std::vector<config::WorkflowDirectory::Change>& changes) {
    settle(changes, true);
    control::ReloadOutcome out;
    out.failed = directory_.failedFiles();
    out.loaded = directory_.files() - out.failed;
    for (const auto& p : problems_) out.problems.push_back(p.message);
    if (const auto& p = directory_.dirProblem()) spdlog::error("CONFIG_WORKFLOWS_DIR_UNREADABLE {}", p->str());
    spdlog::info("CONFIG_WORKFLOWS_LOADED {} workflow(s) from {}, {} file(s) with problems", running().size(),
                 m_.config->workflows_dir.string(), out.failed);
    return out;
}

void DaemonServices::applyWorkflowChanges(const std::vector<std::string>& file_names) {
    const auto t0 = std::chrono::steady_clock::now();
    auto logApplied = [n = file_names.size(), t0] {
        spdlog::debug("CONFIG_WATCH_APPLIED {} file(s) in {:.2f} ms", n,
                      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    };
    if (loader_ == nullptr) {
        settle(directory_.update(file_names), false);
        logApplied();
        return;
    }
    loader_->add([this, file_names, logApplied](const config::PluginCatalog& plugins) -> std::function<void()> {
        auto batch = directory_.prepareSome(file_names, plugins);
        return [this, batch, logApplied] {
            settle(directory_.apply(*batch), false);
            logApplied();
        };
    });
}

void DaemonServices::settle(const std::vector<config::WorkflowDirectory::Change>& changes, bool full) {
    using Kind = config::WorkflowDirectory::Change::Kind;
    bool running_changed = false;
    for (const auto& c : changes) {
        const std::string file = c.file.string();
        switch (c.kind) {
        case Kind::Added:
            spdlog::info("CONFIG_WORKFLOW_ADDED {}: workflow {} version {}", file, c.name, c.version);
            retired_.erase(c.name);
            break;
        case Kind::Changed:
            spdlog::info("CONFIG_WORKFLOW_CHANGED {}: workflow {} version {} replaces {} (runs in flight keep theirs)",
                         file, c.name, c.version, c.old_version);
            break;
        case Kind::Fixed:
            spdlog::info("CONFIG_WORKFLOW_FIXED {}: workflow {} loads again, version {}", file, c.name, c.version);
            break;
        case Kind::Retired:
            spdlog::info("CONFIG_WORKFLOW_RETIRED {}: workflow {} version {} retired (its file is gone): no new "
                         "runs; runs in flight finish",
                         file, c.name, c.version);
            retired_[c.name] = "its file " + file + " was removed at " +
                               formatIsoSeconds(std::chrono::floor<std::chrono::seconds>(
                                   std::chrono::system_clock::now()));
            break;
        case Kind::Invalid:
            for (const auto& p : c.problems) spdlog::error("CONFIG_WORKFLOW_INVALID {}", p.str());
            if (!c.version.empty()) {
                spdlog::warn("CONFIG_KEEPING_LAST_GOOD {}: keeping the last good version {} of workflow {}", file,
                             c.version, c.name);
            }
            break;
        }
        running_changed |= c.kind != Kind::Invalid;
    }
    problems_.clear();
    for (const auto& p : directory_.problems()) problems_.push_back({p.file, p.str()});
    if (running_changed || full) applyWorkflowSet();
}

void DaemonServices::holdTriggers() { triggers_held_ = true; }

void DaemonServices::releaseTriggers() {
    triggers_held_ = false;
    if (std::exchange(apply_pending_, false)) applyWorkflowSet();
}

void DaemonServices::applyWorkflowSet() {
    // Metrics follow the loaded set at once (also while the triggers are held: recovery's runs
    // are counted under the workflows loaded before it).
    if (m_.metrics) {
        std::set<std::string> names;
        for (const auto& [name, wf] : running()) names.insert(name);
        m_.metrics->setWorkflows(names);
    }
    if (triggers_held_) {
        apply_pending_ = true;
        return;
    }
    // The deadline watch first: it takes its view of a restart before catch-up fires runs.
    if (m_.deadlines) m_.deadlines->setWorkflows(running());
    m_.scheduler->setWorkflows(running());
    if (m_.file_watch) m_.file_watch->setWorkflows(running());
}

control::PluginStatus DaemonServices::pluginStatus(const plugin_host::Plugin& p) const {
    const auto& info = p.info();
    control::PluginStatus s;
    s.name = info.name;
    s.version = info.version;
    s.description = info.description;
    s.file = info.file.string();
    s.abi_major = info.abi_major;
    s.abi_minor = info.abi_minor;
    s.capabilities = plugin_host::capabilityNames(info.capabilities);
    s.thread_safety = info.thread_safe ? "safe" : "serial";
    s.isolation = config::toString(info.isolation);
    s.running = p.running();
    const config::PluginSettings configured = m_.config->settingsOf(info.name);
    s.max_concurrency = configured.max_concurrency;
    config::HealthSettings settings = configured.health;
    if (const auto* h = m_.plugins->health(info.name)) {
        s.state = plugin_host::toString(h->state);
        s.message = h->message;
        s.since_ms = h->since_ms;
        s.last_check_ms = h->last_check_ms;
        s.failures = h->failures;
        s.checks = h->checks;
        settings = h->settings;
    } else {
        s.state = "healthy";
        s.message = "health checks are not running";
        s.since_ms = started_ms_;
    }
    s.health_interval_ms = settings.interval.count();
    s.health_timeout_ms = settings.timeout.count();
    s.unhealthy_after = settings.unhealthy_after;
    s.healthy_after = settings.healthy_after;
    s.on_unhealthy = config::toString(settings.on_unhealthy);
    return s;
}

std::vector<control::PluginStatus> DaemonServices::plugins() {
    std::vector<control::PluginStatus> out;
    for (const auto* p : m_.plugins->plugins()) out.push_back(pluginStatus(*p));
    return out;
}

std::vector<control::RefusedPluginInfo> DaemonServices::refusedPlugins() {
    std::vector<control::RefusedPluginInfo> out;
    for (const auto& r : m_.plugins->refused()) out.push_back({r.file.string(), r.name, r.reason});
    return out;
}

std::optional<control::PluginStatus> DaemonServices::plugin(const std::string& name, int history) {
    const auto* p = m_.plugins->find(name);
    if (!p) return std::nullopt;
    auto s = pluginStatus(*p);
    for (auto& e : m_.store->pluginEvents(name, history)) {
        s.history.push_back({e.at_ms, std::move(e.from), std::move(e.to), std::move(e.message)});
    }
    return s;
}

control::StatusInfo DaemonServices::status() {
    control::StatusInfo s;
    s.version = TASKHUB_VERSION;
    s.abi = std::to_string(TH_ABI_VERSION_MAJOR) + "." + std::to_string(TH_ABI_VERSION_MINOR);
    // The zone a workflow that names none gets (config/workflow.cc), which taskhubctl shows times in.
    s.timezone = m_.config->timezone;
    if (s.timezone.empty()) {
        try {
            s.timezone = std::string(date::current_zone()->name());
        } catch (const std::exception&) {
            s.timezone = "UTC";
        }
    }
    s.started_ms = started_ms_;
    s.pid = static_cast<int>(getpid());
    s.config_file = m_.config->file.string();
    s.state_dir = m_.config->state_dir.string();
    s.workflows = running().size();
    std::set<std::string> files;
    for (const auto& p : problems_) files.insert(p.file);
    s.workflow_errors = files.size();
    s.plugins = m_.plugins->plugins().size();
    s.plugins_refused = m_.plugins->refused().size();
    for (const auto* p : m_.plugins->plugins()) s.plugins_unhealthy += !m_.plugins->dispatchable(p->info().name);
    auto st = m_.engine->stats();
    s.active_runs = st.active_runs;
    s.queued_runs = st.queued_runs;
    s.running_tasks = st.running_tasks;
    s.waiting_tasks = st.waiting_tasks;
    s.runs_started = st.runs_started;
    s.worker_threads = m_.pool->threads();
    s.worker_threads_max = m_.pool->maxWorkers();
    s.shutting_down = shutting_down_;
    s.store_problem = m_.store->writeProblem().value_or("");
    s.containment.cgroup = m_.cgroups != nullptr;
    if (m_.cgroups) {
        s.containment.base = m_.cgroups->base().string();
        s.containment.controllers.assign(m_.containment.controllers.begin(), m_.containment.controllers.end());
    } else {
        s.containment.reason = m_.containment.why_not;
    }
    if (m_.metrics_textfile) {
        const auto h = m_.metrics_textfile->health();
        s.metrics.textfile = h.path;
        s.metrics.textfile_written_ms = h.written_ms;
        s.metrics.textfile_error = h.error;
        s.metrics.textfile_error_since_ms = h.error_since_ms;
    }
    if (m_.metrics_listener) {
        const auto h = m_.metrics_listener->health();
        s.metrics.listen = h.address;
        s.metrics.listen_serving = h.serving;
        s.metrics.listen_error = h.error;
        s.metrics.scrapes = h.scrapes;
    }
    if (m_.notifier) {
        const auto n = m_.notifier->stats();
        for (const auto& k : n.by_kind) {
            s.notifications.pending += k.pending;
            s.notifications.failed_attempts += k.attempts_failed;
        }
        s.notifications.sent = n.total_sent;
        s.notifications.failed = n.total_failed;
        s.notifications.dropped = n.total_dropped;
        s.notifications.last_error = n.last_error;
        s.notifications.last_error_ms = n.last_error_ms;
        if (n.mail_to_mbox) s.notifications.mbox = n.mbox_path;
    }
    return s;
}

std::vector<store::NotificationRecord> DaemonServices::notifications(const std::string& run_id) {
    return m_.store->notifications(run_id);
}

bool DaemonServices::notifyTest(const std::string& workflow,
                                std::function<void(std::vector<control::NotifyTestResult>)> done, std::string* code,
                                std::string* err) {
    if (!m_.notifier) {
        *code = "unavailable";
        *err = "notifications are not set up in this daemon";
        return false;
    }
    if (!running().count(workflow)) {
        *code = "not_found";
        *err = unknownWorkflow(workflow);
        return false;
    }
    *code = "conflict";
    return m_.notifier->sendTest(
        workflow,
        [done = std::move(done)](std::vector<notify::TestResult> results) {
            std::vector<control::NotifyTestResult> out;
            for (auto& r : results) out.push_back({std::move(r.target), r.ok, std::move(r.detail)});
            done(std::move(out));
        },
        err);
}

control::WorkflowInfo DaemonServices::info(const config::Workflow& wf, bool detail) {
    control::WorkflowInfo w;
    w.name = wf.name;
    w.file = wf.file.string();
    w.description = wf.description;
    w.timezone = wf.timezone;
    w.version = wf.version;
    w.overlap = config::toString(wf.overlap);
    const bool watches = std::any_of(wf.triggers.begin(), wf.triggers.end(),
                                     [](const config::TriggerDef& t) { return t.kind == config::TriggerDef::Kind::File; });
    if (watches) w.file_overlap = config::toString(wf.file_overlap);
    w.on_failure = config::toString(wf.on_failure);
    const auto watch_states = m_.file_watch ? m_.file_watch->states(wf.name) : std::vector<std::string>{};
    for (size_t i = 0; i < wf.triggers.size(); ++i) {
        const auto& t = wf.triggers[i];
        w.triggers.push_back({config::toString(t.kind), t.describe(), t.cron_text,
                              i < watch_states.size() ? watch_states[i] : std::string{}});
    }
    if (auto p = m_.scheduler->paused(wf.name)) {
        w.paused = control::WorkflowInfo::Pause{p->since.time_since_epoch().count() * 1000, p->by};
    }
    w.params = wf.params;
    for (auto n : m_.scheduler->nextFirings(wf.name)) w.next_fire_ms.push_back(n.time_since_epoch().count() * 1000);
    w.task_count = wf.tasks.size();
    for (size_t i = 0; detail && i < wf.tasks.size(); ++i) {
        const auto& t = wf.tasks[i];
        const auto deps = config::dependsOn(wf, i);
        w.tasks.push_back({t.id, t.plugin, {deps.begin(), deps.end()}, t.params_json, t.workflow, t.run_as});
    }
    auto last = m_.store->runs({wf.name, std::nullopt, 1});
    if (!last.empty()) w.last_run = last.front();
    w.deadline_s = wf.deadline.count();
    if (detail) w.deadline_misses = m_.store->deadlineMisses(wf.name, 0, control::kDeadlineMissesShown);
    return w;
}

std::vector<control::WorkflowInfo> DaemonServices::workflows() {
    std::vector<control::WorkflowInfo> out;
    for (const auto& [name, wf] : running()) out.push_back(info(*wf, false));
    return out;
}

std::vector<control::WorkflowProblem> DaemonServices::workflowProblems() { return problems_; }

std::optional<control::WorkflowInfo> DaemonServices::workflow(const std::string& name) {
    auto it = running().find(name);
    if (it == running().end()) return std::nullopt;
    return info(*it->second, true);
}

control::TriggerOutcome DaemonServices::trigger(const std::string& workflow, const store::NameValues& params,
                                                const control::Caller& caller) {
    control::TriggerOutcome out;
    auto it = running().find(workflow);
    if (it == running().end()) {
        out.code = "not_found";
        out.error = unknownWorkflow(workflow);
        return out;
    }
    auto r = m_.engine->trigger(
        {.workflow = it->second, .source = model::TriggerSource::Manual, .params = params, .actor = caller.actor});
    out.ok = r.ok;
    out.run_id = r.run_id;
    out.state = r.state;
    out.error = r.error;
    if (!r.ok) {
        // The engine refuses undeclared params (its message names them and the declared ones);
        // anything else it refuses here is the daemon shutting down.
        const auto& declared = it->second->params;
        bool undeclared = std::any_of(params.begin(), params.end(), [&](const auto& p) {
            return std::none_of(declared.begin(), declared.end(), [&](const auto& d) { return d.first == p.first; });
        });
        out.code = undeclared ? "bad_request" : "unavailable";
    }
    if (r.ok) spdlog::info("CTRL_RUN_TRIGGERED {} by {}", r.run_id, caller.actor);
    return out;
}

control::ChangeOutcome DaemonServices::pauseWorkflow(const std::string& workflow, const control::Caller& caller) {
    control::ChangeOutcome out;
    if (!running().count(workflow)) {
        out.code = "not_found";
        out.error = unknownWorkflow(workflow);
        return out;
    }
    if (auto p = m_.scheduler->paused(workflow)) {
        out.code = "conflict";
        out.error = "workflow '" + workflow + "' is already paused (since " + formatIsoSeconds(p->since) + " by " +
                    p->by + ")";
        return out;
    }
    const auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    m_.scheduler->pause(workflow, {now, caller.actor});
    m_.store->setWorkflowPaused(workflow, true, now.time_since_epoch().count() * 1000, caller.actor);
    spdlog::info("CTRL_WORKFLOW_PAUSED {} by {}", workflow, caller.actor);
    out.ok = true;
    return out;
}

control::ChangeOutcome DaemonServices::resumeWorkflow(const std::string& workflow, const control::Caller& caller) {
    control::ChangeOutcome out;
    if (!running().count(workflow)) {
        out.code = "not_found";
        out.error = unknownWorkflow(workflow);
        return out;
    }
    if (!m_.scheduler->paused(workflow)) {
        out.code = "conflict";
        out.error = "workflow '" + workflow + "' is not paused";
        return out;
    }
    // Recorded first: the catch-up runs resume() starts are written after it.
    m_.store->setWorkflowPaused(workflow, false);
    m_.scheduler->resume(workflow);
    if (m_.file_watch) m_.file_watch->resume(workflow);
    spdlog::info("CTRL_WORKFLOW_RESUMED {} by {}", workflow, caller.actor);
    out.ok = true;
    return out;
}

std::string DaemonServices::unknownWorkflow(const std::string& name) const {
    std::string out = "no workflow named '" + name + "'";
    bool failed = false;
    for (const auto& p : problems_) {
        if (fs::path(p.file).stem() == name) {
            out += " (its file failed to load: " + p.message + ")";
            failed = true;
        }
    }
    if (auto r = retired_.find(name); !failed && r != retired_.end()) {
        out += " (it was retired: " + r->second + ")";
        failed = true;
    }
    if (!failed) {
        std::vector<std::string> names;
        for (const auto& [n, wf] : running()) names.push_back(n);
        if (auto best = sdk::closestKey(name, names); !best.empty()) out += "; did you mean '" + best + "'?";
    }
    return out;
}

control::UpcomingOutcome DaemonServices::upcoming(const std::string& workflow, size_t n) {
    control::UpcomingOutcome out;
    auto it = running().find(workflow);
    if (it == running().end()) {
        out.error = unknownWorkflow(workflow);
        return out;
    }
    const auto& wf = *it->second;
    out.found = true;
    out.workflow = wf.name;
    out.timezone = wf.timezone;
    const std::chrono::sys_seconds now{std::chrono::seconds(nowMillis() / 1000)};
    const triggers::PlanContext ctx{m_.scheduler->options().daemon_start};
    const auto ms = [](std::chrono::sys_seconds t) { return int64_t{t.time_since_epoch().count()} * 1000; };
    for (const auto& f : triggers::upcoming(wf, now, n, ctx)) {
        out.firings.push_back({f.trigger, wf.triggers[f.trigger].describe(), ms(f.scheduled), ms(f.due),
                               date::format("%FT%T%Ez", date::make_zoned(wf.zone, f.scheduled))});
    }
    const bool file_only = std::all_of(wf.triggers.begin(), wf.triggers.end(), [](const config::TriggerDef& t) {
        return t.kind == config::TriggerDef::Kind::File;
    });
    if (file_only) {
        out.note = "workflow '" + wf.name + "' has no time triggers (cron, every or at)";
        const char* sep = "; it fires on file drops: ";
        for (const auto& t : wf.triggers) {
            out.note += sep + t.describe();
            sep = ", ";
        }
    } else if (out.firings.empty()) {
        std::string list;
        for (const auto& t : wf.triggers) list += (list.empty() ? "" : ", ") + t.describe();
        out.note = "no time trigger of workflow '" + wf.name + "' fires again (" + list + ")";
    }
    return out;
}

control::ChangeOutcome DaemonServices::checkTarget(const std::string& run_id, const std::string& task_id) {
    control::ChangeOutcome out;
    auto run = m_.store->run(run_id, !task_id.empty());
    if (!run && m_.store->runExists(run_id)) {
        // Created a moment ago and not committed yet: the engine knows it and checks the rest.
        out.ok = true;
        return out;
    }
    if (!run) {
        out.code = "not_found";
        out.error = "no run with id " + run_id;
        return out;
    }
    if (!task_id.empty()) {
        // An instance of a fan-out ("convert[7]") may have no row yet: the engine knows it.
        const auto open = task_id.find('[');
        const std::string_view base = open == std::string::npos ? std::string_view() : std::string_view(task_id).substr(0, open);
        std::string ids;
        size_t listed = 0;
        for (const auto& t : run->tasks) {
            if (t.task_id == task_id || (!base.empty() && t.task_id == base && !t.items.empty())) {
                out.ok = true;
                return out;
            }
            if (t.task_id.find('[') != std::string::npos) continue; // instances are not listed
            if (++listed <= 20) ids += (ids.empty() ? "" : ", ") + t.task_id;
        }
        if (listed > 20) ids += " and " + std::to_string(listed - 20) + " more";
        out.code = "not_found";
        out.error = "run " + run_id + " has no task '" + task_id + "' (its tasks: " + ids + ")";
        return out;
    }
    out.ok = true;
    return out;
}

namespace {

// An engine refusal: the run or task is in the wrong state for the change.
control::ChangeOutcome conflictUnless(bool ok, std::string err) {
    control::ChangeOutcome out;
    out.ok = ok;
    if (!ok) {
        out.code = "conflict";
        out.error = std::move(err);
    }
    return out;
}

} // namespace

control::ChangeOutcome DaemonServices::cancel(const std::string& run_id, const std::string& task_id,
                                              const control::Caller& caller) {
    auto out = checkTarget(run_id, task_id);
    if (!out.ok) return out;
    std::string err;
    bool done = m_.engine->cancel(run_id, task_id, caller.actor, &err);
    out = conflictUnless(done, err);
    if (out.ok && task_id.empty()) spdlog::info("CTRL_RUN_CANCELLED {} by {}", run_id, caller.actor);
    if (out.ok && !task_id.empty()) spdlog::info("CTRL_TASK_CANCELLED {} task {} by {}", run_id, task_id, caller.actor);
    return out;
}

control::ChangeOutcome DaemonServices::pause(const std::string& run_id, bool freeze, const control::Caller& caller) {
    auto out = checkTarget(run_id, "");
    if (!out.ok) return out;
    std::string err;
    bool done = m_.engine->pause(run_id, freeze, caller.actor, &err);
    out = conflictUnless(done, err);
    if (out.ok) spdlog::info("CTRL_RUN_PAUSED {}{} by {}", run_id, freeze ? " (freeze)" : "", caller.actor);
    return out;
}

control::ChangeOutcome DaemonServices::resume(const std::string& run_id, const control::Caller& caller) {
    auto out = checkTarget(run_id, "");
    if (!out.ok) return out;
    std::string err;
    bool done = m_.engine->resume(run_id, caller.actor, &err);
    out = conflictUnless(done, err);
    if (out.ok) spdlog::info("CTRL_RUN_RESUMED {} by {}", run_id, caller.actor);
    return out;
}

control::ChangeOutcome DaemonServices::retry(const std::string& run_id, const std::string& task_id, bool downstream,
                                             const control::Caller& caller) {
    auto out = checkTarget(run_id, task_id);
    if (!out.ok) return out;
    std::string err;
    bool done = m_.engine->retry(run_id, task_id, downstream, caller.actor, &err);
    out = conflictUnless(done, err);
    if (out.ok) {
        spdlog::info("CTRL_RUN_RETRIED {}{}{} by {}", run_id, task_id.empty() ? "" : " task " + task_id,
                     downstream ? " with downstream" : "", caller.actor);
    }
    return out;
}

bool DaemonServices::whenRunEnds(const std::string& run_id, std::function<void()> fn) {
    return m_.engine->whenEnded(run_id, [fn = std::move(fn)](const store::RunRecord&) { fn(); });
}

std::vector<store::RunRecord> DaemonServices::runs(const control::RunQuery& q) {
    return m_.store->runs({q.workflow, q.state, q.limit, q.top_level_only, q.since_ms, q.until_ms});
}

std::optional<store::RunRecord> DaemonServices::run(const std::string& id) { return m_.store->run(id, true); }

std::optional<store::DeadlineMissRecord> DaemonServices::deadlineMiss(const std::string& run_id) {
    return m_.store->deadlineMiss(run_id);
}

int64_t DaemonServices::deadlineSeconds(const std::string& workflow) {
    const auto& map = running();
    auto it = map.find(workflow);
    return it == map.end() ? 0 : it->second->deadline.count();
}

std::vector<store::RunRecord> DaemonServices::children(const std::string& run_id) {
    std::vector<store::RunRecord> out;
    for (const auto& child : m_.store->children(run_id)) {
        if (auto full = m_.store->run(child.id, true)) out.push_back(std::move(*full));
    }
    return out;
}

std::map<std::string, std::string> DaemonServices::waitingReasons(const std::string& run_id) {
    return m_.engine->waitingReasons(run_id);
}

std::vector<store::EventRecord> DaemonServices::events(const std::string& run_id) {
    return m_.store->events(run_id);
}

control::LogChunk DaemonServices::taskLog(const std::string& run_id, const std::string& task_id, int attempt,
                                          size_t max_bytes, std::optional<uint64_t> offset) {
    control::LogChunk out;
    // Only ids that exist in the store reach the file system, so no path can be smuggled in.
    auto run = m_.store->run(run_id, true);
    if (!run) {
        out.error = "no run with id " + run_id;
        return out;
    }
    const store::TaskRecord* task = nullptr;
    for (const auto& t : run->tasks) {
        if (t.task_id == task_id) task = &t;
    }
    if (!task) {
        out.error = "run " + run_id + " has no task '" + task_id + "'";
        return out;
    }
    if (task->attempt == 0) {
        out.error = "task '" + task_id + "' of run " + run_id + " has not started (" + model::nameString(task->state) + ")";
        return out;
    }
    if (attempt == 0) attempt = task->attempt;
    if (attempt > task->attempt) {
        out.error = "task '" + task_id + "' has " + std::to_string(task->attempt) + " attempt(s), not " +
                    std::to_string(attempt);
        return out;
    }
    out.active = attempt == task->attempt && model::attemptIsActive(task->state);
    fs::path file = m_.config->state_dir / "logs" / run->id / (task->task_id + "." + std::to_string(attempt) + ".log");
    std::ifstream in(file, std::ios::binary | std::ios::ate);
    out.found = true;
    out.attempt = attempt;
    out.path = file.string();
    if (!in) return out; // nothing written yet
    const auto size = static_cast<uint64_t>(in.tellg());
    // A file max_log_size truncated starts with a marker saying how much output went before.
    std::string head(static_cast<size_t>(std::min<uint64_t>(size, 256)), '\0');
    in.seekg(0);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    const auto cut = engine::parseLogTruncationMarker(head).value_or(engine::LogTruncation{});
    out.dropped = cut.dropped;
    uint64_t from;
    if (!offset) {
        from = size > max_bytes ? size - max_bytes : 0;
        out.truncated = from > 0;
    } else if (*offset >= cut.dropped) {
        from = std::min(size, cut.marker_bytes + (*offset - cut.dropped));
    } else {
        from = 0; // that part was dropped: from the marker, which says so
    }
    const uint64_t to = std::min(size, from + max_bytes);
    in.clear();
    in.seekg(static_cast<std::streamoff>(from));
    out.content.resize(static_cast<size_t>(to - from));
    in.read(out.content.data(), static_cast<std::streamsize>(out.content.size()));
    out.content.resize(static_cast<size_t>(in.gcount()));
    const uint64_t end = from + out.content.size();
    out.next_offset = cut.dropped + (end > cut.marker_bytes ? end - cut.marker_bytes : 0);
    return out;
}

void DaemonServices::reload(const control::Caller& caller, std::function<void(const control::ReloadOutcome&)> done) {
    spdlog::info("CTRL_RELOAD requested by uid {}", caller.uid);
    reloadWorkflows(std::move(done));
}

uint64_t DaemonServices::writeMark() { return m_.store->writeMark(); }

void DaemonServices::whenDurable(uint64_t since, std::function<void(bool ok)> fn) {
    m_.store->whenDurableOrUnwritable(since, std::move(fn));
}

std::string DaemonServices::metrics() { return m_.metrics ? m_.metrics->render() : std::string("# EOF\n"); }

} // namespace taskhub::app
