#include "noop_plugin.h"

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace taskhub::plugins::noop {

NoopPlugin::NoopPlugin(sdk::Host host, std::string_view config_json) : Plugin(host) {
    checkConfig(config_json);
}

NoopPlugin::~NoopPlugin() {
    for (const auto& [token, sleeping] : sleeping_)
        if (sleeping.timer_id != 0) host().cancelTimer(sleeping.timer_id);
}

void NoopPlugin::validate(std::string_view params_json) { parseParams(params_json); }

void NoopPlugin::finish(uint64_t token, const Params& params) const {
    // Static, so the common success path builds no string.
    static const std::string kSucceeded = "succeeded";
    for (const auto& [name, value] : params.outputs) {
        th_status status = host().setOutput(token, name, value);
        if (status != TH_OK) {
            host().complete(token, TH_OUTCOME_FAILED, -1,
                            "the host refused output '" + name + "'" +
                                (status == TH_ERR_UNSUPPORTED ? " (it is older than ABI 1.1)"
                                                              : " (see the daemon log)"));
            return;
        }
    }
    if (params.message) {
        host().complete(token, params.fail ? TH_OUTCOME_FAILED : TH_OUTCOME_SUCCEEDED,
                        params.exit_code, *params.message);
    } else if (params.fail) {
        host().complete(token, TH_OUTCOME_FAILED, params.exit_code,
                        "failed as requested (exit code " + std::to_string(params.exit_code) + ")");
    } else {
        host().complete(token, TH_OUTCOME_SUCCEEDED, params.exit_code, kSucceeded);
    }
}

void NoopPlugin::execute(const sdk::Task& task) {
    Params params = parseParams(task.params_json);
    if (params.sleep_ms == 0) {
        finish(task.token, params);
        return;
    }

    const uint64_t token = task.token;
    const uint64_t delay_ms = params.sleep_ms;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!sleeping_.try_emplace(token, Sleeping{0, std::move(params)}).second)
            throw std::runtime_error("attempt token " + std::to_string(token) + " of task " +
                                     task.task_id + " is already running");
    }
    // Armed outside the lock: the callback takes it.
    uint64_t timer_id = host().addTimer(delay_ms, [this, token] { onTimer(token); });

    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sleeping_.find(token);
    if (it == sleeping_.end()) {
        // Cancelled meanwhile, and already completed as such.
        if (timer_id != 0) host().cancelTimer(timer_id);
        return;
    }
    if (timer_id == 0) {
        sleeping_.erase(it);
        throw std::runtime_error("task " + task.task_id + ": the host refused a timer");
    }
    it->second.timer_id = timer_id;
}

void NoopPlugin::onTimer(uint64_t token) {
    std::optional<Params> params;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = sleeping_.find(token);
        if (it == sleeping_.end()) return;
        params = std::move(it->second.params);
        sleeping_.erase(it);
    }
    finish(token, *params);
}

void NoopPlugin::cancel(uint64_t token) {
    uint64_t timer_id = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = sleeping_.find(token);
        if (it == sleeping_.end()) return;
        timer_id = it->second.timer_id;
        sleeping_.erase(it);
    }
    if (timer_id != 0) host().cancelTimer(timer_id);
    host().complete(token, TH_OUTCOME_CANCELLED, -1, "cancelled");
}

} // namespace taskhub::plugins::noop

TASKHUB_PLUGIN(taskhub::plugins::noop::NoopPlugin, "noop", TASKHUB_PLUGIN_VERSION,
               "Completes after an optional delay with the outcome its parameters name",
               TH_CAP_CANCEL | TH_CAP_NO_LOG, TH_THREADS_SAFE)
