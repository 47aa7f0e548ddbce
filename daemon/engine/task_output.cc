#include "engine/task_output.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/log.h"
#include "plugin_host/outputs.h"

namespace taskhub::engine {

namespace asio = boost::asio;

namespace {

// The two line prefixes: "::set-output " and "::set-output-json ", which share their first
// kSetOutputCommon bytes.
constexpr std::string_view kSetOutputJson = "::set-output-json ";
constexpr size_t kSetOutputCommon = 12; // "::set-output"
// Longest rest of a line kept: anything longer breaks a cap whatever it holds. A JSON line keeps
// room for a name of 255 bytes besides its value, so that OutputSet judges every value within
// its own limit, whatever whitespace it holds.
constexpr size_t kMaxCapture = plugin_host::kMaxOutputsBytes + 2;
constexpr size_t kMaxJsonCapture = plugin_host::kMaxJsonOutputBytes + 256 + 2;

constexpr std::string_view kMarkerStart = "[taskhub: ";
constexpr std::string_view kMarkerMiddle = " bytes of older output dropped";
// A truncation keeps the newest output from a line start when one is this close to the cut.
constexpr size_t kLineSearch = 4096;

// Writes all of data to fd; false with errno set on failure.
bool writeAll(int fd, const char* data, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// create_directories() with mode 0750 (the umask can only take bits away): task output holds
// whatever tasks print and is not for others, whatever the daemon's umask.
void makePrivateDirs(const std::filesystem::path& dir) {
    if (::mkdir(dir.c_str(), 0750) == 0 || errno == EEXIST) return;
    if (errno != ENOENT || dir.parent_path() == dir || dir.parent_path().empty()) return;
    makePrivateDirs(dir.parent_path());
    ::mkdir(dir.c_str(), 0750);
}

} // namespace

std::string logTruncationMarker(uint64_t dropped, const std::string& cap_text) {
    return std::string(kMarkerStart) + std::to_string(dropped) + std::string(kMarkerMiddle) +
           " (max_log_size = " + cap_text + ")]\n";
}

std::optional<LogTruncation> parseLogTruncationMarker(std::string_view head) {
    if (head.substr(0, kMarkerStart.size()) != kMarkerStart) return std::nullopt;
    size_t i = kMarkerStart.size();
    uint64_t n = 0;
    const size_t digits = i;
    while (i < head.size() && i < digits + 19 && head[i] >= '0' && head[i] <= '9') n = n * 10 + static_cast<uint64_t>(head[i++] - '0');
    if (i == digits || head.substr(i, kMarkerMiddle.size()) != kMarkerMiddle) return std::nullopt;
    const size_t nl = head.find('\n', i);
    if (nl == std::string_view::npos) return std::nullopt;
    return LogTruncation{n, nl + 1};
}

struct TaskOutput::Impl {
    Impl(asio::io_context& io, int read_fd, std::filesystem::path f, LogCap c)
        : reader(io, read_fd), linger(io), file(std::move(f)), cap(std::move(c)) {}
    asio::posix::stream_descriptor reader;
    asio::steady_timer linger;
    std::filesystem::path file;
    LogCap cap;
    uint64_t file_size = 0;   // bytes in the file, marker included
    size_t marker_bytes = 0;  // the truncation marker at the file's start; 0 before the first
    uint64_t dropped = 0;     // bytes of output dropped by truncations so far
    int file_fd = -1;
    bool file_failed = false;
    bool closed = false;
    std::array<char, 16384> buf;

    // `::set-output` scanning, until the attempt ends.
    enum class Line { Prefix, Capture, Skip };
    bool scanning = true;
    Line line = Line::Prefix;  // Prefix: at a line start, `matched` bytes of a prefix seen
    size_t matched = 0;
    bool json = false;         // Capture: of a `::set-output-json` line
    std::string captured;      // the rest of a `::set-output` line so far
    bool truncated = false;    // captured stopped at kMaxCapture (kMaxJsonCapture)
    size_t line_bytes = 0;     // the rest of the line so far, kept or not
    plugin_host::OutputSet outputs;
    std::string output_error;

    // Journal forwarding (log_to_journal).
    std::optional<JournalForward> journal;
    std::string line_buf;   // the current line so far, at most logging::kTaskLineMax bytes
    bool line_cut = false;  // the current line was cut and sent: skip to its newline
};

std::shared_ptr<TaskOutput> TaskOutput::open(asio::io_context& io, std::filesystem::path file, std::string* err,
                                             LogCap cap, std::optional<JournalForward> journal) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        *err = std::string("cannot create the output pipe: ") + std::strerror(errno);
        return nullptr;
    }
    std::shared_ptr<TaskOutput> out(new TaskOutput(std::make_unique<Impl>(io, fds[0], std::move(file), std::move(cap))));
    // The read end is drained without blocking when the attempt ends. Set through Asio, which
    // then skips setting it again on every wait (the write end stays blocking for the task).
    boost::system::error_code ec;
    out->impl_->reader.non_blocking(true, ec);
    if (ec) {
        ::close(fds[1]);
        *err = "cannot make the output pipe non-blocking: " + ec.message();
        return nullptr;
    }
    out->write_fd_ = fds[1];
    out->impl_->journal = std::move(journal);
    return out;
}

TaskOutput::TaskOutput(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TaskOutput::~TaskOutput() {
    if (write_fd_ >= 0) ::close(write_fd_);
    if (impl_->file_fd >= 0) ::close(impl_->file_fd);
}

void TaskOutput::append(const char* data, size_t n) {
    auto& im = *impl_;
    if (im.file_fd < 0) {
        if (im.file_failed) return;
        im.file_fd = ::open(im.file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (im.file_fd < 0 && errno == ENOENT) {
            // The run's log directory is made with its first output, not when the run starts:
            // most runs of silent tasks never need it, and a directory costs a firing time.
            makePrivateDirs(im.file.parent_path());
            im.file_fd = ::open(im.file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        }
        if (im.file_fd < 0) {
            im.file_failed = true;
            spdlog::error("ENGINE_LOG_UNWRITABLE cannot create task log {}: {}; the task's output is discarded",
                          im.file.string(), std::strerror(errno));
            return;
        }
    }
    if (im.cap.max_bytes > 0 && im.file_size + n > im.cap.max_bytes) {
        truncateAndAppend(data, n);
        return;
    }
    if (!writeAll(im.file_fd, data, n)) {
        spdlog::error("ENGINE_LOG_UNWRITABLE writing task log {}: {}", im.file.string(), std::strerror(errno));
        return;
    }
    im.file_size += n;
}

void TaskOutput::truncateAndAppend(const char* data, size_t n) {
    auto& im = *impl_;
    // The newest half of the cap survives: the end of the file's output, then the new data.
    const size_t keep = static_cast<size_t>(im.cap.max_bytes / 2);
    const uint64_t in_file = im.file_size - im.marker_bytes;
    std::string tail;
    if (n >= keep) {
        tail.assign(data + (n - keep), keep);
    } else {
        const size_t from_file = static_cast<size_t>(std::min<uint64_t>(keep - n, in_file));
        tail.resize(from_file);
        ssize_t got = from_file == 0 ? 0 : ::pread(im.file_fd, tail.data(), from_file,
                                                   static_cast<off_t>(im.file_size - from_file));
        if (got < 0) {
            spdlog::error("ENGINE_LOG_UNWRITABLE reading task log {} to truncate it: {}; its older output is dropped",
                          im.file.string(), std::strerror(errno));
            got = 0;
        }
        tail.resize(static_cast<size_t>(got));
        tail.append(data, n);
    }
    // Start at a line start when one is near, so that the first line kept is whole.
    const size_t search = std::min(kLineSearch, tail.size() / 4);
    if (const void* nl = std::memchr(tail.data(), '\n', search)) {
        tail.erase(0, static_cast<size_t>(static_cast<const char*>(nl) - tail.data()) + 1);
    }
    const uint64_t total = in_file + n;
    im.dropped += total - tail.size();
    const std::string marker = logTruncationMarker(im.dropped, im.cap.text);
    std::filesystem::path tmp = im.file;
    tmp += ".tmp";
    int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 || !writeAll(fd, marker.data(), marker.size()) || !writeAll(fd, tail.data(), tail.size()) ||
        ::rename(tmp.c_str(), im.file.c_str()) != 0) {
        spdlog::error("ENGINE_LOG_UNWRITABLE truncating task log {} to max_log_size: {}; the task's further output "
                      "is discarded", im.file.string(), std::strerror(errno));
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        ::close(im.file_fd);
        im.file_fd = -1;
        im.file_failed = true;
        return;
    }
    ::close(im.file_fd);
    im.file_fd = fd;
    im.marker_bytes = marker.size();
    im.file_size = marker.size() + tail.size();
}

void TaskOutput::start() { readSome(); }

// Waits for readability and reads in the handler itself: data never sits in a queued handler, so
// attemptEnded() always sees, in order, everything the task wrote.
void TaskOutput::readSome() {
    auto self = shared_from_this();
    impl_->reader.async_wait(asio::posix::stream_descriptor::wait_read, [self](const boost::system::error_code& ec) {
        if (self->impl_->closed) return;
        if (ec || self->drain(kReadBudget) == Drain::Closed) {
            self->close(); // end of file: every writer is gone
            return;
        }
        self->readSome();
    });
}

TaskOutput::Drain TaskOutput::drain(size_t budget) {
    auto& im = *impl_;
    size_t total = 0;
    while (total < budget) {
        ssize_t n = ::read(im.reader.native_handle(), im.buf.data(), std::min(im.buf.size(), budget - total));
        if (n > 0) {
            append(im.buf.data(), static_cast<size_t>(n));
            if (im.scanning) scan(im.buf.data(), static_cast<size_t>(n));
            if (im.journal) forward(im.buf.data(), static_cast<size_t>(n));
            total += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && errno == EAGAIN ? Drain::Empty : Drain::Closed; // 0: end of file
    }
    return Drain::More;
}

void TaskOutput::scan(const char* data, size_t n) {
    auto& im = *impl_;
    const char* p = data;
    const char* const end = data + n;
    while (p < end) {
        switch (im.line) {
        case Impl::Line::Skip: {
            const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
            if (nl == nullptr) return;
            p = static_cast<const char*>(nl) + 1;
            im.line = Impl::Line::Prefix;
            im.matched = 0;
            break;
        }
        case Impl::Line::Prefix: {
            // Byte by byte: most lines differ at their first byte already.
            const char c = *p;
            const bool plain = im.matched == kSetOutputCommon && c == ' ';
            if (!plain && c != kSetOutputJson[im.matched]) {
                im.line = Impl::Line::Skip; // p stays: the mismatch may be the newline itself
                break;
            }
            ++p;
            ++im.matched;
            if (plain || im.matched == kSetOutputJson.size()) {
                im.line = Impl::Line::Capture;
                im.json = !plain;
                im.captured.clear();
                im.truncated = false;
                im.line_bytes = 0;
            }
            break;
        }
        case Impl::Line::Capture: {
            const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
            const char* stop = nl ? static_cast<const char*>(nl) : end;
            const size_t len = static_cast<size_t>(stop - p);
            const size_t room = (im.json ? kMaxJsonCapture : kMaxCapture) - im.captured.size();
            im.captured.append(p, std::min(len, room));
            im.line_bytes += len;
            if (len > room) im.truncated = true;
            p = stop;
            if (nl != nullptr) {
                setOutputLine();
                ++p;
                im.line = Impl::Line::Prefix;
                im.matched = 0;
            }
            break;
        }
        }
    }
}

void TaskOutput::forward(const char* data, size_t n) {
    auto& im = *impl_;
    const logging::Fields fields{im.journal->workflow, im.journal->run_id, im.journal->task, im.journal->attempt};
    auto send = [&] {
        std::string_view line = im.line_buf;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        logging::forwardTaskLine(fields, line);
        im.line_buf.clear();
    };
    const char* p = data;
    const char* const end = data + n;
    while (p < end) {
        const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
        const char* stop = nl ? static_cast<const char*>(nl) : end;
        if (!im.line_cut) {
            const size_t room = logging::kTaskLineMax - im.line_buf.size();
            const size_t len = static_cast<size_t>(stop - p);
            im.line_buf.append(p, std::min(len, room));
            if (len > room) { // longer than kTaskLineMax: send what fits, skip the rest
                im.line_buf += " [line cut at 4096 bytes]";
                send();
                im.line_cut = true;
            }
        }
        if (nl == nullptr) return;
        if (!im.line_cut) send();
        im.line_cut = false;
        p = stop + 1;
    }
}

void TaskOutput::flushForward() {
    auto& im = *impl_;
    if (!im.journal || im.line_cut || im.line_buf.empty()) return;
    forward("\n", 1);
}

void TaskOutput::setOutputLine() {
    auto& im = *impl_;
    if (!im.output_error.empty()) return; // after a broken rule nothing more is published
    const std::string_view form = im.json ? "::set-output-json" : "::set-output";
    std::string_view rest = im.captured;
    if (!im.truncated && !rest.empty() && rest.back() == '\r') rest.remove_suffix(1);
    const size_t eq = rest.find('=');
    if (eq == std::string_view::npos) {
        im.output_error = "a `" + std::string(form) + "` line needs NAME=" + (im.json ? "JSON" : "value") +
                          ", found `" + std::string(form) + " " + std::string(rest.substr(0, 64)) +
                          (rest.size() > 64 ? "...`" : "`");
        return;
    }
    const std::string_view name = rest.substr(0, eq);
    const std::string_view value = rest.substr(eq + 1);
    std::string err;
    const bool named = plugin_host::isOutputName(name);
    // A line cut short: its value's size as written (up to its newline, a CR counted).
    const size_t value_bytes = im.line_bytes - eq - 1;
    if (im.truncated && im.json && named && value_bytes > plugin_host::kMaxJsonOutputBytes) {
        im.output_error = "output '" + std::string(name) + "' is " + std::to_string(value_bytes) +
                          " bytes of JSON, over the limit of 1 MiB (1048576 bytes) for one JSON value";
    } else if (im.truncated && im.json) {
        im.output_error = "a `::set-output-json` line is longer than the 1 MiB (1048576 bytes) all outputs of an "
                          "attempt may hold";
    } else if (im.truncated && named && value_bytes > plugin_host::kMaxOutputValueBytes) {
        im.output_error = "output '" + std::string(name) + "' is " + std::to_string(value_bytes) +
                          " bytes, over the limit of 4 KiB (4096 bytes) for one value";
    } else if (im.truncated) {
        im.output_error = "a `::set-output` line is longer than the 64 KiB (65536 bytes) all plain outputs of an "
                          "attempt may hold";
    } else if (!(im.json ? im.outputs.setJson(name, value, &err) : im.outputs.set(name, value, &err))) {
        im.output_error = std::move(err);
    }
}

void TaskOutput::finishOutputs() {
    auto& im = *impl_;
    if (!im.scanning) return;
    im.scanning = false;
    if (im.line == Impl::Line::Capture) setOutputLine(); // the last line lacked its newline
    im.captured = std::string();
}

void TaskOutput::addPluginOutputs(const store::NameValues& outputs, const store::NameValues& json_outputs) {
    auto& im = *impl_;
    for (const auto& [name, value] : outputs) {
        if (!im.output_error.empty()) return;
        std::string err;
        if (!im.outputs.set(name, value, &err)) im.output_error = std::move(err);
    }
    for (const auto& [name, value] : json_outputs) {
        if (!im.output_error.empty()) return;
        std::string err;
        if (!im.outputs.setCompactJson(name, value, &err)) im.output_error = std::move(err);
    }
}

const store::NameValues& TaskOutput::outputs() const { return impl_->outputs.values(); }

const store::NameValues& TaskOutput::jsonOutputs() const { return impl_->outputs.jsonValues(); }

const std::string& TaskOutput::outputError() const { return impl_->output_error; }

void TaskOutput::attemptEnded() {
    if (write_fd_ >= 0) {
        ::close(write_fd_);
        write_fd_ = -1;
    }
    if (impl_->closed) {
        finishOutputs();
        return;
    }
    // What the attempt wrote before it ended is in the pipe now: copy it before the end is
    // recorded. FIONREAD bounds this, so a left-behind process writing without pause (`yes &`)
    // cannot hold the loop here.
    int available = 0;
    if (::ioctl(impl_->reader.native_handle(), FIONREAD, &available) != 0) available = 0;
    const Drain drained = drain(static_cast<size_t>(available) + 1);
    finishOutputs();
    if (drained == Drain::Closed) {
        close();
        return;
    }
    // Processes the task left behind still hold the pipe: keep their output for a while, then
    // close, so that descriptors of finished attempts do not pile up.
    auto self = shared_from_this();
    impl_->linger.expires_after(kLinger);
    impl_->linger.async_wait([self](const boost::system::error_code& ec) {
        if (!ec) self->close();
    });
}

void TaskOutput::close() {
    auto& im = *impl_;
    if (im.closed) return;
    im.closed = true;
    flushForward();
    boost::system::error_code ec;
    im.reader.close(ec);
    im.linger.cancel();
    if (im.file_fd >= 0) {
        ::close(im.file_fd);
        im.file_fd = -1;
    }
}

} // namespace taskhub::engine
