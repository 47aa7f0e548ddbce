// A small stand-in for taskhubd's plugin host, for driving plugin .so files through the raw C ABI
// in tests. It loads a library, creates an instance and runs a poll()-based event loop on the
// test's own thread that implements every th_host_api service: watch_fd, add_timer, complete,
// log and (ABI 1.1) set_output. It records what the plugin reported and counts contract
// violations (a second complete() for a token, a loop-only service called from another thread,
// set_output after complete()) so tests can assert there were none. It can also pose as an ABI
// 1.0 host, whose table ends before set_output.
#ifndef TASKHUB_TESTS_UNIT_PLUGINS_FAKE_HOST_H
#define TASKHUB_TESTS_UNIT_PLUGINS_FAKE_HOST_H

#include <taskhub/plugin_api.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace taskhub::tests {

// A dlopen()ed plugin library and the table its entry function returned (null when the library
// exports no entry symbol). Closes the library on destruction.
class LoadedPlugin {
public:
    explicit LoadedPlugin(const std::string& path);
    ~LoadedPlugin();
    LoadedPlugin(const LoadedPlugin&) = delete;
    LoadedPlugin& operator=(const LoadedPlugin&) = delete;

    const th_plugin_api* api() const { return api_; }

private:
    void* handle_ = nullptr;
    const th_plugin_api* api_ = nullptr;
};

// What a plugin passed to complete().
struct Completion {
    int32_t outcome = -1;
    int32_t exit_code = 0;
    std::string message;
    // ABI 1.4 th_result fields; nullopt when the plugin's th_result does not cover them.
    std::optional<int64_t> cpu_user_us, cpu_system_us, max_rss_kb;
};

struct ValidateResult {
    th_status status = TH_OK;
    std::string message;
    std::string key;
};

// The environment and identity of one attempt handed to execute().
struct TaskSpec {
    std::string params_json = "{}";
    int log_fd = -1;
    std::vector<std::string> env = {"TASKHUB_WORKFLOW=wf", "TASKHUB_RUN_ID=run-1",
                                    "TASKHUB_TASK_ID=t1"};
    const th_identity* run_as = nullptr; // th_task.run_as (ABI 1.3)
    int cgroup_fd = -1;                  // th_task.cgroup_fd (ABI 1.4)
};

class FakeHost {
public:
    using Clock = std::chrono::steady_clock;

    enum class Abi { V1_0, Current };

    // Creates an instance of plugin with config_json; a failing create() fails the test.
    FakeHost(const LoadedPlugin& plugin, const std::string& config_json = "{}",
             Abi abi = Abi::Current);
    // Destroys the instance (the plugin's destructor runs here).
    ~FakeHost();
    FakeHost(const FakeHost&) = delete;
    FakeHost& operator=(const FakeHost&) = delete;

    // Calls create() expecting it to fail; returns its status and error message. The host
    // services it is handed must not be used.
    static std::pair<th_status, std::string> createFailure(const LoadedPlugin& plugin,
                                                           const std::string& config_json);

    ValidateResult validate(const std::string& params_json);
    // Starts an attempt; on a non-OK status *error receives the plugin's message.
    th_status execute(uint64_t token, const TaskSpec& spec, std::string* error = nullptr);
    th_status cancel(uint64_t token);
    th_status suspend(uint64_t token);
    th_status resume(uint64_t token);
    th_status health(th_health_state* state, std::string* message);

    // The outputs set for token through set_output, in call order (a name may repeat).
    std::vector<std::pair<std::string, std::string>> outputs(uint64_t token) const;
    // The completion reported for token so far, without running the loop.
    std::optional<Completion> completion(uint64_t token) const;
    // Runs the event loop until token completed or timeout passed.
    std::optional<Completion> waitFor(uint64_t token, std::chrono::milliseconds timeout);
    // Runs the event loop for duration.
    void runFor(std::chrono::milliseconds duration);

    size_t pendingWatches() const { return watches_.size(); }
    size_t pendingTimers() const { return timers_.size(); }
    int duplicateCompletions() const { return duplicate_completions_; }
    int offLoopCalls() const { return off_loop_calls_; }
    int lateOutputs() const { return late_outputs_; }
    const std::vector<std::string>& logLines() const { return log_lines_; }

private:
    struct Watch {
        int fd;
        th_fd_callback cb;
        void* user;
    };
    struct Timer {
        Clock::time_point due;
        th_timer_callback cb;
        void* user;
    };

    static FakeHost* self(th_host_ctx* ctx) { return reinterpret_cast<FakeHost*>(ctx); }
    static void onComplete(th_host_ctx* ctx, uint64_t token, const th_result* result);
    static void onLog(th_host_ctx* ctx, int32_t level, const char* msg);
    static th_status onWatchFd(th_host_ctx* ctx, int fd, th_fd_callback cb, void* user,
                               uint64_t* watch_id);
    static void onUnwatchFd(th_host_ctx* ctx, uint64_t watch_id);
    static th_status onAddTimer(th_host_ctx* ctx, uint64_t delay_ms, th_timer_callback cb,
                                void* user, uint64_t* timer_id);
    static void onCancelTimer(th_host_ctx* ctx, uint64_t timer_id);
    static th_status onSetOutput(th_host_ctx* ctx, uint64_t token, const char* name,
                                 const char* value);
    static th_host_api hostApi(Abi abi);

    void checkLoopThread();
    // One poll() round of at most max_wait, then the due callbacks.
    void runOnce(std::chrono::milliseconds max_wait);

    const th_plugin_api* plugin_;
    th_host_api host_api_;
    th_instance* instance_ = nullptr;
    std::thread::id loop_thread_;
    uint64_t next_id_ = 1;
    std::map<uint64_t, Watch> watches_;
    std::map<uint64_t, Timer> timers_;
    std::map<uint64_t, Completion> completions_;
    std::map<uint64_t, std::vector<std::pair<std::string, std::string>>> outputs_;
    mutable std::mutex outputs_mu_; // set_output may come from any thread
    std::vector<std::string> log_lines_;
    int duplicate_completions_ = 0;
    int off_loop_calls_ = 0;
    int late_outputs_ = 0;
};

} // namespace taskhub::tests

#endif // TASKHUB_TESTS_UNIT_PLUGINS_FAKE_HOST_H
