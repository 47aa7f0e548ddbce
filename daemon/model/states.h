// The domain's vocabulary as types: run and task states, where a run came from, why a firing
// was skipped, what kind of task a task is. Header-only and free of every other module, so the
// store, the engine, the triggers, the control channel and taskhubctl all speak it. The store
// converts at its edge: these names are exactly the text on disk and on the wire.
#ifndef TASKHUB_MODEL_STATES_H
#define TASKHUB_MODEL_STATES_H

#include <array>
#include <cstdint>
#include <string_view>
#include <utility>

#include "model/names.h"

namespace taskhub::model {

// A run: queued (waiting for an earlier run, overlap = queue_*), running, paused (no new task
// starts), then one final state.
enum class RunState : uint8_t { Queued, Running, Paused, Succeeded, Failed, Cancelled, Skipped };

template <>
struct NameTable<RunState> {
    static constexpr std::array<std::pair<RunState, std::string_view>, 7> entries{{
        {RunState::Queued, "queued"},
        {RunState::Running, "running"},
        {RunState::Paused, "paused"},
        {RunState::Succeeded, "succeeded"},
        {RunState::Failed, "failed"},
        {RunState::Cancelled, "cancelled"},
        {RunState::Skipped, "skipped"},
    }};
};
static_assert(tableIsComplete<RunState>());

constexpr bool isFinal(RunState s) { return s >= RunState::Succeeded; }

// A task: pending (upstream not done), ready (waiting for a slot or for the run to resume),
// starting (the attempt is recorded; its plugin is called once that record is durable),
// running, frozen (its processes stopped by `pause --freeze`), retrying (waiting out its
// backoff), then one final state.
enum class TaskState : uint8_t {
    Pending,
    Ready,
    Starting,
    Running,
    Frozen,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
    Skipped,
};

template <>
struct NameTable<TaskState> {
    static constexpr std::array<std::pair<TaskState, std::string_view>, 10> entries{{
        {TaskState::Pending, "pending"},
        {TaskState::Ready, "ready"},
        {TaskState::Starting, "starting"},
        {TaskState::Running, "running"},
        {TaskState::Frozen, "frozen"},
        {TaskState::Retrying, "retrying"},
        {TaskState::Succeeded, "succeeded"},
        {TaskState::Failed, "failed"},
        {TaskState::Cancelled, "cancelled"},
        {TaskState::Skipped, "skipped"},
    }};
};
static_assert(tableIsComplete<TaskState>());

constexpr bool isFinal(TaskState s) { return s >= TaskState::Succeeded; }

// An attempt that has (or may have) a process: what recovery after a crash looks for.
constexpr bool attemptIsActive(TaskState s) {
    return s == TaskState::Starting || s == TaskState::Running || s == TaskState::Frozen;
}

// Where a run came from: a time trigger's kind (cron, every, at, reboot), `taskhubctl run`,
// a file dropped for a watch trigger, or a parent run's workflow task.
enum class TriggerSource : uint8_t { Cron, Every, At, Reboot, Manual, File, Parent };

template <>
struct NameTable<TriggerSource> {
    static constexpr std::array<std::pair<TriggerSource, std::string_view>, 7> entries{{
        {TriggerSource::Cron, "cron"},
        {TriggerSource::Every, "every"},
        {TriggerSource::At, "at"},
        {TriggerSource::Reboot, "reboot"},
        {TriggerSource::Manual, "manual"},
        {TriggerSource::File, "file"},
        {TriggerSource::Parent, "parent"},
    }};
};
static_assert(tableIsComplete<TriggerSource>());

// Why a firing was recorded as skipped instead of run. None: the run was not skipped (or was
// skipped by its own tasks, not as a firing). Paused: its workflow's schedule was paused; such
// a record may become the real run on resume (catch-up), which is why it is recorded as a
// cause and not recognised by its message. Overlap: an earlier run was active (overlap = skip,
// or queue_one with a run already queued). ActiveLimit: max_active_runs runs were active
// (overlap = allow).
enum class SkipCause : uint8_t { None, Paused, Overlap, ActiveLimit };

template <>
struct NameTable<SkipCause> {
    static constexpr std::array<std::pair<SkipCause, std::string_view>, 4> entries{{
        {SkipCause::None, ""},
        {SkipCause::Paused, "paused"},
        {SkipCause::Overlap, "overlap"},
        {SkipCause::ActiveLimit, "active_limit"},
    }};
};
static_assert(tableIsComplete<SkipCause>());

// The message of a firing recorded as skipped because its workflow's schedule was paused starts
// with this. It is text for people: what catch-up looks for is the run's SkipCause::Paused.
inline constexpr std::string_view kPausedFiringMessage = "skipped: the workflow is paused";

// A task runs a plugin, or starts a child run of another workflow (a workflow task).
enum class TaskKind : uint8_t { Plugin, Workflow };

template <>
struct NameTable<TaskKind> {
    static constexpr std::array<std::pair<TaskKind, std::string_view>, 2> entries{{
        {TaskKind::Plugin, "plugin"},
        {TaskKind::Workflow, "workflow"},
    }};
};
static_assert(tableIsComplete<TaskKind>());

} // namespace taskhub::model

#endif // TASKHUB_MODEL_STATES_H
