// Commands that work without the daemon: validate, next --cron and plugin check (next WORKFLOW,
// the same command, asks the daemon).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <date/tz.h>
#include <spdlog/spdlog.h>

#include "cgroup/cgroup.h"
#include "commands.h"
#include "common/time_util.h"
#include "common/trust.h"
#include "config/daemon_config.h"
#include "config/workflow.h"
#include "next_preview.h"
#include "plugin_check.h"
#include "plugin_host/plugin_host.h"
#include "render.h"
#include "term.h"

namespace taskhub::ctl {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// What limits (memory_max, ...) the machine's cgroup2 could apply, for validate: the controllers
// offered where this process runs (on a hybrid hierarchy, where v1 owns them: none of the four).
// Whether the hierarchy is writable is not asked: validate may run as any user, taskhubd as root.
// [daemon] containment = "process-group" means no cgroups, as for taskhubd.
// docs/workflow-format.md, "Resource limits and leftovers".
cgroup::Support offlineContainment(const config::DaemonConfig& cfg) {
    cgroup::Support s;
    if (cfg.containment == cgroup::Containment::ProcessGroup) {
        s.why_not = "[daemon] containment = \"process-group\" in taskhub.toml";
        return s;
    }
    const cgroup::Probe p = cgroup::probe();
    s.cgroups = !p.mount.empty() && !p.own.empty();
    s.why_not = p.why_not;
    if (s.cgroups) s.controllers = p.controllers;
    s.hint = p.hint;
    return s;
}

int cmdValidate(const Context& ctx, const Invocation& in) {
    const std::vector<std::string>& files = in.args;
    std::string cfgPath = ctx.globals.config.value_or(config::kDefaultConfigPath);
    std::vector<config::Diagnostic> config_problems;
    auto loaded = config::loadDaemonConfig(cfgPath, &config_problems);
    if (!loaded) {
        // One error (a JSON object with --json), naming what is wrong with the config.
        std::string why;
        for (const auto& p : config_problems) why += (why.empty() ? "" : "; ") + p.str();
        return failed("validate needs the daemon config to find the plugins (use --config FILE): " + why, 2);
    }
    const config::DaemonConfig& cfg = *loaded;
    // The plugin host logs for the daemon's journal; here a refused plugin is a warning on stderr
    // and stdout carries only the findings.
    spdlog::set_level(spdlog::level::off);
    plugin_host::PluginHost plugins(nullptr, nullptr);
    plugin_host::LoadPolicy policy;
    policy.default_isolation = cfg.default_isolation; // which plugins may use run_as depends on it
    plugins.setLoadPolicy(policy);
    plugins.loadDirectories(cfg.plugin_dirs, cfg.plugins);
    for (const auto& r : plugins.refused()) {
        std::fprintf(stderr, "taskhubctl: warning: plugin %s refused: %s\n", r.file.c_str(), r.reason.c_str());
    }
    // Workflow tasks are checked against the other files given and the daemon's workflows_dir.
    std::vector<fs::path> paths(files.begin(), files.end());
    config::WorkflowDefaults defaults{cfg.timezone, {}, {}, cfg.workflow_limits};
    defaults.default_run_as = cfg.default_run_as;
    defaults.containment = offlineContainment(cfg);
    auto loads = config::validateWorkflowFiles(paths, cfg.workflows_dir, defaults, plugins);
    json::array results;
    int bad = 0;
    for (size_t i = 0; i < files.size() && i < loads.size(); ++i) {
        const auto& f = files[i];
        const auto& load = loads[i];
        // Only the daemon enforces who may write a workflow (a user may check the syntax of a file
        // in their home); here it is a warning, judged as taskhubd running as root would.
        if (std::string why; !trust::openTrusted(f, trust::Kind::RegularFile, trust::Owners{0}, &why)) {
            std::fprintf(stderr, "taskhubctl: warning: %s: taskhubd running as root would refuse this file: %s\n",
                         f.c_str(), why.c_str());
        }
        json::object r;
        r["file"] = f;
        r["ok"] = load.workflow != nullptr;
        json::array problems;
        for (const auto& p : load.problems) {
            json::object po;
            po["line"] = p.line;
            po["message"] = p.message;
            po["text"] = p.str();
            problems.push_back(std::move(po));
            if (!ctx.globals.json) std::cout << p.str() << "\n";
        }
        r["problems"] = std::move(problems);
        json::array warnings;
        for (const auto& w : load.workflow ? load.workflow->warnings : std::vector<config::Diagnostic>{}) {
            warnings.push_back(json::object{{"line", w.line}, {"message", w.message}, {"text", w.str()}});
            if (!ctx.globals.json) std::cout << w.file << ":" << w.line << ": warning: " << w.message << "\n";
        }
        r["warnings"] = std::move(warnings);
        if (!load.workflow) ++bad;
        else if (!ctx.globals.json) std::cout << f << ": ok (" << load.workflow->tasks.size() << " task(s))\n";
        results.push_back(std::move(r));
    }
    if (ctx.globals.json) emitJson(results);
    return bad ? 1 : 0;
}

// The zone taskhubd gives a workflow that names none: the config's `timezone`, else the system
// zone. The config is read when --config is given or the default file exists.
// nullptr: *err says why.
const date::time_zone* defaultZone(const Globals& g, std::string* err) {
    std::optional<config::DaemonConfig> cfg;
    if (!daemonConfig(g, "to find the default time zone", &cfg, err)) {
        *err += " (use --tz)";
        return nullptr;
    }
    if (cfg && !cfg->timezone.empty()) return date::locate_zone(cfg->timezone);
    try {
        return date::current_zone();
    } catch (const std::exception& e) {
        *err = std::string("cannot determine the system time zone: ") + e.what() + " (use --tz)";
        return nullptr;
    }
}

struct OfflineNext {
    std::string cron;
    std::optional<std::string> tz;
    std::optional<std::string> from;
    size_t n = 5;
    cron::DstPolicy policy;
    std::string name; // hash key of H fields
};

int nextOffline(const Context& ctx, const OfflineNext& a) {
    std::string err;
    auto expr = cron::CronExpr::parse(a.cron, &err, a.name);
    if (!expr) {
        // H picks its values from the workflow's name, which only --name can tell offline.
        bool hashes = a.cron.find('H') != std::string::npos;
        return failed("cron \"" + a.cron + "\": " + err +
                          (hashes && a.name.empty() ? "; give the workflow's name with --name" : ""),
                      2);
    }
    const date::time_zone* tz = nullptr;
    if (a.tz) {
        tz = findZone(*a.tz, &err);
        if (!tz) return failed("--tz: " + err, 2);
    } else {
        tz = defaultZone(ctx.globals, &err);
        if (!tz) return failed(err, 2);
    }
    auto after = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    if (a.from) {
        auto t = parseIsoInstant(*a.from, &err);
        if (!t) return failed("--from: " + err, 2);
        after = *t;
    }
    if (expr->isReboot()) {
        return failed("cron \"" + a.cron + "\" fires once each time the machine boots, when taskhubd starts; "
                      "it has no instants to show");
    }
    auto firings = previewFirings(*expr, tz, after, a.n, a.policy);
    const std::string zone(tz->name());
    if (ctx.globals.json) {
        json::array out;
        for (const auto& f : firings) {
            json::object o;
            o["utc"] = formatIsoSeconds(f.instant);
            o["local"] = f.local;
            o["zone"] = zone;
            o["dst"] = f.dst == DstNote::None ? json::value(nullptr) : json::value(dstNoteName(f.dst));
            if (f.dst == DstNote::Gap) o["skipped_wall"] = f.skipped_wall;
            out.push_back(std::move(o));
        }
        emitJson(out);
        return 0;
    }
    std::cout << "cron \"" << a.cron << "\" in " << zone << " (dst_gap " << dstGapName(a.policy.gap)
              << ", dst_fold " << dstFoldName(a.policy.fold) << "), after "
              << formatIsoLocal(after, tz) << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : firings) rows.push_back({f.local, formatIsoSeconds(f.instant), dstNoteText(f)});
    if (!rows.empty()) table({"LOCAL", "UTC", "NOTE"}, rows);
    if (firings.empty()) {
        std::cout << "no firing within 8 years after " << formatIsoLocal(after, tz) << "\n";
    } else if (firings.size() < a.n) {
        std::cout << "no further firing within 8 years after the last one\n";
    }
    return 0;
}

int nextWorkflow(const Context& ctx, const std::string& wf, size_t n) {
    json::object a;
    a["workflow"] = wf;
    a["n"] = n;
    json::value d;
    if (int code = 0; !request(ctx, "next", a, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    std::cout << "workflow " << field(d, "workflow") << " in " << field(d, "timezone") << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : arrayField(d, "firings")) {
        rows.push_back({field(f, "local"), shortTime(field(f, "scheduled")), shortTime(field(f, "due")),
                        "#" + field(f, "trigger") + " " + field(f, "trigger_text")});
    }
    if (!rows.empty()) table({"LOCAL", "SCHEDULED", "DUE", "TRIGGER"}, rows);
    if (std::string note = field(d, "note"); !note.empty() && note != "-") std::cout << note << "\n";
    return 0;
}


// next WORKFLOW through the daemon, or next --cron EXPR offline.
int cmdNext(const Context& ctx, const Invocation& in) {
    std::string err;
    const auto n = countOption(in, "-n", 5, 10'000, &err);
    if (!n) return usageError(err, in.command->name);
    if (!in.args.empty()) {
        if (in.has("--cron")) return usageError("next takes WORKFLOW or --cron EXPR, not both", in.command->name);
        for (const char* o : {"--tz", "--from", "--dst-gap", "--dst-fold", "--name"}) {
            if (in.has(o)) {
                return usageError(std::string(o) + " goes with --cron EXPR; next WORKFLOW uses the workflow's own "
                                                   "zone and DST settings, from now", in.command->name);
            }
        }
        return nextWorkflow(ctx, in.args[0], static_cast<size_t>(*n));
    }
    if (!in.has("--cron")) return usageError("next takes WORKFLOW (through the daemon) or --cron EXPR (offline)", in.command->name);
    OfflineNext a;
    a.cron = *in.value("--cron");
    a.tz = in.value("--tz");
    a.from = in.value("--from");
    a.n = static_cast<size_t>(*n);
    a.name = in.value("--name").value_or("");
    if (auto v = in.value("--dst-gap"); v && !parseDstGap(*v, &a.policy.gap, &err)) {
        return usageError("--dst-gap: " + err, in.command->name);
    }
    if (auto v = in.value("--dst-fold"); v && !parseDstFold(*v, &a.policy.fold, &err)) {
        return usageError("--dst-fold: " + err, in.command->name);
    }
    return nextOffline(ctx, a);
}

int cmdPluginCheck(const Context& ctx, const Invocation& in) {
    PluginCheckOptions o;
    std::string err;
    if (!parsePluginCheckOptions(in.args[0], in.value("--params"), in.value("--config-json"), in.value("--timeout"),
                                 &o, &err)) {
        return usageError(err, in.command->name);
    }
    auto report = runPluginCheck(o);
    if (ctx.globals.json) emitJson(pluginCheckJson(report));
    else std::cout << formatPluginCheck(report);
    if (report.abandoned) {
        std::cout.flush();
        ::_exit(1); // the attempt still runs plugin code: no destructors, no exit handlers
    }
    return report.passed() ? 0 : 1;
}

// help [COMMAND]: the usage text, or one command's (or group's) help; paged like show.
int cmdHelp(const Context&, const Invocation& in) {
    auto text = helpText(in.args);
    if (!text) {
        std::string name;
        for (const auto& w : in.args) name += (name.empty() ? "" : " ") + w;
        return usageError("help: unknown command '" + name + "'");
    }
    showText(*text, true);
    return 0;
}

} // namespace

std::vector<Command> offlineCommands() {
    return {
        {"help", "[COMMAND]", 0, 2, "at most one COMMAND (of one or two words, like plugin show)", Section::Offline,
         "the usage text, or COMMAND's arguments and options (as COMMAND --help)", {}, cmdHelp, {Values::Command}},
        {"validate", "FILE...", 1, SIZE_MAX, "one or more FILEs", Section::Offline,
         "check workflow files (plugins from the config's plugin_dirs; workflow tasks against the other FILEs and "
         "its workflows_dir)",
         {}, cmdValidate, {Values::File}},
        {"next", "[WORKFLOW]", 0, 1, "at most one argument: WORKFLOW", Section::Either,
         "WORKFLOW: the next N firings of a loaded workflow's time triggers, in the workflow's zone (through the "
         "daemon). --cron EXPR: the next N firings of a cron expression strictly after --from in --tz, each in local "
         "time and UTC, marking firings a DST change moved or repeated (offline)",
         {{"-n", {}, "N", "a number", false, "how many firings (default 5, at most 10000)", Values::Text},
          {"--cron", {}, "EXPR", "a cron expression, like \"30 2 * * *\"", false, "the cron expression to preview", Values::Text},
          {"--tz", {}, "ZONE", "an IANA time zone, like Europe/Berlin", false,
           "an IANA name (default: the config's timezone, else the system zone, as taskhubd does)", Values::Zone},
          {"--from", {}, "TIME", "an ISO 8601 time, like 2026-03-29T00:00:00+01:00", false,
           "firings strictly after TIME, ISO 8601 with an offset (default now)", Values::Text},
          {"--dst-gap", {}, "run_after|skip", "run_after or skip", false,
           "as the workflow key dst_gap (default run_after)", Values::DstGap},
          {"--dst-fold", {}, "first|second|both", "first, second or both", false,
           "as the workflow key dst_fold (default first)", Values::DstFold},
          {"--name", {}, "WORKFLOW", "a workflow name", false, "the workflow name that H fields are hashed from", Values::Workflow}},
         cmdNext, {Values::Workflow}},
        {"plugin check", "PATH.so", 1, 1, "one argument: PATH.so", Section::Offline,
         "load a plugin as taskhubd does and run it once: negotiation, create (with the settings JSON), validate and "
         "one execute of the task parameters JSON (cancelled after the timeout), a health check; exit 1 unless "
         "every step passed",
         {{"--params", {}, "JSON", "a JSON object of task parameters", false, "the task parameters (default {})", Values::Text},
          {"--config-json", {}, "JSON", "a JSON object of plugin settings", false, "the plugin settings (default {})", Values::Text},
          {"--timeout", {}, "DUR", "a duration, like 10s", false, "cancel the execute after DUR (default 10s)", Values::Text}},
         cmdPluginCheck, {Values::File}},
    };
}

} // namespace taskhub::ctl
