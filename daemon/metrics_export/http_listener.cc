#include "metrics_export/http_listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <list>
#include <string_view>
#include <vector>

#include "metrics_export/text_format.h"

namespace taskhub::metrics_export {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// Where the request head ends (just past the blank line), or npos while it has not ended.
size_t headEnd(std::string_view data) {
    for (size_t i = 0; i < data.size(); ++i) {
        if (data[i] != '\n') continue;
        if (i + 1 < data.size() && data[i + 1] == '\n') return i + 2;
        if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n') return i + 3;
    }
    return std::string_view::npos;
}

std::string statusHead(int code, std::string_view reason, std::string_view type, size_t length,
                       std::string_view extra = {}) {
    std::string h = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
    h += "Content-Type: " + std::string(type) + "\r\n";
    h += "Content-Length: " + std::to_string(length) + "\r\n";
    h += extra;
    h += "Connection: close\r\n\r\n";
    return h;
}

} // namespace

struct HttpListener::Impl : std::enable_shared_from_this<Impl> {
    struct Conn {
        explicit Conn(tcp::socket s, asio::io_context& io) : socket(std::move(s)), timer(io) {}
        tcp::socket socket;
        asio::steady_timer timer;
        std::vector<char> head; // the request head read so far
        bool answering = false; // the answer is being written
        std::string answer_head;
        std::shared_ptr<const std::string> body; // shared with other answers of the same text
        std::list<std::shared_ptr<Conn>>::iterator pos;
        bool closed = false;
    };

    Impl(asio::io_context& i, std::string a, std::string h, uint16_t p, std::function<std::string()> r,
         ListenerLimits l)
        : io(i), address(std::move(a)), host(std::move(h)), port(p), render(std::move(r)), limits(l), acceptor(i),
          accept_timer(i) {}

    asio::io_context& io;
    std::string address;
    std::string host;
    uint16_t port;
    std::function<std::string()> render;
    ListenerLimits limits;
    tcp::acceptor acceptor;
    asio::steady_timer accept_timer;
    std::chrono::milliseconds accept_backoff{100};
    std::list<std::shared_ptr<Conn>> conns; // oldest first
    ListenerHealth health;
    // The last rendered text and when; the text format is converted from it on first need.
    std::shared_ptr<const std::string> openmetrics;
    std::shared_ptr<const std::string> text04;
    Clock::time_point rendered_at;

    bool open(std::string* err) {
        health.address = address;
        boost::system::error_code ec;
        const auto ip = asio::ip::make_address(host, ec);
        tcp::endpoint ep;
        if (!ec) ep = tcp::endpoint(ip, port);
        if (!ec) acceptor.open(ep.protocol(), ec);
        if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) acceptor.bind(ep, ec);
        if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            boost::system::error_code ignored;
            acceptor.close(ignored);
            *err = "cannot listen on " + address + ": " + ec.message() +
                   " (another process may use the port: change [metrics] listen, or stop the other process, then "
                   "restart taskhubd)";
            health.serving = false;
            health.error = *err;
            return false;
        }
        // Deferred accept: the kernel hands over a connection only once its first bytes have
        // arrived (or after about head_timeout, when it gives up waiting), so a scraper is never
        // accepted in the moment between its connect and its send. Its request is then always in
        // its socket when admit() looks, and a flood of new connections cannot evict it as the
        // oldest one still reading. If setting it fails, that
        // moment stays open and everything else works as before.
        const int defer_s = static_cast<int>(std::max<long long>(
            1, std::chrono::duration_cast<std::chrono::seconds>(limits.head_timeout).count()));
        (void)::setsockopt(acceptor.native_handle(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof defer_s);
        health.serving = true;
        health.error.clear();
        accept();
        return true;
    }

    void close() {
        boost::system::error_code ignored;
        acceptor.close(ignored);
        accept_timer.cancel();
        while (!conns.empty()) drop(conns.front());
        health.serving = false;
    }

    void accept() {
        auto self = shared_from_this();
        acceptor.async_accept([self](const boost::system::error_code& ec, tcp::socket sock) {
            if (!self->acceptor.is_open()) return;
            if (ec) return self->acceptFailed(ec);
            self->accept_backoff = std::chrono::milliseconds(100);
            self->admit(std::move(sock));
            self->accept();
        });
    }

    // Out of descriptors (or another accept error): retrying at once would spin on the readable
    // listening socket, so pause accepting, 100 ms doubling up to 1 s.
    void acceptFailed(const boost::system::error_code& ec) {
        spdlog::warn("METRICS_ACCEPT_FAILED {}: {}; not accepting for {} ms", address, ec.message(),
                     accept_backoff.count());
        auto self = shared_from_this();
        accept_timer.expires_after(accept_backoff);
        accept_backoff = std::min(accept_backoff * 2, std::chrono::milliseconds(1000));
        accept_timer.async_wait([self](const boost::system::error_code& tec) {
            if (!tec && self->acceptor.is_open()) self->accept();
        });
    }

    void admit(tcp::socket sock) {
        if (conns.size() >= limits.max_connections) {
            // What has arrived on the connections still reading is taken first: a scraper whose
            // request is waiting in its socket is answered, not evicted, however fast others
            // connect. Then the oldest connection still reading goes (else the oldest).
            const std::vector<std::shared_ptr<Conn>> reading(conns.begin(), conns.end());
            for (const auto& c : reading) {
                if (!c->answering && !c->closed) takeWhatArrived(c);
            }
            if (conns.size() >= limits.max_connections) {
                auto victim = std::find_if(conns.begin(), conns.end(), [](const auto& c) { return !c->answering; });
                drop(victim != conns.end() ? *victim : conns.front());
            }
        }
        auto c = std::make_shared<Conn>(std::move(sock), io);
        boost::system::error_code ec;
        c->socket.non_blocking(true, ec);
        if (ec) return; // c goes with its socket
        conns.push_back(c);
        c->pos = std::prev(conns.end());
        c->head.reserve(1024);
        arm(c, limits.head_timeout);
        read(c);
    }

    void arm(const std::shared_ptr<Conn>& c, std::chrono::milliseconds after) {
        std::weak_ptr<Conn> weak = c;
        auto self = shared_from_this();
        c->timer.expires_after(after);
        c->timer.async_wait([self, weak](const boost::system::error_code& ec) {
            auto conn = weak.lock();
            if (!ec && conn && !conn->closed) self->drop(conn);
        });
    }

    void drop(const std::shared_ptr<Conn>& c) {
        if (c->closed) return;
        c->closed = true;
        boost::system::error_code ignored;
        c->socket.close(ignored);
        c->timer.cancel();
        conns.erase(c->pos);
    }

    // Waits until the peer sends, then takes what it sent. Reads happen only in
    // takeWhatArrived(), in program order, so admit() may take bytes early without reordering.
    void read(const std::shared_ptr<Conn>& c) {
        auto self = shared_from_this();
        c->socket.async_wait(tcp::socket::wait_read, [self, c](const boost::system::error_code& ec) {
            if (c->closed || c->answering) return;
            if (ec) return self->drop(c);
            self->takeWhatArrived(c);
            if (!c->closed && !c->answering) self->read(c);
        });
    }

    // Reads what has arrived without waiting; answers once the head is complete or too large;
    // drops the connection at end of file or on an error.
    void takeWhatArrived(const std::shared_ptr<Conn>& c) {
        std::array<char, 2048> buf;
        while (!c->closed && !c->answering) {
            boost::system::error_code ec;
            const size_t n = c->socket.read_some(asio::buffer(buf), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) return;
            if (ec || n == 0) return drop(c); // the peer went away (or closed before finishing)
            const size_t room = limits.max_request_head - c->head.size();
            c->head.insert(c->head.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(std::min(n, room)));
            const std::string_view data(c->head.data(), c->head.size());
            if (headEnd(data) != std::string_view::npos) return answer(c, data);
            if (n > room || c->head.size() >= limits.max_request_head) {
                const std::string body = "request head too large: at most " + std::to_string(limits.max_request_head) +
                                         " bytes\n";
                return send(c, 431, "Request Header Fields Too Large", body);
            }
        }
    }

    void send(const std::shared_ptr<Conn>& c, int code, std::string_view reason, const std::string& body,
              std::string_view extra = {}) {
        c->answer_head = statusHead(code, reason, "text/plain; charset=utf-8", body.size(), extra);
        c->body = std::make_shared<const std::string>(body);
        write(c);
    }

    void answer(const std::shared_ptr<Conn>& c, std::string_view head) {
        // Request line: METHOD SP TARGET SP HTTP/1.x
        const size_t eol = head.find('\n');
        const std::string_view line = trim(head.substr(0, eol));
        const size_t sp1 = line.find(' ');
        const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
        if (sp2 == std::string_view::npos || line.substr(sp2 + 1).substr(0, 7) != "HTTP/1." ||
            line.find(' ', sp2 + 1) != std::string_view::npos) {
            return send(c, 400, "Bad Request", "malformed request line\n");
        }
        const std::string_view method = line.substr(0, sp1);
        std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        target = target.substr(0, target.find('?'));
        const bool head_only = method == "HEAD";
        if (target != "/metrics") return send(c, 404, "Not Found", "not found: taskhubd serves /metrics only\n");
        if (method != "GET" && !head_only) {
            return send(c, 405, "Method Not Allowed", "method not allowed: use GET or HEAD\n", "Allow: GET, HEAD\r\n");
        }
        // Accept headers (several are one comma-separated list).
        std::string accept;
        size_t pos = eol == std::string_view::npos ? head.size() : eol + 1;
        while (pos < head.size()) {
            size_t end = head.find('\n', pos);
            if (end == std::string_view::npos) end = head.size();
            const std::string_view h = head.substr(pos, end - pos);
            pos = end + 1;
            const size_t colon = h.find(':');
            if (colon != std::string_view::npos && iequals(trim(h.substr(0, colon)), "accept")) {
                if (!accept.empty()) accept += ',';
                accept += trim(h.substr(colon + 1));
            }
        }
        const bool om = wantsOpenMetrics(accept);
        auto body = text(om);
        ++health.scrapes;
        c->answer_head = statusHead(200, "OK", om ? kOpenMetricsContentType : kPrometheusTextContentType, body->size());
        if (!head_only) c->body = std::move(body);
        write(c);
    }

    std::shared_ptr<const std::string> text(bool om) {
        const auto now = Clock::now();
        if (!openmetrics || now - rendered_at >= limits.render_interval) {
            openmetrics = std::make_shared<const std::string>(render());
            text04.reset();
            rendered_at = now;
        }
        if (om) return openmetrics;
        if (!text04) text04 = std::make_shared<const std::string>(toPrometheusText(*openmetrics));
        return text04;
    }

    void write(const std::shared_ptr<Conn>& c) {
        c->answering = true;
        c->head.clear();
        c->head.shrink_to_fit();
        arm(c, limits.write_timeout);
        std::array<asio::const_buffer, 2> bufs = {asio::buffer(c->answer_head),
                                                  c->body ? asio::buffer(*c->body) : asio::const_buffer()};
        auto self = shared_from_this();
        asio::async_write(c->socket, bufs, [self, c](const boost::system::error_code&, size_t) {
            if (c->closed) return;
            boost::system::error_code ignored;
            c->socket.shutdown(tcp::socket::shutdown_send, ignored);
            self->drop(c);
        });
    }
};

HttpListener::HttpListener(asio::io_context& io, std::string address, std::string host, uint16_t port,
                           std::function<std::string()> render, ListenerLimits limits)
    : impl_(std::make_shared<Impl>(io, std::move(address), std::move(host), port, std::move(render), limits)) {}

HttpListener::~HttpListener() { impl_->close(); }

bool HttpListener::open(std::string* err) { return impl_->open(err); }

void HttpListener::close() { impl_->close(); }

uint16_t HttpListener::port() const {
    boost::system::error_code ec;
    const auto ep = impl_->acceptor.local_endpoint(ec);
    return ec ? 0 : ep.port();
}

ListenerHealth HttpListener::health() const { return impl_->health; }

} // namespace taskhub::metrics_export
