// Bounds on what one workflow file can make taskhubd read, parse and hold: taskhub.toml's
// max_workflow_file_size and max_workflow_tasks (docs/workflow-format.md, "Limits"). A file over
// either is refused, with a problem naming the file and the limit. The nesting of its TOML is
// bounded too, by kMaxTomlNesting (config/toml_nesting.h), which is not a setting.
// A header of its own so that daemon_config.h can hold the settings without workflow.h.
#ifndef TASKHUB_CONFIG_WORKFLOW_LIMITS_H
#define TASKHUB_CONFIG_WORKFLOW_LIMITS_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace taskhub::config {

// The most tasks one workflow may have whatever the settings (the state database keys a task by
// its run and its position in 20 bits; see store::Store::kMaxTasksPerRun).
inline constexpr size_t kMaxTasksPerWorkflow = size_t{1} << 20;

struct WorkflowLimits {
    // 16 MiB: a 100,000-task file of shell tasks with commands and dependencies is about 10 MiB.
    static constexpr uint64_t kDefaultMaxFileSize = uint64_t{16} << 20;
    static constexpr size_t kDefaultMaxTasks = 100'000;
    uint64_t max_file_size = kDefaultMaxFileSize; // bytes
    size_t max_tasks = kDefaultMaxTasks;          // 1 to kMaxTasksPerWorkflow
    // The most items one `foreach` may expand to (taskhub.toml max_foreach_items): a literal list
    // over it refuses the file, a list found at run time over it fails the task.
    static constexpr size_t kDefaultMaxForeachItems = 10'000;
    size_t max_foreach_items = kDefaultMaxForeachItems; // 1 to kMaxTasksPerWorkflow
};

// Why a file of `size` bytes is refused under limits, e.g. "it is 20000000 bytes; workflow files
// may be at most 16777216 bytes (taskhub.toml max_workflow_file_size): split it ...".
inline std::string fileSizeProblem(uint64_t size, const WorkflowLimits& limits) {
    return "it is " + std::to_string(size) + " bytes; workflow files may be at most " +
           std::to_string(limits.max_file_size) +
           " bytes (taskhub.toml max_workflow_file_size): split it into several workflows, or raise the limit";
}

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_WORKFLOW_LIMITS_H
