// Settings and task parameters of the Slurm executor (docs/slurm.md), parsed from the JSON the host
// hands over, and what they become: sbatch's arguments and the batch script.
//
// Pure functions with no I/O, shared by validate() and execute(), so that a task accepted when its
// workflow file is loaded means the same thing when it runs.
#ifndef TASKHUB_PLUGINS_SLURM_SLURM_PARAMS_H
#define TASKHUB_PLUGINS_SLURM_SLURM_PARAMS_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace taskhub::plugins::slurm {

// The [plugins.slurm] table of taskhub.toml, engine-owned keys already removed.
struct Config {
    std::string slurm_conf;                       // "" : Slurm's default (or taskhubd's SLURM_CONF)
    std::string bin_dir;                          // "" : the usual system directories
    std::string output_dir = "/var/lib/taskhub/slurm";
    uint64_t poll_interval_ms = 2000;
    uint64_t command_timeout_ms = 30000;
    bool sacct = true;                            // sacct = "auto" (true) | "never"
};

// Throws std::invalid_argument naming the setting, what is wrong and what is accepted.
Config parseConfig(std::string_view config_json);

// One task's parameters.
struct Params {
    std::string command;                      // shell text for the batch script; or
    std::string script;                       // a batch script's path, run with args
    std::vector<std::string> args;
    std::string partition, time_limit, mem, nodes, gpus, account, qos, array, workdir;
    std::optional<uint64_t> time_limit_minutes;
    std::optional<int64_t> cpus, ntasks;
    std::vector<std::string> extra_args;
};

// Parses and checks one task's parameters. Throws sdk::InvalidParam with the offending key and a
// message that says what would be right.
Params parseParams(std::string_view params_json);

// "<digits><unit>", unit ms, s, m, h or d, in milliseconds; nullopt for another form or overflow.
std::optional<uint64_t> parseDuration(std::string_view text);

// Who the job runs as (a task's run_as): sbatch --uid/--gid.
struct JobOwner {
    uint32_t uid = 0;
    uint32_t gid = 0;
};

// What identifies an attempt's job in Slurm: its name and comment.
std::string jobName(std::string_view workflow, std::string_view task);
std::string jobComment(std::string_view run, std::string_view task, uint32_t attempt);

// sbatch's arguments (without the program name): --parsable, the name and comment, the output
// file pattern, the owner, every option of p, then the script (script_path; empty: sbatch reads
// the batch script from its standard input) and its args. Each value is one argument: nothing here
// passes through a shell.
std::vector<std::string> sbatchArgs(const Params& p, std::string_view name, std::string_view comment,
                                    std::string_view output_dir, const std::optional<JobOwner>& owner,
                                    std::string_view script_path);

// The batch script for a `command` task: the command text (whose templates the host already
// escaped) after a shebang. The task's environment reaches the job through sbatch's own (sbatch
// exports its environment to the job).
std::string batchScript(const Params& p);

} // namespace taskhub::plugins::slurm

#endif // TASKHUB_PLUGINS_SLURM_SLURM_PARAMS_H
