// notify/webhook.h: the webhook client posts JSON with the caller's headers to a real HTTP
// receiver on 127.0.0.1 (a plain-socket server in a thread of this test), tells success,
// retryable and final failures apart with precise error texts, keeps a hanging receiver from
// holding up others, bounds its queue and what it reads, never shows URL credentials, refuses
// header injection, and validates URLs for load time.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <chrono>
#include <deque>
#include <fstream>
#include <sstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "notify/webhook.h"

using namespace taskhub;
using namespace std::chrono_literals;

namespace {

// The receivers are on 127.0.0.1: a proxy set in the environment running the tests must not be
// asked to reach them (one test sets http_proxy itself).
const bool kNoProxy = [] {
    for (const char* name : {"http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"}) ::unsetenv(name);
    return true;
}();

// What the receiver does with one connection.
struct Reply {
    enum Kind { Respond, Hang, Close, Stream } kind = Respond;
    int status = 200;
    std::string body;
    std::string headers;  // extra header lines, each ending in CRLF
};

Reply respond(int status, std::string body = "", std::string headers = "") {
    Reply r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
}
Reply hang() {
    Reply r;
    r.kind = Reply::Hang;
    return r;
}
Reply closeWithoutAnswer() {
    Reply r;
    r.kind = Reply::Close;
    return r;
}
Reply stream(int status) {
    Reply r;
    r.kind = Reply::Stream;
    r.status = status;
    return r;
}

struct Received {
    std::string method, target, version;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
};

// A one-connection-at-a-time HTTP/1.1 receiver on 127.0.0.1. Replies are taken from the script in
// order; the last one repeats. Each response closes the connection.
class Receiver {
public:
    Receiver(std::initializer_list<Reply> script) : script_(script.begin(), script.end()) {
        listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(listen_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listen_, 64) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        REQUIRE(::pipe2(stop_, O_CLOEXEC) == 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~Receiver() {
        const char c = 'x';
        (void)!::write(stop_[1], &c, 1);
        thread_.join();
        ::close(listen_);
        ::close(stop_[0]);
        ::close(stop_[1]);
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    std::string url(const std::string& path = "/hook") const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    int port() const { return port_; }
    std::vector<Received> received() const {
        std::lock_guard lock(mu_);
        return received_;
    }
    // Connections accepted so far (a request may still be on its way).
    int connections() const { return connections_.load(); }

private:
    // Waits for fd to be readable or the test to end; false when it ends.
    bool waitReadable(int fd) const {
        pollfd p[2] = {{fd, POLLIN, 0}, {stop_[0], POLLIN, 0}};
        for (;;) {
            const int n = ::poll(p, 2, -1);
            if (n < 0 && errno == EINTR) continue;
            return n > 0 && !(p[1].revents & POLLIN);
        }
    }

    void serve() {
        for (;;) {
            if (!waitReadable(listen_)) return;
            const int fd = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            ++connections_;
            Reply reply;
            {
                std::lock_guard lock(mu_);
                reply = script_.front();
                if (script_.size() > 1) script_.pop_front();
            }
            const bool go_on = handle(fd, reply);
            ::close(fd);
            if (!go_on) return;
        }
    }

    // False when the test ends while the connection is handled.
    bool handle(int fd, const Reply& reply) {
        std::string in;
        char buf[4096];
        size_t head_end = std::string::npos;
        size_t body_len = 0;
        for (;;) {
            if (head_end == std::string::npos) head_end = in.find("\r\n\r\n");
            if (head_end != std::string::npos) {
                const std::string head = lower(in.substr(0, head_end));
                const size_t cl = head.find("\r\ncontent-length:");
                if (cl != std::string::npos) body_len = std::stoul(head.substr(cl + 17));
                if (in.size() >= head_end + 4 + body_len) break;
            }
            if (!waitReadable(fd)) return false;
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) return true;
            in.append(buf, static_cast<size_t>(n));
        }
        record(in.substr(0, head_end), in.substr(head_end + 4, body_len));
        switch (reply.kind) {
        case Reply::Hang:
            waitReadable(stop_[0]);  // until the test ends
            return false;
        case Reply::Close:
            return true;
        case Reply::Respond: {
            const std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " Whatever\r\nContent-Length: " +
                                    std::to_string(reply.body.size()) + "\r\nConnection: close\r\n" + reply.headers + "\r\n" +
                                    reply.body;
            sendAll(fd, out);
            return true;
        }
        case Reply::Stream: {
            if (!sendAll(fd, "HTTP/1.1 " + std::to_string(reply.status) + " OK\r\nConnection: close\r\n\r\n"))
                return true;
            const std::string chunk(65536, 'z');
            // Until the client stops reading and closes, or the test ends.
            for (;;) {
                pollfd p[2] = {{fd, POLLOUT, 0}, {stop_[0], POLLIN, 0}};
                if (::poll(p, 2, -1) < 0 && errno != EINTR) return true;
                if (p[1].revents & POLLIN) return false;
                if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
                    return true;
            }
        }
        }
        return true;
    }

    static bool sendAll(int fd, const std::string& s) {
        size_t off = 0;
        while (off < s.size()) {
            const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return false;
            off += static_cast<size_t>(n);
        }
        return true;
    }

    static std::string lower(std::string s) {
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    }

    void record(const std::string& head, const std::string& body) {
        Received r;
        size_t pos = head.find("\r\n");
        const std::string request_line = head.substr(0, pos);
        const size_t sp1 = request_line.find(' ');
        const size_t sp2 = request_line.rfind(' ');
        r.method = request_line.substr(0, sp1);
        r.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
        r.version = request_line.substr(sp2 + 1);
        while (pos != std::string::npos) {
            const size_t start = pos + 2;
            pos = head.find("\r\n", start);
            const std::string line = head.substr(start, pos == std::string::npos ? std::string::npos : pos - start);
            const size_t colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            r.headers[lower(line.substr(0, colon))] = value;
        }
        r.body = body;
        std::lock_guard lock(mu_);
        received_.push_back(std::move(r));
    }

    int listen_ = -1;
    int port_ = 0;
    int stop_[2] = {-1, -1};
    std::thread thread_;
    mutable std::mutex mu_;
    std::deque<Reply> script_;
    std::vector<Received> received_;
    std::atomic<int> connections_{0};
};

// Runs io until done() holds or 30 seconds have passed (a generous bound for a loaded machine).
bool runUntil(boost::asio::io_context& io, const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (!done() && std::chrono::steady_clock::now() < end) {
        io.restart();
        io.run_for(10ms);
    }
    return done();
}

// Posts once and waits for the result.
notify::PostResult postAndWait(boost::asio::io_context& io, notify::WebhookClient& client, const std::string& url,
                               const std::string& body = "{}",
                               std::vector<notify::WebhookClient::Header> headers = {}) {
    std::optional<notify::PostResult> result;
    std::string err;
    REQUIRE(client.post(url, body, std::move(headers), [&](notify::PostResult r) { result = std::move(r); }, &err));
    REQUIRE(runUntil(io, [&] { return result.has_value(); }));
    return *result;
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
int closedPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// Descriptors open in this process that a child would inherit (not close-on-exec), beyond 0-2.
std::set<int> inheritableDescriptors() {
    std::set<int> fds;
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (const dirent* e = ::readdir(d)) {
        const int fd = std::atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == ::dirfd(d)) continue;
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) fds.insert(fd);
    }
    ::closedir(d);
    return fds;
}

} // namespace

TEST_CASE("webhook: a 200 is ok; the receiver gets a JSON POST with the caller's headers", "[webhook]") {
    Receiver rx{respond(200, "thanks")};
    boost::asio::io_context io;
    notify::WebhookOptions opts;
    opts.user_agent = "taskhubd/test";
    notify::WebhookClient client(io, opts);
    const std::string body = R"({"run":"nightly@2026-12-06T02:30:00Z","event":"failure"})";
    const auto r = postAndWait(io, client, rx.url("/hooks/taskhub"), body,
                               {{"X-TaskHub-Event", "failure"}, {"X-TaskHub-Notification-Id", "42"}});
    CHECK(r.ok);
    CHECK(r.http_status == 200);
    CHECK(r.error.empty());
    CHECK(client.queued() == 0);
    const auto got = rx.received();
    REQUIRE(got.size() == 1);
    CHECK(got[0].method == "POST");
    CHECK(got[0].target == "/hooks/taskhub");
    CHECK(got[0].headers.at("content-type") == "application/json");
    CHECK(got[0].headers.at("x-taskhub-event") == "failure");
    CHECK(got[0].headers.at("x-taskhub-notification-id") == "42");
    CHECK(got[0].headers.at("user-agent") == "taskhubd/test");
    CHECK(got[0].headers.count("expect") == 0);
    CHECK(got[0].body == body);
}

TEST_CASE("webhook: a large body arrives whole, without an Expect round trip", "[webhook]") {
    Receiver rx{respond(204, "")};
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    const std::string body = "\"" + std::string(300'000, 'a') + "\"";
    const auto r = postAndWait(io, client, rx.url(), body);
    CHECK(r.ok);
    CHECK(r.http_status == 204);
    const auto got = rx.received();
    REQUIRE(got.size() == 1);
    CHECK(got[0].body == body);
    CHECK(got[0].headers.count("expect") == 0);
}

TEST_CASE("webhook: a 500 is retryable and names the receiver and the body's first line; then 200", "[webhook]") {
    Receiver rx{respond(500, "\n  database is down\nstack trace follows"), respond(200, "")};
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    const auto first = postAndWait(io, client, rx.url("/h?token=s3cret"));
    CHECK_FALSE(first.ok);
    CHECK(first.retryable);
    CHECK(first.http_status == 500);
    CHECK(first.error == "HTTP 500 from " + rx.url("/h") + ": database is down");
    const auto second = postAndWait(io, client, rx.url("/h?token=s3cret"));
    CHECK(second.ok);
    CHECK(second.http_status == 200);
    CHECK(rx.received().size() == 2);
    CHECK(rx.received()[1].target == "/h?token=s3cret");
}

TEST_CASE("webhook: 4xx is final except 408 and 429; 3xx is not followed", "[webhook]") {
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    {
        Receiver rx{respond(404, "no such hook")};
        const auto r = postAndWait(io, client, rx.url());
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.retryable);
        CHECK(r.http_status == 404);
        CHECK(r.error == "HTTP 404 from " + rx.url() + ": no such hook");
    }
    for (int status : {408, 429, 503}) {
        Receiver rx{respond(status, "")};
        const auto r = postAndWait(io, client, rx.url());
        CHECK_FALSE(r.ok);
        CHECK(r.retryable);
        CHECK(r.http_status == status);
        CHECK(r.error == "HTTP " + std::to_string(status) + " from " + rx.url());
    }
    {
        Receiver target{respond(200, "")};
        const std::string location = "http://bob:hunter2@127.0.0.1:" + std::to_string(target.port()) + "/moved?k=v";
        Receiver rx{respond(301, "", "Location: " + location + "\r\n")};
        const auto r = postAndWait(io, client, rx.url());
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.retryable);
        CHECK(r.http_status == 301);
        CHECK(r.error == "HTTP 301 from " + rx.url() + ": redirects are not followed (Location: " +
                             target.url("/moved") + ")");
        CHECK(target.received().empty());
    }
}

TEST_CASE("webhook: a receiver that never answers times out, retryably", "[webhook]") {
    Receiver rx{hang()};
    boost::asio::io_context io;
    notify::WebhookOptions opts;
    opts.timeout = 300ms;
    notify::WebhookClient client(io, opts);
    const auto r = postAndWait(io, client, rx.url());
    CHECK_FALSE(r.ok);
    CHECK(r.retryable);
    CHECK(r.http_status == 0);
    CHECK(r.error == "timed out after 300ms waiting for " + rx.url());
}

TEST_CASE("webhook: a receiver that closes without answering, and one that is not there", "[webhook]") {
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    {
        Receiver rx{closeWithoutAnswer()};
        const auto r = postAndWait(io, client, rx.url());
        CHECK_FALSE(r.ok);
        CHECK(r.retryable);
        CHECK(r.error == "connection to 127.0.0.1:" + std::to_string(rx.port()) + " closed without a response");
    }
    {
        const int port = closedPort();
        const auto r = postAndWait(io, client, "http://127.0.0.1:" + std::to_string(port) + "/hook");
        CHECK_FALSE(r.ok);
        CHECK(r.retryable);
        CHECK(r.error == "could not connect to 127.0.0.1:" + std::to_string(port) + ": Connection refused");
    }
}

TEST_CASE("webhook: a hanging receiver does not hold up a post to a healthy one", "[webhook]") {
    Receiver hanging{hang()};
    Receiver healthy{respond(200, "")};
    boost::asio::io_context io;
    bool hanging_done = false;
    {
        notify::WebhookOptions opts;
        opts.timeout = 600s;  // far beyond the test: the hanging post must still be in flight
        notify::WebhookClient client(io, opts);
        std::string err;
        REQUIRE(client.post(hanging.url(), "{}", {}, [&](notify::PostResult) { hanging_done = true; }, &err));
        REQUIRE(runUntil(io, [&] { return hanging.received().size() == 1; }));
        const auto r = postAndWait(io, client, healthy.url());
        CHECK(r.ok);
        CHECK_FALSE(hanging_done);
        CHECK(client.queued() == 1);
        // Destroyed with the hanging post in flight: abandoned, done never runs.
    }
    io.restart();
    io.poll();
    CHECK_FALSE(hanging_done);
}

TEST_CASE("webhook: a full queue refuses the post with a clear error and never calls done", "[webhook]") {
    Receiver rx{hang()};
    boost::asio::io_context io;
    notify::WebhookOptions opts;
    opts.max_queue = 2;
    opts.timeout = 600s;
    notify::WebhookClient client(io, opts);
    int done_calls = 0;
    std::string err;
    REQUIRE(client.post(rx.url(), "{}", {}, [&](notify::PostResult) { ++done_calls; }, &err));
    REQUIRE(client.post(rx.url(), "{}", {}, [&](notify::PostResult) { ++done_calls; }, &err));
    CHECK(client.queued() == 2);
    CHECK_FALSE(client.post(rx.url(), "{}", {}, [&](notify::PostResult) { ++done_calls; }, &err));
    CHECK(err == "webhook queue is full: 2 posts are waiting or in flight (the limit, max_queue, is 2)");
    io.restart();
    io.run_for(50ms);
    CHECK(done_calls == 0);
    CHECK(client.queued() == 2);
}

TEST_CASE("webhook: a body larger than max_body is refused", "[webhook]") {
    boost::asio::io_context io;
    notify::WebhookOptions opts;
    opts.max_body = 10;
    notify::WebhookClient client(io, opts);
    std::string err;
    CHECK_FALSE(client.post("http://127.0.0.1:1/h", std::string(11, 'x'), {}, [](notify::PostResult) {}, &err));
    CHECK(err == "webhook body of 11 bytes for http://127.0.0.1:1/h is larger than the limit of 10 bytes");
    CHECK(client.queued() == 0);
}

TEST_CASE("webhook: headers with CR, LF or a bad name are refused, so nothing can be injected", "[webhook]") {
    Receiver rx{respond(200, "")};
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    std::string err;
    auto refused = [&](notify::WebhookClient::Header h) {
        err.clear();
        const bool ok = client.post(rx.url(), "{}", {std::move(h)}, [](notify::PostResult) { FAIL("done ran"); }, &err);
        return !ok && !err.empty();
    };
    CHECK(refused({"X-TaskHub-Event", "failure\r\nX-Injected: 1"}));
    CHECK(err.find("control character (byte 13) at position 7") != std::string::npos);
    CHECK(refused({"X-TaskHub-Event", "failure\nX-Injected: 1"}));
    CHECK(refused({"X-TaskHub-Event", std::string("a\0b", 3)}));
    CHECK(refused({"X-Bad Name", "v"}));
    CHECK(refused({"X-Bad:Name", "v"}));
    CHECK(refused({"X-Bad\r\nName", "v"}));
    CHECK(err.find("is not an HTTP token") != std::string::npos);
    CHECK(err.find('\r') == std::string::npos);
    CHECK(refused({"", "v"}));
    CHECK(refused({"Content-Type", "text/plain"}));
    CHECK(refused({"host", "evil.example"}));
    CHECK(refused({"X-Big", std::string(9000, 'v')}));
    CHECK(client.queued() == 0);
    // A tab is allowed in a value; the request goes out unchanged.
    const auto r = postAndWait(io, client, rx.url(), "{}", {{"X-Tabbed", "a\tb"}});
    CHECK(r.ok);
    REQUIRE(rx.received().size() == 1);
    CHECK(rx.received()[0].headers.at("x-tabbed") == "a\tb");
    CHECK(rx.received()[0].headers.count("x-injected") == 0);
}

TEST_CASE("webhook: URL credentials are sent but never shown in error texts", "[webhook]") {
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    {
        Receiver rx{respond(500, "no")};
        const std::string url = "http://alice:pa55word@127.0.0.1:" + std::to_string(rx.port()) + "/h";
        const auto r = postAndWait(io, client, url);
        CHECK_FALSE(r.ok);
        CHECK(r.error == "HTTP 500 from http://127.0.0.1:" + std::to_string(rx.port()) + "/h: no");
        REQUIRE(rx.received().size() == 1);
        CHECK(rx.received()[0].headers.at("authorization") == "Basic YWxpY2U6cGE1NXdvcmQ=");
    }
    {
        const int port = closedPort();
        const auto r = postAndWait(io, client, "http://alice:pa55word@127.0.0.1:" + std::to_string(port) + "/h");
        CHECK_FALSE(r.ok);
        CHECK(r.error.find("pa55word") == std::string::npos);
        CHECK(r.error.find("alice") == std::string::npos);
    }
    CHECK(notify::redactWebhookUrl("https://alice:pa55word@hooks.example.org/a/b?token=x#frag") ==
          "https://hooks.example.org/a/b");
    CHECK(notify::redactWebhookUrl("http://hooks.example.org:8080") == "http://hooks.example.org:8080/");
    CHECK(notify::redactWebhookUrl("not a url") == "<invalid URL>");
}

TEST_CASE("webhook: hostile response text is made printable and bounded in the error", "[webhook]") {
    Receiver rx{respond(502, "bad \x1b[31mgateway\x07 \xff\xfe caf\xc3\xa9 " + std::string(1000, 'x'))};
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    const auto r = postAndWait(io, client, rx.url());
    CHECK_FALSE(r.ok);
    const std::string prefix = "HTTP 502 from " + rx.url() + ": bad ?[31mgateway? ?? caf\xc3\xa9 xxx";
    CHECK(r.error.substr(0, prefix.size()) == prefix);
    CHECK(r.error.size() < prefix.size() + 250);
    CHECK(r.error.substr(r.error.size() - 3) == "...");
}

TEST_CASE("webhook: an endless response body is not read to the end", "[webhook]") {
    Receiver ok_rx{stream(200)};
    Receiver err_rx{stream(500)};
    boost::asio::io_context io;
    notify::WebhookOptions opts;
    opts.timeout = 600s;  // without the bound, the post would last as long as the test runs
    notify::WebhookClient client(io, opts);
    const auto ok = postAndWait(io, client, ok_rx.url());
    CHECK(ok.ok);
    CHECK(ok.http_status == 200);
    const auto failed = postAndWait(io, client, err_rx.url());
    CHECK_FALSE(failed.ok);
    CHECK(failed.retryable);
    CHECK(failed.http_status == 500);
    CHECK(failed.error.find("HTTP 500 from " + err_rx.url() + ": zzz") == 0);
}

TEST_CASE("webhook: many posts are in flight at once and each gets its own result", "[webhook]") {
    std::vector<std::unique_ptr<Receiver>> receivers;
    for (int i = 0; i < 8; ++i) receivers.push_back(std::make_unique<Receiver>(std::initializer_list<Reply>{respond(200 + i)}));
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    std::map<int, long> status_by_receiver;
    std::string err;
    for (int i = 0; i < 8; ++i) {
        REQUIRE(client.post(receivers[i]->url(), "{\"i\":" + std::to_string(i) + "}", {},
                            [&, i](notify::PostResult r) { status_by_receiver[i] = r.http_status; }, &err));
    }
    REQUIRE(runUntil(io, [&] { return status_by_receiver.size() == 8; }));
    for (int i = 0; i < 8; ++i) CHECK(status_by_receiver[i] == 200 + i);
    CHECK(client.queued() == 0);
}

TEST_CASE("webhook: URLs checked at load time", "[webhook]") {
    std::string err;
    for (const char* good : {"http://127.0.0.1:8080/hook", "https://hooks.example.org/taskhub?x=1",
                             "HTTPS://Hooks.Example.org", "https://user:pw@hooks.example.org/", "http://[::1]:9000/h",
                             "http://localhost/%20space"}) {
        INFO(good);
        CHECK(notify::checkWebhookUrl(good, &err));
    }
    auto refused = [&](const std::string& url) {
        err.clear();
        return !notify::checkWebhookUrl(url, &err) && !err.empty();
    };
    CHECK(refused("ftp://example.org/file"));
    CHECK(err == "webhook URL has the scheme 'ftp'; expected http://HOST/PATH or https://HOST/PATH");
    CHECK(refused("file:///etc/passwd"));
    CHECK(err == "webhook URL has the scheme 'file'; expected http://HOST/PATH or https://HOST/PATH");
    CHECK(refused("gopher://example.org/"));
    CHECK(refused("hooks.example.org/taskhub"));
    CHECK(err == "webhook URL has no scheme; expected http://HOST/PATH or https://HOST/PATH");
    CHECK(refused("https://"));
    CHECK(err.find("has no host") != std::string::npos);
    CHECK(refused("http:///path"));
    CHECK(err.find("has no host") != std::string::npos);
    CHECK(refused("http:/path"));
    CHECK(err.find("has no host") != std::string::npos);
    CHECK(refused("https://exa mple.org/"));
    CHECK(err == "webhook URL has a space at position 11; percent-encode it (%20 for a space)");
    CHECK(refused("https://example.org/\r\nX-Injected: 1"));
    CHECK(err.find("control character (byte 13) at position 20") != std::string::npos);
    CHECK(refused("https://example.org/\n"));
    CHECK(refused("https://example.org/\t"));
    CHECK(refused(""));
    CHECK(refused("https://example.org/" + std::string(9000, 'a')));
    CHECK(refused("https://example.org:99999/"));
    CHECK(refused("https://user:pw@"));
    CHECK(err.find("pw") == std::string::npos);
}

TEST_CASE("webhook: post() refuses a URL that checkWebhookUrl refuses", "[webhook]") {
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    std::string err;
    CHECK_FALSE(client.post("file:///etc/shadow", "{}", {}, [](notify::PostResult) { FAIL("done ran"); }, &err));
    CHECK(err.find("scheme 'file'") != std::string::npos);
    CHECK_FALSE(client.post("http://127.0.0.1:1/h", "{}", {}, nullptr, &err));
    CHECK(err == "webhook post without a completion handler");
    CHECK(client.queued() == 0);
}

TEST_CASE("webhook: http_proxy from the environment is honoured, as docs/operations.md says", "[webhook]") {
    Receiver proxy{respond(200)};
    REQUIRE(::setenv("http_proxy", proxy.url("").c_str(), 1) == 0);
    boost::asio::io_context io;
    notify::WebhookClient client(io, {});
    // 192.0.2.1 (TEST-NET-1) is reachable only through the proxy.
    const auto r = postAndWait(io, client, "http://192.0.2.1:9/hook", "{\"a\":1}");
    ::unsetenv("http_proxy");
    CHECK(r.ok);
    const auto got = proxy.received();
    REQUIRE(got.size() == 1);
    CHECK(got[0].method == "POST");
    CHECK(got[0].target == "http://192.0.2.1:9/hook");
    CHECK(got[0].body == "{\"a\":1}");
}

TEST_CASE("webhook: no descriptor of the client is inherited by the daemon's children", "[webhook]") {
    const std::set<int> before = inheritableDescriptors();
    Receiver hanging{hang()};
    Receiver healthy{respond(200)};
    boost::asio::io_context io;
    notify::WebhookOptions opts;
    opts.timeout = 600s;
    notify::WebhookClient client(io, opts);
    CHECK(inheritableDescriptors() == before);
    std::string err;
    REQUIRE(client.post(hanging.url(), "{}", {}, [](notify::PostResult) {}, &err));
    REQUIRE(runUntil(io, [&] { return hanging.connections() >= 1; }));
    CHECK(inheritableDescriptors() == before);
    CHECK(postAndWait(io, client, healthy.url()).ok);
    CHECK(inheritableDescriptors() == before);
}

namespace {

bool libcurlMapped() {
    std::ifstream maps("/proc/self/maps");
    std::stringstream text;
    text << maps.rdbuf();
    return text.str().find("/libcurl.so") != std::string::npos;
}

int threadCount() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    }
    return -1;
}

} // namespace

// Run by the test below in a fresh process of this executable, where libcurl is not loaded yet.
TEST_CASE("webhook child: lazy start", "[.webhook_child]") {
    boost::asio::io_context io;
    const int threads = threadCount();
    REQUIRE(threads > 0);
    REQUIRE_FALSE(libcurlMapped());
    notify::WebhookClient client(io, {});
    CHECK_FALSE(libcurlMapped());
    CHECK(threadCount() == threads);
    std::string err;
    REQUIRE(client.post("http://127.0.0.1:1/h", "{}", {}, [](notify::PostResult) {}, &err));
    CHECK(libcurlMapped());
    CHECK(threadCount() > threads);  // the worker (and, under TSan, its background thread)
}

TEST_CASE("webhook: a client costs no libcurl and no thread until its first post", "[webhook]") {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::execl("/proc/self/exe", "unit_notify", "webhook child: lazy start", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    INFO("run `unit_notify \"webhook child: lazy start\"` to see what failed");
    CHECK(WEXITSTATUS(status) == 0);
}
