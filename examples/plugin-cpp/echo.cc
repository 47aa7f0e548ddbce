// echo.cc: a complete TaskHub executor plugin in C++20 with the header-only SDK
// (taskhub/plugin.hpp); docs/plugin-guide.md walks through it.
//
// A task with `plugin = "echo"` writes `text` to its log `repeat` times, `interval_ms` apart, and
// publishes how many lines it wrote as the output `lines` (${tasks.ID.outputs.lines}).
//
//   task parameters   text         string, required
//                     repeat       integer from 1 to max_repeat, default 1
//                     interval_ms  integer from 0 to 60000, default 0
//   [plugins.echo]    max_repeat   integer from 1 to 1000000, default 100
//
// Blocking: the work is a loop of writes and sleeps, so the plugin declares
// TH_CAP_BLOCKING_EXECUTE and the daemon calls execute() on a worker thread, where it may take as
// long as the task needs. cancel() arrives on the event loop meanwhile and wakes the sleeping
// attempt. health() runs on yet another thread and reports an attempt that has fallen far behind
// its schedule: a write to the task log blocks when nothing drains it.
#include <taskhub/plugin.hpp>
#include <taskhub/suggest.hpp>

#include <boost/json.hpp>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using taskhub::sdk::InvalidParam;

// An attempt this far behind its schedule makes the plugin unhealthy.
constexpr std::chrono::seconds kBehindLimit{10};

struct Params {
    std::string text;
    int64_t repeat = 1;
    int64_t interval_ms = 0;
};

// The TOML name of a value's type, for messages: parameters and settings come from TOML tables.
const char* typeName(const json::value& v) {
    switch (v.kind()) {
    case json::kind::string: return "a string";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a float";
    case json::kind::bool_: return "a boolean";
    case json::kind::array: return "an array";
    case json::kind::object: return "a table";
    case json::kind::null: break;
    }
    return "null";
}

json::object parseObject(std::string_view text, const char* what) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) throw std::invalid_argument(std::string(what) + " is not a JSON object");
    return std::move(v.as_object());
}

// `value` as an integer within [lo, hi]; `key` names it in the message.
int64_t integerIn(const json::value& value, const std::string& key, int64_t lo, int64_t hi) {
    const std::string range = "from " + std::to_string(lo) + " to " + std::to_string(hi);
    if (!value.is_int64())
        throw InvalidParam(key, "'" + key + "' must be an integer " + range + ", found " + typeName(value));
    int64_t n = value.get_int64();
    if (n < lo || n > hi)
        throw InvalidParam(key, "'" + key + "' must be " + range + ", found " + std::to_string(n));
    return n;
}

Params parseParams(std::string_view params_json, int64_t max_repeat) {
    Params p;
    bool has_text = false;
    for (const auto& [k, value] : parseObject(params_json, "the parameters")) {
        const std::string key(k);
        if (key == "text") {
            if (!value.is_string())
                throw InvalidParam(key, std::string("'text' must be a string, found ") + typeName(value));
            p.text = value.get_string();
            has_text = true;
        } else if (key == "repeat") {
            p.repeat = integerIn(value, key, 1, max_repeat);
        } else if (key == "interval_ms") {
            p.interval_ms = integerIn(value, key, 0, 60'000);
        } else {
            std::string meant = taskhub::sdk::closestKey(key, {"text", "repeat", "interval_ms"});
            throw InvalidParam(key, "unknown parameter '" + key + "' (accepted: text, repeat, interval_ms)" +
                                        (meant.empty() ? "" : "; did you mean '" + meant + "'?"));
        }
    }
    if (!has_text) throw InvalidParam("text", "'text' is required: what to write, like text = \"hello\"");
    return p;
}

// Writes all of `data`; false (errno set) when the log cannot be written.
bool writeAll(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

class Echo final : public taskhub::sdk::Plugin {
public:
    // Throwing refuses the plugin; the daemon logs what() as the reason.
    Echo(taskhub::sdk::Host host, std::string_view config_json) : Plugin(host) {
        for (const auto& [key, value] : parseObject(config_json, "[plugins.echo]")) {
            if (key != "max_repeat")
                throw std::invalid_argument("unknown setting 'plugins.echo." + std::string(key) +
                                            "' (accepted: max_repeat)");
            max_repeat_ = integerIn(value, "plugins.echo.max_repeat", 1, 1'000'000);
        }
    }

    // When a workflow file is loaded. InvalidParam names the key, so the error points at its line.
    void validate(std::string_view params_json) override { parseParams(params_json, max_repeat_); }

    // On a worker thread. Throwing before complete() means "the attempt did not start".
    void execute(const taskhub::sdk::Task& task) override {
        const Params p = parseParams(task.params_json, max_repeat_);
        auto attempt = std::make_shared<Attempt>();
        attempt->task_id = task.task_id;
        attempt->due = Clock::now() + std::chrono::milliseconds(p.interval_ms * (p.repeat - 1));
        {
            std::lock_guard lock(mutex_);
            running_[task.token] = attempt;
        }

        int64_t written = 0;
        th_outcome outcome = TH_OUTCOME_SUCCEEDED;
        std::string message;
        const std::string line = p.text + "\n";
        for (; written < p.repeat; ++written) {
            if (written > 0 && !sleep(*attempt, std::chrono::milliseconds(p.interval_ms))) {
                outcome = TH_OUTCOME_CANCELLED;
                message = "cancelled after " + std::to_string(written) + " of " + std::to_string(p.repeat) + " lines";
                break;
            }
            if (!writeAll(task.log_fd, line)) {
                outcome = TH_OUTCOME_FAILED;
                message = std::string("cannot write to the task log: ") + std::strerror(errno);
                break;
            }
        }
        if (outcome == TH_OUTCOME_SUCCEEDED) message = "wrote " + std::to_string(written) + " line(s)";
        {
            std::lock_guard lock(mutex_);
            running_.erase(task.token);
        }
        // Under a host older than ABI 1.1 this returns TH_ERR_UNSUPPORTED; the lines stand anyway.
        host().setOutput(task.token, "lines", std::to_string(written));
        host().complete(task.token, outcome, -1, message);
    }

    // On the event loop, while execute() may be sleeping on a worker.
    void cancel(uint64_t token) override {
        std::lock_guard lock(mutex_);
        if (auto it = running_.find(token); it != running_.end()) {
            it->second->cancelled = true;
            wake_.notify_all();
        }
    }

    // On a worker thread, concurrently with everything else.
    taskhub::sdk::Health health() override {
        std::lock_guard lock(mutex_);
        const auto now = Clock::now();
        for (const auto& [token, attempt] : running_) {
            if (now - attempt->due > kBehindLimit) {
                auto behind = std::chrono::duration_cast<std::chrono::seconds>(now - attempt->due);
                return {TH_HEALTH_UNHEALTHY, "the echo of task " + attempt->task_id + " is " +
                                                 std::to_string(behind.count()) +
                                                 "s behind its schedule (is a write to its log blocked?)"};
            }
        }
        return {TH_HEALTH_OK, std::to_string(running_.size()) + " echo(es) running on schedule"};
    }

private:
    struct Attempt {
        std::string task_id;
        Clock::time_point due; // when the last line is due
        bool cancelled = false;
    };

    // Waits `d` or until the attempt is cancelled; false when it was.
    bool sleep(Attempt& a, std::chrono::milliseconds d) {
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, d, [&] { return a.cancelled; });
        return !a.cancelled;
    }

    int64_t max_repeat_ = 100;
    std::mutex mutex_; // guards running_ and every Attempt::cancelled
    std::condition_variable wake_;
    std::map<uint64_t, std::shared_ptr<Attempt>> running_; // by attempt token
};

} // namespace

TASKHUB_PLUGIN(Echo, "echo", "1.0.0", "Writes a text to the task log, as often as asked",
               TH_CAP_BLOCKING_EXECUTE | TH_CAP_CANCEL | TH_CAP_HEALTH_CHECK, TH_THREADS_SAFE)
