// Commands on runs: run, watch, runs, wait, logs and the controls (pause, resume, cancel, retry).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "commands.h"
#include "common/time_util.h"
#include "model/states.h"
#include "render.h"
#include "term.h"

namespace taskhub::ctl {

namespace json = boost::json;

namespace {

constexpr auto kWatchPoll = std::chrono::milliseconds(300);
constexpr auto kLogPoll = std::chrono::milliseconds(300);

enum class Follow { None, Wait, Watch };

// The `show` data of a run as one tree, the root's events merged in, as `show --json` prints it.
// false: the failure is printed and *exit_code is the exit status.
bool fetchRunTree(const Context& ctx, const std::string& id, json::value* run, int* exit_code) {
    json::object a;
    a["name"] = id;
    json::value d;
    if (!request(ctx, "show", a, &d, exit_code)) return false;
    const auto& o = d.as_object();
    if (o.at("kind").as_string() != "run") {
        *exit_code =
            failed("'" + id + "' is a workflow, not a run id (start and follow a run with `run " + id + " --follow`)");
        return false;
    }
    *run = o.at("run");
    run->as_object()["events"] = o.at("events");
    return true;
}

// Exit status of a run that has ended: 0 when it succeeded, else 1 with the reason on stderr
// (in the table format; --json carries it in the data).
int runExitStatus(const Context& ctx, const json::value& run) {
    std::string state = field(run, "state");
    if (model::parse<model::RunState>(state) == model::RunState::Succeeded) return 0;
    if (!ctx.globals.json) {
        std::fprintf(stderr, "taskhubctl: run %s %s: %s\n", field(run, "id").c_str(), state.c_str(),
                     field(run, "message").c_str());
    }
    return 1;
}

int finishedRun(const Context& ctx, const json::value& run) {
    if (ctx.globals.json) emitJson(run);
    else printRunDetail(run);
    return runExitStatus(ctx, run);
}

// Follows a run until it ends: a redrawn view on a terminal, lines of changes otherwise.
// Exit status as for `wait`.
int watchRun(const Context& ctx, const std::string& id) {
    const bool tty = !ctx.globals.json && ::isatty(STDOUT_FILENO);
    std::map<std::string, std::string> seen;
    size_t drawn = 0;
    for (;;) {
        json::value run;
        if (int code = 0; !fetchRunTree(ctx, id, &run, &code)) return code;
        const bool ended = runEnded(field(run, "state"));
        if (tty) {
            redraw(run, drawn);
        } else {
            printChanges(ctx.globals.json, field(run, "id"), run, seen);
            if (ended && !ctx.globals.json) std::cout << progressLine(run) << "\n";
            std::cout << std::flush;
        }
        if (ended) return runExitStatus(ctx, run);
        std::this_thread::sleep_for(kWatchPoll);
    }
}

int cmdRun(const Context& ctx, const Invocation& in) {
    if (in.has("--wait") && in.has("--follow")) return usageError("run takes --wait or --follow, not both", in.command->name);
    std::vector<std::pair<std::string, std::string>> params;
    for (const auto& [name, v] : in.options) {
        if (name != "--param") continue;
        auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) {
            return usageError("--param needs NAME=VALUE (like --param date=2026-11-22), found '" + v + "'", in.command->name);
        }
        std::string pname = v.substr(0, eq);
        for (const auto& p : params) {
            if (p.first == pname) return usageError("--param " + pname + " given twice", in.command->name);
        }
        params.emplace_back(pname, v.substr(eq + 1));
    }
    const Follow follow = in.has("--wait") ? Follow::Wait : in.has("--follow") ? Follow::Watch : Follow::None;
    const std::string& wf = in.args[0];
    json::object a;
    a["workflow"] = wf;
    a["wait"] = follow == Follow::Wait;
    if (!params.empty()) {
        json::object p;
        for (const auto& [name, value] : params) p[name] = value;
        a["params"] = std::move(p);
    }
    json::value run;
    if (int code = 0; !request(ctx, "run", a, &run, &code)) return code;
    if (follow == Follow::Wait) return finishedRun(ctx, run);
    // A firing skipped by the overlap policy did not run: that is a failure, in either format.
    if (model::parse<model::RunState>(field(run, "state")) == model::RunState::Skipped) {
        if (ctx.globals.json) emitJson(run);
        else std::cout << field(run, "id") << " " << field(run, "state") << "\n";
        std::fprintf(stderr, "taskhubctl: %s\n", field(run, "message").c_str());
        return 1;
    }
    if (follow == Follow::Watch) return watchRun(ctx, field(run, "id"));
    if (ctx.globals.json) emitJson(run);
    else std::cout << field(run, "id") << " " << field(run, "state") << "\n";
    return 0;
}

int cmdWatch(const Context& ctx, const Invocation& in) { return watchRun(ctx, in.args[0]); }

int cmdWait(const Context& ctx, const Invocation& in) {
    json::object a;
    a["run"] = in.args[0];
    json::value run;
    if (int code = 0; !request(ctx, "wait", a, &run, &code)) return code;
    return finishedRun(ctx, run);
}

// A --since/--until value: an ISO 8601 time (with an offset, or a date: midnight UTC) or a
// duration back from now ("2h", "7d"), as the ISO 8601 instant the daemon takes.
// nullopt: *why is the usage error.
std::optional<std::string> timeArg(const char* option, const std::string& text, std::string* why) {
    std::string err;
    if (!text.empty() && text[0] >= '0' && text[0] <= '9' && text.find('-') == std::string::npos) {
        if (auto d = parseDuration(text, &err)) {
            auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
            return formatIsoSeconds(now - std::chrono::ceil<std::chrono::seconds>(*d));
        }
        *why = std::string(option) + ": " + err;
        return std::nullopt;
    }
    std::string iso = text.size() == 10 ? text + "T00:00:00Z" : text; // a date alone
    if (auto t = parseIsoInstant(iso, &err)) return formatIsoSeconds(*t);
    *why = std::string(option) + " needs an ISO 8601 time (2026-11-22T10:00:00Z, 2026-11-22) or a duration back "
                                 "from now (2h, 7d): " + err;
    return std::nullopt;
}

int cmdRuns(const Context& ctx, const Invocation& in) {
    std::string err;
    const auto limit = countOption(in, "--limit", 50, 100'000, &err);
    if (!limit) return usageError(err, in.command->name);
    json::object a;
    if (!in.args.empty()) a["workflow"] = in.args[0];
    if (auto state = in.value("--state")) a["state"] = *state;
    for (const char* option : {"--since", "--until"}) {
        if (auto text = in.value(option)) {
            auto at = timeArg(option, *text, &err);
            if (!at) return usageError(err, in.command->name);
            a[std::string_view(option).substr(2)] = *at; // "since", "until"
        }
    }
    a["limit"] = *limit;
    a["all"] = in.has("--all");
    json::value d;
    if (int code = 0; !request(ctx, "runs", a, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : d.as_array()) {
        // A firing that missed its workflow's deadline is marked in its message column.
        const std::string message = field(r, "message");
        const bool missed = field(r, "deadline_missed_ms") != "-";
        rows.push_back({field(r, "id"), field(r, "workflow"), field(r, "trigger"), runStateText(r),
                        shortTime(field(r, "started")), duration(r),
                        missed ? "! deadline missed" + (message.empty() || message == "-" ? "" : "; " + message)
                               : message});
    }
    table({"RUN", "WORKFLOW", "TRIGGER", "STATE", "STARTED", "DURATION", "MESSAGE"}, rows);
    return 0;
}

// Sends a change (cancel, pause, resume, retry) and prints `done` or the run as JSON.
int change(const Context& ctx, const char* cmd, json::object a, const std::string& done) {
    json::value run;
    if (int code = 0; !request(ctx, cmd, std::move(a), &run, &code)) return code;
    if (ctx.globals.json) return emitJson(run), 0;
    std::cout << done << " (run " << field(run, "state") << ")\n";
    return 0;
}

// --task's value; nullopt: *err is the usage error.
bool taskOption(const Invocation& in, std::optional<std::string>* task, std::string* err) {
    *task = in.value("--task");
    if (*task && (*task)->empty()) {
        *err = "--task needs a task id, found an empty one";
        return false;
    }
    return true;
}

int cmdCancel(const Context& ctx, const Invocation& in) {
    std::optional<std::string> task;
    if (std::string err; !taskOption(in, &task, &err)) return usageError(err, in.command->name);
    const std::string& id = in.args[0];
    json::object a;
    a["run"] = id;
    if (task) a["task"] = *task;
    return change(ctx, "cancel", std::move(a),
                  task ? "cancelling task " + *task + " of " + id : "cancelling " + id);
}

// A run id always has an '@'; a workflow name never has one.
bool isRunId(const std::string& name) { return name.find('@') != std::string::npos; }

// Pausing or resuming a workflow's schedule: the answer is the workflow.
int workflowChange(const Context& ctx, const char* cmd, const std::string& name, const std::string& done) {
    json::object a;
    a["workflow"] = name;
    json::value w;
    if (int code = 0; !request(ctx, cmd, std::move(a), &w, &code)) return code;
    if (ctx.globals.json) return emitJson(w), 0;
    std::cout << done << "\n";
    return 0;
}

int cmdPause(const Context& ctx, const Invocation& in) {
    const std::string& id = in.args[0];
    const bool freeze = in.has("--freeze");
    if (!isRunId(id)) {
        if (freeze) {
            return usageError("--freeze applies to runs (NAME@...); pausing workflow '" + id +
                                  "' stops its schedule and touches no running task",
                              in.command->name);
        }
        return workflowChange(ctx, "pause", id,
                              "paused workflow " + id + ": its firings are recorded as skipped until `taskhubctl "
                              "resume " + id + "`");
    }
    json::object a;
    a["run"] = id;
    a["freeze"] = freeze;
    return change(ctx, "pause", std::move(a),
                  "paused " + id + (freeze ? "; running tasks frozen" : "; running tasks go on"));
}

int cmdResume(const Context& ctx, const Invocation& in) {
    const std::string& id = in.args[0];
    if (!isRunId(id)) {
        return workflowChange(ctx, "resume", id,
                              "resumed workflow " + id + "; missed firings follow its catch-up policy (see "
                              "`taskhubctl runs " + id + "`)");
    }
    json::object a;
    a["run"] = id;
    return change(ctx, "resume", std::move(a), "resumed " + id);
}

int cmdRetry(const Context& ctx, const Invocation& in) {
    std::optional<std::string> task;
    if (std::string err; !taskOption(in, &task, &err)) return usageError(err, in.command->name);
    const std::string& id = in.args[0];
    const bool downstream = in.has("--downstream");
    json::object a;
    a["run"] = id;
    if (task) a["task"] = *task;
    a["downstream"] = downstream;
    std::string what = task ? "task " + *task : "the failed and cancelled tasks";
    return change(ctx, "retry", std::move(a),
                  "retrying " + what + (downstream ? " and the tasks downstream" : "") + " of " + id);
}

// With follow: the output so far, then what the attempt writes, polled from the position the
// last answer ended at, until the attempt has ended and everything it wrote is shown. The
// attempt is fixed by the first answer, so a retry's next attempt is not mixed in.
int cmdLogs(const Context& ctx, const Invocation& in) {
    std::string err;
    const auto attempt = countOption(in, "--attempt", 0, 100'000, &err);
    if (!attempt) return usageError(err, in.command->name);
    const bool follow = in.has("--follow");
    json::object a;
    a["run"] = in.args[0];
    a["task"] = in.args[1];
    if (*attempt > 0) a["attempt"] = *attempt;
    json::value d;
    if (int code = 0; !request(ctx, "logs", a, &d, &code)) return code;
    std::optional<PagedOutput> paged;
    if (!follow) paged.emplace(); // -f prints as the output comes: never paged
    if (ctx.globals.json) {
        if (!follow) return emitJson(d), 0;
        std::cout << jsonText(d) << "\n" << std::flush;
    } else {
        if (d.as_object().at("truncated").as_bool()) std::cout << "[... earlier output not shown ...]\n";
        std::cout << std::string_view(d.as_object().at("content").as_string()) << std::flush;
    }
    if (!follow) return 0;
    a["attempt"] = d.as_object().at("attempt");
    for (;;) {
        const bool active = d.as_object().at("active").as_bool();
        const bool got = !d.as_object().at("content").as_string().empty();
        if (!active && !got) return 0;
        if (active && !got) std::this_thread::sleep_for(kLogPoll);
        a["offset"] = d.as_object().at("next_offset");
        if (int code = 0; !request(ctx, "logs", a, &d, &code)) return code;
        if (ctx.globals.json) {
            if (!d.as_object().at("content").as_string().empty()) std::cout << jsonText(d) << "\n";
        } else {
            std::cout << std::string_view(d.as_object().at("content").as_string());
        }
        std::cout << std::flush;
    }
}

} // namespace

std::vector<Command> runCommands() {
    const Option follow{"--follow", "-f", {}, {}, false, {}};
    const Option task{"--task", {}, "ID", "a task id", false, {}, Values::Text};
    auto with = [](Option o, std::string_view help) {
        o.help = help;
        return o;
    };
    return {
        {"run", "WORKFLOW", 1, 1, "one argument: WORKFLOW", Section::Daemon, "trigger a workflow now, with params",
         {{"--param", {}, "NAME=VALUE", "NAME=VALUE", true, "a value for one of the workflow's params", Values::Text},
          {"--wait", {}, {}, {}, false, "block until the run ends; exit 1 unless it succeeded"},
          with(follow, "show the run live as `watch` does; exit 1 unless it succeeded")},
         cmdRun, {Values::Workflow}},
        {"watch", "RUN", 1, 1, "one argument: RUN", Section::Daemon,
         "live view of a run's tasks and child runs until it ends; exit 1 unless it succeeded (plain lines of "
         "changes when not a terminal)",
         {}, cmdWatch, {Values::Run}},
        {"runs", "[WORKFLOW]", 0, 1, "at most one argument: WORKFLOW", Section::Daemon,
         "runs, newest first; child runs of nested workflows with --all or when their WORKFLOW is named",
         {{"--state", {}, "S", "a run state, or lost", false,
           "runs in state S; lost: runs in which recovery after a crash found lost attempts", Values::RunState},
          {"--since", {}, "TIME", "an ISO 8601 time or a duration like 2h", false,
           "created at or after TIME, an ISO 8601 time (2026-11-22T10:00:00Z, 2026-11-22) or a duration back from "
           "now (90m, 2h, 7d)", Values::Text},
          {"--until", {}, "TIME", "an ISO 8601 time or a duration like 2h", false, "created before TIME, as --since", Values::Text},
          {"--limit", {}, "N", "a number", false, "at most N runs (default 50)", Values::Text},
          {"--all", {}, {}, {}, false, "child runs too"}},
         cmdRuns, {Values::Workflow}},
        {"pause", "RUN|WORKFLOW", 1, 1, "one argument: RUN or WORKFLOW", Section::Daemon,
         "RUN: start no new task of the run (and its child runs). WORKFLOW: pause the workflow's schedule; its "
         "firings are recorded as skipped",
         {{"--freeze", {}, {}, {}, false, "(RUN only) also stop the processes of running tasks until `resume`"}},
         cmdPause, {Values::WorkflowOrRun}},
        {"resume", "RUN|WORKFLOW", 1, 1, "one argument: RUN or WORKFLOW", Section::Daemon,
         "resume a paused run, or a workflow's schedule (the firings since the pause follow its catch-up rules)",
         {}, cmdResume, {Values::WorkflowOrRun}},
        {"cancel", "RUN", 1, 1, "one argument: RUN", Section::Daemon, "cancel a queued, running or paused run",
         {with(task, "cancel only task ID")}, cmdCancel, {Values::Run}},
        {"retry", "RUN", 1, 1, "one argument: RUN", Section::Daemon,
         "re-run the failed and cancelled tasks of a finished run as new attempts",
         {with(task, "re-run task ID only"),
          {"--downstream", {}, {}, {}, false, "also re-run the tasks below"}},
         cmdRetry, {Values::Run}},
        {"logs", "RUN TASK", 2, 2, "two arguments: RUN TASK", Section::Daemon,
         "a task's output (latest attempt by default)",
         {{"--attempt", {}, "N", "a number", false, "attempt N", Values::Text},
          with(follow, "then its further output as it comes, until the attempt ends")},
         cmdLogs, {Values::Run, Values::Text}},
        {"wait", "RUN", 1, 1, "one argument: RUN", Section::Daemon, "block until a run ends; exit 1 unless it succeeded",
         {}, cmdWait, {Values::Run}},
    };
}

} // namespace taskhub::ctl
