// Housekeeping: applies history retention in the background (docs/operations.md, "History and
// housekeeping"). Every few seconds a pass on the event loop
//   - picks up to a batch of finished top-level runs beyond their workflow's keep_runs /
//     keep_days (the workflow file's keys, else taskhub.toml's [history]) and hands their
//     deletion (child runs, tasks and events included) to the store's writer thread;
//   - once that is durable, removes their log directories (log_dir/<run id>, which holds the
//     child runs' logs too) on a worker thread;
//   - forgets recorded file versions whose run is gone (or never was) and whose file is no longer
//     on disk as that version, so that a file still there never fires twice.
// One HISTORY_PRUNED line is logged for a pass that deleted something. A pass that filled its
// batch is followed by the next one at once, so a large backlog drains steadily without a long
// stop of the loop. A run that ended less than kMinAge ago is left for a later pass: late events
// (a file drop's `after` action) may still be written to it.
//
// Threading: event-loop thread only; the store and the worker pool do the rest.
#ifndef TASKHUB_APP_HOUSEKEEPING_H
#define TASKHUB_APP_HOUSEKEEPING_H

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "config/daemon_config.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::config {
struct Workflow;
}
namespace taskhub::store {
class Store;
}
namespace taskhub::pool {
class WorkerPool;
}

namespace taskhub::app {

class Housekeeping {
public:
    static constexpr std::chrono::seconds kInterval{2};
    static constexpr std::chrono::seconds kMinAge{5};
    static constexpr size_t kBatch = 200;

    // The loaded workflow of a name, or null (a workflow no longer loaded gets the global rules).
    using WorkflowLookup = std::function<std::shared_ptr<const config::Workflow>(const std::string&)>;

    // Starts the first pass after kInterval. Passes run even when nothing sets a limit (a reload
    // may give a workflow one at any time); such a pass costs an index lookup per workflow.
    Housekeeping(boost::asio::io_context& io, store::Store& store, pool::WorkerPool& pool,
                 std::filesystem::path log_dir, config::HistorySettings history, WorkflowLookup lookup);
    ~Housekeeping();
    void stop(); // no further pass
    Housekeeping(const Housekeeping&) = delete;
    Housekeeping& operator=(const Housekeeping&) = delete;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_HOUSEKEEPING_H
