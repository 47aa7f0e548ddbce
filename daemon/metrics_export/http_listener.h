// [metrics] listen: a minimal HTTP/1.1 server for a direct Prometheus scrape of /metrics
// (docs/operations.md, "Prometheus"). It has no authentication: it is off by default and meant
// for loopback or a firewalled address.
//
// What it answers: GET and HEAD of /metrics (any query string) with the metrics, in OpenMetrics
// when the Accept header prefers it (text_format.h, wantsOpenMetrics), else in the text format
// 0.0.4; any other path 404, any other method 405 (Allow: GET, HEAD), a malformed request 400, a
// request head over the limit 431. Every answer says Connection: close and the connection ends
// after it (no keep-alive, no pipelining).
//
// Hostile clients (anyone who can connect) cannot make it hold much or for long
// (ListenerLimits): a request head is at most max_request_head bytes and must arrive within
// head_timeout; an answer must be taken within write_timeout; at most max_connections are open.
// A new connection beyond that first makes the listener take what has arrived on the connections
// still reading (a complete request is answered on the spot), then closes the oldest one still
// reading (else the oldest one). The kernel hands a connection over only once its first bytes
// arrived (TCP_DEFER_ACCEPT), so a scraper's request is in its socket when it is admitted, and a
// client holding connections open or flooding new ones cannot crowd it out. The text is rendered at most once per render_interval (scrapes within it share one text),
// so scraping in a loop cannot make the event loop render without pause.
//
// Threading: event-loop thread only; render is called there.
#ifndef TASKHUB_METRICS_EXPORT_HTTP_LISTENER_H
#define TASKHUB_METRICS_EXPORT_HTTP_LISTENER_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace taskhub::metrics_export {

struct ListenerLimits {
    size_t max_connections = 16;
    size_t max_request_head = 8 << 10; // request line and headers, bytes
    std::chrono::milliseconds head_timeout{10'000};
    std::chrono::milliseconds write_timeout{30'000};
    std::chrono::milliseconds render_interval{1'000};
};

struct ListenerHealth {
    std::string address;  // as configured, e.g. "127.0.0.1:9464"
    bool serving = false;
    std::string error;    // why it is not serving; "" while it serves
    uint64_t scrapes = 0; // 200 answers since start
};

class HttpListener {
public:
    // address is what the configuration says (for messages); host an IP address, port 0 to let
    // the system choose (tests). render returns the OpenMetrics text (metrics::Metrics::render()).
    HttpListener(boost::asio::io_context& io, std::string address, std::string host, uint16_t port,
                 std::function<std::string()> render, ListenerLimits limits = {});
    ~HttpListener(); // closes everything
    HttpListener(const HttpListener&) = delete;
    HttpListener& operator=(const HttpListener&) = delete;

    // Binds, listens and starts accepting. false: *err says why ("cannot listen on ADDRESS:
    // Address already in use ..."), and health() says so too.
    bool open(std::string* err);
    // Stops accepting and closes every connection.
    void close();
    // The bound port (after open()).
    uint16_t port() const;

    ListenerHealth health() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace taskhub::metrics_export

#endif // TASKHUB_METRICS_EXPORT_HTTP_LISTENER_H
