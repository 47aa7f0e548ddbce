#include "config/workflow.h"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "config/toml_support.h"

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

bool isValidWorkflowName(const std::string& name) {
    if (name.empty() || name[0] == '.' || name.size() > 128) return false;
    return std::all_of(name.begin(), name.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
    });
}

namespace {

const std::set<std::string> kWorkflowKeys = {"description", "timezone", "dst_gap", "dst_fold",
                                             "trigger", "policy", "task"};
const std::set<std::string> kTriggerKeys = {"cron"};
// Trigger kinds of the workflow format that this version does not run yet.
const std::set<std::string> kPlannedTriggerKeys = {"watch", "pattern", "recursive", "settle",
                                                   "after", "every", "at", "start_at", "jitter"};
const std::set<std::string> kPolicyKeys = {"overlap", "catchup", "catchup_window", "on_failure",
                                           "timeout"};
const std::set<std::string> kTaskEngineKeys = {"id", "plugin", "depends_on", "retries",
                                               "retry_delay", "timeout", "env"};
// Keys the engine reserves for features of later versions; never passed to plugins.
const std::set<std::string> kTaskReservedKeys = {
    "trigger_rule", "run_as", "at_most_once", "priority", "when", "workflow", "params",
    "retry_backoff", "retry_max_delay", "retry_on_exit_codes", "outputs"};

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

void loadTrigger(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[[trigger]] entries must be tables, found " + typeName(v));
        return;
    }
    const auto& t = v.as_table();
    std::optional<TriggerDef> def;
    bool has_kind = false;
    for (const auto& [key, kv] : t) {
        has_kind = has_kind || key == "cron" || kPlannedTriggerKeys.count(key);
        if (key == "cron") {
            auto text = getString(kv, "'cron'", r);
            if (!text) continue;
            std::string err;
            auto expr = cron::CronExpr::parse(*text, &err);
            if (!expr) {
                r.add(kv, "cron \"" + *text + "\": " + err);
                continue;
            }
            def = TriggerDef{Reporter::lineOf(kv), *text, *expr};
        } else if (kPlannedTriggerKeys.count(key)) {
            r.add(kv, "trigger key '" + key +
                          "' is not supported by this version of taskhubd (supported: cron)");
        } else {
            r.add(kv, "unknown trigger key '" + key + "'" + didYouMean(key, kTriggerKeys) +
                          " (accepted: cron)");
        }
    }
    if (def) {
        wf.triggers.push_back(std::move(*def));
    } else if (!has_kind) {
        r.add(v, "[[trigger]] needs a 'cron' expression, e.g. cron = \"30 2 * * *\"");
    }
}

void loadPolicy(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[policy] must be a table, found " + typeName(v));
        return;
    }
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
                wf.overlap = *o;
        } else if (key == "on_failure") {
            if (auto o = getChoice<OnFailure>(
                    kv, what, {{"fail_fast", OnFailure::FailFast}, {"continue", OnFailure::Continue}}, r))
                wf.on_failure = *o;
        } else if (key == "timeout") {
            if (auto d = getDuration(kv, what, r)) wf.timeout = *d;
        } else if (key == "catchup") {
            auto s = getString(kv, what, r);
            if (s && *s != "none") {
                r.add(kv, what + ": catch-up of missed firings is not supported by this version of "
                               "taskhubd; only \"none\" is accepted, found \"" + *s + "\"");
            }
        } else if (key == "catchup_window") {
            getDuration(kv, what, r);
        } else {
            r.add(kv, "unknown key '" + key + "' in [policy]" + didYouMean(key, kPolicyKeys) +
                          " (accepted: " + joinKeys(kPolicyKeys) + ")");
        }
    }
}

void loadTask(const Value& v, size_t index, Workflow& wf, const PluginCatalog& plugins,
              Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[[task]] entries must be tables, found " + typeName(v));
        return;
    }
    const auto& t = v.as_table();
    TaskDef task;
    task.line = Reporter::lineOf(v);
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

    Table params;
    for (const auto& [key, kv] : t) {
        const std::string what = label + ": '" + key + "'";
        if (key == "id") {
            continue;
        } else if (key == "plugin") {
            if (auto p = getString(kv, what, r)) task.plugin = *p;
        } else if (key == "depends_on") {
            if (auto a = getStringArray(kv, what, r)) task.depends_on = *a;
        } else if (key == "retries") {
            if (auto n = getInt(kv, what, r, 0, 100)) task.retries = static_cast<int>(*n);
        } else if (key == "retry_delay") {
            if (auto d = getDuration(kv, what, r)) task.retry_delay = *d;
        } else if (key == "timeout") {
            if (auto d = getDuration(kv, what, r)) task.timeout = *d;
        } else if (key == "env") {
            if (!kv.is_table()) {
                r.add(kv, what + " must be a table of strings, found " + typeName(kv));
                continue;
            }
            for (const auto& [name, ev] : kv.as_table()) {
                if (auto s = getString(ev, label + ": 'env." + name + "'", r)) task.env.emplace_back(name, *s);
            }
        } else if (kTaskReservedKeys.count(key)) {
            r.add(kv, label + ": '" + key +
                          "' is reserved for the engine and not supported by this version of taskhubd");
        } else {
            params.emplace(key, kv);
        }
    }
    if (t.find("plugin") == t.end()) {
        r.add(v, label + " has no 'plugin' (e.g. plugin = \"shell\")");
    }
    task.params_json = toJson(params);

    if (!task.plugin.empty()) {
        auto pluginLine = Reporter::lineOf(t.at("plugin"));
        if (auto why = plugins.unavailable(task.plugin)) {
            r.add(pluginLine, label + ": " + *why);
        } else if (r.problems().size() == before) {
            if (auto problem = plugins.validate(task.plugin, task.params_json)) {
                size_t line = task.line;
                std::string where;
                if (!problem->key.empty()) {
                    auto it = t.find(problem->key);
                    if (it != t.end()) line = Reporter::lineOf(it->second);
                    where = " '" + problem->key + "'";
                }
                r.add(line, label + ": plugin " + task.plugin + " rejects parameter" + where + ": " +
                                problem->message);
            }
        }
    }
    wf.tasks.push_back(std::move(task));
}

} // namespace

WorkflowLoad loadWorkflowFile(const fs::path& file, const WorkflowDefaults& defaults,
                              const PluginCatalog& plugins) {
    Reporter r(file);
    WorkflowLoad out;
    auto wf = std::make_shared<Workflow>();
    wf->name = file.stem().string();
    wf->file = file;

    std::ifstream in(file, std::ios::binary);
    if (!in) {
        r.add(0, "cannot open file: " + std::string(std::strerror(errno)));
        out.problems = std::move(r.problems());
        return out;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
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
    const Value* tasks = nullptr;
    for (const auto& [key, v] : root->as_table()) {
        if (key == "description") {
            if (auto s = getString(v, "'description'", r)) wf->description = *s;
        } else if (key == "timezone") {
            if (auto s = getString(v, "'timezone'", r)) {
                zone = *s;
                zoneLine = Reporter::lineOf(v);
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
        } else if (key == "task") {
            tasks = &v;
        } else {
            r.add(v, "unknown key '" + key + "'" + didYouMean(key, kWorkflowKeys) +
                         " (accepted: " + joinKeys(kWorkflowKeys) + ")");
        }
    }

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
    } else {
        size_t i = 0;
        for (const auto& t : tasks->as_array()) loadTask(t, i++, *wf, plugins, r);
    }

    if (r.ok()) {
        std::vector<dag::NodeSpec> specs;
        specs.reserve(wf->tasks.size());
        for (const auto& t : wf->tasks) specs.push_back({t.id, t.depends_on});
        for (const auto& p : dag::validate(specs)) {
            const auto& t = tasks->as_array()[p.node].as_table();
            auto it = t.find(p.key);
            r.add(it != t.end() ? Reporter::lineOf(it->second) : wf->tasks[p.node].line, p.message);
        }
        if (r.ok()) wf->graph = dag::Graph(specs);
    }

    out.problems = r.sorted();
    if (out.problems.empty()) out.workflow = std::move(wf);
    return out;
}

WorkflowSet loadWorkflowDir(const fs::path& dir, const WorkflowDefaults& defaults,
                            const PluginCatalog& plugins) {
    WorkflowSet set;
    std::error_code ec;
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const auto& p = it->path();
        if (p.extension() == ".toml" && p.filename().string()[0] != '.') files.push_back(p);
    }
    if (ec) {
        set.problems.push_back({dir.string(), 0, "cannot read workflows directory: " + ec.message()});
        return set;
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        auto load = loadWorkflowFile(f, defaults, plugins);
        if (load.workflow) {
            set.workflows.emplace(load.workflow->name, load.workflow);
        } else {
            set.failed_files.push_back(f);
            set.problems.insert(set.problems.end(), load.problems.begin(), load.problems.end());
        }
    }
    return set;
}

} // namespace taskhub::config
