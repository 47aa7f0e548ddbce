// The "slurm" executor (docs/slurm.md): each attempt is a Slurm batch job. Built only on the public
// plugin SDK (taskhub/plugin.hpp).
//
// execute() writes the batch script (for `command`) and starts `sbatch --parsable`; its job id is
// the attempt's handle (report_handle, ABI 1.6). One timer per instance follows every job: each
// poll_interval, one `squeue --json` for all of them (no process per job per poll), the new part of
// each job's output file copied into the task's log, and an attempt completed with Slurm's verdict
// once its job (or every element of its array) ended. A job squeue no longer shows is asked of
// sacct when accounting answers; else the attempt is lost (TH_OUTCOME_LOST). cancel() is scancel;
// suspend()/resume() hold/release a pending job and suspend/resume a running one. After a restart
// of taskhubd, adopt() follows the recorded job again (or finds it by its comment).
//
// Threading: TH_THREADS_SERIAL and non-blocking: every call but health_check() arrives on the
// host's event loop, one at a time, and Slurm's commands are child processes whose exit the loop
// watches through a pidfd; nothing waits for one there. health_check() runs on the host's health
// thread and may block (scontrol ping and show partition, bounded by command_timeout); it reads
// only the configuration and the partition names, which validate() adds to under a mutex.
#ifndef TASKHUB_PLUGINS_SLURM_SLURM_PLUGIN_H
#define TASKHUB_PLUGINS_SLURM_SLURM_PLUGIN_H

#include "command.h"
#include "slurm_params.h"
#include "slurm_state.h"

#include <taskhub/plugin.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::plugins::slurm {

class SlurmPlugin final : public sdk::Plugin {
public:
    // `command` is shell text: the host escapes its templates' values for the shell.
    static constexpr const char* kShellParams[] = {"command", nullptr};

    SlurmPlugin(sdk::Host host, std::string_view config_json);
    ~SlurmPlugin() override;

    void validate(std::string_view params_json) override;
    void execute(const sdk::Task& task) override;
    void adopt(const sdk::Task& task, const std::optional<std::string>& handle) override;
    void cancel(uint64_t token) override;
    void suspend(uint64_t token) override;
    void resume(uint64_t token) override;
    void hold(uint64_t token) override;
    void release(uint64_t token) override;
    sdk::Health health() override;

private:
    // One element of an array job whose output is being copied.
    struct Output {
        std::string path;
        uint64_t offset = 0;
    };
    struct Job {
        uint64_t token = 0;
        uint64_t job_id = 0;          // 0 while sbatch runs, or while adopt() looks for it
        bool array = false;
        bool searching = false;       // no job id known: found by its comment at the next poll
        std::string searched_because; // why it is searched for (for the message if it is not found)
        std::string comment;
        uint32_t owner_uid = 0;       // whose files its outputs must be
        int log_fd = -1;              // our non-blocking duplicate; -1: none
        Output output;                // a single job's output file
        std::vector<std::string> copied_files; // output files copied whole: removed at the end
        std::map<uint64_t, bool> elements_copied; // array: element index -> output copied
        std::string last_state;
        bool cancel_requested = false;
        bool cancel_sent = false;
        bool held = false, suspended = false;
        bool hold_wanted = false;     // the run was paused while sbatch still ran
        int misses = 0;               // polls in a row that did not show it
        bool asked_sacct = false;
    };

    // A Slurm command that runs: its exit is watched (watch), command_timeout kills it (timeout).
    struct Running {
        std::unique_ptr<Child> child;
        uint64_t timeout = 0;
        uint64_t watch = 0;
    };

    Job* find(uint64_t token);
    Job& track(const sdk::Task& task, const Params& p);
    void finish(Job& job, int outcome, int exit_code, const std::string& message);
    void lose(Job& job, const std::string& why);
    std::vector<std::string> env() const;
    std::string program(const char* name) const;
    // Starts a command on the loop; done(result) runs there once it exits (or was killed at
    // command_timeout).
    void run(const char* name, std::vector<std::string> args, std::function<void(const CommandResult&)> done);
    void runWithInput(const char* name, std::vector<std::string> args, int stdin_fd, std::vector<std::string> env,
                      std::function<void(const CommandResult&)> done);
    void submitted(uint64_t token, const CommandResult& r);
    void arm();
    void poll();
    void polled(const CommandResult& r);
    void follow(Job& job, const std::vector<JobInfo>& jobs);
    void missing(Job& job);
    void askSacct(uint64_t token);
    // Copies what is new in out's file into the job's log (at most 1 MiB, or 64 MiB when whole);
    // *complete: everything there was has been copied (false: the log's pipe was full).
    void copyOutput(Job& job, Output& out, bool whole, bool* complete);
    void scancel(Job& job);
    void scontrol(Job& job, const char* verb, bool* flag);

    static constexpr uint64_t kPollPerJobMs = 10; // see arm()
    Config config_;
    std::map<uint64_t, Job> jobs_;
    std::map<uint64_t, Running> running_; // by our own id
    uint64_t next_child_ = 0;
    // Array elements whose output is being copied: (token, index) -> 1 + the file offset copied
    // (0: not started; UINT64_MAX: refused).
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> element_offsets_;
    uint64_t timer_ = 0;
    bool polling_ = false;
    std::string poll_error_; // the last poll's failure, logged once until a poll succeeds
    void ensureOutputDir();
    bool output_dir_ready_ = false;
    std::atomic<bool> used_{false}; // a task of this plugin was loaded or run (validate, execute, adopt)
    std::mutex partitions_mu_;
    std::set<std::string> partitions_; // named by loaded tasks (validate)
};

} // namespace taskhub::plugins::slurm

#endif // TASKHUB_PLUGINS_SLURM_SLURM_PLUGIN_H
