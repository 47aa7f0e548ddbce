// The checks across tasks of a file (the dependency graph; ${...} and `when` references to params
// and to upstream tasks) and across files (workflow tasks: the child exists and declares the
// params passed, no cycle of workflows, a child that does not load fails its parents).
#include <algorithm>

#include "config/workflow_load.h"

namespace taskhub::config::detail {

namespace {

std::string joinNames(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : " -> ") + n;
    return out;
}

} // namespace

bool checkGraph(Workflow* wf, const std::vector<TaskExtra>& extras, const Value* tasks, Reporter& r) {
    bool graph_ok = false;
    if (r.ok()) {
        std::vector<dag::NodeSpec> specs;
        specs.reserve(wf->tasks.size());
        for (size_t i = 0; i < wf->tasks.size() && i < extras.size(); ++i) {
            specs.push_back({wf->tasks[i].id, {extras[i].depends_on.begin(), extras[i].depends_on.end()}});
        }
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
    return graph_ok;
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
                if (use.ref.kind != expr::Ref::Output && use.ref.kind != expr::Ref::TaskState) continue;
                if (use.ref.task == task.id) continue;
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
            if (use.ref.kind == expr::Ref::Item || use.ref.kind == expr::Ref::Index) {
                if (task.fan.get().empty()) {
                    r.add(use.line, prefix + "${item} and ${index} are only available in a task with foreach (they "
                                             "are the item of the instance that runs)");
                } else if (use.where.ends_with("'when'") || use.where.ends_with("'foreach'")) {
                    r.add(use.line, prefix + "'when' and 'foreach' are decided once for the whole fan-out, before "
                                             "any instance exists; use ${item} in the task's parameters");
                }
                continue;
            }
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

// The cross-file checks of workflow tasks (see loadWorkflowDir()). Adds problems to the files at
// fault and drops their workflows. dir is where a missing workflow's file was expected.
// all_names: the names suggestions are taken from (default: those of files).
void checkWorkflowRefs(std::vector<FileLoad>& files, const fs::path& dir,
                       const std::set<std::string>* all_names) {
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

    // Each workflow task's child (parallel to FileLoad::workflow_tasks), as an index into files
    // (or none).
    std::vector<std::vector<std::optional<size_t>>> child(files.size());
    // The params each file declares, built when first needed.
    std::vector<std::optional<std::set<std::string>>> declaredOf(files.size());
    for (size_t i = 0; i < files.size(); ++i) {
        if (!files[i].workflow) continue;
        const auto& tasks = files[i].workflow->tasks;
        child[i].resize(files[i].workflow_tasks.size());
        for (size_t j = 0; j < files[i].workflow_tasks.size(); ++j) {
            const WorkflowTaskLines& extra = files[i].workflow_tasks[j];
            const size_t k = extra.task;
            const TaskDef& t = tasks[k];
            auto it = byName.find(t.workflow.get());
            if (it == byName.end()) {
                add(i, k, extra.workflow_line,
                    label(t) + ": no workflow named '" + t.workflow + "'" + didYouMean(t.workflow, names) +
                        " (expected the file " + (dir / (t.workflow + ".toml")).string() + ")");
                continue;
            }
            child[i][j] = it->second;
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
        for (size_t j = 0; j < child[i].size(); ++j) {
            if (!child[i][j] || *child[i][j] == i || !searched.insert(*child[i][j]).second) continue;
            // Breadth-first from the child back to i, over loaded workflows.
            std::map<size_t, size_t> parent;
            std::vector<size_t> queue{*child[i][j]};
            parent[*child[i][j]] = *child[i][j];
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
            const size_t start = *child[i][j];
            std::vector<std::string> chain; // start -> ... -> i
            for (size_t n = i;; n = parent[n]) {
                chain.insert(chain.begin(), files[n].name);
                if (n == start) break;
            }
            chain.insert(chain.begin(), files[i].name);
            const WorkflowTaskLines& extra = files[i].workflow_tasks[j];
            add(i, extra.task, extra.workflow_line,
                label(files[i].workflow->tasks[extra.task]) + ": workflow reference cycle: " + joinNames(chain) +
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
        for (size_t j = 0; j < child[i].size(); ++j) {
            const WorkflowTaskLines& extra = files[i].workflow_tasks[j];
            if (!child[i][j] || !bad[*child[i][j]] || reported[i].count(extra.task) || *child[i][j] == i) continue;
            const TaskDef& t = files[i].workflow->tasks[extra.task];
            add(i, extra.task, extra.workflow_line,
                label(t) + ": workflow '" + t.workflow + "' did not load (fix the problems reported for " +
                    files[*child[i][j]].file.filename().string() + ")");
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

} // namespace taskhub::config::detail

namespace taskhub::config {

std::vector<std::string_view> dependsOn(const Workflow& wf, size_t task) {
    std::vector<std::string_view> out;
    if (task >= wf.graph.size()) return out;
    for (uint32_t d : wf.graph.dependencies(static_cast<uint32_t>(task))) out.push_back(wf.graph.id(d));
    return out;
}

} // namespace taskhub::config
