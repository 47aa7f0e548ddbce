#include "config/workflow.h"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/time_util.h"
#include "config/run_as.h"
#include "config/toml_support.h"
#include "config/workflow_checks.h"
#include "expr/condition.h"
#include "expr/shell_context.h"
#include "expr/template.h"

namespace taskhub::config {

using namespace detail;
namespace fs = std::filesystem;

const char* toString(Overlap o) {
    switch (o) {
    case Overlap::Skip: return "skip";
    case Overlap::QueueOne: return "queue_one";
    case Overlap::QueueAll: return "queue_all";
    case Overlap::Replace: return "replace";
    case Overlap::Allow: return "allow";
    }
    return "?";
}

const char* toString(OnFailure o) { return o == OnFailure::FailFast ? "fail_fast" : "continue"; }

const char* toString(RunAsSource s) {
    switch (s) {
    case RunAsSource::None: return "none";
    case RunAsSource::Default: return "default_run_as";
    case RunAsSource::Workflow: return "workflow";
    case RunAsSource::Task: return "task";
    }
    return "?";
}

const char* toString(Catchup c) {
    switch (c) {
    case Catchup::None: return "none";
    case Catchup::Latest: return "latest";
    case Catchup::All: return "all";
    }
    return "?";
}

const char* toString(TriggerDef::Kind k) {
    switch (k) {
    case TriggerDef::Kind::Cron: return "cron";
    case TriggerDef::Kind::Reboot: return "reboot";
    case TriggerDef::Kind::Every: return "every";
    case TriggerDef::Kind::At: return "at";
    case TriggerDef::Kind::File: return "file";
    }
    return "?";
}

std::string TriggerDef::describe() const {
    std::string out;
    switch (kind) {
    case Kind::Cron:
    case Kind::Reboot: out = "cron \"" + cron_text + "\""; break;
    case Kind::Every:
        out = "every " + formatDuration(every);
        if (start_at) out += " from " + formatIsoSeconds(*start_at);
        break;
    case Kind::At: out = "at " + formatIsoSeconds(at); break;
    case Kind::File:
        out = "watch " + watch.string() + " pattern " + pattern;
        if (recursive) out += " recursive";
        if (settle.count() > 0) out += " settle " + formatDuration(settle);
        if (after == After::Delete) out += " after delete";
        if (after == After::Move) out += " after move:" + after_dir.string();
        break;
    }
    if (jitter.count() > 0) out += " jitter " + formatDuration(jitter);
    return out;
}

bool isValidWorkflowName(const std::string& name) {
    if (name.empty() || name[0] == '.' || name.size() > 128) return false;
    return std::all_of(name.begin(), name.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
    });
}

bool isWorkflowFileName(const std::string& file_name) {
    return file_name.size() > 5 && file_name[0] != '.' && file_name.compare(file_name.size() - 5, 5, ".toml") == 0;
}

namespace {

const std::set<std::string> kWorkflowKeys = {"description", "timezone", "dst_gap", "dst_fold", "trigger",
                                             "policy", "params", "max_parallel_tasks", "task",
                                             "keep_runs", "keep_days", "run_as"};
const std::set<std::string> kTriggerKeys = {"cron",    "every",     "at",     "start_at", "jitter",
                                            "watch",   "pattern",   "recursive", "settle", "after"};
// The keys that only a file-drop (watch) trigger takes.
const std::set<std::string> kFileTriggerKeys = {"pattern", "recursive", "settle", "after"};
const std::set<std::string> kPolicyKeys = {"overlap", "max_active_runs", "catchup", "catchup_window",
                                           "on_failure", "timeout"};
// The keys a workflow task (workflow = "x") accepts; it has no plugin parameters.
const std::set<std::string> kWorkflowTaskKeys = {
    "id", "workflow", "params", "depends_on", "retries", "retry_delay", "retry_backoff",
    "retry_max_delay", "timeout", "trigger_rule", "priority", "when"};
// Keys the engine reserves for features of later versions; never passed to plugins.
const std::set<std::string> kTaskReservedKeys = {"outputs"};

// A reference to a param, an output or a task state, where it was written.
struct RefUse {
    size_t line = 0;
    std::string where; // "task 'b': 'command'", the message prefix
    std::string shown; // as written: "${params.x}" in a template, "params.x" in a condition
    expr::Ref ref;
};

// What the checks after loading a file need to know about a task beyond its TaskDef.
struct TaskExtra {
    size_t workflow_line = 0;                      // of the `workflow` key
    size_t run_as_line = 0;                        // of the task's own `run_as` key
    std::map<std::string, size_t> child_param_lines; // key of `params` -> its line
    std::vector<RefUse> refs;
};

// The outcome of loading one file, with what the cross-file checks need.
struct FileLoad {
    fs::path file;
    std::string name;
    std::shared_ptr<Workflow> workflow; // null when the file has problems
    std::vector<Diagnostic> problems;
    std::vector<TaskExtra> tasks;       // parallel to workflow->tasks
};

bool isValidTaskId(const std::string& id) {
    return !id.empty() && id.size() <= 128 &&
           std::all_of(id.begin(), id.end(), [](char ch) {
               return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
           });
}

std::string contentHash(const std::string& text) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a
    for (unsigned char ch : text) {
        h ^= ch;
        h *= 1099511628211ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

template <class Enum>
std::optional<Enum> getChoice(const Value& v, const std::string& what,
                              const std::vector<std::pair<const char*, Enum>>& choices,
                              Reporter& r) {
    auto s = getString(v, what, r);
    if (!s) return std::nullopt;
    std::string allowed;
    for (const auto& [name, e] : choices) {
        if (*s == name) return e;
        allowed += (allowed.empty() ? "" : " | ") + std::string(name);
    }
    r.add(v, what + " must be " + allowed + ", found \"" + *s + "\"");
    return std::nullopt;
}

// The same for an enum with a name table (model/names.h): one of its names.
template <class Enum>
std::optional<Enum> getChoice(const Value& v, const std::string& what, Reporter& r) {
    auto s = getString(v, what, r);
    if (!s) return std::nullopt;
    if (auto e = model::parse<Enum>(*s)) return e;
    std::string allowed;
    for (const auto& [e, name] : model::NameTable<Enum>::entries) {
        allowed += (allowed.empty() ? "" : " | ") + std::string(name);
    }
    r.add(v, what + " must be " + allowed + ", found \"" + *s + "\"");
    return std::nullopt;
}

// An instant: a string with an offset, or a TOML offset date-time.
std::optional<std::chrono::sys_seconds> getInstant(const Value& v, const std::string& what, Reporter& r) {
    if (v.is_offset_datetime()) {
        const auto tp = static_cast<std::chrono::system_clock::time_point>(v.as_offset_datetime());
        return std::chrono::floor<std::chrono::seconds>(tp);
    }
    if (v.is_local_datetime()) {
        r.add(v, what + " needs an offset, e.g. 2026-12-24T18:00:00+01:00 or 2026-12-24T17:00:00Z");
        return std::nullopt;
    }
    auto text = getString(v, what, r);
    if (!text) return std::nullopt;
    std::string err;
    auto t = parseIsoInstant(*text, &err);
    if (!t) r.add(v, what + ": " + err);
    return t;
}

// A duration in whole seconds, at least `min`.
std::optional<std::chrono::seconds> getSeconds(const Value& v, const std::string& what, std::chrono::seconds min,
                                               Reporter& r) {
    auto d = getDuration(v, what, r);
    if (!d) return std::nullopt;
    if (d->count() % 1000 != 0 || *d < min) {
        r.add(v, what + " must be whole seconds, at least " + formatDuration(min) + ", found \"" +
                     v.as_string().str + "\"");
        return std::nullopt;
    }
    return std::chrono::duration_cast<std::chrono::seconds>(*d);
}

// FNV-1a, 64 bits: a documented hash, the same on every machine and in every version (jitter
// offsets must not move when taskhubd is upgraded).
uint64_t stableHash(std::string_view text) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

// watch = "/srv/incoming": an absolute path, kept lexically normal without a trailing '/'.
bool loadWatchDir(const Value& v, TriggerDef& def, Reporter& r) {
    auto text = getString(v, "'watch'", r);
    if (!text) return false;
    const fs::path p(*text);
    if (text->empty() || !p.is_absolute()) {
        r.add(v, "'watch' must be the absolute path of a directory, e.g. \"/srv/incoming\", found \"" + *text + "\"");
        return false;
    }
    def.kind = TriggerDef::Kind::File;
    def.watch = p.lexically_normal();
    if (def.watch.has_parent_path() && !def.watch.has_filename()) def.watch = def.watch.parent_path();
    return true;
}

// One of pattern, recursive, settle, after of a file-drop trigger.
bool loadFileTriggerKey(const std::string& key, const Value& v, TriggerDef& def, Reporter& r) {
    if (key == "pattern") {
        auto text = getString(v, "'pattern'", r);
        if (!text) return false;
        if (text->empty() || text->find('/') != std::string::npos) {
            r.add(v, "'pattern' is a glob on the file name (e.g. \"*.csv\"), not empty and without '/', found \"" +
                         *text + "\"");
            return false;
        }
        def.pattern = *text;
    } else if (key == "recursive") {
        if (!v.is_boolean()) {
            r.add(v, "'recursive' must be true or false, found " + typeName(v));
            return false;
        }
        def.recursive = v.as_boolean();
    } else if (key == "settle") {
        auto d = getDuration(v, "'settle'", r);
        if (!d) return false;
        def.settle = *d;
    } else { // after
        auto text = getString(v, "'after'", r);
        if (!text) return false;
        if (*text == "keep") {
            def.after = TriggerDef::After::Keep;
        } else if (*text == "delete") {
            def.after = TriggerDef::After::Delete;
        } else if (text->rfind("move:", 0) == 0 && fs::path(text->substr(5)).is_absolute()) {
            def.after = TriggerDef::After::Move;
            def.after_dir = fs::path(text->substr(5)).lexically_normal();
            if (!def.after_dir.has_filename()) def.after_dir = def.after_dir.parent_path();
        } else {
            r.add(v, "'after' must be \"keep\", \"delete\" or \"move:/absolute/dir\", found \"" + *text + "\"");
            return false;
        }
    }
    return true;
}

// A file moved after its run must not land where it would fire again.
bool checkAfterTarget(const Value& v, const TriggerDef& def, Reporter& r) {
    if (def.after != TriggerDef::After::Move) return true;
    const auto rel = def.after_dir.lexically_relative(def.watch);
    const bool inside = !rel.empty() && *rel.begin() != "..";
    if (def.after_dir == def.watch || (def.recursive && inside)) {
        r.add(v, "'after' moves files to " + def.after_dir.string() + ", which is watched by this trigger (" +
                     def.watch.string() + (def.recursive ? ", recursive" : "") +
                     "): the moved file would fire again; move them to a directory outside it");
        return false;
    }
    return true;
}

void loadTrigger(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[[trigger]] entries must be tables, found " + typeName(v));
        return;
    }
    const auto& table = v.as_table();
    TriggerDef def;
    def.line = r.lineOf(v);
    std::vector<std::string> kinds; // the kind keys present, in file order
    bool ok = true;
    const Value* start_at = nullptr;
    const Value* jitter = nullptr;
    std::vector<std::pair<std::string, const Value*>> file_keys; // pattern, recursive, settle, after
    for (const auto& [key, kv] : table) {
        if (key == "cron") {
            kinds.push_back(key);
            auto text = getString(kv, "'cron'", r);
            if (!text) {
                ok = false;
                continue;
            }
            def.line = r.lineOf(kv);
            def.cron_text = *text;
            std::string err;
            auto expr = cron::CronExpr::parse(*text, &err, wf.name); // H fields hash the workflow name
            if (!expr) {
                r.add(kv, "cron \"" + *text + "\": " + err);
                ok = false;
                continue;
            }
            def.kind = expr->isReboot() ? TriggerDef::Kind::Reboot : TriggerDef::Kind::Cron;
            def.cron = std::move(*expr);
        } else if (key == "every") {
            kinds.push_back(key);
            def.line = r.lineOf(kv);
            auto d = getSeconds(kv, "'every'", std::chrono::seconds(1), r);
            if (!d) {
                ok = false;
                continue;
            }
            def.kind = TriggerDef::Kind::Every;
            def.every = *d;
        } else if (key == "at") {
            kinds.push_back(key);
            def.line = r.lineOf(kv);
            auto t = getInstant(kv, "'at'", r);
            if (!t) {
                ok = false;
                continue;
            }
            def.kind = TriggerDef::Kind::At;
            def.at = *t;
        } else if (key == "start_at") {
            start_at = &kv;
        } else if (key == "jitter") {
            jitter = &kv;
        } else if (key == "watch") {
            kinds.push_back(key);
            def.line = r.lineOf(kv);
            if (!loadWatchDir(kv, def, r)) ok = false;
        } else if (kFileTriggerKeys.count(key)) {
            file_keys.emplace_back(key, &kv);
        } else {
            r.add(kv, "unknown trigger key '" + key + "'" + didYouMean(key, kTriggerKeys) + " (accepted: " +
                          joinKeys(kTriggerKeys) + ")");
            ok = false;
        }
    }
    if (kinds.empty()) {
        r.add(v, "[[trigger]] needs one of cron, every, at or watch, e.g. cron = \"30 2 * * *\", every = \"90s\", "
                 "at = \"2026-12-24T18:00:00+01:00\" or watch = \"/srv/incoming\"");
        return;
    }
    if (kinds.size() > 1) {
        r.add(v, "[[trigger]] has both '" + kinds[0] + "' and '" + kinds[1] +
                     "': a trigger has exactly one of cron, every, at or watch (write one [[trigger]] for each)");
        return;
    }
    for (const auto& [key, kv] : file_keys) {
        if (kinds[0] != "watch") {
            r.add(*kv, "'" + key + "' only applies to file-drop triggers (watch = \"/dir\"); this one has '" +
                           kinds[0] + "'");
            ok = false;
        } else if (!loadFileTriggerKey(key, *kv, def, r)) {
            ok = false;
        }
    }
    if (kinds[0] == "watch" && ok) ok = checkAfterTarget(v, def, r);
    if (kinds[0] == "watch" && jitter) {
        r.add(*jitter, "'jitter' only applies to time triggers (cron, every, at); a file fires when it is complete");
        ok = false;
        jitter = nullptr;
    }
    if (start_at) {
        if (kinds[0] != "every") {
            r.add(*start_at, "'start_at' only applies to 'every' triggers (this one has '" + kinds[0] + "')");
            ok = false;
        } else if (auto t = getInstant(*start_at, "'start_at'", r)) {
            def.start_at = *t;
        } else {
            ok = false;
        }
    }
    if (jitter) {
        if (auto j = getSeconds(*jitter, "'jitter'", std::chrono::seconds(0), r)) {
            if (def.kind == TriggerDef::Kind::Every && *j >= def.every && def.every.count() > 0) {
                r.add(*jitter, "'jitter' (" + formatDuration(*j) + ") must be shorter than the interval 'every' (" +
                                   formatDuration(def.every) + ")");
                ok = false;
            }
            def.jitter = *j;
        } else {
            ok = false;
        }
    }
    if (!ok) return;
    if (def.jitter.count() > 0) {
        const std::string key = wf.name + "#" + std::to_string(wf.triggers.size());
        def.jitter_offset = std::chrono::seconds(
            static_cast<int64_t>(stableHash(key) % static_cast<uint64_t>(def.jitter.count() + 1)));
    }
    wf.triggers.push_back(std::move(def));
}

void loadPolicy(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[policy] must be a table, found " + typeName(v));
        return;
    }
    const Value* max_active = nullptr;
    for (const auto& [key, kv] : v.as_table()) {
        const std::string what = "'policy." + key + "'";
        if (key == "overlap") {
            if (auto o = getChoice<Overlap>(kv, what,
                                            {{"skip", Overlap::Skip},
                                             {"queue_one", Overlap::QueueOne},
                                             {"queue_all", Overlap::QueueAll},
                                             {"replace", Overlap::Replace},
                                             {"allow", Overlap::Allow}},
                                            r))
                wf.overlap = wf.file_overlap = *o;
        } else if (key == "on_failure") {
            if (auto o = getChoice<OnFailure>(
                    kv, what, {{"fail_fast", OnFailure::FailFast}, {"continue", OnFailure::Continue}}, r))
                wf.on_failure = *o;
        } else if (key == "timeout") {
            if (auto d = getDuration(kv, what, r)) wf.timeout = *d;
        } else if (key == "max_active_runs") {
            if (auto n = getInt(kv, what, r, 1, 1000000)) {
                wf.max_active_runs = static_cast<int>(*n);
                max_active = &kv;
            }
        } else if (key == "catchup") {
            if (auto c = getChoice<Catchup>(kv, what,
                                            {{"none", Catchup::None}, {"latest", Catchup::Latest}, {"all", Catchup::All}},
                                            r))
                wf.catchup = wf.file_catchup = *c;
        } else if (key == "catchup_window") {
            if (auto d = getSeconds(kv, what, std::chrono::seconds(1), r)) wf.catchup_window = *d;
        } else {
            r.add(kv, "unknown key '" + key + "' in [policy]" + didYouMean(key, kPolicyKeys) +
                          " (accepted: " + joinKeys(kPolicyKeys) + ")");
        }
    }
    if (max_active && wf.overlap != Overlap::Allow) {
        r.add(*max_active, "'policy.max_active_runs' only applies with overlap = \"allow\" (this workflow has "
                           "overlap = \"" + std::string(toString(wf.overlap)) + "\")");
    }
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
        task.shell_params.push_back(key);
    }
}

// A task whose parameters the plugin still has to validate(): asked for all tasks of a file at
// once (PluginCatalog::validateAll) once every task is read.
struct PendingValidation {
    const Table* table; // the task's table in the parsed file
    size_t task;        // index into Workflow::tasks
    std::string label;
};

void loadTask(const Value& v, size_t index, Workflow& wf, std::vector<TaskExtra>& extras,
              const PluginCatalog& plugins, std::vector<PendingValidation>& pending, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[[task]] entries must be tables, found " + typeName(v));
        return;
    }
    const auto& t = v.as_table();
    TaskDef task;
    TaskExtra extra;
    task.line = r.lineOf(v);
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
    for (const auto& [key, kv] : t) {
        const std::string what = label + ": '" + key + "'";
        if (key == "id") {
            continue;
        } else if (key == "plugin") {
            if (auto p = getString(kv, what, r)) task.plugin = *p;
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
            task.workflow = *name;
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
                task.child_params.emplace_back(name, *text);
            }
        } else if (key == "depends_on") {
            if (auto a = getStringArray(kv, what, r)) task.depends_on = *a;
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
                    task.retry_on_exit_codes.push_back(static_cast<int>(*n));
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
                    task.env.emplace_back(name, *s);
                }
            }
        } else if (key == "trigger_rule") {
            if (auto rule = getChoice<TriggerRule>(kv, what, r)) task.trigger_rule = *rule;
        } else if (key == "priority") {
            if (auto n = getInt(kv, what, r, -1'000'000, 1'000'000)) task.priority = static_cast<int>(*n);
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
            task.when = *text;
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
            task.run_as = *text;
            task.run_as_source = RunAsSource::Task;
            extra.run_as_line = r.lineOf(kv);
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
    task.params_json = toJson(params);

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
            task.run_as = wf.run_as;
            task.run_as_source = RunAsSource::Workflow;
        } else if (!defaults.default_run_as.empty() && !unsupported) {
            task.run_as = defaults.default_run_as;
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
    for (const auto& p : pending) calls.push_back({&wf.tasks[p.task].plugin, &wf.tasks[p.task].params_json});
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

// A workflow with a file-drop trigger: its runs carry kFileParams, declared here (default "") so
// that tasks may refer to them; the file may not declare them itself.
void addFileParams(const Value& root, Workflow& wf, Reporter& r) {
    if (std::none_of(wf.triggers.begin(), wf.triggers.end(),
                     [](const TriggerDef& t) { return t.kind == TriggerDef::Kind::File; })) {
        return;
    }
    const auto& table = root.as_table();
    auto params = table.find("params");
    for (const char* name : kFileParams) {
        auto it = std::find_if(wf.params.begin(), wf.params.end(), [&](const auto& p) { return p.first == name; });
        if (it == wf.params.end()) {
            wf.params.emplace_back(name, "");
            continue;
        }
        const auto& pv = params->second.as_table().at(name);
        r.add(pv, "param '" + std::string(name) +
                      "' is reserved in a workflow with a file-drop trigger (each run sets file, file_name and "
                      "file_size from the dropped file); rename it");
    }
}

void loadParams(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[params] must be a table of param names and defaults, e.g. region = \"eu\", found " +
                     typeName(v));
        return;
    }
    for (const auto& [name, pv] : inFileOrder(v.as_table())) {
        if (!expr::isValidName(name)) {
            r.add(*pv, "param name '" + name + "' is invalid: use letters, digits and '_', not starting with a "
                                               "digit (it is exported as TASKHUB_PARAM_" + name + ")");
            continue;
        }
        if (auto text = getScalarText(*pv, "'params." + name + "'", r)) wf.params.emplace_back(name, *text);
    }
}

// Checks every ${...} and `when` reference: params must be declared; tasks must exist and, when
// the graph is valid, be upstream of the task that refers to them.
void checkRefs(const Workflow& wf, const std::vector<TaskExtra>& extras, bool graph_ok, Reporter& r) {
    std::set<std::string> declared;
    for (const auto& [name, value] : wf.params) declared.insert(name);
    std::set<std::string> ids;
    for (const auto& t : wf.tasks) ids.insert(t.id);
    std::map<std::string, std::string> idHints; // unknown task name -> didYouMean() over ids

    // Whether a referenced task is upstream: a breadth-first walk up the dependencies of the
    // referring task that stops once it has met every task the task refers to, so a reference
    // to a near ancestor (the usual case) costs little even in a large graph. The marks are
    // stamped with the walk's number instead of being cleared for each task.
    const size_t nodes = graph_ok ? wf.graph.size() : 0;
    std::vector<uint32_t> wantedIn(nodes, 0), seenIn(nodes, 0);
    std::vector<uint32_t> queue;
    uint32_t walk = 0;

    for (size_t i = 0; i < wf.tasks.size() && i < extras.size(); ++i) {
        const TaskDef& task = wf.tasks[i];
        if (graph_ok) {
            size_t wanted = 0;
            for (const auto& use : extras[i].refs) {
                if (use.ref.kind == expr::Ref::Param || use.ref.task == task.id) continue;
                auto idx = wf.graph.index(use.ref.task);
                if (!idx) continue;
                if (wanted == 0) ++walk;
                if (wantedIn[*idx] != walk) {
                    wantedIn[*idx] = walk;
                    ++wanted;
                }
            }
            if (wanted > 0) {
                queue.assign(1, static_cast<uint32_t>(i));
                for (size_t head = 0; head < queue.size() && wanted > 0; ++head) {
                    for (uint32_t d : wf.graph.dependencies(queue[head])) {
                        if (seenIn[d] == walk) continue;
                        seenIn[d] = walk;
                        if (wantedIn[d] == walk && --wanted == 0) break;
                        queue.push_back(d);
                    }
                }
            }
        }
        for (const auto& use : extras[i].refs) {
            const std::string prefix = use.where + ": " + use.shown + ": ";
            if (use.ref.kind == expr::Ref::Param) {
                if (declared.count(use.ref.name)) continue;
                r.add(use.line, prefix + "no param '" + use.ref.name + "' is declared" +
                                    didYouMean(use.ref.name, declared) +
                                    (declared.empty() ? " (declare it with a default under [params], e.g. " +
                                                            use.ref.name + " = \"\")"
                                                      : " (declared: " + joinKeys(declared) + ")"));
                continue;
            }
            if (use.ref.task == task.id) {
                r.add(use.line, prefix + "a task cannot refer to its own outputs or state (only to tasks it "
                                         "depends on, directly or through others)");
            } else if (!ids.count(use.ref.task)) {
                // The suggestion compares with every id: once per unknown name, not per use.
                auto hint = idHints.find(use.ref.task);
                if (hint == idHints.end())
                    hint = idHints.emplace(use.ref.task, didYouMean(use.ref.task, ids)).first;
                r.add(use.line, prefix + "no task '" + use.ref.task + "' in this workflow" + hint->second);
            } else if (graph_ok) {
                auto idx = wf.graph.index(use.ref.task);
                if (idx && seenIn[*idx] != walk) {
                    r.add(use.line, prefix + "task '" + use.ref.task + "' is not upstream of '" + task.id +
                                        "' (add \"" + use.ref.task +
                                        "\" to depends_on, directly or through another task)");
                }
            }
        }
    }
}

// The size of what in reads, from where it is to its end; in is left where it was.
uint64_t streamSize(std::istream& in) {
    const auto here = in.tellg();
    in.seekg(0, std::ios::end);
    const auto end = in.tellg();
    in.seekg(here);
    return end > here ? static_cast<uint64_t>(end - here) : 0;
}

std::string fileTooLarge(uint64_t size, const WorkflowLimits& limits) {
    return "file refused: " + fileSizeProblem(size, limits);
}

FileLoad loadOne(const fs::path& file, const WorkflowDefaults& defaults, const PluginCatalog& plugins) {
    Reporter r(file);
    FileLoad out;
    out.file = file;
    out.name = file.stem().string();
    auto wf = std::make_shared<Workflow>();
    wf->name = out.name;
    wf->file = file;

    std::error_code ec;
    std::string text;
    if (defaults.read_file) {
        if (auto why = defaults.read_file(file, &text)) r.add(0, "file refused: " + *why);
    } else if (fs::exists(file, ec) && !fs::is_regular_file(file, ec)) {
        r.add(0, "file refused: " + file.string() + " is not a regular file");
    }
    if (!r.ok()) {
        out.problems = std::move(r.problems());
        return out;
    }
    if (!defaults.read_file) {
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            r.add(0, "cannot open file: " + std::string(std::strerror(errno)));
            out.problems = std::move(r.problems());
            return out;
        }
        // Bounded before it is read (and after, should it have grown meanwhile).
        if (auto size = streamSize(in); size > defaults.limits.max_file_size) {
            r.add(0, fileTooLarge(size, defaults.limits));
            out.problems = std::move(r.problems());
            return out;
        }
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    if (text.size() > defaults.limits.max_file_size) {
        r.add(0, fileTooLarge(text.size(), defaults.limits));
        out.problems = std::move(r.problems());
        return out;
    }
    wf->version = contentHash(text);

    if (!isValidWorkflowName(wf->name)) {
        r.add(0, "workflow name \"" + wf->name +
                     "\" (the file name without .toml) is invalid: use letters, digits, '_', '-' "
                     "or '.', not starting with '.'");
    }
    auto root = parseText(text, file, r);
    if (!root) {
        out.problems = std::move(r.problems());
        return out;
    }

    std::string zone = defaults.timezone;
    size_t zoneLine = 0;
    size_t runAsLine = 0;
    const Value* tasks = nullptr;
    for (const auto& [key, v] : root->as_table()) {
        if (key == "description") {
            if (auto s = getString(v, "'description'", r)) wf->description = *s;
        } else if (key == "timezone") {
            if (auto s = getString(v, "'timezone'", r)) {
                zone = *s;
                zoneLine = r.lineOf(v);
            }
        } else if (key == "dst_gap") {
            if (auto g = getChoice<cron::DstPolicy::Gap>(
                    v, "'dst_gap'",
                    {{"run_after", cron::DstPolicy::Gap::RunAfter}, {"skip", cron::DstPolicy::Gap::Skip}}, r))
                wf->dst.gap = *g;
        } else if (key == "dst_fold") {
            if (auto f = getChoice<cron::DstPolicy::Fold>(v, "'dst_fold'",
                                                         {{"first", cron::DstPolicy::Fold::First},
                                                          {"second", cron::DstPolicy::Fold::Second},
                                                          {"both", cron::DstPolicy::Fold::Both}},
                                                         r))
                wf->dst.fold = *f;
        } else if (key == "trigger") {
            if (!v.is_array()) {
                r.add(v, "'trigger' must be an array of tables ([[trigger]]), found " + typeName(v));
                continue;
            }
            for (const auto& t : v.as_array()) loadTrigger(t, *wf, r);
        } else if (key == "policy") {
            loadPolicy(v, *wf, r);
        } else if (key == "params") {
            loadParams(v, *wf, r);
        } else if (key == "max_parallel_tasks") {
            if (auto n = getInt(v, "'max_parallel_tasks'", r, 0, 1'000'000)) wf->max_parallel_tasks = static_cast<int>(*n);
        } else if (key == "keep_runs") {
            if (auto n = getInt(v, "'keep_runs'", r, 1, 100'000'000)) wf->keep_runs = static_cast<int>(*n);
        } else if (key == "keep_days") {
            if (auto n = getInt(v, "'keep_days'", r, 1, 100'000)) wf->keep_days = static_cast<int>(*n);
        } else if (key == "run_as") {
            if (auto s = getString(v, "'run_as'", r)) {
                if (std::string why; !accountUsable(*s, &why)) {
                    r.add(v, "'run_as': " + why + " (run_as names an existing account: \"user\" or "
                             "\"user:group\")");
                } else {
                    wf->run_as = *s;
                    runAsLine = r.lineOf(v);
                }
            }
        } else if (key == "task") {
            tasks = &v;
        } else {
            r.add(v, "unknown key '" + key + "'" + didYouMean(key, kWorkflowKeys) +
                         " (accepted: " + joinKeys(kWorkflowKeys) + ")");
        }
    }

    addFileParams(*root, *wf, r);

    try {
        wf->zone = zone.empty() ? date::current_zone() : date::locate_zone(zone);
        wf->timezone = std::string(wf->zone->name());
    } catch (const std::exception&) {
        r.add(zoneLine, "unknown time zone \"" + zone +
                            "\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")");
    }

    if (tasks == nullptr) {
        r.add(0, "workflow has no tasks (add at least one [[task]] with id and plugin)");
    } else if (!tasks->is_array()) {
        r.add(*tasks, "'task' must be an array of tables ([[task]]), found " + typeName(*tasks));
    } else if (tasks->as_array().size() > std::min(defaults.limits.max_tasks, kMaxTasksPerWorkflow)) {
        r.add(*tasks, "workflow has " + std::to_string(tasks->as_array().size()) + " tasks; at most " +
                          std::to_string(std::min(defaults.limits.max_tasks, kMaxTasksPerWorkflow)) +
                          " are allowed (taskhub.toml max_workflow_tasks): split it into nested workflows, or "
                          "raise the limit (up to " + std::to_string(kMaxTasksPerWorkflow) + ")");
    } else {
        size_t i = 0;
        std::vector<PendingValidation> pending;
        for (const auto& t : tasks->as_array()) loadTask(t, i++, *wf, out.tasks, plugins, pending, r);
        validatePending(pending, *wf, plugins, r);
        applyRunAs(*wf, runAsLine, out.tasks, defaults, plugins, r);
        warnRootWatch(*wf);
    }

    bool graph_ok = false;
    if (r.ok()) {
        std::vector<dag::NodeSpec> specs;
        specs.reserve(wf->tasks.size());
        for (const auto& t : wf->tasks) specs.push_back({t.id, t.depends_on});
        for (const auto& p : dag::validate(specs)) {
            const auto& t = tasks->as_array()[p.node].as_table();
            auto it = t.find(p.key);
            r.add(it != t.end() ? r.lineOf(it->second) : wf->tasks[p.node].line, p.message);
        }
        if (r.ok()) {
            wf->graph = dag::Graph(specs);
            graph_ok = true;
        }
    }
    checkRefs(*wf, out.tasks, graph_ok, r);

    out.problems = r.sorted();
    if (out.problems.empty()) out.workflow = std::move(wf);
    return out;
}

std::string joinNames(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : " -> ") + n;
    return out;
}

// The cross-file checks of workflow tasks (see loadWorkflowDir()). Adds problems to the files at
// fault and drops their workflows. dir is where a missing workflow's file was expected.
// all_names: the names suggestions are taken from (default: those of files).
void checkWorkflowRefs(std::vector<FileLoad>& files, const fs::path& dir,
                       const std::set<std::string>* all_names = nullptr) {
    std::map<std::string, size_t> byName; // a later file of the same name wins
    for (size_t i = 0; i < files.size(); ++i) byName[files[i].name] = i;
    std::set<std::string> own_names;
    if (!all_names) {
        for (const auto& f : files) {
            if (isValidWorkflowName(f.name)) own_names.insert(f.name);
        }
    }
    const std::set<std::string>& names = all_names ? *all_names : own_names;

    std::vector<std::vector<Diagnostic>> found(files.size());
    std::vector<std::set<size_t>> reported(files.size()); // task indexes with a problem already
    auto add = [&](size_t file, size_t task, size_t line, std::string message) {
        found[file].push_back({files[file].file.string(), line, std::move(message)});
        reported[file].insert(task);
    };
    auto label = [](const TaskDef& t) { return "task '" + t.id + "'"; };

    // Each workflow task's child, as an index into files (or none).
    std::vector<std::vector<std::optional<size_t>>> child(files.size());
    // The params each file declares, built when first needed.
    std::vector<std::optional<std::set<std::string>>> declaredOf(files.size());
    for (size_t i = 0; i < files.size(); ++i) {
        if (!files[i].workflow) continue;
        const auto& tasks = files[i].workflow->tasks;
        child[i].resize(tasks.size());
        for (size_t k = 0; k < tasks.size(); ++k) {
            const TaskDef& t = tasks[k];
            if (t.workflow.empty()) continue;
            const TaskExtra& extra = files[i].tasks[k];
            auto it = byName.find(t.workflow);
            if (it == byName.end()) {
                add(i, k, extra.workflow_line,
                    label(t) + ": no workflow named '" + t.workflow + "'" + didYouMean(t.workflow, names) +
                        " (expected the file " + (dir / (t.workflow + ".toml")).string() + ")");
                continue;
            }
            child[i][k] = it->second;
            const auto& target = files[it->second].workflow;
            if (!target) continue;
            auto& declared = declaredOf[it->second];
            if (!declared) {
                declared.emplace();
                for (const auto& [name, value] : target->params) declared->insert(name);
            }
            for (const auto& [name, value] : t.child_params) {
                if (declared->count(name)) continue;
                add(i, k, extra.child_param_lines.at(name),
                    label(t) + ": 'params." + name + "': workflow '" + t.workflow + "' declares no param '" +
                        name + "'" + didYouMean(name, *declared) +
                        (declared->empty() ? " (it declares no params)"
                                           : " (declared: " + joinKeys(*declared) + ")"));
            }
        }
    }

    // The distinct children of each file, in the order its tasks first name them: the file
    // graph, with one edge however many tasks run the same child.
    std::vector<std::vector<size_t>> children(files.size());
    for (size_t i = 0; i < files.size(); ++i) {
        std::set<size_t> seen;
        for (const auto& c : child[i]) {
            if (c && seen.insert(*c).second) children[i].push_back(*c);
        }
    }

    // Cycles through other workflows (a task running its own workflow is a problem of its file).
    // For each workflow, the first task whose child leads back to it names the shortest such cycle.
    // A child already searched from this workflow did not lead back (else the search would have
    // stopped), so each child is searched once per workflow, not once per task.
    for (size_t i = 0; i < files.size(); ++i) {
        if (!files[i].workflow) continue;
        std::set<size_t> searched;
        for (size_t k = 0; k < child[i].size(); ++k) {
            if (!child[i][k] || *child[i][k] == i || !searched.insert(*child[i][k]).second) continue;
            // Breadth-first from the child back to i, over loaded workflows.
            std::map<size_t, size_t> parent;
            std::vector<size_t> queue{*child[i][k]};
            parent[*child[i][k]] = *child[i][k];
            bool closed = false;
            for (size_t q = 0; q < queue.size() && !closed; ++q) {
                size_t n = queue[q];
                if (!files[n].workflow) continue;
                for (size_t c : children[n]) {
                    if (parent.count(c)) continue;
                    parent[c] = n;
                    if (c == i) {
                        closed = true;
                        break;
                    }
                    queue.push_back(c);
                }
            }
            if (!closed) continue;
            const size_t start = *child[i][k];
            std::vector<std::string> chain; // start -> ... -> i
            for (size_t n = i;; n = parent[n]) {
                chain.insert(chain.begin(), files[n].name);
                if (n == start) break;
            }
            chain.insert(chain.begin(), files[i].name);
            const TaskDef& t = files[i].workflow->tasks[k];
            add(i, k, files[i].tasks[k].workflow_line,
                label(t) + ": workflow reference cycle: " + joinNames(chain) +
                    " (a workflow cannot run itself, directly or through other workflows)");
            break;
        }
    }

    // A workflow whose child does not load cannot load either, transitively: spread from the
    // files that fail on their own to the files that run them, over the reversed file graph.
    std::vector<std::vector<size_t>> parents(files.size());
    for (size_t i = 0; i < files.size(); ++i) {
        for (size_t c : children[i]) parents[c].push_back(i);
    }
    std::vector<bool> bad(files.size());
    std::vector<size_t> spread;
    for (size_t i = 0; i < files.size(); ++i) {
        bad[i] = !files[i].workflow || !found[i].empty();
        if (bad[i]) spread.push_back(i);
    }
    while (!spread.empty()) {
        const size_t c = spread.back();
        spread.pop_back();
        for (size_t p : parents[c]) {
            if (bad[p]) continue;
            bad[p] = true;
            spread.push_back(p);
        }
    }
    for (size_t i = 0; i < files.size(); ++i) {
        if (!files[i].workflow) continue;
        for (size_t k = 0; k < child[i].size(); ++k) {
            if (!child[i][k] || !bad[*child[i][k]] || reported[i].count(k) || *child[i][k] == i) continue;
            const TaskDef& t = files[i].workflow->tasks[k];
            add(i, k, files[i].tasks[k].workflow_line,
                label(t) + ": workflow '" + t.workflow + "' did not load (fix the problems reported for " +
                    files[*child[i][k]].file.filename().string() + ")");
        }
    }

    for (size_t i = 0; i < files.size(); ++i) {
        if (found[i].empty()) continue;
        auto& problems = files[i].problems;
        problems.insert(problems.end(), found[i].begin(), found[i].end());
        std::stable_sort(problems.begin(), problems.end(),
                         [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
        files[i].workflow.reset();
    }
}

// The workflow files of dir, in name order; on failure sets *ec.
std::vector<fs::path> workflowFiles(const fs::path& dir, std::error_code* ec) {
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, *ec), end; !*ec && it != end; it.increment(*ec)) {
        const auto& p = it->path();
        if (isWorkflowFileName(p.filename().string())) files.push_back(p);
    }
    std::sort(files.begin(), files.end());
    return files;
}

WorkflowLoad toLoad(FileLoad&& f) {
    WorkflowLoad out;
    out.workflow = std::move(f.workflow);
    out.problems = std::move(f.problems);
    return out;
}

} // namespace

WorkflowLoad loadWorkflowFile(const fs::path& file, const WorkflowDefaults& defaults,
                              const PluginCatalog& plugins) {
    return toLoad(loadOne(file, defaults, plugins));
}

WorkflowSet loadWorkflowDir(const fs::path& dir, const WorkflowDefaults& defaults,
                            const PluginCatalog& plugins) {
    WorkflowSet set;
    if (std::error_code missing; defaults.dir_problem && fs::exists(dir, missing)) {
        if (auto why = defaults.dir_problem(dir)) {
            set.problems.push_back({dir.string(), 0, "workflows directory refused: " + *why});
            return set;
        }
    }
    std::error_code ec;
    auto paths = workflowFiles(dir, &ec);
    if (ec) {
        set.problems.push_back({dir.string(), 0, "cannot read workflows directory: " + ec.message()});
        return set;
    }
    std::vector<FileLoad> files;
    files.reserve(paths.size());
    for (const auto& f : paths) files.push_back(loadOne(f, defaults, plugins));
    checkWorkflowRefs(files, dir);
    for (auto& f : files) {
        if (f.workflow) {
            set.workflows.emplace(f.workflow->name, std::move(f.workflow));
        } else {
            set.failed_files.push_back(f.file);
            set.problems.insert(set.problems.end(), f.problems.begin(), f.problems.end());
        }
    }
    return set;
}

std::vector<WorkflowLoad> validateWorkflowFiles(const std::vector<fs::path>& files,
                                                const fs::path& workflows_dir,
                                                const WorkflowDefaults& defaults,
                                                const PluginCatalog& plugins) {
    std::set<std::string> given;
    for (const auto& f : files) given.insert(f.stem().string());
    std::vector<FileLoad> all;
    std::error_code ec;
    for (const auto& f : workflowFiles(workflows_dir, &ec)) {
        if (!given.count(f.stem().string())) all.push_back(loadOne(f, defaults, plugins));
    }
    const size_t first = all.size();
    for (const auto& f : files) all.push_back(loadOne(f, defaults, plugins));
    checkWorkflowRefs(all, workflows_dir);
    std::vector<WorkflowLoad> out;
    for (size_t i = first; i < all.size(); ++i) out.push_back(toLoad(std::move(all[i])));
    return out;
}

namespace detail {

struct FileLoadData {
    FileLoad load;
};

LoadedFile loadAlone(const fs::path& file, const WorkflowDefaults& defaults, const PluginCatalog& plugins) {
    auto data = std::make_shared<FileLoadData>(FileLoadData{loadOne(file, defaults, plugins)});
    const FileLoad& f = data->load;
    LoadedFile out{f.name, f.file, f.workflow, f.problems, {}, nullptr};
    if (f.workflow) {
        std::set<std::string> seen;
        for (const auto& t : f.workflow->tasks) {
            if (!t.workflow.empty() && seen.insert(t.workflow).second) out.children.push_back(t.workflow);
        }
    }
    out.data = std::move(data);
    return out;
}

std::vector<std::vector<Diagnostic>> checkAcrossFiles(const std::vector<const LoadedFile*>& files,
                                                      const fs::path& dir, const std::set<std::string>& names) {
    std::vector<FileLoad> loads;
    loads.reserve(files.size());
    for (const auto* f : files) loads.push_back(f->data->load);
    checkWorkflowRefs(loads, dir, &names);
    std::vector<std::vector<Diagnostic>> out;
    out.reserve(loads.size());
    for (auto& l : loads) out.push_back(std::move(l.problems));
    return out;
}

} // namespace detail

} // namespace taskhub::config
