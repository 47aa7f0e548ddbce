// The schema, version by version, and the migration that takes an older database forward.
#include "store/internal.h"

#include <spdlog/spdlog.h>

#include <iterator>

namespace taskhub::store {

namespace {

const char* kSchemaV1 = R"sql(
CREATE TABLE runs(
  id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  trigger TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  scheduled_ms INTEGER,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  ended_ms INTEGER);
CREATE INDEX runs_by_workflow ON runs(workflow);
CREATE INDEX runs_by_state ON runs(state);
CREATE TABLE tasks(
  run_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  plugin TEXT NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  exit_code INTEGER,
  message TEXT NOT NULL DEFAULT '',
  started_ms INTEGER,
  ended_ms INTEGER,
  seq INTEGER NOT NULL,
  PRIMARY KEY(run_id, task_id)) WITHOUT ROWID;
CREATE TABLE events(
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '');
CREATE INDEX events_by_run ON events(run_id, id);
)sql";

// v2: run params and nesting, task outputs and child runs. ADD COLUMN with constant defaults only
// rewrites the schema, not the rows, so migrating a large history is instant.
const char* kSchemaV2 = R"sql(
ALTER TABLE runs ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN parent_run TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN parent_task TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_parent ON runs(parent_run);
ALTER TABLE tasks ADD COLUMN outputs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN child_run TEXT NOT NULL DEFAULT '';
)sql";

// v3: integer keys and the event log in blocks, so that a task's write is one B-tree descent on
// an integer and a commit's events are one row per run (a row per event and text keys made the
// store most of the daemon's work on large runs).
//   runs.key: an integer key (AUTOINCREMENT: never reused); runs.id stays the run's name.
//   tasks.key = run key * 2^20 + the task's position in its workflow (kTaskKeyBits), so a run's
//     tasks are one range of keys in workflow order; the run id and position columns go.
//   event_blocks: per run and commit, the run's events of that commit as a JSON array of
//     [seq, ts_ms, task_id, kind, detail]. seq numbers events across all runs (it orders the
//     events of a run tree); the row's key is its last event's seq, so the next seq after a
//     restart is max(last_seq) + 1, found in one B-tree descent.
const char* kSchemaV3 = R"sql(
CREATE TABLE runs_v3(
  key INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  workflow TEXT NOT NULL,
  trigger TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  scheduled_ms INTEGER,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  ended_ms INTEGER,
  params TEXT NOT NULL DEFAULT '{}',
  parent_run TEXT NOT NULL DEFAULT '',
  parent_task TEXT NOT NULL DEFAULT '',
  depth INTEGER NOT NULL DEFAULT 0);
INSERT INTO runs_v3(key, id, workflow, trigger, state, message, version, scheduled_ms, created_ms,
                    started_ms, ended_ms, params, parent_run, parent_task, depth)
  SELECT rowid, id, workflow, trigger, state, message, version, scheduled_ms, created_ms,
         started_ms, ended_ms, params, parent_run, parent_task, depth FROM runs;
CREATE TABLE tasks_v3(
  key INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  plugin TEXT NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  exit_code INTEGER,
  message TEXT NOT NULL DEFAULT '',
  started_ms INTEGER,
  ended_ms INTEGER,
  outputs TEXT NOT NULL DEFAULT '{}',
  child_run TEXT NOT NULL DEFAULT '');
INSERT INTO tasks_v3
  SELECT r.rowid * 1048576 + t.seq, t.task_id, t.plugin, t.state, t.attempt, t.exit_code, t.message,
         t.started_ms, t.ended_ms, t.outputs, t.child_run
  FROM tasks t JOIN runs r ON r.id = t.run_id;
CREATE TABLE event_blocks(
  last_seq INTEGER PRIMARY KEY,
  run_key INTEGER NOT NULL,
  events TEXT NOT NULL);
INSERT INTO event_blocks(last_seq, run_key, events)
  SELECT e.id, r.rowid, json_array(json_array(e.id, e.ts_ms, e.task_id, e.kind, e.detail))
  FROM events e JOIN runs r ON r.id = e.run_id;
DROP TABLE events;
DROP TABLE tasks;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
ALTER TABLE tasks_v3 RENAME TO tasks;
CREATE INDEX runs_by_workflow ON runs(workflow);
CREATE INDEX runs_by_state ON runs(state);
CREATE INDEX runs_by_parent ON runs(parent_run);
CREATE INDEX runs_by_schedule ON runs(workflow, scheduled_ms);
CREATE INDEX event_blocks_by_run ON event_blocks(run_key, last_seq);
CREATE TABLE workflow_pauses(
  workflow TEXT PRIMARY KEY,
  since_ms INTEGER NOT NULL,
  by TEXT NOT NULL) WITHOUT ROWID;
)sql";

// 4: plugin health transitions.
constexpr const char* kSchemaV4 = R"sql(
CREATE TABLE plugin_events(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  plugin TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  message TEXT NOT NULL);
CREATE INDEX plugin_events_by_plugin ON plugin_events(plugin, id);
)sql";

// 5: the file versions seen by file-drop triggers (exactly once per version).
constexpr const char* kSchemaV5 = R"sql(
CREATE TABLE file_versions(
  workflow TEXT NOT NULL,
  path TEXT NOT NULL,
  inode INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  run_id TEXT NOT NULL,
  recorded_ms INTEGER NOT NULL,
  PRIMARY KEY(workflow, path, inode, size, mtime_ns)) WITHOUT ROWID;
)sql";

// 6: crash recovery. The process identity of a task's latest attempt; the attempts of a run
// that recovery found lost; facts about the daemon's previous start (meta: boot_id).
constexpr const char* kSchemaV6 = R"sql(
ALTER TABLE tasks ADD COLUMN pid INTEGER;
ALTER TABLE tasks ADD COLUMN pgid INTEGER;
ALTER TABLE tasks ADD COLUMN proc_start INTEGER;
ALTER TABLE runs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
CREATE TABLE meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL) WITHOUT ROWID;
)sql";

// 7: the domain recorded as such, not recognised by text. tasks.kind: plugin | workflow (a task
// that starts a child run). runs.skip_cause: '' | paused | overlap | active_limit (why a firing
// was recorded as skipped; catch-up after `resume` revives the paused ones). Older rows get them
// from the text the daemon wrote before: a workflow task's plugin reads "workflow:NAME", and a
// skipped firing's message starts as below (the spelling of schema 6 and before, whatever the
// daemon writes today).
constexpr const char* kSchemaV7 = R"sql(
ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'plugin';
UPDATE tasks SET kind = 'workflow' WHERE plugin GLOB 'workflow:*';
ALTER TABLE runs ADD COLUMN skip_cause TEXT NOT NULL DEFAULT '';
UPDATE runs SET skip_cause = 'paused'
  WHERE state = 'skipped' AND message GLOB 'skipped: the workflow is paused*';
UPDATE runs SET skip_cause = 'overlap'
  WHERE state = 'skipped' AND skip_cause = '' AND message GLOB 'skipped: run * (overlap = *)';
UPDATE runs SET skip_cause = 'active_limit'
  WHERE state = 'skipped' AND skip_cause = '' AND message GLOB 'skipped: * runs are active, max_active_runs = *';
)sql";

// 8 (issue 16): deadlines (triggers/deadline.h) and notifications (daemon/notify's durable outbox).
// deadline_misses: each firing that missed its workflow's deadline (run_state '' = no run).
// deadline_marks: per workflow with a deadline, the latest scheduled instant whose firing has been
// decided (met or missed); later firings are checked, earlier ones never again.
// notifications: one row per (run, event, target); id is derived from the three, so recording one
// twice keeps the first. state: pending | sent | failed | dropped. payload: the run's facts as
// JSON. target is for people (a webhook URL without its credentials and query), destination
// where it goes.
constexpr const char* kSchemaV8 = R"sql(
CREATE TABLE IF NOT EXISTS deadline_misses(
  workflow TEXT NOT NULL,
  scheduled_ms INTEGER NOT NULL,
  run_id TEXT NOT NULL,
  due_ms INTEGER NOT NULL,
  deadline_s INTEGER NOT NULL,
  detected_ms INTEGER NOT NULL,
  run_state TEXT NOT NULL,
  reason TEXT NOT NULL,
  PRIMARY KEY(workflow, scheduled_ms)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deadline_misses_by_run ON deadline_misses(run_id);
CREATE TABLE IF NOT EXISTS deadline_marks(
  workflow TEXT PRIMARY KEY,
  checked_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notifications(
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  workflow TEXT NOT NULL,
  event TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  destination TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  sent_ms INTEGER,
  payload TEXT NOT NULL,
  run_as TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notifications_by_run ON notifications(run_id);
CREATE INDEX IF NOT EXISTS notifications_by_state ON notifications(state, created_ms);
)sql";

// 9 (issue 17): what each task's latest attempt cost (cgroup/resources.h Usage; NULL cpu_user_us:
// not measured; usage_source: '' | cgroup | rusage) and the processes left in its cgroup after its
// main process exited (leftovers_found NULL: none; leftovers_action: '' | kill | keep). Earlier
// attempts' costs are in their "usage" events.
constexpr const char* kSchemaV9 = R"sql(
ALTER TABLE tasks ADD COLUMN cpu_user_us INTEGER;
ALTER TABLE tasks ADD COLUMN cpu_system_us INTEGER;
ALTER TABLE tasks ADD COLUMN memory_peak INTEGER;
ALTER TABLE tasks ADD COLUMN oom_kills INTEGER;
ALTER TABLE tasks ADD COLUMN io_read_bytes INTEGER;
ALTER TABLE tasks ADD COLUMN io_write_bytes INTEGER;
ALTER TABLE tasks ADD COLUMN usage_source TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN leftovers_found INTEGER;
ALTER TABLE tasks ADD COLUMN leftovers_action TEXT NOT NULL DEFAULT '';
)sql";

// 10 (issue 18): the run's task list (Store::TaskList: each task's kind, id and plugin in workflow
// order), written once with the run; a task's row is written when it first leaves pending. Runs
// written before keep their rows and an empty list, and read as before.
constexpr const char* kSchemaV10 = R"sql(
ALTER TABLE runs ADD COLUMN tasks TEXT NOT NULL DEFAULT '';
)sql";

// 11 (issue 19): the external handle of a task's latest attempt (ABI 1.6 report_handle; '' when
// none was reported), handed back to its plugin's adopt() after a restart.
constexpr const char* kSchemaV11 = R"sql(
ALTER TABLE tasks ADD COLUMN handle TEXT NOT NULL DEFAULT '';
)sql";

// 12 (issue 20): the list a fan-out task (`foreach`) was expanded from, as a JSON array ('' for
// every other task), so that a restart continues the fan-out with the same instances.
constexpr const char* kSchemaV12 = R"sql(
ALTER TABLE tasks ADD COLUMN items TEXT NOT NULL DEFAULT '';
)sql";

// 13 (issue 20): how many failures a run absorbed (tasks with on_failure = "continue" that ended
// failed); 0 for runs written before.
constexpr const char* kSchemaV13 = R"sql(
ALTER TABLE runs ADD COLUMN failures_absorbed INTEGER NOT NULL DEFAULT 0;
)sql";

// Every migration, in order: kMigrations[i] takes schema version i to i + 1.
const char* const kMigrations[] = {kSchemaV1, kSchemaV2, kSchemaV3, kSchemaV4, kSchemaV5, kSchemaV6,
                                   kSchemaV7, kSchemaV8, kSchemaV9, kSchemaV10, kSchemaV11, kSchemaV12, kSchemaV13};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

} // namespace

bool migrate(sqlite3* db, const std::filesystem::path& path, std::string* err) {
    auto app_id = pragmaInt(db, "PRAGMA application_id", path, err);
    if (!app_id) return false;
    auto schema_version = pragmaInt(db, "PRAGMA user_version", path, err);
    if (!schema_version) return false;
    auto table_count = pragmaInt(db, "SELECT count(*) FROM sqlite_master", path, err);
    if (!table_count) return false;
    const int64_t app = *app_id, version = *schema_version, tables = *table_count;
    if (app != kApplicationId && (app != 0 || tables != 0)) {
        *err = path.string() + " is not a TaskHub state database (application_id " + std::to_string(app) + ")";
        return false;
    }
    if (version > Store::kSchemaVersion) {
        *err = path.string() + " was written by a newer taskhubd (schema version " + std::to_string(version) +
               ", this taskhubd knows up to " + std::to_string(Store::kSchemaVersion) + "); refusing to modify it";
        return false;
    }
    if (version == Store::kSchemaVersion) return true;
    if (version > 0) {
        spdlog::info("STORE_MIGRATING {} from schema version {} to {}", path.string(), version,
                     Store::kSchemaVersion);
    }
    if (!exec(db, "BEGIN IMMEDIATE", path, err)) return false;
    // Forward only, one step at a time, all in one transaction: a failure leaves the old
    // version whole.
    bool ok = true;
    for (int64_t v = version; ok && v < Store::kSchemaVersion; ++v) ok = exec(db, kMigrations[v], path, err);
    ok = ok && exec(db, ("PRAGMA application_id=" + std::to_string(kApplicationId)).c_str(), path, err) &&
         exec(db, ("PRAGMA user_version=" + std::to_string(Store::kSchemaVersion)).c_str(), path, err) &&
         exec(db, "COMMIT", path, err);
    if (!ok) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return ok;
}

} // namespace taskhub::store
