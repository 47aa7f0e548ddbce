// Running Slurm's client commands (sbatch, squeue, scancel, scontrol, sacct) as child processes:
// without a shell, with a small fixed environment, their output in memory files (so a large
// answer never blocks them on a pipe), and their exit watched through a pidfd, so that the event
// loop never waits for one (with slurmctld down, squeue and sbatch take about 9 s to fail).
#ifndef TASKHUB_PLUGINS_SLURM_COMMAND_H
#define TASKHUB_PLUGINS_SLURM_COMMAND_H

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace taskhub::plugins::slurm {

// What a command did.
struct CommandResult {
    bool ran = false;       // it started and exited by itself (false: could not start, or killed)
    int exit_code = -1;     // its exit code when it exited, else -1
    std::string out;        // its standard output (at most kMaxOutput bytes)
    std::string err;        // its standard error (at most 4 KiB), trimmed
    std::string failure;    // why it did not run or was killed ("timed out after 30s")

    // "squeue: <err>" / the failure / "exit code 1": for messages.
    std::string describe(const std::string& program) const;
};

// A started child process.
class Child {
public:
    // Starts program (a full path) with args and env ("NAME=value"), its standard input from
    // stdin_fd (read from its start; -1: /dev/null). nullptr with *err on failure.
    static std::unique_ptr<Child> start(const std::string& program, const std::vector<std::string>& args,
                                        const std::vector<std::string>& env, std::string* err, int stdin_fd = -1);
    ~Child(); // kills and reaps it if it still runs
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    int pidfd() const { return pidfd_; } // readable once it has exited
    // Reaps it (after pidfd() became readable, or after kill()) and collects its output.
    CommandResult finish();
    void kill();                         // SIGKILL; finish() then reports `why`
    void markKilled(std::string why) { killed_ = std::move(why); }

private:
    Child() = default;
    pid_t pid_ = -1;
    int pidfd_ = -1;
    int out_ = -1;
    int err_ = -1;
    bool reaped_ = false;
    std::string killed_;
};

// Runs a command to its end, waiting at most timeout_ms (then kills it). For the health check's
// own thread only: it blocks.
CommandResult runAndWait(const std::string& program, const std::vector<std::string>& args,
                         const std::vector<std::string>& env, uint64_t timeout_ms);

inline constexpr size_t kMaxOutput = 64u << 20; // squeue --json of a large cluster stays well below

} // namespace taskhub::plugins::slurm

#endif // TASKHUB_PLUGINS_SLURM_COMMAND_H
