// The "stamp" executor, a benchmark plugin (bench_trigger_lateness): execute() reads
// CLOCK_REALTIME first thing, appends one line "RUN_ID TASK_ID ATTEMPT SECONDS.NANOSECONDS" to the
// file named by its `file` parameter (opened O_APPEND for each call, so concurrent writers never
// interleave a line), and completes at once. The run id of a scheduled run is
// WORKFLOW@YYYYMMDDTHHMMSSZ, the instant it was scheduled for, so the line says how late the task
// started. Not installed; built into BUILD/bench/plugins.
//
// Parameters: file (string, an absolute path; required).
// Threading: TH_THREADS_SAFE and non-blocking; no state. TH_CAP_NO_LOG: no output pipe per attempt.
#include <taskhub/plugin.hpp>

#include <boost/json.hpp>

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

namespace json = boost::json;
namespace sdk = taskhub::sdk;

// The `file` parameter; throws sdk::InvalidParam when it is missing or not an absolute path.
std::string fileParam(std::string_view params_json) {
    json::error_code ec;
    json::value root = json::parse(params_json, ec);
    if (ec || !root.is_object())
        throw sdk::InvalidParam("", "parameters for plugin stamp must be a JSON object");
    const json::object& obj = root.get_object();
    for (const auto& [key, value] : obj)
        if (key != "file")
            throw sdk::InvalidParam(std::string(key), "unknown parameter '" + std::string(key) +
                                                          "' for plugin stamp (it takes only 'file')");
    const json::value* file = obj.if_contains("file");
    if (file == nullptr || !file->is_string() || file->get_string().empty() ||
        file->get_string()[0] != '/')
        throw sdk::InvalidParam("file", "'file' must be an absolute path (where the stamps go)");
    return std::string(file->get_string());
}

class StampPlugin final : public sdk::Plugin {
public:
    StampPlugin(sdk::Host host, std::string_view /*config_json*/) : Plugin(host) {}

    void validate(std::string_view params_json) override { fileParam(params_json); }

    void execute(const sdk::Task& task) override {
        timespec now{};
        ::clock_gettime(CLOCK_REALTIME, &now); // before anything else this attempt does
        const std::string path = fileParam(task.params_json);
        char line[512];
        int n = std::snprintf(line, sizeof line, "%s %s %u %lld.%09ld\n", task.run_id.c_str(),
                              task.task_id.c_str(), task.attempt, static_cast<long long>(now.tv_sec),
                              now.tv_nsec);
        if (n < 0 || static_cast<size_t>(n) >= sizeof line)
            throw std::runtime_error("stamp: run or task id too long");
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) throw std::runtime_error("stamp: cannot open " + path + ": " + std::strerror(errno));
        ssize_t w = ::write(fd, line, static_cast<size_t>(n));
        int saved = errno;
        ::close(fd);
        if (w != n)
            throw std::runtime_error("stamp: cannot write " + path + ": " + std::strerror(saved));
        static const std::string kDone = "stamped";
        host().complete(task.token, TH_OUTCOME_SUCCEEDED, 0, kDone);
    }
};

} // namespace

TASKHUB_PLUGIN(StampPlugin, "stamp", "1.0.0",
               "Benchmark: appends the time execute() was entered to a file, then completes",
               TH_CAP_NO_LOG, TH_THREADS_SAFE)
