// A workflow file as a whole: reading it (bounded), its top-level keys and [params], and the
// load entry points (one file, a directory, files to validate, and the two steps of
// workflow_checks.h). The sections are read in the files listed in workflow_load.h.
#include "config/workflow.h"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <malloc.h>
#include <sstream>

#include "common/time_util.h"
#include "config/run_as.h"
#include "config/workflow_checks.h"
#include "config/workflow_load.h"

namespace taskhub::config {

using namespace detail;
namespace fs = std::filesystem;

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
                                             "policy", "params", "max_parallel_tasks", "priority", "task",
                                             "keep_runs", "keep_days", "run_as", "deadline", "log_to_journal", "notify",
                                             "memory_max", "cpu_max", "tasks_max", "io_weight", "leftovers"};

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
        if (pv->is_array()) {
            // A list param (for foreach = "${params.NAME}"): its value is the list as JSON text.
            Table wrap;
            wrap.emplace("v", *pv);
            const std::string json = toJson(wrap);
            wf.params.emplace_back(name, json.substr(5, json.size() - 6));
            continue;
        }
        if (auto text = getScalarText(*pv, "'params." + name + "'", r)) wf.params.emplace_back(name, *text);
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

// loadOne() without what follows a large file's load; *file_size: the bytes read.
FileLoad loadAndCheck(const fs::path& file, const WorkflowDefaults& defaults, const PluginCatalog& plugins,
                      size_t* file_size) {
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
    *file_size = text.size();

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
    size_t deadlineLine = 0;
    ResourceKeys resources;
    const Value* tasks = nullptr;
    std::vector<TaskExtra> extras; // parallel to wf->tasks
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
        } else if (key == "priority") {
            if (auto n = getInt(v, "'priority'", r, kMinWorkflowPriority, kMaxWorkflowPriority))
                wf->priority = static_cast<int>(*n);
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
        } else if (key == "deadline") {
            if (auto d = getSeconds(v, "'deadline'", std::chrono::seconds(1), r)) {
                wf->deadline = *d;
                deadlineLine = r.lineOf(v);
            }
        } else if (key == "log_to_journal") {
            if (!v.is_boolean()) r.add(v, "'log_to_journal' must be true or false, found " + typeName(v));
            else wf->log_to_journal = v.as_boolean();
        } else if (key == "notify") {
            wf->notify_set = loadNotify(v, &wf->notify, r);
        } else if (isResourceKey(key)) {
            loadResourceKey(key, v, "'" + key + "'", resources, r);
        } else if (key == "task") {
            tasks = &v;
        } else {
            r.add(v, "unknown key '" + key + "'" + didYouMean(key, kWorkflowKeys) +
                         " (accepted: " + joinKeys(kWorkflowKeys) + ")");
        }
    }

    addFileParams(*root, *wf, r);
    if (wf->deadline.count() > 0 && !hasDeadlineTrigger(*wf)) {
        // A deadline is measured from a scheduled instant, which only these triggers have: a
        // file drop or a manual run has none, and @reboot's is the boot.
        r.add(deadlineLine, "'deadline' needs a cron, every or at trigger: it is measured from a firing's "
                            "scheduled instant (@reboot, watch triggers and manual runs have no schedule); add "
                            "such a [[trigger]] or remove 'deadline'");
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
    } else if (tasks->as_array().size() > std::min(defaults.limits.max_tasks, kMaxTasksPerWorkflow)) {
        r.add(*tasks, "workflow has " + std::to_string(tasks->as_array().size()) + " tasks; at most " +
                          std::to_string(std::min(defaults.limits.max_tasks, kMaxTasksPerWorkflow)) +
                          " are allowed (taskhub.toml max_workflow_tasks): split it into nested workflows, or "
                          "raise the limit (up to " + std::to_string(kMaxTasksPerWorkflow) + ")");
    } else {
        size_t i = 0;
        std::vector<PendingValidation> pending;
        SharedPool<std::string> names;
        wf->tasks.reserve(tasks->as_array().size());
        extras.reserve(tasks->as_array().size());
        for (const auto& t : tasks->as_array()) loadTask(t, i++, *wf, extras, plugins, names, pending, defaults.limits, r);
        validatePending(pending, *wf, plugins, r);
        applyRunAs(*wf, runAsLine, extras, defaults, plugins, r);
        warnRootWatch(*wf);
    }
    applyResources(*wf, resources, extras, defaults, plugins, r);

    bool graph_ok = checkGraph(wf.get(), extras, tasks, r);
    checkRefs(*wf, extras, graph_ok, r);
    for (size_t k = 0; k < wf->tasks.size() && k < extras.size(); ++k) {
        if (wf->tasks[k].workflow.empty()) continue;
        out.workflow_tasks.push_back({k, extras[k].workflow_line, std::move(extras[k].child_param_lines)});
    }

    out.problems = r.sorted();
    if (out.problems.empty()) out.workflow = std::move(wf);
    return out;
}

// Moves what a workflow keeps per task on the heap (ids and parameters too long for a
// std::string to hold in place, the graph) into fresh memory, packed together. Made while the file
// was parsed, these blocks lie scattered among the parse tree's nodes; once the tree is freed,
// each keeps its page of the heap resident. Called after a trim has merged the freed space: every
// copy is made before any original is freed, so that the copies fill that space in order instead
// of the holes the originals leave.
void repack(Workflow& wf) {
    std::vector<std::string> copies;
    copies.reserve(2 * wf.tasks.size());
    for (const auto& t : wf.tasks) {
        copies.push_back(t.id);
        copies.push_back(t.params_json);
    }
    dag::Graph graph(wf.graph);
    for (size_t i = 0; i < wf.tasks.size(); ++i) {
        wf.tasks[i].id.swap(copies[2 * i]);
        wf.tasks[i].params_json.swap(copies[2 * i + 1]);
    }
    wf.graph = std::move(graph);
}

// A file at least this large is repacked and the heap trimmed after its load.
constexpr size_t kLargeFile = size_t{1} << 20;

// Loads and checks one file on its own. After a large file, gives the heap its load freed back
// to the system: parsing 100,000 tasks allocates a few hundred MB of short-lived TOML nodes,
// and glibc's free() returns none of the holes they leave below the top of the heap. Small files
// skip the walk over the heap (a few ms after a large load).
FileLoad loadOne(const fs::path& file, const WorkflowDefaults& defaults, const PluginCatalog& plugins) {
    size_t file_size = 0;
    FileLoad out = loadAndCheck(file, defaults, plugins, &file_size);
    if (file_size >= kLargeFile) {
        ::malloc_trim(0);
        if (out.workflow) {
            repack(*out.workflow);
            ::malloc_trim(0);
        }
    }
    return out;
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
            if (!t.workflow.empty() && seen.insert(t.workflow.get()).second) out.children.push_back(t.workflow.get());
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
