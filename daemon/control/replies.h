// How runs, events, workflows and plugins look on the control channel (docs/control-protocol.md):
// the JSON shapes the command handlers (commands.cc) answer with. The values come from the
// daemon's records and the domain's name tables, so the wire spells states and triggers exactly
// as the store does.
#ifndef TASKHUB_CONTROL_REPLIES_H
#define TASKHUB_CONTROL_REPLIES_H

#include <boost/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control/services.h"

namespace taskhub::control {

// An ISO 8601 UTC time with milliseconds, or null.
boost::json::value isoOrNull(const std::optional<int64_t>& ms);
boost::json::object nameValuesJson(const store::NameValues& values);
// A task's outputs as one object: plain ones as strings, typed ones (compact JSON text) as the
// JSON values they are.
boost::json::object outputsJson(const store::NameValues& plain, const store::NameValues& typed);
// Milliseconds from started to ended, or to now while it lasts; null before it started.
boost::json::value durationMs(const std::optional<int64_t>& started, const std::optional<int64_t>& ended);
// A run (with its tasks when with_tasks); waiting: why ready tasks have not started
// (Services::waitingReasons), for `show`; may be null.
// compact: leave out the fan-out instances that succeeded (each fan-out task's "instances"
// still counts them, and "instances_omitted" says how many rows were left out).
boost::json::object runJson(const store::RunRecord& r, bool with_tasks,
                            const std::map<std::string, std::string>* waiting = nullptr, bool compact = false);
boost::json::array eventsJson(const std::vector<store::EventRecord>& events);
// A run with its tasks (and why ready ones wait) and, under "children", its child runs, each
// with its own events and children.
// events: r's own (services.events(r.id)), for each task's "attempts"; read when null.
boost::json::object runTreeJson(Services& services, const store::RunRecord& r, int depth,
                                const std::vector<store::EventRecord>* events = nullptr, bool compact = false);
// The events without fan-out instances' routine ones (ready, start, usage, a succeeded end), for
// a compact `show`; *omitted counts those left out.
std::vector<store::EventRecord> compactEvents(const std::vector<store::EventRecord>& events, size_t* omitted);
// What an attempt cost, as `show --json` gives it (docs/control-protocol.md, "Accounting"):
// {"source", "cpu_user_us", "cpu_system_us", "memory_peak", "oom_kills", "io_read_bytes",
// "io_write_bytes"}; the last four are null when not measured.
boost::json::object usageJson(const cgroup::Usage& u);
// A workflow for `list` (detail false) or `show` (detail true).
boost::json::object workflowJson(const WorkflowInfo& w, bool detail);
// A deadline miss as `show WORKFLOW` lists it.
boost::json::object deadlineMissJson(const store::DeadlineMissRecord& m);
// Adds a run's deadline fields: "deadline_missed_ms" (the instant its firing missed its
// deadline, S + deadline, or null) and, with detail (`show RUN`), "deadline": null when the
// run's workflow has no deadline or the run is not a firing of a cron, every or at trigger,
// else {deadline, due, state: missed | met | pending | not_checked, detected, reason}.
void addDeadline(Services& services, const store::RunRecord& r, bool detail, boost::json::object& o);
boost::json::object pluginJson(const PluginStatus& p);
// A run's notifications for `show`: event, target, state, attempts, sent, last_error, ...
boost::json::array notificationsJson(const std::vector<store::NotificationRecord>& notes);

} // namespace taskhub::control

#endif // TASKHUB_CONTROL_REPLIES_H
