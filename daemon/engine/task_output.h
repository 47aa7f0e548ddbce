// Captures one task attempt's output. The plugin gets the write end of a pipe as the attempt's
// log_fd; the event loop reads the other end and appends to the attempt's log file, which is
// created with the first byte, so a silent task costs no file at all and creating files never
// sits between one task's end and the next task's start.
//
// Outputs: a line `::set-output NAME=value` written before the attempt ends publishes an output
// of the attempt (the line still goes to the log). NAME follows the rules of
// plugin_host/outputs.h; the value is the rest of the line (a trailing CR dropped, may be empty);
// a later value for a name replaces the earlier one. A line `::set-output-json NAME=JSON`
// publishes a typed output: the rest of the line must be one JSON value (plugin_host::
// checkJsonValue(); a JSON string is a plain output), at most 1 MiB; such a line is captured up
// to the 1 MiB all outputs may hold, plain lines up to 64 KiB. A line that starts with either
// prefix but breaks a rule (no '=', a bad name, bad JSON, a limit of plugin_host/outputs.h) sets
// outputError(), and later lines publish nothing more. Only line starts are compared with the
// prefixes, so output without such lines costs one memchr per line.
//
// Size cap (LogCap, taskhub.toml's [history] max_log_size): when a write would take the file past
// the cap, the file is rewritten to hold a marker line and the newest half of the cap (cut at a
// line start when one is near), and writing goes on after it; the marker says how many bytes of
// the attempt's output were dropped in all, so a byte's position in the attempt's whole output
// is still known (see parseLogTruncationMarker). The new file replaces the old one by rename, so
// a reader sees one or the other, never half of either.
//
// Journal (log_to_journal = true, when the daemon logs to the journal): each line of output is
// also sent to the journal (common/log.h forwardTaskLine(): PRIORITY=6,
// SYSLOG_IDENTIFIER=taskhub-task, the TASKHUB_* fields of the attempt), a trailing CR dropped, a
// line longer than logging::kTaskLineMax cut there with " [line cut at 4096 bytes]" and its rest
// not sent; a last line without a newline is sent when the output closes. The rate bound of
// forwardTaskLine() applies; the log file always has everything.
//
// Lifetime: owned through shared_ptr; pending reads keep it alive until end of file or close().
// Threading: event-loop thread only (the plugin may write to the pipe from any thread).
#ifndef TASKHUB_ENGINE_TASK_OUTPUT_H
#define TASKHUB_ENGINE_TASK_OUTPUT_H

#include <array>
#include <chrono>
#include <filesystem>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "store/records.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::engine {

// The most one attempt's log file may hold.
struct LogCap {
    uint64_t max_bytes = 0; // 0 = unlimited
    std::string text;       // as configured, e.g. "10MB", for the marker
};

// Where an attempt's output lines go besides its log file: the journal fields of the attempt.
struct JournalForward {
    std::string workflow;
    std::string run_id;
    std::string task;
    int attempt = 0;
};

// The first line of a log file that LogCap truncated:
// "[taskhub: N bytes of older output dropped (max_log_size = 10MB)]\n", N counting every byte
// dropped since the attempt began.
std::string logTruncationMarker(uint64_t dropped, const std::string& cap_text);
struct LogTruncation {
    uint64_t dropped = 0;    // bytes of the attempt's output before the file's first byte after the marker
    size_t marker_bytes = 0; // length of the marker line, newline included
};
// Reads the marker from the start of a log file (at least its first 256 bytes, or all of a
// shorter file); std::nullopt when the file does not start with one.
std::optional<LogTruncation> parseLogTruncationMarker(std::string_view head);

class TaskOutput : public std::enable_shared_from_this<TaskOutput> {
public:
    // Creates the pipe; the log file is created later, at `file`, when output arrives.
    // Returns null with *err set when no pipe could be made.
    static std::shared_ptr<TaskOutput> open(boost::asio::io_context& io, std::filesystem::path file,
                                            std::string* err, LogCap cap = {},
                                            std::optional<JournalForward> journal = std::nullopt);
    ~TaskOutput();
    TaskOutput(const TaskOutput&) = delete;
    TaskOutput& operator=(const TaskOutput&) = delete;

    // The fd handed to the plugin as th_task.log_fd; valid until attemptEnded().
    int writeFd() const noexcept { return write_fd_; }

    // Starts reading. Call once, after the plugin has the write end.
    void start();
    // The attempt completed: closes the write end and copies everything already in the pipe to
    // the file before returning, so the log is complete when the attempt's end is recorded.
    // Processes the task left behind may keep writing for kLinger more; then the pipe is closed
    // (they get EPIPE), so that finished attempts never hold descriptors for long.
    void attemptEnded();

    static constexpr std::chrono::seconds kLinger{10};
    static constexpr size_t kReadBudget = 256 * 1024; // per wake-up, to keep the loop fair
    // Stops reading; output still to come is discarded.
    void close();

    // Adds the outputs the plugin published through th_host_api.set_output and set_output_json
    // (AttemptResult::outputs and json_outputs, already checked) after those of the lines: a
    // name set both ways takes the plugin's value, and the caps apply to the union
    // (outputError() when one is exceeded). Call after attemptEnded().
    void addPluginOutputs(const store::NameValues& outputs, const store::NameValues& json_outputs = {});
    // The attempt's plain outputs, in the order names were first set. Complete after
    // attemptEnded() (and addPluginOutputs()); lines written after the attempt ended do not count.
    const store::NameValues& outputs() const;
    // The attempt's typed outputs: name -> compact JSON text of a non-string value. A name is in
    // outputs() or here, never both (the later set wins).
    const store::NameValues& jsonOutputs() const;
    // Empty, or why the outputs break a rule, naming the output and the limit, e.g. "output
    // 'path' is 5000 bytes, over the limit of 4 KiB (4096 bytes) for one value". The engine
    // fails the attempt with it.
    const std::string& outputError() const;

private:
    struct Impl;
    explicit TaskOutput(std::unique_ptr<Impl> impl);
    enum class Drain { Empty, More, Closed };
    void readSome();
    // Reads up to budget bytes into the file: Empty (would block), More (budget used up),
    // Closed (end of file or error).
    Drain drain(size_t budget);
    void append(const char* data, size_t n);
    // append() for a write that would take the file past the cap: rewrites it (see above).
    void truncateAndAppend(const char* data, size_t n);
    // Finds `::set-output` and `::set-output-json` lines in output as it arrives (lines may
    // span reads).
    void scan(const char* data, size_t n);
    // Sends complete lines of output to the journal (journal forwarding only); flush: also the
    // last line without its newline.
    void forward(const char* data, size_t n);
    void flushForward();
    // Handles the captured rest of a `::set-output` line.
    void setOutputLine();
    // The attempt ended: a `::set-output` line still open counts as complete; stop scanning.
    void finishOutputs();

    std::unique_ptr<Impl> impl_;
    int write_fd_ = -1;
};

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_TASK_OUTPUT_H
