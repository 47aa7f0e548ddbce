#include "metrics_export/textfile_writer.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/time_util.h"
#include "metrics_export/text_format.h"

namespace taskhub::metrics_export {

namespace asio = boost::asio;

bool writeFileAtomically(const std::filesystem::path& file, const std::string& text, std::string* err) {
    const std::string tmp = file.string() + ".tmp." + std::to_string(getpid());
    const std::string how = " (taskhubd writes " + tmp + " and renames it over " + file.string() +
                            ": the directory must exist and be writable by taskhubd)";
    auto fail = [&](const std::string& step, int fd) {
        const int e = errno;
        if (fd >= 0) ::close(fd);
        if (step != "create") ::unlink(tmp.c_str());
        *err = "cannot " + step + " " + (step == "rename" ? tmp + " to " + file.string() : tmp) + ": " +
               std::strerror(e) + how;
        return false;
    };
    // O_EXCL | O_NOFOLLOW: whoever else may write the directory cannot make this write go
    // through a link they planted; a leftover of ours (or theirs) is removed and made anew.
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = ::open(tmp.c_str(), flags, 0644);
    if (fd < 0 && errno == EEXIST && ::unlink(tmp.c_str()) == 0) fd = ::open(tmp.c_str(), flags, 0644);
    if (fd < 0) return fail("create", -1);
    if (::fchmod(fd, 0644) != 0) return fail("set the mode of", fd); // whatever the umask
    for (size_t done = 0; done < text.size();) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail("write", fd);
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) return fail("fsync", fd);
    if (::close(fd) != 0) return fail("close", -1);
    if (::rename(tmp.c_str(), file.c_str()) != 0) return fail("rename", -1);
    return true;
}

struct TextfileWriter::Shared {
    explicit Shared(asio::io_context& io) : timer(io) {}
    std::mutex mu;
    std::condition_variable cv;
    std::optional<std::string> pending; // OpenMetrics text waiting to be written (the newest)
    bool quit = false;
    std::thread thread;
    asio::steady_timer timer;
};

TextfileWriter::TextfileWriter(asio::io_context& io, std::filesystem::path file, std::chrono::milliseconds interval,
                               std::function<std::string()> render)
    : io_(io), file_(std::move(file)), interval_(interval), render_(std::move(render)),
      shared_(std::make_shared<Shared>(io)) {
    health_.path = file_.string();
}

TextfileWriter::~TextfileWriter() {
    {
        std::lock_guard<std::mutex> lock(shared_->mu);
        shared_->quit = true;
        shared_->pending.reset();
    }
    shared_->cv.notify_all();
    if (shared_->thread.joinable()) shared_->thread.join();
}

void TextfileWriter::start() {
    std::weak_ptr<Shared> weak = shared_;
    Shared* s = shared_.get();
    s->thread = std::thread([this, s, weak] {
        pthread_setname_np(pthread_self(), "taskhubd-metric");
        for (;;) {
            std::string text;
            {
                std::unique_lock<std::mutex> lock(s->mu);
                s->cv.wait(lock, [s] { return s->pending || s->quit; });
                if (s->quit) return;
                text = std::move(*s->pending);
                s->pending.reset();
            }
            std::string err;
            const bool ok = writeFileAtomically(file_, toPrometheusText(text), &err);
            const int64_t at = nowMillis();
            asio::post(io_, [this, weak, ok, err = std::move(err), at] {
                if (weak.lock() && !stopped_) recordOutcome(ok, err, at);
            });
        }
    });
    tick();
}

void TextfileWriter::tick() {
    if (stopped_) return;
    std::string text = render_();
    {
        std::lock_guard<std::mutex> lock(shared_->mu);
        shared_->pending = std::move(text);
    }
    shared_->cv.notify_all();
    arm();
}

void TextfileWriter::arm() {
    std::weak_ptr<Shared> weak = shared_;
    shared_->timer.expires_after(interval_);
    shared_->timer.async_wait([this, weak](const boost::system::error_code& ec) {
        if (ec || !weak.lock()) return;
        tick();
    });
}

void TextfileWriter::stop() {
    if (stopped_) return;
    stopped_ = true;
    shared_->timer.cancel();
    {
        std::lock_guard<std::mutex> lock(shared_->mu);
        shared_->quit = true;
        shared_->pending.reset();
    }
    shared_->cv.notify_all();
    if (shared_->thread.joinable()) shared_->thread.join(); // a write in progress finishes first
    std::string err;
    const bool ok = writeFileAtomically(file_, toPrometheusText(render_()), &err);
    recordOutcome(ok, err, nowMillis());
}

void TextfileWriter::recordOutcome(bool ok, const std::string& err, int64_t at_ms) {
    if (ok) {
        if (!health_.error.empty()) {
            spdlog::info("METRICS_TEXTFILE_RECOVERED {}: written again, after failing since {}", file_.string(),
                         formatIsoMillis(health_.error_since_ms));
        }
        health_.written_ms = at_ms;
        health_.error.clear();
        health_.error_since_ms = 0;
        return;
    }
    if (err != health_.error) {
        spdlog::warn("METRICS_TEXTFILE_FAILED {}: {}; trying again every {} ms", file_.string(), err, interval_.count());
        if (health_.error.empty()) health_.error_since_ms = at_ms;
        health_.error = err;
    }
}

TextfileHealth TextfileWriter::health() const { return health_; }

} // namespace taskhub::metrics_export
