// Commands that read the daemon's state: status, metrics, list, show, reload, plugins, plugin show.
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "model/json_text.h"
#include "render.h"
#include "term.h"

namespace taskhub::ctl {

namespace json = boost::json;

namespace {

// The OpenMetrics text as the daemon renders it, unchanged (for a pipe into a parser or promtool).
int cmdMetrics(const Context& ctx, const Invocation&) {
    json::value d;
    if (int code = 0; !request(ctx, "metrics", {}, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    const auto* text = d.is_object() ? d.as_object().if_contains("text") : nullptr;
    if (!text || !text->is_string()) return failed("the daemon's answer to 'metrics' has no text");
    const auto& s = text->as_string();
    std::cout.write(s.data(), static_cast<std::streamsize>(s.size()));
    std::cout.flush();
    return 0;
}

int cmdStatus(const Context& ctx, const Invocation&) {
    json::value d;
    if (int code = 0; !request(ctx, "status", {}, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    std::cout << "taskhubd " << field(d, "version") << " (pid " << field(d, "pid") << "), up "
              << field(d, "uptime_s") << "s" << (d.as_object().at("shutting_down").as_bool() ? ", SHUTTING DOWN" : "")
              << "\n"
              << "config          " << field(d, "config") << "\n"
              // Older daemons do not send timezone.
              << (field(d, "timezone") == "-" ? "" : "time zone       " + field(d, "timezone") + "\n")
              << "state           " << field(d, "state_dir") << "\n"
              << "workflows       " << field(d, "workflows") << " loaded, " << field(d, "workflow_errors")
              << " file(s) with errors\n"
              << "plugins         " << field(d, "plugins") << " loaded, " << field(d, "plugins_refused")
              << " refused, " << field(d, "plugins_unhealthy") << " unhealthy\n"
              << "runs            " << field(d, "active_runs") << " active, " << field(d, "queued_runs")
              << " queued, " << field(d, "runs_started") << " started since start\n"
              << "tasks           " << field(d, "running_tasks") << " running, " << field(d, "waiting_tasks")
              << " waiting for a slot\n"
              << "worker threads  " << field(d, "worker_threads") << " of max " << field(d, "worker_threads_max")
              << "\n";
    // Older daemons do not send store_problem.
    if (auto it = d.as_object().find("store_problem"); it != d.as_object().end() && it->value().is_string()) {
        std::cout << "STORE           " << str(it->value())
                  << "\n                no new runs and no changes until then; reads keep working\n";
    }
    // [metrics]: each way out that is configured, and whether it works (older daemons: absent).
    if (const auto* m = d.as_object().if_contains("metrics"); m && m->is_object()) {
        const auto& textfile = m->as_object().at("textfile");
        const auto& listen = m->as_object().at("listen");
        if (textfile.is_null() && listen.is_null()) std::cout << "metrics         off (no [metrics] textfile or listen)\n";
        if (textfile.is_object()) {
            std::cout << "metrics file    " << field(textfile, "path");
            const auto& written = textfile.as_object().at("last_write");
            std::cout << (written.is_string() ? ", written " + shortTime(str(written)) : ", not written yet") << "\n";
            if (textfile.as_object().at("error").is_string()) {
                std::cout << "                FAILING since " << shortTime(field(textfile, "error_since")) << ": "
                          << field(textfile, "error") << "\n";
            }
        }
        if (listen.is_object()) {
            std::cout << "metrics http    " << field(listen, "address");
            if (listen.as_object().at("serving").as_bool()) std::cout << ", serving /metrics, " << field(listen, "scrapes") << " scrape(s)\n";
            else std::cout << ", NOT SERVING: " << field(listen, "error") << "\n";
        }
    }
    // Older daemons do not send containment.
    if (const auto* c = d.as_object().if_contains("containment"); c && c->is_object()) {
        if (field(*c, "mode") == "cgroup") {
            std::string controllers;
            if (const auto* list = c->as_object().if_contains("controllers"); list && list->is_array()) {
                for (const auto& name : list->as_array()) controllers += (controllers.empty() ? "" : " ") + str(name);
            }
            std::cout << "containment: cgroup (" << field(*c, "base")
                      << ", controllers: " << (controllers.empty() ? "none" : controllers) << ")\n";
        } else {
            std::cout << "containment: process-group (" << field(*c, "reason") << ")\n";
        }
    }
    // Older daemons do not send notifications.
    if (auto it = d.as_object().find("notifications"); it != d.as_object().end() && it->value().is_object()) {
        const auto& n = it->value();
        std::cout << "notifications   " << field(n, "pending") << " pending, " << field(n, "sent") << " sent, "
                  << field(n, "failed") << " failed, " << field(n, "dropped") << " dropped; "
                  << field(n, "failed_attempts") << " failed attempt(s) since start\n";
        if (const auto* e = n.as_object().if_contains("last_error"); e && e->is_string()) {
            std::cout << "  last error    " << shortTime(field(n, "last_error_at")) << " " << str(*e) << "\n";
        }
        if (const auto* m = n.as_object().if_contains("mbox"); m && m->is_string()) {
            std::cout << "  no MTA        mail is written to " << str(*m) << "\n";
        }
    }
    return 0;
}

int cmdList(const Context& ctx, const Invocation&) {
    json::value d;
    if (int code = 0; !request(ctx, "list", {}, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : d.as_object().at("workflows").as_array()) {
        // NEXT: the earliest next firing over all triggers (a watch trigger has none).
        std::string triggers, next;
        int64_t next_ms = -1;
        for (const auto& t : w.as_object().at("triggers").as_array()) {
            triggers += (triggers.empty() ? "" : ", ") + field(t, "text");
            const std::string at = field(t, "next");
            if (int64_t ms = isoToMs(at); ms >= 0 && (next_ms < 0 || ms < next_ms)) {
                next_ms = ms;
                next = shortTime(at);
            }
        }
        const auto& last = w.as_object().at("last_run");
        if (!w.as_object().at("paused").is_null()) next = "paused";
        rows.push_back({field(w, "name"), triggers.empty() ? "(manual)" : triggers, next.empty() ? "-" : next,
                        last.is_null() ? "-" : paintState(field(last, "state")) + " " + shortTime(field(last, "created"))});
    }
    table({"WORKFLOW", "TRIGGERS", "NEXT", "LAST RUN"}, rows);
    const auto& errors = d.as_object().at("errors").as_array();
    if (!errors.empty()) {
        std::cout << "\nfiles with errors (" << errors.size() << "):\n";
        for (const auto& e : errors) std::cout << "  " << field(e, "message") << "\n";
    }
    return 0;
}

int cmdShow(const Context& ctx, const Invocation& in) {
    const std::string& name = in.args[0];
    json::object a;
    a["name"] = name;
    json::value d;
    if (int code = 0; !request(ctx, "show", a, &d, &code)) return code;
    const PagedOutput paged; // a run's events can fill many screens
    const auto& o = d.as_object();
    if (o.at("kind").as_string() == "run") {
        json::value run = o.at("run");
        run.as_object()["events"] = o.at("events");
        if (const auto* notes = o.if_contains("notifications")) run.as_object()["notifications"] = *notes;
        if (ctx.globals.json) return emitJson(run), 0;
        printRunDetail(run);
        bool outputs = false;
        auto printOutputs = [&](auto& self, const json::value& node, const std::string& label) -> void {
            for (const auto& t : arrayField(node, "tasks")) {
                const auto* out = t.as_object().if_contains("outputs");
                if (!out || !out->is_object()) continue;
                if (t.as_object().contains("fan_out")) continue; // gathered under the fan-out task
                for (const auto& kv : out->as_object()) {
                    if (!outputs) std::cout << "\nOUTPUTS\n";
                    outputs = true;
                    // A typed output shows as its compact JSON text (null as null, not "-").
                    std::cout << "  " << label << field(t, "id") << "." << std::string(kv.key()) << " = "
                              << (kv.value().is_string() ? str(kv.value()) : terminalSafe(model::jsonText(kv.value())))
                              << "\n";
                }
            }
            for (const auto& c : arrayField(node, "children")) {
                self(self, c, relativeRunId(field(run, "id"), field(c, "id")) + "/");
            }
        };
        printOutputs(printOutputs, run, "");
        printAttempts(field(run, "id"), run);
        if (const auto* notes = o.if_contains("notifications"); notes && notes->is_array() && !notes->as_array().empty()) {
            std::cout << "\nNOTIFICATIONS\n";
            std::vector<std::vector<std::string>> rows;
            for (const auto& n : notes->as_array()) {
                const auto& sent = n.as_object().at("sent");
                rows.push_back({field(n, "event"), field(n, "target"), field(n, "state"), field(n, "attempts"),
                                sent.is_null() ? "-" : shortTime(str(sent)), field(n, "last_error")});
            }
            table({"EVENT", "TARGET", "STATE", "ATTEMPTS", "SENT", "LAST ERROR"}, rows);
        }
        std::cout << "\nEVENTS\n";
        printEvents(field(run, "id"), run);
        return 0;
    }
    const auto& w = o.at("workflow");
    if (ctx.globals.json) return emitJson(w), 0;
    std::cout << "workflow     " << field(w, "name") << "\n"
              << "file         " << field(w, "file") << "\n";
    if (!field(w, "description").empty()) std::cout << "description  " << field(w, "description") << "\n";
    std::cout << "timezone     " << field(w, "timezone") << "\n"
              << "policy       overlap=" << field(w, "overlap")
              << (field(w, "file_overlap") == "-" ? "" : " (file drops: " + field(w, "file_overlap") + ")")
              << " on_failure=" << field(w, "on_failure") << "\n"
              << "version      " << field(w, "version") << "\n";
    if (std::string params = paramsText(w); !params.empty()) std::cout << "params       " << params << "\n";
    for (const auto& t : w.as_object().at("triggers").as_array()) {
        if (field(t, "kind") == "file") {
            std::cout << "trigger      " << field(t, "text") << ", " << field(t, "state") << "\n";
        } else {
            std::cout << "trigger      " << field(t, "text") << ", next " << shortTime(field(t, "next")) << "\n";
        }
    }
    if (const auto& p = w.as_object().at("paused"); !p.is_null()) {
        std::cout << "paused       since " << shortTime(field(p, "since")) << " by " << field(p, "by")
                  << " (firings are recorded as skipped; `taskhubctl resume " << field(w, "name") << "`)\n";
    }
    const auto& last = w.as_object().at("last_run");
    if (!last.is_null()) {
        std::cout << "last run     " << field(last, "id") << " " << field(last, "state") << "\n";
    }
    if (const auto* dl = w.as_object().if_contains("deadline"); dl && !dl->is_null()) {
        std::cout << "deadline     " << str(*dl) << " after each scheduled instant\n";
    }
    if (const auto* misses = w.as_object().if_contains("deadline_misses"); misses && misses->is_array()) {
        for (const auto& m : misses->as_array()) {
            std::cout << "missed       " << field(m, "run_id") << " at " << shortTime(field(m, "due")) << ": "
                      << field(m, "reason") << "\n";
        }
    }
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : w.as_object().at("tasks").as_array()) {
        std::string deps;
        for (const auto& dep : t.as_object().at("depends_on").as_array()) deps += (deps.empty() ? "" : ",") + str(dep);
        std::string wf = field(t, "workflow");
        std::string run_as = field(t, "run_as");
        rows.push_back({field(t, "id"), wf.empty() || wf == "-" ? field(t, "plugin") : "workflow " + wf,
                        deps.empty() ? "-" : deps, run_as.empty() ? "-" : run_as,
                        json::serialize(t.as_object().at("params"))});
    }
    table({"TASK", "RUNS", "DEPENDS ON", "RUN AS", "PARAMS"}, rows);
    return 0;
}

int cmdReload(const Context& ctx, const Invocation&) {
    json::value d;
    if (int code = 0; !request(ctx, "reload", {}, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    std::cout << "loaded " << field(d, "loaded") << " workflow(s), " << field(d, "failed") << " file(s) with problems\n";
    for (const auto& p : d.as_object().at("problems").as_array()) std::cout << "  " << str(p) << "\n";
    return 0;
}

int cmdPlugins(const Context& ctx, const Invocation&) {
    json::value d;
    if (int code = 0; !request(ctx, "plugins", {}, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : arrayField(d, "plugins")) {
        rows.push_back({field(p, "name"), field(p, "version"), field(p, "abi"), field(p, "isolation"),
                        paintState(field(p, "state")), field(p, "running"), shortTime(field(p, "since")), field(p, "message")});
    }
    table({"PLUGIN", "VERSION", "ABI", "ISOLATION", "STATE", "RUNNING", "SINCE", "MESSAGE"}, rows);
    const auto& refused = arrayField(d, "refused");
    if (!refused.empty()) {
        std::cout << "\nrefused (" << refused.size() << "):\n";
        for (const auto& r : refused) std::cout << "  " << field(r, "file") << ": " << field(r, "reason") << "\n";
    }
    return 0;
}

int cmdPluginShow(const Context& ctx, const Invocation& in) {
    std::string err;
    const auto history = countOption(in, "--limit", 0, 100'000, &err);
    if (!history) return usageError(err, in.command->name);
    const std::string& name = in.args[0];
    json::object a;
    a["name"] = name;
    if (*history > 0) a["history"] = *history;
    json::value d;
    if (int code = 0; !request(ctx, "plugin_show", a, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    const auto& h = d.as_object().at("health");
    const std::string limit = field(d, "max_concurrency") == "0" ? "unlimited" : field(d, "max_concurrency");
    std::cout << "plugin         " << field(d, "name") << " " << field(d, "version") << " (ABI " << field(d, "abi")
              << ")\n"
              << "description    " << field(d, "description") << "\n"
              << "file           " << field(d, "file") << "\n"
              << "capabilities   " << joinStrings(d.as_object().at("capabilities")) << "\n"
              << "threads        " << field(d, "thread_safety") << "\n"
              << "isolation      " << field(d, "isolation") << "\n"
              << "state          " << paintState(field(d, "state")) << " since " << shortTime(field(d, "since")) << "\n"
              << "message        " << field(d, "message") << "\n"
              << "last check     " << shortTime(field(d, "last_check")) << " (" << field(d, "checks")
              << " checks, " << field(d, "failures") << " failed in a row)\n"
              << "health checks  every " << formatMs(h.as_object().at("interval_ms").to_number<int64_t>())
              << ", timeout " << formatMs(h.as_object().at("timeout_ms").to_number<int64_t>())
              << ", unhealthy after " << field(h, "unhealthy_after") << ", healthy after "
              << field(h, "healthy_after") << ", on_unhealthy = " << field(h, "on_unhealthy") << "\n"
              << "running        " << field(d, "running") << " task(s), max_concurrency " << limit << "\n";
    const auto& hist = arrayField(d, "history");
    std::cout << "\nhealth transitions (" << hist.size() << (hist.empty() ? "" : ", oldest first") << "):\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : hist) {
        rows.push_back({shortTime(field(t, "at")), field(t, "from") + " -> " + field(t, "to"), field(t, "message")});
    }
    if (!rows.empty()) table({"TIME", "CHANGE", "WHY"}, rows);
    return 0;
}

int cmdNotifyTest(const Context& ctx, const Invocation& in) {
    json::object a;
    a["workflow"] = in.args[0];
    json::value d;
    if (int code = 0; !request(ctx, "notify_test", a, &d, &code)) return code;
    int failures = 0;
    for (const auto& r : arrayField(d, "results")) failures += !r.as_object().at("ok").as_bool();
    if (ctx.globals.json) {
        emitJson(d);
    } else {
        for (const auto& r : arrayField(d, "results")) {
            const bool ok = r.as_object().at("ok").as_bool();
            const std::string detail = field(r, "detail");
            std::cout << (ok ? "ok     " : "error  ") << field(r, "target")
                      << (detail.empty() || detail == "-" ? "" : " (" + detail + ")") << "\n";
        }
    }
    return failures == 0 ? 0 : 1;
}

} // namespace

std::vector<Command> daemonCommands() {
    return {
        {"status", "", 0, 0, "no arguments", Section::Daemon, "daemon state and counters", {}, cmdStatus},
        {"metrics", "", 0, 0, "no arguments", Section::Daemon,
         "the daemon's metrics as OpenMetrics text, as Prometheus scrapes them (docs/operations.md, Metrics)", {},
         cmdMetrics},
        {"list", "", 0, 0, "no arguments", Section::Daemon,
         "workflows with their next firing (the earliest over their triggers) and last run; files that failed to "
         "load",
         {}, cmdList},
        {"show", "NAME", 1, 1, "one argument: a workflow name or a run id", Section::Daemon,
         "a workflow, or a run (NAME = run id) with its tasks, child runs (indented under their workflow task) and "
         "events",
         {}, cmdShow, {Values::WorkflowOrRun}},
        {"reload", "", 0, 0, "no arguments", Section::Daemon, "re-read the workflows directory", {}, cmdReload},
        {"plugins", "", 0, 0, "no arguments", Section::Daemon,
         "loaded plugins: version, ABI, isolation, health state and its last message, running tasks; refused "
         "plugin files and why",
         {}, cmdPlugins},
        {"plugin show", "NAME", 1, 1, "one argument: NAME", Section::Daemon,
         "one plugin's details and its health transitions",
         {{"--limit", {}, "N", "a number", false, "show the latest N health transitions (default 50)", Values::Text}},
         cmdPluginShow, {Values::Plugin}},
        {"notify test", "WORKFLOW", 1, 1, "one argument: WORKFLOW", Section::Daemon,
         "send a sample notification to each [[notify]] target of WORKFLOW (its own, or taskhub.toml's) and print "
         "one line per target: ok or error; exit status 1 when any failed",
         {}, cmdNotifyTest, {Values::Workflow}},
    };
}

} // namespace taskhub::ctl
