// What Slurm says about jobs, and what that means for an attempt: parsing `squeue --json` and
// `sacct -P`, and the verdict for a job (or a job array) that ended (docs/slurm.md, "How a job
// ends"). Pure functions with no I/O.
#ifndef TASKHUB_PLUGINS_SLURM_SLURM_STATE_H
#define TASKHUB_PLUGINS_SLURM_SLURM_STATE_H

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::plugins::slurm {

// One record of squeue --json (a job, an array element, or an array's elements not yet started).
struct JobInfo {
    uint64_t job_id = 0;
    uint64_t array_job_id = 0;               // 0: not part of an array
    std::optional<uint64_t> array_task_id;   // the element; unset for the not-yet-started rest
    std::string array_task_string;           // the not-yet-started elements, like "1-3%1"
    std::string state;                       // PENDING, RUNNING, COMPLETED, FAILED, ...
    std::string reason;                      // state_reason
    int64_t exit_code = 0;                   // the raw wait status (768: exit 3)
    std::string name;
    std::string comment;
    std::string standard_output;             // as submitted (a pattern like .../%j.out)
};

// Parses squeue --json. An answer whose "errors" list is not empty is a failure (with slurmctld
// down, squeue exits 0 and reports the error there). nullopt with *err saying why.
std::optional<std::vector<JobInfo>> parseSqueue(std::string_view json, std::string* err);

// Parses `sacct -X -n -P -o JobID,State,ExitCode` lines ("42|COMPLETED|0:0", "42_3|FAILED|7:0",
// "42|CANCELLED by 0|0:15"): job id text -> record (state without " by UID"; exit_code as a raw
// wait status).
std::map<std::string, JobInfo> parseSacct(std::string_view text);

// Whether a job in this state has ended.
bool isFinal(std::string_view state);

// The attempt's end: th_outcome, exit code (-1: none) and the task's message.
struct Verdict {
    int outcome = 1;
    int exit_code = -1;
    std::string message;
};

// The verdict for one job that ended. cancelled_by_us: taskhubd asked scancel for it.
Verdict jobVerdict(uint64_t job_id, const JobInfo& job, bool cancelled_by_us);

// One element of an array job that ended.
struct Element {
    uint64_t index = 0;
    uint64_t job_id = 0;
    JobInfo info;
};

// The verdict for an array whose every element ended: succeeded when all COMPLETED.
Verdict arrayVerdict(uint64_t array_job_id, const std::vector<Element>& elements, bool cancelled_by_us);

// The indices in an array_task_string like "1-3,7,10-20:5%2" (at most `limit` of them).
std::vector<uint64_t> arrayIndices(std::string_view spec, size_t limit = 100000);

} // namespace taskhub::plugins::slurm

#endif // TASKHUB_PLUGINS_SLURM_SLURM_STATE_H
