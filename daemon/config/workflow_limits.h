// Bounds on what one workflow file can make taskhubd read, parse and hold: taskhub.toml's
// max_workflow_file_size and max_workflow_tasks (docs/workflow-format.md, "Limits"). A file over
// either is refused, with a problem naming the file and the limit. The nesting of its TOML is
// bounded too, by kMaxTomlNesting (config/toml_nesting.h), which is not a setting.
// A header of its own so that daemon_config.h can hold the settings without workflow.h.
#ifndef TASKHUB_CONFIG_WORKFLOW_LIMITS_H
#define TASKHUB_CONFIG_WORKFLOW_LIMITS_H

#include <cstddef>
#include <cstdint>

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
};

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_WORKFLOW_LIMITS_H
