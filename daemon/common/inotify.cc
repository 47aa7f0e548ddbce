#include "common/inotify.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace taskhub::common {

namespace asio = boost::asio;
namespace fs = std::filesystem;

struct Inotify::Impl {
    asio::posix::stream_descriptor stream; // owns the descriptor once open
    int fd = -1;
    bool stopped = false;
    Handlers handlers;

    explicit Impl(asio::io_context& io) : stream(io) {}

    void wait() {
        stream.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            if (ec || stopped) return;
            readEvents();
            if (stopped) return;
            if (handlers.batch_done) handlers.batch_done();
            if (!stopped) wait();
        });
    }

    // Reads until the descriptor has nothing more (it is non-blocking).
    void readEvents() {
        alignas(inotify_event) char buf[64 * 1024];
        for (;;) {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) return;
            for (char* p = buf; p < buf + n;) {
                const auto* ev = reinterpret_cast<const inotify_event*>(p);
                p += sizeof(inotify_event) + ev->len;
                if (stopped) return;
                if (ev->mask & IN_Q_OVERFLOW) {
                    handlers.overflow();
                } else if (handlers.event) {
                    handlers.event(*ev);
                }
            }
        }
    }
};

Inotify::Inotify(asio::io_context& io) : impl_(std::make_unique<Impl>(io)) {}

Inotify::~Inotify() = default; // the stream closes the descriptor

bool Inotify::open(std::string* err) {
    if (impl_->fd >= 0) return true;
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        *err = std::string("inotify_init1: ") + std::strerror(errno);
        return false;
    }
    boost::system::error_code ec;
    impl_->stream.assign(fd, ec);
    if (ec) {
        ::close(fd);
        *err = "inotify_init1: cannot register the descriptor with the event loop: " + ec.message();
        return false;
    }
    impl_->fd = fd;
    return true;
}

bool Inotify::isOpen() const { return impl_->fd >= 0; }

int Inotify::addWatch(const fs::path& path, uint32_t mask, std::string* err) {
    if (impl_->fd < 0) {
        *err = "cannot watch " + path.string() + ": inotify is not open";
        return -1;
    }
    const int wd = ::inotify_add_watch(impl_->fd, path.c_str(), mask);
    if (wd < 0) *err = "cannot watch " + path.string() + ": " + std::strerror(errno);
    return wd;
}

void Inotify::removeWatch(int wd) {
    if (impl_->fd >= 0 && wd >= 0) ::inotify_rm_watch(impl_->fd, wd);
}

void Inotify::start(Handlers handlers) {
    if (impl_->fd < 0) return;
    impl_->handlers = std::move(handlers);
    impl_->stopped = false;
    impl_->wait();
}

void Inotify::stop() {
    impl_->stopped = true;
    boost::system::error_code ec;
    impl_->stream.cancel(ec);
}

fs::path nearestExistingParent(const fs::path& path) {
    std::error_code ec;
    fs::path p = path;
    while (p.has_parent_path() && p != p.root_path()) {
        p = p.parent_path();
        if (fs::is_directory(p, ec)) return p;
    }
    return p.root_path();
}

} // namespace taskhub::common
