// Internal to the config module: the two steps of loading a workflows directory, as
// loadWorkflowDir() runs them, made available one file at a time to WorkflowDirectory (which
// keeps the first step's results between changes). Implemented in workflow.cc.
#ifndef TASKHUB_CONFIG_WORKFLOW_CHECKS_H
#define TASKHUB_CONFIG_WORKFLOW_CHECKS_H

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/workflow.h"

namespace taskhub::config::detail {

struct FileLoadData; // what the checks across files need beyond the fields below

// Step 1: a file loaded and checked on its own (loadWorkflowFile()).
struct LoadedFile {
    std::string name; // the file stem
    std::filesystem::path file;
    std::shared_ptr<const Workflow> workflow; // null when the file has problems of its own
    std::vector<Diagnostic> problems;         // its own problems
    std::vector<std::string> children;        // the workflows its workflow tasks run, distinct
    std::shared_ptr<const FileLoadData> data;
};

LoadedFile loadAlone(const std::filesystem::path& file, const WorkflowDefaults& defaults,
                     const PluginCatalog& plugins);

// Step 2: the checks across files (see loadWorkflowDir()) of `files`, which must include every
// file that a file of interest runs, directly or not (its results depend on no other file).
// names: every workflow name of the directory, for "did you mean" suggestions. Returns each
// file's problems (its own and those across files, by line; empty: it loads), parallel to files.
std::vector<std::vector<Diagnostic>> checkAcrossFiles(const std::vector<const LoadedFile*>& files,
                                                      const std::filesystem::path& dir,
                                                      const std::set<std::string>& names);

} // namespace taskhub::config::detail

#endif // TASKHUB_CONFIG_WORKFLOW_CHECKS_H
