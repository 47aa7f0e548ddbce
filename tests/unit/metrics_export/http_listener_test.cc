// The /metrics listener: answers, negotiation, limits against hostile clients, bind failures.
#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <future>
#include <optional>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics_export/http_listener.h"

using namespace taskhub::metrics_export;

namespace {

const std::string kText = "# HELP taskhub_up Up.\n# TYPE taskhub_up gauge\ntaskhub_up 1\n# EOF\n";

// A listener on 127.0.0.1 (a port the system picks) whose loop runs on a thread of its own.
struct Fixture {
    explicit Fixture(ListenerLimits limits = {}) {
        listener = std::make_unique<HttpListener>(io, "127.0.0.1:0", "127.0.0.1", 0, [this] {
            ++renders;
            return kText;
        }, limits);
        std::string err;
        REQUIRE(listener->open(&err));
        port = listener->port();
        loop = std::thread([this] { io.run(); });
    }
    ~Fixture() {
        std::promise<void> closed;
        boost::asio::post(io, [&] {
            listener->close();
            closed.set_value();
        });
        closed.get_future().wait();
        work.reset();
        io.stop();
        loop.join();
    }
    ListenerHealth health() {
        std::promise<ListenerHealth> h;
        boost::asio::post(io, [&] { h.set_value(listener->health()); });
        return h.get_future().get();
    }

    boost::asio::io_context io;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{io.get_executor()};
    std::unique_ptr<HttpListener> listener;
    std::atomic<int> renders{0};
    uint16_t port = 0;
    std::thread loop;
};

int connectTo(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

void sendAll(int fd, const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
        if (n <= 0) return; // the server closed on us
        done += static_cast<size_t>(n);
    }
}

// Everything until the server closes (or 10 s pass).
std::string readAll(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10'000) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

std::string request(uint16_t port, const std::string& req) {
    const int fd = connectTo(port);
    sendAll(fd, req);
    std::string answer = readAll(fd);
    ::close(fd);
    return answer;
}

std::string body(const std::string& answer) {
    const auto p = answer.find("\r\n\r\n");
    return p == std::string::npos ? "" : answer.substr(p + 4);
}

const std::string kTextFormat = "# HELP taskhub_up Up.\n# TYPE taskhub_up gauge\ntaskhub_up 1\n";

} // namespace

TEST_CASE("GET /metrics answers the text format, or OpenMetrics when asked for", "[http]") {
    Fixture f;
    const auto plain = request(f.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(plain.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(plain.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
    CHECK(plain.find("\r\nConnection: close\r\n") != std::string::npos);
    CHECK(plain.find("\r\nContent-Length: " + std::to_string(kTextFormat.size()) + "\r\n") != std::string::npos);
    CHECK(body(plain) == kTextFormat);
    const auto om = request(f.port, "GET /metrics?x=1 HTTP/1.0\r\nAccept: application/openmetrics-text;"
                                    "version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n");
    CHECK(om.find("\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n") !=
          std::string::npos);
    CHECK(body(om) == kText);
    // HEAD: the headers of GET, no body.
    const auto head = request(f.port, "HEAD /metrics HTTP/1.1\n\n");
    CHECK(head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(head.find("\r\nContent-Length: " + std::to_string(kTextFormat.size()) + "\r\n") != std::string::npos);
    CHECK(body(head).empty());
    CHECK(f.health().scrapes == 3);
    CHECK(f.health().serving);
    CHECK(f.health().address == "127.0.0.1:0");
}

TEST_CASE("other paths are 404, other methods 405, garbage 400", "[http]") {
    Fixture f;
    CHECK(request(f.port, "GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
    CHECK(request(f.port, "GET /metricsx HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
    const auto post = request(f.port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    CHECK(post.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
    CHECK(post.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
    CHECK(request(f.port, "hello\r\n\r\n").rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(request(f.port, "GET /metrics SPDY/3\r\n\r\n").rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(f.health().scrapes == 0);
    CHECK(f.renders == 0);
}

TEST_CASE("a request head over the limit is refused with 431", "[http]") {
    ListenerLimits limits;
    limits.max_request_head = 1024;
    Fixture f(limits);
    const auto answer = request(f.port, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(100'000, 'a') + "\r\n\r\n");
    CHECK(answer.rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0) == 0);
    // Just under the limit is fine.
    const std::string req = "GET /metrics HTTP/1.1\r\nX: ";
    CHECK(request(f.port, req + std::string(1024 - req.size() - 4, 'a') + "\r\n\r\n").rfind("HTTP/1.1 200", 0) == 0);
}

TEST_CASE("a client that sends nothing is cut off after head_timeout", "[http]") {
    ListenerLimits limits;
    limits.head_timeout = std::chrono::milliseconds(200);
    Fixture f(limits);
    const int fd = connectTo(f.port);
    sendAll(fd, "GET /metr");
    CHECK(readAll(fd).empty()); // closed without an answer
    ::close(fd);
}

TEST_CASE("connections held open by a client do not stop a scrape", "[http]") {
    ListenerLimits limits;
    limits.max_connections = 4;
    Fixture f(limits);
    std::vector<int> idle;
    for (int i = 0; i < 20; ++i) {
        idle.push_back(connectTo(f.port));
        sendAll(idle.back(), "GET /metrics HTTP/1.1\r\n"); // never finished
    }
    for (int i = 0; i < 3; ++i) CHECK(body(request(f.port, "GET /metrics HTTP/1.1\r\n\r\n")) == kTextFormat);
    // All but the newest few of the idle connections were closed by the server.
    int closed = 0;
    for (int fd : idle) {
        pollfd p{fd, POLLIN, 0};
        char c;
        if (::poll(&p, 1, 0) == 1 && ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) ++closed;
        ::close(fd);
    }
    CHECK(closed >= 16);
}

TEST_CASE("a scraper between its connect and its request is not evicted by a flood", "[http]") {
    // Prometheus connects, then sends. If the scraper is descheduled in between while a client
    // floods new connections, it must still be answered: the listener is handed a connection
    // only once its first bytes arrived (TCP_DEFER_ACCEPT), so it never sees the silent one.
    ListenerLimits limits;
    limits.max_connections = 4;
    Fixture f(limits);
    const int scraper = connectTo(f.port);
    std::vector<int> flood;
    for (int i = 0; i < 20; ++i) {
        flood.push_back(connectTo(f.port));
        sendAll(flood.back(), "GET /metrics HTTP/1.1\r\n"); // never finished
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // the listener has taken the flood
    sendAll(scraper, "GET /metrics HTTP/1.1\r\n\r\n");
    CHECK(body(readAll(scraper)) == kTextFormat);
    ::close(scraper);
    for (int fd : flood) ::close(fd);
}

TEST_CASE("the text is rendered at most once per render_interval", "[http]") {
    ListenerLimits limits;
    limits.render_interval = std::chrono::hours(1);
    Fixture f(limits);
    for (int i = 0; i < 5; ++i) request(f.port, "GET /metrics HTTP/1.1\r\n\r\n");
    request(f.port, "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n");
    CHECK(f.renders == 1);
    CHECK(f.health().scrapes == 6);
}

TEST_CASE("a port in use is refused with the reason, and health says so", "[http]") {
    Fixture f;
    boost::asio::io_context io;
    HttpListener second(io, "127.0.0.1:" + std::to_string(f.port), "127.0.0.1", f.port, [] { return kText; });
    std::string err;
    CHECK_FALSE(second.open(&err));
    CHECK(err.rfind("cannot listen on 127.0.0.1:" + std::to_string(f.port) + ": Address already in use", 0) == 0);
    CHECK_FALSE(second.health().serving);
    CHECK(second.health().error == err);
}
