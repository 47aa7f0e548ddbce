#include "config/workflow_directory.h"

#include "config/workflow_checks.h"

#include <utility>

namespace taskhub::config {

namespace fs = std::filesystem;
using Kind = WorkflowDirectory::Change::Kind;

const char* toString(Kind k) {
    switch (k) {
    case Kind::Added: return "added";
    case Kind::Changed: return "changed";
    case Kind::Fixed: return "fixed";
    case Kind::Retired: return "retired";
    case Kind::Invalid: return "invalid";
    }
    return "?";
}

WorkflowDirectory::WorkflowDirectory(fs::path dir, WorkflowDefaults defaults, const PluginCatalog& plugins)
    : dir_(std::move(dir)), defaults_(std::move(defaults)), plugins_(plugins) {}

WorkflowDirectory::~WorkflowDirectory() = default;

struct WorkflowDirectory::Batch {
    bool all = false;                        // prepareAll(): every file of the directory
    std::optional<Diagnostic> dir_problem;   // all: the directory could not be read
    // In the order given: each file loaded on its own, or (prepareSome()) nothing: it is gone.
    std::vector<std::pair<std::string, std::optional<detail::LoadedFile>>> files;
};

std::shared_ptr<WorkflowDirectory::Batch> WorkflowDirectory::prepareAll(const PluginCatalog& plugins) const {
    auto batch = std::make_shared<Batch>();
    batch->all = true;
    // A missing directory is reported below ("cannot read"), like one moved away.
    if (std::error_code missing; defaults_.dir_problem && fs::exists(dir_, missing)) {
        if (auto why = defaults_.dir_problem(dir_)) {
            batch->dir_problem = Diagnostic{dir_.string(), 0,
                                            "workflows directory refused: " + *why +
                                                " (the workflows loaded before keep running)"};
            return batch;
        }
    }
    std::error_code ec;
    std::vector<fs::path> paths;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        if (isWorkflowFileName(it->path().filename().string())) paths.push_back(it->path());
    }
    if (ec) {
        batch->dir_problem = Diagnostic{dir_.string(), 0,
                                        "cannot read workflows directory: " + ec.message() +
                                            " (the workflows loaded before keep running)"};
        return batch;
    }
    for (const auto& p : paths) {
        auto loaded = detail::loadAlone(p, defaults_, plugins);
        std::string name = loaded.name;
        batch->files.emplace_back(std::move(name), std::move(loaded));
    }
    return batch;
}

std::shared_ptr<WorkflowDirectory::Batch> WorkflowDirectory::prepareSome(const std::vector<std::string>& file_names,
                                                                         const PluginCatalog& plugins) const {
    auto batch = std::make_shared<Batch>();
    for (const auto& file_name : file_names) {
        if (!isWorkflowFileName(file_name)) continue;
        const fs::path path = dir_ / file_name;
        std::error_code ec;
        if (fs::symlink_status(path, ec).type() == fs::file_type::not_found) {
            batch->files.emplace_back(path.stem().string(), std::nullopt);
        } else {
            batch->files.emplace_back(path.stem().string(), detail::loadAlone(path, defaults_, plugins));
        }
    }
    return batch;
}

std::vector<WorkflowDirectory::Change> WorkflowDirectory::apply(Batch& batch) {
    if (batch.all) {
        if (batch.dir_problem) {
            dir_problem_ = std::move(batch.dir_problem);
            return {};
        }
        dir_problem_.reset();
        std::set<std::string> affected;
        for (const auto& [name, f] : files_) affected.insert(name);
        for (const auto& [name, wf] : running_) affected.insert(name);
        files_.clear();
        names_.clear();
        parents_.clear();
        for (auto& [name, loaded] : batch.files) {
            affected.insert(name);
            remember(std::move(*loaded));
        }
        return settle(affected);
    }
    std::set<std::string> changed;
    bool names_changed = false;
    for (auto& [name, loaded] : batch.files) {
        const bool named = names_.count(name) > 0;
        auto old = files_.find(name);
        if (!loaded) {
            if (old != files_.end()) forget(name);
            changed.insert(name);
            names_changed |= named;
            continue;
        }
        // Written again with the same content: nothing to check again.
        if (old != files_.end() && old->second->workflow && loaded->workflow &&
            old->second->workflow->version == loaded->workflow->version) {
            continue;
        }
        if (old != files_.end()) forget(name);
        remember(std::move(*loaded));
        changed.insert(name);
        names_changed |= named != (names_.count(name) > 0);
    }
    // The files whose result may change: the changed ones and every file running one of them;
    // when a name came or went, also the files naming a missing workflow (their "did you mean").
    std::set<std::string> affected = changed;
    if (names_changed) {
        for (const auto& [child, parents] : parents_) {
            if (!files_.count(child)) affected.insert(parents.begin(), parents.end());
        }
    }
    std::vector<std::string> todo(affected.begin(), affected.end());
    while (!todo.empty()) {
        const std::string n = std::move(todo.back());
        todo.pop_back();
        auto p = parents_.find(n);
        if (p == parents_.end()) continue;
        for (const auto& parent : p->second) {
            if (affected.insert(parent).second) todo.push_back(parent);
        }
    }
    return settle(affected);
}

std::vector<WorkflowDirectory::Change> WorkflowDirectory::settle(const std::set<std::string>& affected) {
    // What the affected files run, transitively, decides their checks across files.
    std::set<std::string> checked;
    std::vector<std::string> todo;
    for (const auto& n : affected) {
        if (files_.count(n) && checked.insert(n).second) todo.push_back(n);
    }
    while (!todo.empty()) {
        const std::string n = std::move(todo.back());
        todo.pop_back();
        for (const auto& c : files_.at(n)->children) {
            if (files_.count(c) && checked.insert(c).second) todo.push_back(c);
        }
    }
    std::vector<const detail::LoadedFile*> subset;
    std::map<std::string, size_t> index;
    for (const auto& n : checked) {
        index[n] = subset.size();
        subset.push_back(files_.at(n).get());
    }
    auto results = detail::checkAcrossFiles(subset, dir_, names_);

    std::vector<Change> changes;
    for (const auto& n : affected) {
        auto run = running_.find(n);
        auto f = files_.find(n);
        if (f == files_.end()) {
            problems_.erase(n);
            if (run != running_.end()) {
                changes.push_back({Kind::Retired, n, run->second->file, run->second->version, {}, {}});
                running_.erase(run);
            }
            continue;
        }
        auto& problems = results[index.at(n)];
        if (!problems.empty()) {
            changes.push_back({Kind::Invalid, n, f->second->file, run != running_.end() ? run->second->version : "",
                               {}, problems});
            problems_[n] = std::move(problems);
            continue;
        }
        const bool had_problems = problems_.erase(n) > 0;
        const auto& wf = f->second->workflow;
        if (run == running_.end()) {
            running_.emplace(n, wf);
            changes.push_back({Kind::Added, n, wf->file, wf->version, {}, {}});
            continue;
        }
        if (run->second->version != wf->version) {
            changes.push_back({Kind::Changed, n, wf->file, wf->version, run->second->version, {}});
        } else if (had_problems) {
            changes.push_back({Kind::Fixed, n, wf->file, wf->version, {}, {}});
        }
        run->second = wf;
    }
    return changes;
}

void WorkflowDirectory::forget(const std::string& name) {
    auto f = files_.find(name);
    for (const auto& c : f->second->children) {
        auto p = parents_.find(c);
        p->second.erase(name);
        if (p->second.empty()) parents_.erase(p);
    }
    names_.erase(name);
    files_.erase(f);
}

void WorkflowDirectory::remember(detail::LoadedFile loaded) {
    const std::string name = loaded.name;
    for (const auto& c : loaded.children) parents_[c].insert(name);
    if (isValidWorkflowName(name)) names_.insert(name);
    files_[name] = std::make_unique<detail::LoadedFile>(std::move(loaded));
}

std::vector<Diagnostic> WorkflowDirectory::problems() const {
    std::vector<Diagnostic> out;
    if (dir_problem_) out.push_back(*dir_problem_);
    for (const auto& [name, ps] : problems_) out.insert(out.end(), ps.begin(), ps.end());
    return out;
}

} // namespace taskhub::config
