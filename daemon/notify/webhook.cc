#include "notify/webhook.h"

#include <curl/curl.h>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>

namespace taskhub::notify {

namespace {

constexpr size_t kMaxUrlBytes = 8192;
constexpr size_t kKeptBodyBytes = 4096;   // of a response, for the error text
constexpr size_t kMaxReceiverText = 200;  // bytes of receiver text (body line, Location) shown
constexpr size_t kMaxHeaderValueBytes = 8192;
constexpr int kIdleWaitMs = 24 * 3600 * 1000;

// libcurl, opened with dlopen on first use rather than linked: linked, it and the libraries it
// needs (OpenSSL, GnuTLS, Kerberos, LDAP, ...) cost every taskhubd 5.6 MB of idle RSS, webhooks or
// not (webhook.h). The functions used here, found once; used only after curlApi() said yes (every
// entry point of this file asks it first).
struct CurlApi {
    decltype(&::curl_global_init) global_init;
    decltype(&::curl_easy_strerror) easy_strerror;
    decltype(&::curl_easy_init) easy_init;
    decltype(&::curl_easy_cleanup) easy_cleanup;
    decltype(&::curl_easy_setopt) easy_setopt;
    decltype(&::curl_easy_getinfo) easy_getinfo;
    decltype(&::curl_slist_append) slist_append;
    decltype(&::curl_slist_free_all) slist_free_all;
    decltype(&::curl_multi_init) multi_init;
    decltype(&::curl_multi_cleanup) multi_cleanup;
    decltype(&::curl_multi_add_handle) multi_add_handle;
    decltype(&::curl_multi_remove_handle) multi_remove_handle;
    decltype(&::curl_multi_perform) multi_perform;
    decltype(&::curl_multi_info_read) multi_info_read;
    decltype(&::curl_multi_poll) multi_poll;
    decltype(&::curl_multi_wakeup) multi_wakeup;
    decltype(&::curl_url) url;
    decltype(&::curl_url_cleanup) url_cleanup;
    decltype(&::curl_url_set) url_set;
    decltype(&::curl_url_get) url_get;
    decltype(&::curl_url_strerror) url_strerror;
    decltype(&::curl_free) free;
};
CurlApi curl;
constexpr const char* kLibcurl = "libcurl.so.4";

// Opens libcurl and runs curl_global_init, once per process (neither is undone: the process ends
// with them). False with *err when libcurl cannot be used.
bool curlApi(std::string* err) {
    static std::once_flag once;
    static std::string failed;
    std::call_once(once, [] {
        void* lib = ::dlopen(kLibcurl, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char* why = ::dlerror();
            failed = std::string("webhooks need libcurl (Debian package libcurl4): ") + (why ? why : kLibcurl);
            return;
        }
        const auto find = [&](auto* slot, const char* name) {
            void* sym = ::dlsym(lib, name);
            if (!sym && failed.empty()) failed = std::string(kLibcurl) + " has no " + name + " (libcurl 7.85 or later is needed)";
            *slot = reinterpret_cast<std::remove_pointer_t<decltype(slot)>>(sym);
        };
        find(&curl.global_init, "curl_global_init");
        find(&curl.easy_strerror, "curl_easy_strerror");
        find(&curl.easy_init, "curl_easy_init");
        find(&curl.easy_cleanup, "curl_easy_cleanup");
        find(&curl.easy_setopt, "curl_easy_setopt");
        find(&curl.easy_getinfo, "curl_easy_getinfo");
        find(&curl.slist_append, "curl_slist_append");
        find(&curl.slist_free_all, "curl_slist_free_all");
        find(&curl.multi_init, "curl_multi_init");
        find(&curl.multi_cleanup, "curl_multi_cleanup");
        find(&curl.multi_add_handle, "curl_multi_add_handle");
        find(&curl.multi_remove_handle, "curl_multi_remove_handle");
        find(&curl.multi_perform, "curl_multi_perform");
        find(&curl.multi_info_read, "curl_multi_info_read");
        find(&curl.multi_poll, "curl_multi_poll");
        find(&curl.multi_wakeup, "curl_multi_wakeup");
        find(&curl.url, "curl_url");
        find(&curl.url_cleanup, "curl_url_cleanup");
        find(&curl.url_set, "curl_url_set");
        find(&curl.url_get, "curl_url_get");
        find(&curl.url_strerror, "curl_url_strerror");
        find(&curl.free, "curl_free");
        if (!failed.empty()) return;
        if (const CURLcode code = curl.global_init(CURL_GLOBAL_DEFAULT); code != CURLE_OK)
            failed = std::string("libcurl could not be initialised: ") + curl.easy_strerror(code);
    });
    if (!failed.empty()) {
        *err = failed;
        return false;
    }
    return true;
}

// Text that came from the receiver or from libcurl, made safe for a log line, a JSON string and
// a terminal: valid UTF-8 is kept, control characters and invalid bytes become '?', and at most
// max bytes of the input are looked at.
std::string printable(std::string_view in, size_t max) {
    const bool cut = in.size() > max;
    if (cut) in = in.substr(0, max);
    std::string out;
    out.reserve(in.size() + 3);
    for (size_t i = 0; i < in.size();) {
        const auto c = static_cast<unsigned char>(in[i]);
        if (c < 0x80) {
            out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
            ++i;
            continue;
        }
        size_t len = 0;
        unsigned min = 0;
        unsigned cp = 0;
        if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        }
        bool valid = len != 0 && i + len <= in.size();
        for (size_t k = 1; valid && k < len; ++k) {
            const auto cc = static_cast<unsigned char>(in[i + k]);
            valid = (cc & 0xc0) == 0x80;
            cp = (cp << 6) | (cc & 0x3f);
        }
        valid = valid && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        if (valid) {
            out.append(in.substr(i, len));
            i += len;
        } else {
            out += '?';
            ++i;
        }
    }
    if (cut) out += "...";
    return out;
}

std::string firstLine(std::string_view body) {
    const size_t start = body.find_first_not_of(" \t\r\n");
    if (start == std::string_view::npos) return {};
    body.remove_prefix(start);
    body = body.substr(0, body.find_first_of("\r\n"));
    while (!body.empty() && (body.back() == ' ' || body.back() == '\t')) body.remove_suffix(1);
    return printable(body, kMaxReceiverText);
}

std::string formatDuration(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
    return std::to_string(d.count()) + "ms";
}

// The descriptors open in this process.
std::set<int> openDescriptors() {
    std::set<int> fds;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (const dirent* e = ::readdir(d)) {
            if (e->d_name[0] != '.') fds.insert(std::atoi(e->d_name));
        }
        fds.erase(::dirfd(d));  // closed below: curl's socket pair may get its number
        ::closedir(d);
    }
    return fds;
}

// curl_multi_init with its descriptors (the wake-up socket pair, which libcurl 7.88 creates without
// close-on-exec) made close-on-exec, so that no task or command the daemon starts inherits them.
// Every descriptor taskhubd itself opens is close-on-exec from the start; so is every one this
// marks that another thread may have opened meanwhile.
CURLM* multiInitCloseOnExec() {
    const std::set<int> before = openDescriptors();
    CURLM* multi = curl.multi_init();
    for (int fd : openDescriptors()) {
        if (before.count(fd)) continue;
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return multi;
}

// Connection sockets, close-on-exec from the start (libcurl's own socket() call is not).
curl_socket_t openSocketCloseOnExec(void*, curlsocktype, curl_sockaddr* addr) {
    return ::socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

// One parsed URL; the parts curl gives back, empty where absent.
struct UrlParts {
    std::string scheme, user, password, host, port, path;
};

std::string getPart(CURLU* u, CURLUPart part, unsigned flags = 0) {
    char* s = nullptr;
    if (curl.url_get(u, part, &s, flags) != CURLUE_OK || !s) return {};
    std::string out(s);
    curl.free(s);
    return out;
}

// Parses url; the curl error code when it cannot.
CURLUcode parseUrl(const std::string& url, UrlParts* out) {
    CURLU* u = curl.url();
    if (!u) return CURLUE_OUT_OF_MEMORY;
    const CURLUcode rc = curl.url_set(u, CURLUPART_URL, url.c_str(), 0);
    if (rc == CURLUE_OK) {
        out->scheme = getPart(u, CURLUPART_SCHEME);
        out->user = getPart(u, CURLUPART_USER);
        out->password = getPart(u, CURLUPART_PASSWORD);
        out->host = getPart(u, CURLUPART_HOST);
        out->port = getPart(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
        out->path = getPart(u, CURLUPART_PATH);
    }
    curl.url_cleanup(u);
    return rc;
}

std::string asciiLower(std::string s) {
    for (char& c : s) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return s;
}

bool isTokenChar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool checkHeader(const WebhookClient::Header& h, std::string* err) {
    const auto& [name, value] = h;
    if (name.empty() || name.size() > 256 ||
        !std::all_of(name.begin(), name.end(), [](char c) { return c != '\0' && isTokenChar(static_cast<unsigned char>(c)); })) {
        *err = "webhook header name '" + printable(name, 64) +
               "' is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only, 1 to 256 of them)";
        return false;
    }
    static const char* const kOwn[] = {"content-type", "content-length", "transfer-encoding",
                                       "host", "connection", "expect"};
    const std::string lower = asciiLower(name);
    for (const char* own : kOwn) {
        if (lower == own) {
            *err = "webhook header '" + name + "' is set by the HTTP client itself; leave it out";
            return false;
        }
    }
    if (value.size() > kMaxHeaderValueBytes) {
        *err = "webhook header '" + name + "' has a value of " + std::to_string(value.size()) +
               " bytes; at most " + std::to_string(kMaxHeaderValueBytes) + " are allowed";
        return false;
    }
    for (size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<unsigned char>(value[i]);
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *err = "webhook header '" + name + "' has a control character (byte " + std::to_string(c) +
                   ") at position " + std::to_string(i) + " of its value; CR, LF and the like are not allowed";
            return false;
        }
    }
    return true;
}

// One POST: the easy handle and everything it points into, which must live as long as it does.
struct Transfer {
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::string body;
    UrlParts url;
    std::string shown;  // the URL as errors show it
    std::function<void(PostResult)> done;
    std::string response;  // the first kKeptBodyBytes of the response body
    bool truncated = false;
    char errbuf[CURL_ERROR_SIZE] = {};

    Transfer() = default;
    Transfer(const Transfer&) = delete;
    Transfer& operator=(const Transfer&) = delete;
    ~Transfer() {
        if (easy) curl.easy_cleanup(easy);
        curl.slist_free_all(headers);
    }
};

size_t keepBody(char* data, size_t size, size_t nmemb, void* userdata) {
    auto* t = static_cast<Transfer*>(userdata);
    const size_t len = size * nmemb;
    const size_t room = kKeptBodyBytes - t->response.size();
    t->response.append(data, std::min(len, room));
    if (len > room) {
        // Enough for the error text: stop reading. A receiver streaming without end does not keep
        // the post busy until the timeout; finish() takes the status as the outcome.
        t->truncated = true;
        return 0;
    }
    return len;
}

// libcurl's own message with the URL's user name and password cut out, should it contain them.
std::string curlMessage(const Transfer& t, CURLcode code) {
    std::string msg = t.errbuf[0] ? t.errbuf : curl.easy_strerror(code);
    for (const std::string* secret : {&t.url.user, &t.url.password}) {
        if (secret->empty()) continue;
        for (size_t at = msg.find(*secret); at != std::string::npos; at = msg.find(*secret, at + 3))
            msg.replace(at, secret->size(), "***");
    }
    return printable(msg, 400);
}

std::string hostPort(const Transfer& t) {
    std::string out = t.url.host + ":" + t.url.port;
    const char* ip = nullptr;
    if (curl.easy_getinfo(t.easy, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip && t.url.host != ip &&
        t.url.host != std::string("[") + ip + "]") {
        out += std::string(" (") + ip + ")";
    }
    return out;
}

PostResult outcome(const Transfer& t, CURLcode code, const WebhookOptions& opts) {
    PostResult r;
    long status = 0;
    curl.easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && t.truncated && status != 0)) {
        r.http_status = status;
        if (status >= 200 && status <= 299) {
            r.ok = true;
            return r;
        }
        r.error = "HTTP " + std::to_string(status) + " from " + t.shown;
        if (status >= 300 && status <= 399) {
            r.retryable = false;
            r.error += ": redirects are not followed";
            const char* location = nullptr;
            if (curl.easy_getinfo(t.easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location)
                r.error += " (Location: " + printable(redactWebhookUrl(location), kMaxReceiverText) + ")";
            return r;
        }
        r.retryable = status >= 500 || status == 408 || status == 429 || status < 200;
        const std::string line = firstLine(t.response);
        if (!line.empty()) r.error += ": " + line;
        return r;
    }
    r.http_status = status;
    long osErrno = 0;
    curl.easy_getinfo(t.easy, CURLINFO_OS_ERRNO, &osErrno);
    const std::string why = osErrno != 0 ? std::strerror(static_cast<int>(osErrno)) : curlMessage(t, code);
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connected = 0;
        curl.easy_getinfo(t.easy, CURLINFO_CONNECT_TIME_T, &connected);
        if (connected == 0) {
            r.error = "could not connect to " + hostPort(t) + ": timed out after " +
                      formatDuration(std::min(opts.connect_timeout, opts.timeout));
        } else {
            r.error = "timed out after " + formatDuration(opts.timeout) + " waiting for " + t.shown;
        }
        break;
    }
    case CURLE_COULDNT_CONNECT:
        r.error = "could not connect to " + hostPort(t) + ": " + why;
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        r.error = "could not resolve host '" + t.url.host + "': " + curlMessage(t, code);
        break;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PROXY:
        r.error = "proxy failed for " + t.shown + ": " + curlMessage(t, code);
        break;
    case CURLE_GOT_NOTHING:
        r.error = "connection to " + hostPort(t) + " closed without a response";
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        r.error = "connection to " + hostPort(t) + " failed: " + why;
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        r.error = "TLS with " + hostPort(t) + " failed: " + curlMessage(t, code);
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        r.retryable = false;
        r.error = "cannot post to " + t.shown + ": " + curlMessage(t, code);
        break;
    default:
        r.error = "POST to " + t.shown + " failed: " + curlMessage(t, code);
        break;
    }
    return r;
}

} // namespace

struct WebhookClient::Impl {
    boost::asio::io_context& io;
    const WebhookOptions opts;
    // Cleared by the destructor; a done already handed to io checks it before it runs.
    const std::shared_ptr<std::atomic<bool>> alive = std::make_shared<std::atomic<bool>>(true);
    // Set up by the first post(): libcurl, the multi handle, the worker.
    std::once_flag started;
    std::string startError;  // non-empty: the client cannot post, post() says why
    CURLM* multi = nullptr;
    std::thread worker;

    mutable std::mutex mu;
    bool stop = false;                                 // guarded by mu
    std::vector<std::unique_ptr<Transfer>> incoming;   // guarded by mu: accepted, not yet added
    size_t count = 0;                                  // guarded by mu: accepted, done not yet handed to io

    // Worker thread only.
    std::unordered_map<CURL*, std::unique_ptr<Transfer>> active;

    Impl(boost::asio::io_context& io_, WebhookOptions opts_) : io(io_), opts(std::move(opts_)) {}

    std::unique_ptr<Transfer> makeTransfer(std::string url, std::string body, const std::vector<Header>& headers,
                                           std::function<void(PostResult)> done, std::string* err) const;
    // The first call sets up libcurl, the multi handle and the worker; false + *err when that
    // failed (then and for every later call).
    bool start(std::string* err);
    void run();
    void finish(CURL* easy, CURLcode code);
};

std::unique_ptr<Transfer> WebhookClient::Impl::makeTransfer(std::string url, std::string body,
                                                            const std::vector<Header>& headers,
                                                            std::function<void(PostResult)> done,
                                                            std::string* err) const {
    auto t = std::make_unique<Transfer>();
    if (parseUrl(url, &t->url) != CURLUE_OK) {
        *err = "webhook URL could not be parsed";
        return nullptr;
    }
    t->shown = redactWebhookUrl(url);
    t->body = std::move(body);
    t->done = std::move(done);
    for (const std::string& line : [&] {
             std::vector<std::string> lines{"Content-Type: application/json",
                                            // No "Expect: 100-continue" round trip for larger bodies.
                                            "Expect:"};
             for (const auto& [name, value] : headers) lines.push_back(name + ": " + value);
             return lines;
         }()) {
        curl_slist* next = curl.slist_append(t->headers, line.c_str());
        if (!next) {
            *err = "out of memory building the webhook request";
            return nullptr;
        }
        t->headers = next;
    }
    t->easy = curl.easy_init();
    if (!t->easy) {
        *err = "libcurl could not create a request (out of memory)";
        return nullptr;
    }
    CURL* e = t->easy;
    const long timeoutMs = std::max<long>(1, static_cast<long>(opts.timeout.count()));
    const long connectMs = std::clamp<long>(static_cast<long>(opts.connect_timeout.count()), 1, timeoutMs);
    bool set = true;
    auto opt = [&](CURLoption o, auto v) { set = set && curl.easy_setopt(e, o, v) == CURLE_OK; };
    opt(CURLOPT_URL, url.c_str());
    opt(CURLOPT_PROTOCOLS_STR, "http,https");
    opt(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    opt(CURLOPT_FOLLOWLOCATION, 0L);
    opt(CURLOPT_NOSIGNAL, 1L);
    opt(CURLOPT_SSL_VERIFYPEER, 1L);
    opt(CURLOPT_SSL_VERIFYHOST, 2L);
    opt(CURLOPT_TIMEOUT_MS, timeoutMs);
    opt(CURLOPT_CONNECTTIMEOUT_MS, connectMs);
    opt(CURLOPT_POST, 1L);
    opt(CURLOPT_POSTFIELDS, t->body.data());
    opt(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->body.size()));
    opt(CURLOPT_HTTPHEADER, t->headers);
    opt(CURLOPT_WRITEFUNCTION, &keepBody);
    opt(CURLOPT_WRITEDATA, t.get());
    opt(CURLOPT_ERRORBUFFER, t->errbuf);
    opt(CURLOPT_PRIVATE, t.get());
    opt(CURLOPT_OPENSOCKETFUNCTION, &openSocketCloseOnExec);
    if (!opts.user_agent.empty()) opt(CURLOPT_USERAGENT, opts.user_agent.c_str());
    if (!set) {
        *err = "libcurl refused the webhook request's options (libcurl older than 7.85?)";
        return nullptr;
    }
    return t;
}

void WebhookClient::Impl::run() {
    for (;;) {
        std::vector<std::unique_ptr<Transfer>> added;
        {
            std::lock_guard lock(mu);
            if (stop) return;
            added.swap(incoming);
        }
        for (auto& t : added) {
            CURL* easy = t->easy;
            active.emplace(easy, std::move(t));
            if (curl.multi_add_handle(multi, easy) != CURLM_OK) finish(easy, CURLE_OUT_OF_MEMORY);
        }
        int running = 0;
        curl.multi_perform(multi, &running);
        int left = 0;
        while (CURLMsg* msg = curl.multi_info_read(multi, &left)) {
            if (msg->msg == CURLMSG_DONE) {
                curl.multi_remove_handle(multi, msg->easy_handle);
                finish(msg->easy_handle, msg->data.result);
            }
        }
        // Returns on socket activity, curl_multi_wakeup (post, destructor) or when a curl timer
        // is due (curl shortens the wait to it); an idle client does not wake up at all.
        curl.multi_poll(multi, nullptr, 0, kIdleWaitMs, nullptr);
    }
}

void WebhookClient::Impl::finish(CURL* easy, CURLcode code) {
    auto it = active.find(easy);
    if (it == active.end()) return;
    std::unique_ptr<Transfer> t = std::move(it->second);
    active.erase(it);
    PostResult result = outcome(*t, code, opts);
    auto done = std::move(t->done);
    t.reset();
    {
        std::lock_guard lock(mu);
        --count;
    }
    boost::asio::post(io, [alive = alive, done = std::move(done), result = std::move(result)]() mutable {
        if (alive->load()) done(std::move(result));
    });
}

WebhookClient::WebhookClient(boost::asio::io_context& io, WebhookOptions opts)
    : impl_(std::make_unique<Impl>(io, std::move(opts))) {}

bool WebhookClient::Impl::start(std::string* err) {
    std::call_once(started, [this] {
        if (!curlApi(&startError)) return;
        multi = multiInitCloseOnExec();
        if (!multi) {
            startError = "libcurl could not create its multi handle (out of memory)";
            return;
        }
        try {
            worker = std::thread([this] { run(); });
        } catch (const std::system_error& e) {
            startError = std::string("the webhook thread could not be started: ") + e.what();
        }
    });
    if (!startError.empty()) {
        *err = startError;
        return false;
    }
    return true;
}

WebhookClient::~WebhookClient() {
    impl_->alive->store(false);
    if (impl_->worker.joinable()) {
        {
            std::lock_guard lock(impl_->mu);
            impl_->stop = true;
        }
        curl.multi_wakeup(impl_->multi);
        impl_->worker.join();
    }
    if (impl_->multi) {
        for (auto& [easy, t] : impl_->active) curl.multi_remove_handle(impl_->multi, easy);
    }
    impl_->active.clear();
    impl_->incoming.clear();
    if (impl_->multi) curl.multi_cleanup(impl_->multi);
}

bool WebhookClient::post(std::string url, std::string body, std::vector<Header> headers,
                         std::function<void(PostResult)> done, std::string* err) {
    if (!impl_->start(err)) return false;
    if (!done) {
        *err = "webhook post without a completion handler";
        return false;
    }
    if (!checkWebhookUrl(url, err)) return false;
    if (body.size() > impl_->opts.max_body) {
        *err = "webhook body of " + std::to_string(body.size()) + " bytes for " + redactWebhookUrl(url) +
               " is larger than the limit of " + std::to_string(impl_->opts.max_body) + " bytes";
        return false;
    }
    for (const Header& h : headers) {
        if (!checkHeader(h, err)) return false;
    }
    auto t = impl_->makeTransfer(std::move(url), std::move(body), headers, std::move(done), err);
    if (!t) return false;
    {
        std::lock_guard lock(impl_->mu);
        if (impl_->count >= impl_->opts.max_queue) {
            *err = "webhook queue is full: " + std::to_string(impl_->count) +
                   " posts are waiting or in flight (the limit, max_queue, is " +
                   std::to_string(impl_->opts.max_queue) + ")";
            return false;
        }
        ++impl_->count;
        impl_->incoming.push_back(std::move(t));
    }
    curl.multi_wakeup(impl_->multi);
    return true;
}

size_t WebhookClient::queued() const {
    std::lock_guard lock(impl_->mu);
    return impl_->count;
}

bool checkWebhookUrl(const std::string& url, std::string* err) {
    constexpr const char* kExpected = "expected http://HOST/PATH or https://HOST/PATH";
    if (url.empty()) {
        *err = std::string("webhook URL is empty; ") + kExpected;
        return false;
    }
    if (url.size() > kMaxUrlBytes) {
        *err = "webhook URL is " + std::to_string(url.size()) + " bytes long; at most " +
               std::to_string(kMaxUrlBytes) + " are allowed";
        return false;
    }
    for (size_t i = 0; i < url.size(); ++i) {
        const auto c = static_cast<unsigned char>(url[i]);
        if (c <= 0x20 || c == 0x7f) {
            *err = std::string("webhook URL has ") + (c == ' ' ? "a space" : "a control character (byte " +
                                                                        std::to_string(c) + ")") +
                   " at position " + std::to_string(i) + "; percent-encode it (%20 for a space)";
            return false;
        }
    }
    const size_t colon = url.find(':');
    const std::string scheme = asciiLower(url.substr(0, colon == std::string::npos ? 0 : colon));
    if (scheme != "http" && scheme != "https") {
        const bool named = !scheme.empty() && scheme.size() <= 32 &&
                           std::all_of(scheme.begin(), scheme.end(), [](char c) {
                               return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
                           });
        *err = std::string("webhook URL ") +
               (named ? "has the scheme '" + scheme + "'" : std::string("has no scheme")) + "; " + kExpected;
        return false;
    }
    // libcurl takes "http:///x" and "http:/x" for http://x/; a user who wrote either meant
    // something else.
    if (url.compare(colon + 1, 2, "//") != 0 || url.size() == colon + 3 || url[colon + 3] == '/') {
        *err = std::string("webhook URL has no host; ") + kExpected;
        return false;
    }
    std::string why;
    if (!curlApi(&why)) {
        *err = "webhook URL cannot be checked: " + why;
        return false;
    }
    UrlParts parts;
    const CURLUcode rc = parseUrl(url, &parts);
    if (rc == CURLUE_NO_HOST || (rc == CURLUE_OK && parts.host.empty())) {
        *err = std::string("webhook URL has no host; ") + kExpected;
        return false;
    }
    if (rc != CURLUE_OK) {
        *err = std::string("webhook URL is not a valid URL (") + curl.url_strerror(rc) + "); " + kExpected;
        return false;
    }
    return true;
}

std::string redactWebhookUrl(const std::string& url) {
    UrlParts p;
    std::string ignored;
    if (!curlApi(&ignored) || parseUrl(url, &p) != CURLUE_OK || p.host.empty()) return "<invalid URL>";
    std::string out = asciiLower(p.scheme) + "://" + p.host;
    const bool defaultPort = (p.port == "80" && p.scheme == "http") || (p.port == "443" && p.scheme == "https");
    if (!p.port.empty() && !defaultPort) out += ":" + p.port;
    out += p.path.empty() ? "/" : p.path;
    return printable(out, kMaxUrlBytes);
}

} // namespace taskhub::notify
