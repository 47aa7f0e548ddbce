// The workflows of workflows_dir as the daemon runs them: the last good version of each file and
// the problems of the files that do not load. Kept up to date either all at once (reloadAll():
// start, SIGHUP, `taskhubctl reload`) or file by file (update(): the directory watch). Both give
// the same result for the same directory: update() re-checks only the files a change can affect
// (the changed files and the workflows that run them, directly or not), so one change costs about
// one file's load whatever the number of workflows.
//
// A file that fails (on its own or across files) keeps its last good version running; a file
// that disappears retires its workflow. A directory that cannot be read changes nothing (it is
// reported as a problem of the directory) until it can be read again.
//
// Each change is made in two halves: prepareAll()/prepareSome() read and check the files (the
// slow part: reading, parsing, building, plugin validation) and touch nothing of this object but
// what never changes, so they may run on another thread; apply() makes the prepared files the
// current ones, on the owner's thread, in the order they were prepared. reloadAll() and update()
// do both at once.
//
// Threading: apply(), reloadAll(), update() and the accessors on one thread (taskhubd: the
// event loop); prepareAll() and prepareSome() on any thread, with a catalog usable there.
#ifndef TASKHUB_CONFIG_WORKFLOW_DIRECTORY_H
#define TASKHUB_CONFIG_WORKFLOW_DIRECTORY_H

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/workflow.h"

namespace taskhub::config {

namespace detail {
struct LoadedFile;
}

class WorkflowDirectory {
public:
    // What one reload or update changed in the running set, file by file.
    struct Change {
        enum class Kind {
            Added,   // a workflow that was not running now is
            Changed, // a new version replaces the running one
            Fixed,   // the file loads again with the version that kept running
            Retired, // its file is gone: no new runs
            Invalid, // the file does not load; `version` is the last good version kept, if any
        };
        Kind kind = Kind::Added;
        std::string name;
        std::filesystem::path file;
        std::string version;
        std::string old_version; // Changed: the version replaced
        std::vector<Diagnostic> problems; // Invalid
    };

    // plugins must outlive this object.
    WorkflowDirectory(std::filesystem::path dir, WorkflowDefaults defaults, const PluginCatalog& plugins);
    ~WorkflowDirectory();
    WorkflowDirectory(const WorkflowDirectory&) = delete;
    WorkflowDirectory& operator=(const WorkflowDirectory&) = delete;

    // Reads every workflow file again. Every file that does not load is reported (Invalid), even
    // when it did not change.
    std::vector<Change> reloadAll() { return apply(*prepareAll(plugins_)); }
    // Applies changes to the named directory entries ("x.toml"; other names are ignored): each is
    // read again if it exists, and forgotten if it does not.
    std::vector<Change> update(const std::vector<std::string>& file_names) {
        return apply(*prepareSome(file_names, plugins_));
    }

    // Files read and checked on their own, to be applied.
    struct Batch;
    // The first half of reloadAll() and update(), with plugins asked through `plugins` (which
    // must outlive the call only).
    std::shared_ptr<Batch> prepareAll(const PluginCatalog& plugins) const;
    std::shared_ptr<Batch> prepareSome(const std::vector<std::string>& file_names,
                                       const PluginCatalog& plugins) const;
    // The second half: checks across files and updates the running set and the problems.
    std::vector<Change> apply(Batch& batch);

    const std::filesystem::path& dir() const { return dir_; }
    // The running workflows by name: each file's last good version.
    const std::map<std::string, std::shared_ptr<const Workflow>>& running() const { return running_; }
    // Every current problem: the directory's, then each failing file's, by file name.
    std::vector<Diagnostic> problems() const;
    size_t files() const { return files_.size(); }
    size_t failedFiles() const { return problems_.size(); }
    // Set while the directory cannot be read (also part of problems()).
    const std::optional<Diagnostic>& dirProblem() const { return dir_problem_; }

private:
    // Re-checks `affected` (names) across files and updates the running set and the problems.
    std::vector<Change> settle(const std::set<std::string>& affected);
    void forget(const std::string& name);
    void remember(detail::LoadedFile loaded);

    std::filesystem::path dir_;
    WorkflowDefaults defaults_;
    const PluginCatalog& plugins_;
    std::map<std::string, std::unique_ptr<detail::LoadedFile>> files_; // by name: each file on its own
    std::set<std::string> names_;                                        // valid names of files_
    std::map<std::string, std::set<std::string>> parents_; // name -> files whose tasks run it
    std::map<std::string, std::vector<Diagnostic>> problems_; // by name: files that do not load
    std::optional<Diagnostic> dir_problem_;
    std::map<std::string, std::shared_ptr<const Workflow>> running_;
};

const char* toString(WorkflowDirectory::Change::Kind k);

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_WORKFLOW_DIRECTORY_H
