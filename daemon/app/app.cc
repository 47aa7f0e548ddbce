#include "app/app.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>
#include <taskhub/plugin_api.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>

#include <unistd.h>

#include "app/deadlines.h"
#include "app/daemon_services.h"
#include "app/housekeeping.h"
#include "app/service_watchdog.h"
#include "app/workflow_loader.h"
#include "app/workflow_watch.h"
#include "cgroup/cgroup.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/proc.h"
#include "common/time_util.h"
#include "config/daemon_config.h"
#include "config/workflow.h"
#include "control/server.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "metrics_export/http_listener.h"
#include "metrics_export/textfile_writer.h"
#include "notify/notifier.h"
#include "notify/webhook.h"
#include "plugin_host/plugin_host.h"
#include "plugin_host/remote_plugin.h"
#include "pool/worker_pool.h"
#include "store/store.h"
#include "triggers/file_watch.h"
#include "triggers/deadline.h"
#include "triggers/scheduler.h"
#include "triggers/zone_watch.h"

#ifndef TASKHUB_VERSION
#define TASKHUB_VERSION "0.0.0"
#endif

namespace taskhub::app {

namespace asio = boost::asio;

namespace {

const char* kUsage =
    "usage: taskhubd [--config FILE] [--check] [--log-level LEVEL] [--log-target TARGET]\n"
    "\n"
    "  --config FILE     daemon configuration (default " TASKHUB_INSTALL_CONFIG_FILE "),\n"
    "                    with the drop-ins FILE.d/*.toml merged over it\n"
    "  --check           validate the configuration, the plugins and every workflow, print the\n"
    "                    drop-ins read and one line per problem, and exit 0 (all valid) or 1\n"
    "  --log-level LEVEL trace, debug, info, warn or error (overrides log_level in the config)\n"
    "  --log-target TARGET\n"
    "                    auto (default), journal or stderr: where log lines go (auto: the\n"
    "                    journal when stderr is the journal or its socket exists, else stderr)\n"
    "  --version         print the version and exit\n";

struct Options {
    std::string config = config::kDefaultConfigPath;
    bool check = false;
    std::string log_level;
    logging::Target log_target = logging::Target::Auto;
};

// Validates everything offline. Returns the exit code.
int check(const config::DaemonConfig& cfg) {
    // The drop-ins read (the config file itself is named by the last line).
    for (const auto& d : cfg.drop_ins) std::printf("%s: merged over %s\n", d.c_str(), cfg.file.c_str());
    // Plugins are loaded the way the daemon loads them, so that task parameters are validated.
    plugin_host::PluginHost plugins(nullptr, nullptr);
    plugin_host::LoadPolicy policy;
    policy.require_trusted = true;
    policy.default_isolation = cfg.default_isolation; // which plugins may use run_as depends on it
    plugins.setLoadPolicy(policy);
    plugins.loadDirectories(cfg.plugin_dirs, cfg.plugins);
    int problems = 0;
    for (const auto& r : plugins.refused()) {
        std::printf("%s: plugin refused: %s\n", r.file.c_str(), r.reason.c_str());
        ++problems;
    }
    auto set = config::loadWorkflowDir(cfg.workflows_dir, workflowDefaults(cfg, probedContainment(cfg)), plugins);
    for (const auto& p : set.problems) {
        std::printf("%s\n", p.str().c_str());
        ++problems;
    }
    // Warnings do not fail the check; default_run_as is spelled out because it silently skips the
    // tasks of plugins that cannot run as another user.
    for (const auto& [name, wf] : set.workflows) {
        for (const auto& w : wf->warnings) std::printf("%s:%zu: warning: %s\n", w.file.c_str(), w.line, w.message.c_str());
    }
    if (!cfg.default_run_as.empty()) {
        std::string honoured, not_honoured;
        for (const auto* p : plugins.plugins()) {
            const auto why = plugins.runAsUnsupported(p->info().name);
            (why ? not_honoured : honoured) += (why ? "\n  " + p->info().name + ": " + *why
                                                    : (honoured.empty() ? "" : ", ") + p->info().name);
        }
        std::printf("%s: default_run_as = \"%s\" applies to the tasks of plugin(s): %s\n", cfg.file.c_str(),
                    cfg.default_run_as.c_str(), honoured.empty() ? "none" : honoured.c_str());
        if (!not_honoured.empty())
            std::printf("%s: default_run_as does not apply to (these tasks run as taskhubd's user):%s\n",
                        cfg.file.c_str(), not_honoured.c_str());
    }
    // The state database, checked as taskhubd checks it at start (reading only: the daemon may
    // be running on it).
    if (std::string damage = store::Store::checkDatabase(cfg.state_dir); !damage.empty()) {
        std::printf("%s\n", damage.c_str());
        ++problems;
    }
    if (problems == 0) {
        std::printf("%s: ok (%zu plugin(s), %zu workflow(s))\n", cfg.file.c_str(), plugins.plugins().size(),
                    set.workflows.size());
        return 0;
    }
    std::printf("%d problem(s) found\n", problems);
    return 1;
}

// File drops become runs through the engine; their versions are recorded in the store when the
// run is created; a paused workflow records them as skipped, like its time firings.
triggers::FileWatch::Hooks fileWatchHooks(engine::Engine& engine, store::Store& store,
                                          const triggers::Scheduler& scheduler) {
    auto version = [](const triggers::FileDrop& d) {
        return store::Store::FileVersion{d.workflow->name, d.path,   d.inode, d.size, d.mtime_ns,
                                         d.run_id,         nowMillis()};
    };
    triggers::FileWatch::Hooks h;
    h.fire = [&engine, &store, version](const triggers::FileDrop& d) {
        const store::NameValues params{{"file", d.path}, {"file_name", d.name}, {"file_size", std::to_string(d.size)}};
        auto r = engine.trigger({.workflow = d.workflow,
                                 .source = model::TriggerSource::File,
                                 .params = params,
                                 .note = d.note,
                                 .skip = d.skip_reason.empty() ? model::SkipCause::None : model::SkipCause::Paused,
                                 .skip_reason = d.skip_reason,
                                 .file_run_id = d.run_id});
        if (!r.ok && !r.duplicate) {
            logging::Context log_ctx({.workflow = d.workflow->name});
            spdlog::warn("FILE_DROP_NOT_STARTED {} {}: {}", d.workflow->name, d.path, r.error);
            return false;
        }
        store.recordFileVersion(version(d));
        return true;
    };
    h.pass_over = [&store, version](const triggers::FileDrop& d) { store.recordFileVersion(version(d)); };
    h.recorded = [&store](const std::string& workflow) {
        std::map<std::string, std::string> out;
        for (auto& v : store.fileVersions(workflow)) {
            out.emplace(triggers::FileWatch::versionKey(v.path, v.inode, v.size, v.mtime_ns), std::move(v.run_id));
        }
        return out;
    };
    h.paused = [&scheduler](const std::string& workflow) -> std::optional<std::string> {
        auto p = scheduler.paused(workflow);
        if (!p) return std::nullopt;
        return triggers::pausedFiringReason(*p);
    };
    h.paused_skip = [&store](const std::string& run_id) {
        auto r = run_id.empty() ? std::nullopt : store.run(run_id, false);
        return r && r->state == model::RunState::Skipped && r->skip_cause == model::SkipCause::Paused;
    };
    h.when_ended = [&engine, &store](const std::string& run_id, std::function<void(bool)> fn) {
        auto ended = [fn = std::move(fn)](const store::RunRecord& r) { fn(r.state == model::RunState::Succeeded); };
        if (engine.whenEnded(run_id, ended)) return true;
        // A run that ended before this call is only found in the store once it is committed.
        store.whenDurable(store.writeMark(), [&engine, run_id, ended](bool) { engine.whenEnded(run_id, ended); });
        return true;
    };
    h.event = [&store](const std::string& run_id, const std::string& kind, const std::string& detail) {
        store.addEvent(nowMillis(), run_id, "", kind, detail);
    };
    return h;
}

int serve(const config::DaemonConfig& cfg) {
    asio::io_context io(1);

    // A workflows_dir that others may write is fatal: they could plant or delete workflows run as
    // root. (A missing one is not: it is reported, and watched for, like an unreadable one.)
    if (std::error_code ec; std::filesystem::exists(cfg.workflows_dir, ec)) {
        if (auto why = trustedDirectoryProblem(cfg.workflows_dir)) {
            spdlog::critical("CONFIG_WORKFLOWS_DIR_REFUSED {}: workflows directory refused: {}",
                             cfg.workflows_dir.string(), *why);
            return 1;
        }
    }

    // Containment first, before any plugin loads or task starts: taskhubd moves itself into its
    // leaf cgroup (cgroup/cgroup.h). The guard gives the cgroups back at every exit from here on,
    // after everything declared below (plugin hosts and their runners) is gone.
    cgroup::Support containment;
    std::unique_ptr<cgroup::Manager> cgroups;
    {
        std::string why;
        cgroups = cgroup::Manager::setup(io, {.containment = cfg.containment, .state_dir = cfg.state_dir}, &why);
        if (cgroups) {
            containment = cgroups->support();
            spdlog::info("CONTAINMENT_MODE cgroup: {}", cgroups->describe());
        } else if (cfg.containment == cgroup::Containment::Cgroup) {
            spdlog::critical("CONTAINMENT_UNAVAILABLE [daemon] containment = \"cgroup\" in {}, but {}; refusing to "
                             "start (give taskhubd a writable cgroup2 (under systemd: Delegate=yes), or set "
                             "containment = \"auto\" to fall back to process groups)",
                             cfg.file.string(), why);
            return 1;
        } else {
            containment.why_not = why;
            if (cfg.containment == cgroup::Containment::ProcessGroup) {
                spdlog::info("CONTAINMENT_MODE process-group: {}", why);
            } else {
                spdlog::warn("CONTAINMENT_MODE process-group: {}; tasks run in process groups (a task that calls setsid "
                             "or double-forks can escape cancel, timeouts and pause --freeze; an attempt's cost is its "
                             "main process's rusage; limits are refused)",
                             why);
            }
        }
    }
    struct CgroupsShutdown {
        cgroup::Manager* manager;
        ~CgroupsShutdown() {
            if (manager) manager->shutdown();
        }
    } cgroups_shutdown{cgroups.get()};

    std::string store_err;
    std::unique_ptr<store::Store> store = store::Store::open(cfg.state_dir, &store_err);
    if (!store) {
        spdlog::critical("STORE_OPEN_FAILED {}", store_err);
        return 1;
    }
    pool::WorkerPool pool(static_cast<size_t>(cfg.pool.min_workers), static_cast<size_t>(cfg.pool.max_workers),
                          cfg.pool.idle_timeout);
    plugin_host::PluginHost plugins(&io, &pool);
    {
        plugin_host::LoadPolicy policy;
        policy.require_trusted = true;
        policy.isolate = true;
        policy.default_isolation = cfg.default_isolation;
        policy.runner = plugin_host::findRunner(TASKHUB_INSTALL_RUNNER);
        // Attempts of TH_CAP_CGROUP plugins (and runners) in cgroups; null: process groups.
        policy.cgroups = cgroups.get();
        plugins.setLoadPolicy(policy);
    }
    plugins.loadDirectories(cfg.plugin_dirs, cfg.plugins);

    // Metrics hear of runs and attempts from the engine (added before recover(), so that what
    // recovery finds is counted) and outlive it (declared before it).
    metrics::Metrics metrics({TASKHUB_VERSION,
                              std::to_string(TH_ABI_VERSION_MAJOR) + "." + std::to_string(TH_ABI_VERSION_MINOR),
                              nowMillis()});
    {
        std::set<std::string> names;
        for (const auto* p : plugins.plugins()) names.insert(p->info().name);
        metrics.setPlugins(names);
    }
    metrics.setHistory([&store](const std::string& workflow) {
        return metrics::LastEnded{store->lastEndedMs(workflow, model::RunState::Succeeded),
                                  store->lastEndedMs(workflow, model::RunState::Failed)};
    });

    engine::EngineOptions eopts;
    eopts.log_dir = cfg.state_dir / "logs";
    eopts.state_dir = cfg.state_dir;
    eopts.cgroups = cgroups.get(); // recovery by cgroup
    eopts.max_running_tasks = cfg.max_running_tasks;
    eopts.max_nesting_depth = cfg.max_nesting_depth;
    eopts.max_foreach_items = cfg.workflow_limits.max_foreach_items;
    eopts.log_cap = {cfg.history.max_log_size, cfg.history.max_log_size_text};
    for (const auto& [name, s] : cfg.plugins) eopts.plugin_max_concurrency[name] = s.max_concurrency;
    // Notifications observe the engine (declared first: the engine goes before it); the
    // workflow lookup is set once the workflows are loaded.
    std::function<std::shared_ptr<const config::Workflow>(const std::string&)> workflow_of;
    notify::WebhookOptions webhook_opts;
    webhook_opts.timeout = cfg.notifications.timeout;
    webhook_opts.connect_timeout = std::min(webhook_opts.connect_timeout, cfg.notifications.timeout);
    webhook_opts.max_queue = cfg.notifications.max_pending;
    webhook_opts.user_agent = "taskhubd/" TASKHUB_VERSION;
    notify::WebhookClient webhooks(io, webhook_opts);
    notify::Notifier notifier(io, *store,
                              {cfg.notifications, cfg.notify, cfg.default_run_as, cfg.state_dir, eopts.log_dir},
                              [&workflow_of](const std::string& name) -> std::shared_ptr<const config::Workflow> {
                                  return workflow_of ? workflow_of(name) : nullptr;
                              });
    engine::Engine engine(io, *store, plugins, eopts);
    engine.addObserver(&metrics);
    notifier.setWebhookClient(&webhooks);
    engine.addObserver(&notifier);
    // Deliveries by target kind and result, read from the notifier at each scrape.
    metrics.registry().addCollector([&notifier](metrics::Writer& w) {
        const notify::NotifyStats n = notifier.stats();
        w.family("taskhub_notifications", metrics::Type::Counter,
                 "Notifications since taskhubd started by target kind and result (sent, failed: given up, "
                 "dropped: beyond max_pending)");
        for (const auto& [kind, name] : model::NameTable<model::NotifyKind>::entries) {
            const auto& k = n.by_kind[static_cast<size_t>(kind)];
            const std::string target(name);
            w.sample("taskhub_notifications_total", {{"target", target}, {"result", "sent"}}, double(k.sent));
            w.sample("taskhub_notifications_total", {{"target", target}, {"result", "failed"}}, double(k.failed));
            w.sample("taskhub_notifications_total", {{"target", target}, {"result", "dropped"}}, double(k.dropped));
        }
        w.family("taskhub_notification_attempts_failed", metrics::Type::Counter,
                 "Failed delivery attempts since taskhubd started (each retry counts)");
        for (const auto& [kind, name] : model::NameTable<model::NotifyKind>::entries) {
            w.sample("taskhub_notification_attempts_failed_total", {{"target", name}},
                     double(n.by_kind[static_cast<size_t>(kind)].attempts_failed));
        }
        w.family("taskhub_notifications_pending", metrics::Type::Gauge, "Notifications waiting for delivery");
        for (const auto& [kind, name] : model::NameTable<model::NotifyKind>::entries) {
            w.sample("taskhub_notifications_pending", {{"target", name}},
                     double(n.by_kind[static_cast<size_t>(kind)].pending));
        }
    });
    // Recorded processes of the previous daemon can only still exist in the same boot.
    const std::string boot_id = bootId();
    const bool same_boot = !boot_id.empty() && store->exchangeMeta("boot_id", boot_id) == boot_id;
    if (!store->commit()) {
        // Open() refuses a database it cannot write; this is the first write, should that miss one.
        spdlog::critical("STORE_OPEN_FAILED cannot write the state database {}: {}; make {} and the taskhub.db* files "
                         "in it writable",
                         store->path().string(), store->lastError(), cfg.state_dir.string());
        return 1;
    }
    // From here on, commits happen on the store's writer thread and never block the loop.
    store->startWriter([&io](std::function<void()> fn) { asio::post(io, std::move(fn)); });

    // Health transitions are recorded, and hold or release the plugin's ready tasks.
    plugins.setHealthListener([&store, &engine](const std::string& plugin, const plugin_host::HealthTransition& t) {
        store->addPluginEvent({plugin, t.at_ms, plugin_host::toString(t.from), plugin_host::toString(t.to), t.message});
        engine.pluginHealthChanged(plugin);
    });
    plugins.startHealthChecks(cfg.plugins);

    triggers::Scheduler::Options sched_opts;
    sched_opts.daemon_start = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    sched_opts.boot = triggers::bootInstant(cfg.state_dir.string());
    triggers::Scheduler scheduler(
        io, sched_opts,
        [&engine](const triggers::Firing& f) {
            auto r = engine.trigger(
                {.workflow = f.workflow,
                 .source = model::parse<model::TriggerSource>(f.label).value_or(model::TriggerSource::Cron),
                 .scheduled = f.instant,
                 .note = f.note,
                 .skip = f.skip_reason.empty() ? model::SkipCause::None : model::SkipCause::Paused,
                 .skip_reason = f.skip_reason});
            // Two triggers of one workflow may name the same instant, and @reboot names the boot
            // once per boot: one firing, recorded once.
            if (!r.ok && !r.duplicate) {
                logging::Context log_ctx({.workflow = f.workflow->name});
                spdlog::warn("SCHED_FIRING_NOT_STARTED {}: {}", f.workflow->name, r.error);
            }
        },
        [&store](const std::string& workflow) -> std::optional<std::chrono::sys_seconds> {
            auto ms = store->lastScheduledMs(workflow);
            if (!ms) return std::nullopt;
            return std::chrono::floor<std::chrono::seconds>(std::chrono::sys_time<std::chrono::milliseconds>(
                std::chrono::milliseconds(*ms)));
        });

    // Deadlines: the watch hears of runs from the engine (from recovery on) and is handed the
    // workflows just before the scheduler. A miss is logged (DEADLINE_MISSED) and recorded by
    // the watch; the callback is where notifications and metrics hear of it.
    StoreDeadlineBook deadline_book(*store);
    auto& deadline_misses = metrics.workflowCounter(
        "taskhub_deadline_misses", "Scheduled firings whose run had not succeeded by the workflow's deadline");
    triggers::DeadlineWatch deadlines(
        io, {sched_opts.daemon_start, {}}, deadline_book,
        [&notifier, &metrics, &deadline_misses](const triggers::DeadlineMiss& m) {
            metrics.countWorkflow(deadline_misses, m.workflow);
            const auto ms = [](std::chrono::sys_seconds t) { return int64_t{t.time_since_epoch().count()} * 1000; };
            notifier.raise(model::NotifyEvent::DeadlineMissed,
                           notify::DeadlineFacts{m.workflow, m.run_id, ms(m.scheduled), ms(m.due), m.run_state});
        });
    DeadlineObserver deadline_observer(deadlines);
    engine.addObserver(&deadline_observer);
    struct ObserverGuard {
        engine::Engine& engine;
        engine::EngineObserver* observer;
        ~ObserverGuard() { engine.removeObserver(observer); }
    } deadline_observer_guard{engine, &deadline_observer};

    if (std::string err; !scheduler.start(&err)) {
        spdlog::error("SCHED_TIMER_FAILED {}; time triggers do not fire until taskhubd is restarted", err);
    }
    {
        std::map<std::string, triggers::Scheduler::Pause> pauses;
        for (auto& p : store->pausedWorkflows()) {
            pauses[p.workflow] = {std::chrono::floor<std::chrono::seconds>(
                                      std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(p.since_ms))),
                                  p.by};
        }
        scheduler.restorePauses(std::move(pauses));
    }
    triggers::FileWatch file_watch(io, fileWatchHooks(engine, *store, scheduler));
    DaemonServices services({&cfg, store.get(), &pool, &plugins, &engine, &scheduler, &file_watch, &metrics, &deadlines,
                             &notifier, nullptr, nullptr, cgroups.get(), containment});
    metrics.setLiveSource([&services, &plugins] {
        const control::StatusInfo st = services.status();
        metrics::LiveState s;
        s.active_runs = st.active_runs;
        s.queued_runs = st.queued_runs;
        s.running_tasks = st.running_tasks;
        s.waiting_tasks = st.waiting_tasks;
        s.store_write_problem = !st.store_problem.empty();
        s.workflows_loaded = st.workflows;
        s.workflow_errors = st.workflow_errors;
        for (const auto* p : plugins.plugins()) {
            const std::string& name = p->info().name;
            const auto* h = plugins.health(name);
            s.plugins.push_back({name, h ? plugin_host::toString(h->state) : "healthy", plugins.dispatchable(name)});
        }
        return s;
    });
    // Workflow files apply as they change (set up first, so that no change is missed after the
    // load below); SIGHUP and `taskhubctl reload` read them all again.
    WorkflowWatch workflow_watch(
        io, cfg.workflows_dir,
        {[&services](const std::vector<std::string>& files) { services.applyWorkflowChanges(files); },
         [&services](const std::string& why) {
             spdlog::info("CONFIG_RELOAD {}: reading the workflows directory again", why);
             services.reloadWorkflows({});
         }});
    services.holdTriggers(); // nothing fires before recovery
    // At start the loop is not running yet: everything loads here, before READY=1. From then on
    // files are read off the loop (declared after services: stopped and joined before it goes).
    services.loadWorkflows();
    WorkflowLoader workflow_loader(io, plugins);
    services.setWorkflowLoader(&workflow_loader);
    // Schedules in the system zone follow a change of it at once (a reload re-reads the zone).
    triggers::ZoneWatch zone_watch(io, [&services] { services.reloadWorkflows({}); });
    auto lookupWorkflow = [&services](const std::string& name) -> std::shared_ptr<const config::Workflow> {
        const auto& map = services.workflowMap();
        auto it = map.find(name);
        return it == map.end() ? nullptr : it->second;
    };
    engine.setWorkflowLookup(lookupWorkflow);
    // [metrics] textfile and listen: how the metrics leave the daemon (both off by default).
    const std::function<std::string()> renderMetrics = [&metrics] { return metrics.render(); };
    std::unique_ptr<metrics_export::TextfileWriter> metrics_textfile;
    std::unique_ptr<metrics_export::HttpListener> metrics_listener;
    if (!cfg.metrics.textfile.empty()) {
        metrics_textfile = std::make_unique<metrics_export::TextfileWriter>(io, cfg.metrics.textfile,
                                                                            cfg.metrics.textfile_interval, renderMetrics);
    }
    if (!cfg.metrics.listen.empty()) {
        metrics_listener = std::make_unique<metrics_export::HttpListener>(io, cfg.metrics.listen, cfg.metrics.listen_host,
                                                                          cfg.metrics.listen_port, renderMetrics);
    }
    services.setMetricsExport(metrics_textfile.get(), metrics_listener.get());
    workflow_of = lookupWorkflow;
    {
        std::vector<std::shared_ptr<const config::Workflow>> loaded;
        for (const auto& [name, wf] : services.workflowMap()) loaded.push_back(wf);
        notifier.start(loaded);
    }
    // History retention in the background (keep_runs, keep_days).
    Housekeeping housekeeping(io, *store, pool, eopts.log_dir, cfg.history, lookupWorkflow);
    // Runs a crash left unfinished are reconciled (leftover processes killed, lost attempts
    // recorded, runs continued) and that is committed before any firing and before READY.
    {
        auto r = engine.recover(same_boot);
        store->commit();
        if (r.runs > 0) {
            spdlog::warn("ENGINE_RECOVERED {} unfinished run(s) from the previous process: {} continue, {} could not "
                         "continue; {} attempt(s) lost, {} re-attached to their plugins, {} leftover process(es) "
                         "killed{}",
                         r.runs, r.resumed, r.abandoned, r.lost, r.adopted, r.killed,
                         same_boot ? "" : " (a new boot: no process of the previous one can remain)");
        }
    }
    notifier.resumeDelivery();
    services.releaseTriggers();

    std::unique_ptr<control::Server> server;
    {
        control::Limits limits;
        limits.max_connections = cfg.control.max_connections;
        limits.max_connections_per_uid = cfg.control.max_connections_per_uid;
        limits.max_request_size = static_cast<size_t>(cfg.control.max_request_size);
        limits.request_buffer = static_cast<size_t>(cfg.control.request_buffer);
        limits.max_answer_size = static_cast<size_t>(cfg.control.max_answer_size);
        limits.client_timeout = cfg.control.client_timeout;
        server = std::make_unique<control::Server>(io, cfg.socket, services, cfg.admin_group, limits);
        std::string err;
        if (!server->open(cfg.socket_group, &err)) {
            spdlog::critical("CTRL_LISTEN_FAILED {}", err);
            return 1;
        }
    }

    // The metrics go out once recovery's outcome is in them.
    if (metrics_textfile) metrics_textfile->start();
    if (metrics_listener) {
        if (std::string err; !metrics_listener->open(&err)) {
            spdlog::error("METRICS_LISTEN_FAILED {}; no HTTP /metrics until taskhubd is restarted", err);
        } else {
            spdlog::info("METRICS_LISTENING serving /metrics on {} (no authentication)", cfg.metrics.listen);
        }
    }

    // WATCHDOG=1 from the loop itself, and STATUS= with what runs and what fires next.
    ServiceWatchdog watchdog(io, [&engine, &scheduler] {
        const auto s = engine.stats();
        std::string status = std::to_string(s.running_tasks) + " running, " + std::to_string(s.waiting_tasks) + " waiting";
        if (auto next = scheduler.earliestFiring()) status += "; next: " + next->workflow + " at " + formatIsoSeconds(next->due);
        return status;
    });

    bool stopping = false;
    asio::steady_timer final_timer(io);
    asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
    std::function<void()> waitSignal = [&] {
        signals.async_wait([&](const boost::system::error_code& ec, int sig) {
            if (ec) return;
            if (sig == SIGHUP) {
                notifyServiceManager("RELOADING=1");
                spdlog::info("APP_RELOAD SIGHUP: reloading workflows");
                services.reloadWorkflows([](const control::ReloadOutcome&) { notifyServiceManager("READY=1"); });
            } else if (!stopping) {
                stopping = true;
                notifyServiceManager("STOPPING=1");
                spdlog::info("APP_STOPPING signal {}: no new runs; draining for up to {} ms", sig,
                             cfg.shutdown_grace.count());
                services.setShuttingDown();
                store->stopWaitingWhileUnwritable();
                scheduler.stop();
                deadlines.stop();
                file_watch.stop();
                plugins.stopHealthChecks();
                zone_watch.stop();
                workflow_watch.stop();
                workflow_loader.stop();
                housekeeping.stop();
                engine.shutdown(cfg.shutdown_grace, [&] {
                    // Answers to clients still waiting on runs go out once their writes are
                    // durable; give those writes a moment to reach the sockets, then stop.
                    // A store that cannot write keeps its writes and tries them once more
                    // as it closes (Store::~Store); the exit does not wait for the disk.
                    store->whenDurableOrUnwritable(0, [&](bool) {
                        // The textfile keeps the last numbers; the listener served until now.
                        if (metrics_textfile) metrics_textfile->stop();
                        if (metrics_listener) metrics_listener->close();
                        server->close();
                        signals.cancel();
                        final_timer.expires_after(std::chrono::milliseconds(100));
                        final_timer.async_wait([&](const boost::system::error_code&) { io.stop(); });
                    });
                });
            } else {
                spdlog::warn("APP_STOPPING already shutting down; waiting for running tasks to stop");
            }
            waitSignal();
        });
    };
    waitSignal();

    notifyServiceManager("READY=1");
    watchdog.start();
    spdlog::info("APP_READY taskhubd {} listening on {} (pid {})", TASKHUB_VERSION, cfg.socket.string(), getpid());
    io.run();
    spdlog::info("APP_STOPPED clean shutdown");
    return 0;
}

} // namespace

int run(int argc, char** argv) {
    Options opts;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](const char* name) -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "taskhubd: %s needs a value\n%s", name, kUsage);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--config" || a == "-c") opts.config = value("--config");
        else if (a.rfind("--config=", 0) == 0) opts.config = a.substr(9);
        else if (a == "--check") opts.check = true;
        else if (a == "--log-level") {
            opts.log_level = value("--log-level");
            static const char* levels[] = {"trace", "debug", "info", "warn", "error"};
            if (std::find(std::begin(levels), std::end(levels), opts.log_level) == std::end(levels)) {
                std::fprintf(stderr, "taskhubd: --log-level must be trace, debug, info, warn or error, found '%s'\n",
                             opts.log_level.c_str());
                return 2;
            }
        }
        else if (a == "--log-target") {
            const std::string t = value("--log-target");
            auto target = logging::parseTarget(t);
            if (!target) {
                std::fprintf(stderr, "taskhubd: --log-target must be auto, journal or stderr, found '%s'\n", t.c_str());
                return 2;
            }
            opts.log_target = *target;
        }
        else if (a == "--version") {
            std::printf("taskhubd %s (plugin ABI %d.%d)\n", TASKHUB_VERSION, TH_ABI_VERSION_MAJOR, TH_ABI_VERSION_MINOR);
            return 0;
        } else if (a == "--help" || a == "-h") {
            std::printf("%s", kUsage);
            return 0;
        } else {
            std::fprintf(stderr, "taskhubd: unknown argument '%s'\n%s", a.c_str(), kUsage);
            return 2;
        }
    }

    std::vector<config::Diagnostic> problems;
    auto loaded = config::loadDaemonConfig(opts.config, &problems, trustedReader(), trustedDirectoryProblem);
    if (!loaded) {
        for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.str().c_str());
        return 1;
    }
    const config::DaemonConfig& cfg = *loaded;
    logging::init(opts.log_level.empty() ? cfg.log_level : opts.log_level, opts.log_target);
    if (opts.check) {
        spdlog::set_level(spdlog::level::off); // --check prints its own findings
        return check(cfg);
    }
    std::signal(SIGPIPE, SIG_IGN);
    const int rc = serve(cfg);
    if (plugin_host::threadsLeftInPlugins() > 0) {
        // Every module is gone (the store closed), but a thread still runs plugin code
        // (PLUGIN_THREAD_HELD): no static destructor may run under it.
        spdlog::info("APP_EXIT {} thread(s) left inside plugins; exiting without running static destructors",
                     plugin_host::threadsLeftInPlugins());
        if (auto logger = spdlog::default_logger()) logger->flush();
        std::fflush(nullptr);
        std::_Exit(rc);
    }
    return rc;
}

} // namespace taskhub::app
