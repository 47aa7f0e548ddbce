// Plain records of runs, tasks and events as the store keeps them and the control channel shows
// them. No SQLite here: this header is shared by store, engine and control.
#ifndef TASKHUB_STORE_RECORDS_H
#define TASKHUB_STORE_RECORDS_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace taskhub::store {

// Run states: queued, running, succeeded, failed, cancelled, skipped.
// Task states: pending, ready, running, retrying, succeeded, failed, cancelled, skipped.
inline bool isFinalRunState(const std::string& s) {
    return s == "succeeded" || s == "failed" || s == "cancelled" || s == "skipped";
}

struct TaskRecord {
    std::string task_id;
    std::string plugin;
    std::string state = "pending";
    int attempt = 0;                 // attempts started so far
    std::optional<int> exit_code;
    std::string message;
    std::optional<int64_t> started_ms; // epoch milliseconds
    std::optional<int64_t> ended_ms;
};

struct RunRecord {
    std::string id;
    std::string workflow;
    std::string trigger;             // "cron", "manual"
    std::string state = "queued";
    std::string message;
    std::string version;             // workflow definition hash
    std::optional<int64_t> scheduled_ms;
    int64_t created_ms = 0;
    std::optional<int64_t> started_ms;
    std::optional<int64_t> ended_ms;
    std::vector<TaskRecord> tasks;   // filled when asked for
};

struct EventRecord {
    int64_t ts_ms = 0;
    std::string run_id;
    std::string task_id;             // empty for run-level events
    std::string kind;                // ready, start, end, skipped, cancelled, retry, run_*, ...
    std::string detail;
};

} // namespace taskhub::store

#endif // TASKHUB_STORE_RECORDS_H
