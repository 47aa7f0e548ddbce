// The HTTP POST client behind webhook notification targets: libcurl's multi interface on one
// worker thread, so that many posts are in flight at once and a receiver that hangs holds up no
// other. libcurl stays behind this header (pimpl): including it costs a forward declaration.
//
// Cost: nothing until the first post() (or checkWebhookUrl of an http(s) URL). Then libcurl is
// opened with dlopen (libcurl.so.4, Debian package libcurl4) and the worker thread starts. Measured
// on the idle example daemon (9.2 MB): +8.1 MB after a first http post, +10.4 MB after a first
// https post (OpenSSL, the CA store libcurl keeps parsed for 24 h). Linked instead, libcurl and
// the libraries it needs added 5.6 MB to every taskhubd, with webhooks or without.
//
// What a post does: POST url with the body as-is, "Content-Type: application/json", the caller's
// headers and, when set, the configured User-Agent. Redirects are not followed (a 3xx is a
// failure naming the Location). Only http:// and https:// are spoken; TLS peers are verified
// against the system's CA store. Proxies come from the environment as libcurl reads them
// (http_proxy, https_proxy, HTTPS_PROXY, ALL_PROXY, no_proxy / NO_PROXY; never HTTP_PROXY).
// The response body is read up to 4 KiB (for the error text) and the connection is dropped after
// that.
//
// Outcome (PostResult): ok on 2xx. Not retryable: 3xx, 4xx other than 408 and 429, a URL curl
// refuses. Retryable: 5xx, 408, 429, timeouts, DNS, connection and TLS failures. The error text
// names the receiver without the URL's user:password and query, e.g.
//   "HTTP 500 from https://hooks.example.org/taskhub: <first line of the body>"
//   "timed out after 10s waiting for https://hooks.example.org/taskhub"
//   "could not connect to 127.0.0.1:1: Connection refused"
// Text from the receiver (body line, Location) has control characters replaced and is bounded.
//
// Descriptors: the client's sockets are close-on-exec, except that libcurl's threaded resolver
// holds a socket pair without it while it looks a name up (not for IP addresses and localhost); a
// child started by another thread in that moment inherits it unless it closes descriptors above 2
// (the shell plugin and the plugin runner do).
//
// Threading: post() and queued() may be called from any thread; done runs on io's thread. The
// destructor stops the worker promptly: posts still in flight are abandoned without a call to
// done (the notification outbox upstream is durable and sends them again). Destroy the client on
// io's thread (or after io stopped): then no done runs after the destructor returned.
#ifndef TASKHUB_NOTIFY_WEBHOOK_H
#define TASKHUB_NOTIFY_WEBHOOK_H

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace taskhub::notify {

struct WebhookOptions {
    // Whole post, from resolving the name to the last byte of the response.
    std::chrono::milliseconds timeout{10'000};
    // Establishing the connection (TCP and TLS); capped at timeout.
    std::chrono::milliseconds connect_timeout{5'000};
    // Posts accepted and not yet finished (waiting or in flight); post() refuses more.
    size_t max_queue = 1000;
    // Largest body post() accepts; with max_queue this bounds what the queue holds.
    size_t max_body = 1 << 20;
    // Sent as User-Agent when not empty (e.g. "taskhubd/0.1.0").
    std::string user_agent;
};

struct PostResult {
    bool ok = false;
    // When !ok: whether sending the same post again later may succeed.
    bool retryable = true;
    // The response's status code; 0 when no response arrived.
    long http_status = 0;
    // When !ok: what went wrong, naming the receiver (see above). Empty when ok.
    std::string error;
};

class WebhookClient {
public:
    using Header = std::pair<std::string, std::string>;

    // Does not fail, and loads nothing yet: the first post() opens libcurl and starts the
    // worker thread. Should that fail (libcurl missing, out of memory), every post() returns
    // false with the reason.
    WebhookClient(boost::asio::io_context& io, WebhookOptions opts);
    ~WebhookClient();
    WebhookClient(const WebhookClient&) = delete;
    WebhookClient& operator=(const WebhookClient&) = delete;

    // Queues one POST of body to url; done(result) runs later on io's thread, exactly once, unless
    // the client is destroyed first. Returns false with *err (and done is never called) when:
    // libcurl cannot be used, max_queue posts are already queued, done is empty, the body is larger than max_body, url fails
    // checkWebhookUrl, or a header is not valid: its name must be an HTTP token, its value free
    // of control characters other than tab (CR and LF above all), and it may not be one of the
    // headers the client sets itself (Content-Type, Content-Length, Transfer-Encoding, Host,
    // Connection, Expect).
    bool post(std::string url, std::string body, std::vector<Header> headers,
              std::function<void(PostResult)> done, std::string* err);

    // Posts accepted by post() whose done has not been handed to io yet.
    size_t queued() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// An http:// or https:// URL with a host, no whitespace or control characters, at most 8 KiB;
// for load-time validation of `webhook = "..."`. False with *err saying what is wrong; the URL in
// *err is shown as redactWebhookUrl shows it.
bool checkWebhookUrl(const std::string& url, std::string* err);

// url for logs and error texts: scheme://host[:port]/path, without user:password, query and
// fragment. A URL that cannot be parsed gives "<invalid URL>".
std::string redactWebhookUrl(const std::string& url);

} // namespace taskhub::notify

#endif // TASKHUB_NOTIFY_WEBHOOK_H
