// A plugin whose isolation is "process": its library is loaded by a taskhub-runner child process
// (runner/main.cc) and never mapped into taskhubd. RemotePlugin is the daemon's proxy for it; it
// speaks the framed protocol of runner_protocol.h (docs/runner-protocol.md) over a socketpair.
//
// Crash isolation: when the runner dies (a signal, an exit, an OOM kill, a protocol error or a
// hung health check that made the proxy kill it), every attempt it was running completes as a
// transient failure that names the cause, the liveness listener hears up=false with a message
// such as "runner pid 1234 killed by signal 11 (SIGSEGV); restarting in 1s", and a new runner is
// started after a delay that doubles from 1s up to 60s (back to 1s once a runner stayed up for a
// minute). After the new runner has loaded the plugin, the listener hears up=true.
//
// Processes: runners are reaped through a pidfd watched on the event loop (no SIGCHLD handler);
// they run in their own process group (a terminal's Ctrl-C reaches only the daemon) and die with
// the daemon (PR_SET_PDEATHSIG, and they exit at end of file on their socket). Destroying a
// RemotePlugin asks its runner to shut down, waits up to 2 s, then kills and reaps it.
//
// Threading: event-loop thread only (like the engine's calls into any Plugin). validate() is a
// synchronous round trip with a bounded wait; launch() blocks until the runner said hello.
#ifndef TASKHUB_PLUGIN_HOST_REMOTE_PLUGIN_H
#define TASKHUB_PLUGIN_HOST_REMOTE_PLUGIN_H

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "plugin_host/plugin_host.h"

namespace taskhub::plugin_host {

// What `taskhub-runner --describe FILE` found: the plugin's description (negotiated, not yet
// created), or why the file is refused, in the words the in-process loader uses, or
// "crashed while loading: killed by signal 11 (SIGSEGV)" and the like.
struct Description {
    std::optional<PluginInfo> info;
    std::string refusal; // when !info
};

// Describes `file` in a short-lived runner process, so that a library that crashes while it is
// loaded cannot take the daemon with it. Waits at most `timeout` (then kills the process).
// Blocking: for start-up, before the event loop runs.
// file_fd >= 0: the runner loads the plugin from that (trusted, already checked) descriptor, handed
// to it as kPluginFd and named /proc/self/fd/<kPluginFd>, not from the path `file`.
Description describeOutOfProcess(const std::filesystem::path& runner, const std::filesystem::path& file,
                                 std::chrono::milliseconds timeout, int file_fd = -1);

// The taskhub-runner a daemon uses: the one next to its own executable (/proc/self/exe), as in a
// build tree, when there is one; otherwise `installed`.
std::filesystem::path findRunner(const std::filesystem::path& installed);

class RemotePlugin final : public Plugin {
public:
    struct Options {
        std::filesystem::path runner;      // the taskhub-runner executable
        std::string config_json = "{}";    // handed to the plugin's create() in the runner
        std::chrono::milliseconds validate_timeout{2'000};
        std::chrono::milliseconds start_timeout{10'000}; // for the runner to load the plugin
        size_t max_workers = 32;           // the runner's worker pool (blocking execute)
        // Each runner start opens the plugin file under the trust rule (common/trust.h) and hands
        // the runner that descriptor to load from (see describeOutOfProcess()).
        bool require_trusted = false;
        std::string user;                  // [plugins.NAME] user: the runner's account; empty: ours
        // Not owned; see LoadPolicy::cgroups. Each runner is moved into runnerCgroup() by this
        // process, after it started and before it is sent the create frame (a runner loads no
        // plugin code before create, so none runs outside that cgroup), and gets
        // --cgroup-mount; attempts with AttemptSpec::cgroup_path have the runner open it there.
        cgroup::Manager* cgroups = nullptr;
    };

    // Starts the first runner for the plugin `described` and waits for it to load the plugin.
    // Returns the plugin, or nullptr with *refusal set: what the runner's loader said (the same
    // words as in-process loading: "create() failed: ..."), or why the runner did not start.
    static std::unique_ptr<RemotePlugin> launch(boost::asio::io_context& io, const PluginInfo& described,
                                                Options options, std::string* refusal);
    ~RemotePlugin() override;
    RemotePlugin(const RemotePlugin&) = delete;
    RemotePlugin& operator=(const RemotePlugin&) = delete;

    const PluginInfo& info() const override;
    // Round trip to the runner, at most Options::validate_timeout. While the runner is not
    // running it does not wait: logs PLUGIN_VALIDATE_SKIPPED and reports no problem (the attempt
    // then reports bad parameters when it runs). A runner that does not answer in time is killed
    // and restarted.
    std::optional<config::PluginCatalog::Problem> validate(const std::string& params) const override;
    // While no runner is running, `done` gets a transient failure "plugin 'x' runner is not
    // running (restarting in 3s)".
    uint64_t start(const AttemptSpec& spec, Done done) override;
    void cancel(uint64_t token) override;
    bool canSuspend() const override;
    void suspend(uint64_t token) override;
    void resume(uint64_t token) override;
    size_t running() const override;
    // The runner runs the plugin's check; a runner that does not answer within `timeout` is
    // killed (SIGKILL) and restarted, and the check reports Unhealthy saying so.
    void checkHealth(std::chrono::milliseconds timeout, HealthDone done) override;
    void setLivenessListener(LivenessListener listener) override;

    // The running runner's pid, or 0 between a runner's death and its successor's hello.
    int runnerPid() const;

private:
    class Impl;
    explicit RemotePlugin(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::plugin_host

#endif // TASKHUB_PLUGIN_HOST_REMOTE_PLUGIN_H
