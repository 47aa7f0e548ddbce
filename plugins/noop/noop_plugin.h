// The "noop" executor: does no work and completes with the outcome its parameters ask for.
//
// Tests use it to script outcomes; benchmarks use it to measure the engine's own per-task
// overhead, so execute() stays lean: one Boost.JSON parse into stack memory and, for
// sleep_ms = 0, complete() straight from inside execute(). A positive sleep_ms arms a host
// timer, so a sleeping task holds no thread.
//
// Parameters: sleep_ms (non-negative integer, default 0), fail (boolean, default false),
// exit_code (integer, default 0, or 1 when fail), message (string), outputs (table of strings,
// published through the host's set_output just before completing; an output the host refuses
// fails the attempt with the reason).
//
// Threading: TH_THREADS_SAFE and non-blocking. execute(), cancel() and the timer callbacks run on
// the host's event loop, but calls may overlap, so the table of sleeping attempts is locked.
#ifndef TASKHUB_PLUGINS_NOOP_NOOP_PLUGIN_H
#define TASKHUB_PLUGINS_NOOP_NOOP_PLUGIN_H

#include "noop_params.h"

#include <taskhub/plugin.hpp>

#include <cstdint>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace taskhub::plugins::noop {

class NoopPlugin final : public sdk::Plugin {
public:
    // Throws std::invalid_argument when [plugins.noop] holds any setting.
    NoopPlugin(sdk::Host host, std::string_view config_json);
    // A conforming host destroys the instance only after every attempt completed; timers still
    // armed are cancelled so that none fires into a destroyed instance.
    ~NoopPlugin() override;

    // Throws sdk::InvalidParam; see parseParams().
    void validate(std::string_view params_json) override;
    // Completes at once for sleep_ms = 0, else after sleep_ms. Throws (the attempt does not
    // start) on bad parameters or when the host refuses a timer.
    void execute(const sdk::Task& task) override;
    // Stops a sleeping attempt and completes it as CANCELLED ("cancelled"). No-op for an unknown
    // or finished token.
    void cancel(uint64_t token) override;

private:
    struct Sleeping {
        uint64_t timer_id = 0; // 0 while execute() is still arming it
        Params params;
    };

    void finish(uint64_t token, const Params& params) const;
    void onTimer(uint64_t token);

    std::mutex mutex_;
    std::unordered_map<uint64_t, Sleeping> sleeping_; // by attempt token
};

} // namespace taskhub::plugins::noop

#endif // TASKHUB_PLUGINS_NOOP_NOOP_PLUGIN_H
