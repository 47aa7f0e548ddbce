// [[task]]: plugin tasks (plugin = "...", their parameters, env, retries, run_as) and workflow
// tasks (workflow = "...", params for the child), the templates and `when` conditions in them,
// the plugins' validation of parameters, and each task's account.
#include <algorithm>

#include "common/time_util.h"
#include "config/run_as.h"
#include "config/workflow_load.h"
#include "expr/condition.h"
#include "expr/shell_context.h"

namespace taskhub::config {

using namespace detail;

const char* toString(TaskOnFailure o) { return o == TaskOnFailure::Fail ? "fail" : "continue"; }

const char* toString(RunAsSource s) {
    switch (s) {
    case RunAsSource::None: return "none";
    case RunAsSource::Default: return "default_run_as";
    case RunAsSource::Workflow: return "workflow";
    case RunAsSource::Task: return "task";
    }
    return "?";
}

namespace detail {

namespace {

// The keys a workflow task (workflow = "x") accepts; it has no plugin parameters.
const std::set<std::string> kWorkflowTaskKeys = {
    "id", "workflow", "params", "depends_on", "retries", "retry_delay", "retry_backoff",
    "retry_max_delay", "timeout", "trigger_rule", "priority", "when", "on_failure", "foreach", "foreach_key",
    "max_parallel", "max_failures", "on_empty"};
// Keys the engine reserves for features of later versions; never passed to plugins.
const std::set<std::string> kTaskReservedKeys = {"outputs"};

bool isValidTaskId(const std::string& id) {
    return !id.empty() && id.size() <= 128 &&
           std::all_of(id.begin(), id.end(), [](char ch) {
               return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
           });
}

// Parses a string that may hold templates; records its references and whether it needs
// expanding. `where` prefixes the messages.
void checkTemplate(const std::string& text, size_t line, const std::string& where, TaskDef& task,
                   TaskExtra& extra, Reporter& r) {
    if (text.find("${") == std::string::npos) return;
    std::string err;
    const auto t = expr::Template::parse(text, &err);
    if (!t) {
        r.add(line, where + ": " + err);
        return;
    }
    if (!t->empty()) task.has_templates = true;
    for (const auto& ref : t->refs()) extra.refs.push_back({line, where, "${" + expr::toString(ref) + "}", ref});
}

// Every string inside a plugin parameter, at any depth.
void checkTemplates(const Value& v, const std::string& where, TaskDef& task, TaskExtra& extra,
                    Reporter& r) {
    if (v.is_string()) {
        checkTemplate(v.as_string().str, r.lineOf(v), where, task, extra, r);
    } else if (v.is_array()) {
        for (const auto& e : v.as_array()) checkTemplates(e, where, task, extra, r);
    } else if (v.is_table()) {
        for (const auto& [k, e] : v.as_table()) checkTemplates(e, where, task, extra, r);
    }
}

// The plugin's shell-text parameters (PluginCatalog::shellParams): each template must sit where
// the shell reads its value as one literal piece of data (expr/shell_context.h); such keys are
// recorded so that the engine escapes their values.
void checkShellParams(const Table& params, const std::string& label, const std::vector<std::string>& shell_params,
                      TaskDef& task, Reporter& r) {
    std::vector<std::string> templated;
    for (const auto& key : shell_params) {
        auto it = params.find(key);
        if (it == params.end() || !it->second.is_string()) continue;
        const std::string& text = it->second.as_string().str;
        if (text.find("${") == std::string::npos) continue;
        std::string ignored; // reported by checkTemplate()
        const auto t = expr::Template::parse(text, &ignored);
        if (!t) continue;
        const auto contexts = expr::shellContexts(*t);
        for (size_t i = 0; i < contexts.size(); ++i) {
            if (expr::isSafe(contexts[i])) continue;
            const expr::Ref& ref = t->refs()[i];
            r.add(it->second, label + ": '" + key + "': " +
                                  expr::refusal(contexts[i], "${" + expr::toString(ref) + "}",
                                                ref.kind == expr::Ref::Param ? "TASKHUB_PARAM_" + ref.name : ""));
        }
        templated.push_back(key);
    }
    task.shell_params = std::move(templated);
}

} // namespace

void loadTask(const Value& v, size_t index, Workflow& wf, std::vector<TaskExtra>& extras,
              const PluginCatalog& plugins, SharedPool<std::string>& names, std::vector<PendingValidation>& pending,
              const WorkflowLimits& limits, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[[task]] entries must be tables, found " + typeName(v));
        return;
    }
    const auto& t = v.as_table();
    TaskDef task;
    TaskExtra extra;
    task.line = static_cast<uint32_t>(r.lineOf(v));
    std::vector<std::pair<std::string, std::string>> child_params, env;
    std::vector<int> exit_codes;
    const size_t before = r.problems().size();

    auto idIt = t.find("id");
    if (idIt == t.end()) {
        r.add(v, "task #" + std::to_string(index + 1) + " has no 'id' (add id = \"name\")");
    } else if (auto id = getString(idIt->second, "'id'", r)) {
        if (!isValidTaskId(*id)) {
            r.add(idIt->second, "task id \"" + *id +
                                    "\" is invalid: use 1-128 letters, digits, '_' or '-'");
        }
        task.id = *id;
    }
    const std::string label = task.id.empty() ? "task #" + std::to_string(index + 1)
                                              : "task '" + task.id + "'";
    const bool workflowTask = t.count("workflow") != 0;
    const bool pluginTask = t.count("plugin") != 0;
    std::string childName; // for messages about a workflow task's keys
    if (workflowTask && t.at("workflow").is_string()) childName = t.at("workflow").as_string().str;

    Table params;
    FanOutDef fan;
    for (const auto& [key, kv] : t) {
        const std::string what = label + ": '" + key + "'";
        if (key == "id") {
            continue;
        } else if (isFanOutKey(key)) {
            loadFanOutKey(key, kv, label, fan, extra, limits, r);
        } else if (key == "plugin") {
            if (auto p = getString(kv, what, r)) task.plugin = names.get(*p);
        } else if (key == "workflow") {
            extra.workflow_line = r.lineOf(kv);
            auto name = getString(kv, what, r);
            if (!name) continue;
            if (!isValidWorkflowName(*name)) {
                r.add(kv, what + " must name a workflow (its file name without .toml: letters, digits, '_', "
                                 "'-' or '.', not starting with '.'), found \"" + *name + "\"");
            } else if (*name == wf.name) {
                r.add(kv, label + ": workflow reference cycle: " + wf.name + " -> " + wf.name +
                              " (a workflow cannot run itself, directly or through other workflows)");
            }
            task.workflow = names.get(*name);
        } else if (key == "params") {
            if (!workflowTask) {
                r.add(kv, what + " is only for workflow tasks (with workflow = \"...\"); a plugin task's "
                                 "parameters are keys of the task itself");
                continue;
            }
            if (!kv.is_table()) {
                r.add(kv, what + " must be a table of the child workflow's params, e.g. params = { date = "
                                 "\"${params.date}\" }, found " + typeName(kv));
                continue;
            }
            for (const auto& [name, pv] : inFileOrder(kv.as_table())) {
                const std::string pwhat = label + ": 'params." + name + "'";
                extra.child_param_lines[name] = r.lineOf(*pv);
                auto text = getScalarText(*pv, pwhat, r);
                if (!text) continue;
                checkTemplate(*text, r.lineOf(*pv), pwhat, task, extra, r);
                child_params.emplace_back(name, *text);
            }
        } else if (key == "depends_on") {
            if (auto a = getStringArray(kv, what, r)) extra.depends_on = std::move(*a);
        } else if (key == "retries") {
            if (auto n = getInt(kv, what, r, 0, 100)) task.retries = static_cast<int>(*n);
        } else if (key == "retry_delay") {
            if (auto d = getDuration(kv, what, r)) task.retry_delay = *d;
        } else if (key == "retry_backoff") {
            if (auto x = getNumber(kv, what, r, 1.0, 100.0)) task.retry_backoff = *x;
        } else if (key == "retry_max_delay") {
            if (auto d = getDuration(kv, what, r)) task.retry_max_delay = *d;
        } else if (key == "retry_on_exit_codes") {
            if (workflowTask) {
                r.add(kv, what + " applies to plugin tasks only (a workflow task has no exit code; it "
                                 "fails when its child run fails)");
                continue;
            }
            if (!kv.is_array()) {
                r.add(kv, what + " must be an array of integers 0-255, e.g. [75, 111], found " + typeName(kv));
                continue;
            }
            for (const auto& e : kv.as_array()) {
                if (auto n = getInt(e, label + ": 'retry_on_exit_codes' entries", r, 0, 255))
                    exit_codes.push_back(static_cast<int>(*n));
            }
        } else if (key == "timeout") {
            if (auto d = getDuration(kv, what, r)) task.timeout = *d;
        } else if (key == "env") {
            if (workflowTask) {
                r.add(kv, what + " applies to plugin tasks only (pass values to the child workflow with "
                                 "params = { NAME = \"value\" })");
                continue;
            }
            if (!kv.is_table()) {
                r.add(kv, what + " must be a table of strings, found " + typeName(kv));
                continue;
            }
            for (const auto& [name, ev] : kv.as_table()) {
                const std::string ewhat = label + ": 'env." + name + "'";
                if (auto s = getString(ev, ewhat, r)) {
                    checkTemplate(*s, r.lineOf(ev), ewhat, task, extra, r);
                    env.emplace_back(name, *s);
                }
            }
        } else if (key == "trigger_rule") {
            if (auto rule = getChoice<TriggerRule>(kv, what, r)) task.trigger_rule = *rule;
        } else if (key == "priority") {
            if (auto n = getInt(kv, what, r, -1'000'000, 1'000'000)) task.priority = static_cast<int>(*n);
        } else if (key == "on_failure") {
            if (auto o = getChoice<TaskOnFailure>(
                    kv, what, {{"fail", TaskOnFailure::Fail}, {"continue", TaskOnFailure::Continue}}, r))
                task.on_failure = *o;
        } else if (key == "at_most_once") {
            if (workflowTask) {
                r.add(kv, what + " applies to plugin tasks only (a workflow task's child run continues after a "
                                 "restart; set at_most_once on the tasks of workflow '" + childName + "')");
                continue;
            }
            if (!kv.is_boolean()) {
                r.add(kv, what + " must be true or false, found " + typeName(kv));
                continue;
            }
            task.at_most_once = kv.as_boolean();
        } else if (key == "log_to_journal") {
            if (workflowTask) {
                r.add(kv, what + " applies to plugin tasks only (a workflow task prints nothing; set log_to_journal "
                                 "in workflow '" + childName + "')");
                continue;
            }
            if (!kv.is_boolean()) {
                r.add(kv, what + " must be true or false, found " + typeName(kv));
                continue;
            }
            task.log_to_journal = kv.as_boolean();
        } else if (key == "when") {
            auto text = getString(kv, what, r);
            if (!text) continue;
            std::string err;
            const auto parsed = expr::Condition::parse(*text, &err);
            if (!parsed) {
                r.add(kv, what + ": " + err);
                continue;
            }
            for (const auto& ref : parsed->refs())
                extra.refs.push_back({r.lineOf(kv), what, expr::toString(ref), ref});
            task.when = std::move(*text);
        } else if (key == "run_as") {
            if (workflowTask) {
                r.add(kv, what + " applies to plugin tasks only (a workflow task runs no process; the tasks "
                                 "of workflow '" + childName + "' run as that workflow's own run_as)");
                continue;
            }
            auto text = getString(kv, what, r);
            if (!text) continue;
            if (std::string why; !accountUsable(*text, &why)) {
                r.add(kv, what + ": " + why + " (run_as names an existing account: \"user\" or "
                                 "\"user:group\")");
                continue;
            }
            task.run_as = std::move(*text);
            task.run_as_source = RunAsSource::Task;
            extra.run_as_line = r.lineOf(kv);
        } else if (isResourceKey(key)) {
            if (workflowTask) {
                r.add(kv, what + " applies to plugin tasks only (a workflow task runs no process; set " + key +
                                 " in workflow '" + childName + "' or on its tasks)");
                continue;
            }
            loadResourceKey(key, kv, what, extra.resources, r);
        } else if (kTaskReservedKeys.count(key)) {
            r.add(kv, label + ": '" + key +
                          "' is reserved for the engine and not supported by this version of taskhubd");
        } else if (workflowTask) {
            r.add(kv, what + " is not accepted on a workflow task, which runs workflow '" + childName +
                          "' and has no plugin parameters" + didYouMean(key, kWorkflowTaskKeys) +
                          " (accepted: " + joinKeys(kWorkflowTaskKeys) + ")");
        } else {
            checkTemplates(kv, what, task, extra, r);
            params.emplace(key, kv);
        }
    }
    if (workflowTask && pluginTask) {
        r.add(v, label + " has both 'plugin' and 'workflow' (a task runs either a plugin or another workflow; "
                         "keep one)");
    } else if (!workflowTask && !pluginTask) {
        r.add(v, label + " has no 'plugin' or 'workflow' (e.g. plugin = \"shell\", or workflow = \"other-name\" "
                         "to run another workflow)");
    }
    if (task.retry_max_delay.count() > 0 && task.retry_max_delay < task.retry_delay) {
        r.add(t.at("retry_max_delay"), label + ": 'retry_max_delay' (" + formatDuration(task.retry_max_delay) +
                                           ") must not be shorter than 'retry_delay' (" +
                                           formatDuration(task.retry_delay) + "), or \"0s\" for no cap");
    }
    finishFanOut(t, label, std::move(fan), task, r);
    task.params_json = toJson(params);
    task.params_json.shrink_to_fit();
    task.child_params = std::move(child_params);
    task.env = std::move(env);
    task.retry_on_exit_codes = std::move(exit_codes);

    if (!task.plugin.empty() && !workflowTask) {
        auto pluginLine = r.lineOf(t.at("plugin"));
        if (auto why = plugins.unavailable(task.plugin)) {
            r.add(pluginLine, label + ": " + *why);
        } else if (checkShellParams(params, label, plugins.shellParams(task.plugin), task, r);
                   r.problems().size() == before) {
            pending.push_back({&t, wf.tasks.size(), label});
        }
    }
    wf.tasks.push_back(std::move(task));
    extras.push_back(std::move(extra));
}

// Settles each plugin task's account: its own run_as, else the workflow's, else default_run_as
// when its plugin honours run_as. An explicit run_as (task or workflow) on a task whose plugin
// cannot honour it is refused: the task would silently run as root.
void applyRunAs(Workflow& wf, size_t wf_line, const std::vector<TaskExtra>& extras,
                const WorkflowDefaults& defaults, const PluginCatalog& plugins, Reporter& r) {
    // One copy of each account for all the tasks that inherit it.
    const SharedText workflow_account(wf.run_as), default_account(defaults.default_run_as);
    for (size_t i = 0; i < wf.tasks.size() && i < extras.size(); ++i) {
        TaskDef& task = wf.tasks[i];
        if (task.plugin.empty() || !task.workflow.empty() || plugins.unavailable(task.plugin)) continue;
        const auto unsupported = plugins.runAsUnsupported(task.plugin);
        const std::string label = "task '" + task.id + "'";
        if (task.run_as_source == RunAsSource::Task) {
            if (unsupported)
                r.add(extras[i].run_as_line, label + ": 'run_as' cannot be honoured: " + *unsupported);
        } else if (!wf.run_as.empty()) {
            if (unsupported) {
                r.add(wf_line, "'run_as' cannot be honoured for " + label + " (plugin " + task.plugin + "): " +
                                   *unsupported);
                continue;
            }
            task.run_as = workflow_account;
            task.run_as_source = RunAsSource::Workflow;
        } else if (!defaults.default_run_as.empty() && !unsupported) {
            task.run_as = default_account;
            task.run_as_source = RunAsSource::Default;
        }
    }
}

// A file-drop trigger whose directory users other than root can write, in a workflow with tasks
// that run as root: those users choose the files root's tasks work on. A warning, not an error:
// the tasks may be written for it (docs/workflow-format.md, "run_as").
void warnRootWatch(Workflow& wf) {
    if (std::none_of(wf.triggers.begin(), wf.triggers.end(),
                     [](const TriggerDef& t) { return t.kind == TriggerDef::Kind::File; })) {
        return;
    }
    std::map<std::string, bool> is_root; // by account text: one lookup each
    std::vector<std::string> root_tasks;
    for (const auto& t : wf.tasks) {
        if (!t.workflow.empty()) continue;
        if (!t.run_as.empty()) {
            auto it = is_root.find(t.run_as);
            if (it == is_root.end()) it = is_root.emplace(t.run_as, isRootAccount(t.run_as)).first;
            if (!it->second) continue;
        }
        root_tasks.push_back(t.id);
    }
    if (root_tasks.empty()) return;
    std::string names;
    for (size_t i = 0; i < root_tasks.size() && i < 5; ++i) names += (i ? ", " : "") + root_tasks[i];
    if (root_tasks.size() > 5) names += " and " + std::to_string(root_tasks.size() - 5) + " more";
    for (const auto& trig : wf.triggers) {
        if (trig.kind != TriggerDef::Kind::File) continue;
        std::string why;
        if (onlyRootWrites(trig.watch, &why)) continue;
        wf.warnings.push_back({wf.file.string(), trig.line,
                               "watch " + trig.watch.string() + ": " + why +
                                   ", so users other than root choose the files that task(s) " + names +
                                   " handle as root; set run_as = \"user\" on the workflow or those tasks, or "
                                   "let only root write there"});
    }
}

// Asks the plugins about every pending task's parameters in one batch and reports each refusal
// at the line of the parameter the plugin names (else the task's).
void validatePending(const std::vector<PendingValidation>& pending, const Workflow& wf, const PluginCatalog& plugins,
                     Reporter& r) {
    if (pending.empty()) return;
    std::vector<PluginCatalog::ValidateCall> calls;
    calls.reserve(pending.size());
    for (const auto& p : pending) calls.push_back({&wf.tasks[p.task].plugin.get(), &wf.tasks[p.task].params_json});
    auto answers = plugins.validateAll(calls);
    for (size_t i = 0; i < pending.size() && i < answers.size(); ++i) {
        if (!answers[i]) continue;
        const auto& problem = *answers[i];
        const auto& task = wf.tasks[pending[i].task];
        size_t line = task.line;
        std::string where;
        if (!problem.key.empty()) {
            auto it = pending[i].table->find(problem.key);
            if (it != pending[i].table->end()) line = r.lineOf(it->second);
            where = " '" + problem.key + "'";
        }
        r.add(line, pending[i].label + ": plugin " + task.plugin + " rejects parameter" + where + ": " + problem.message);
    }
}

} // namespace detail

} // namespace taskhub::config
