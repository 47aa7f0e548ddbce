// The raw baseline of the metrics_export benchmark: a bare HTTP/1.1 server on loopback that
// answers every request with the same static body of --size bytes (Connection: close), with
// nothing around it: what serving the metrics costs without rendering them or an event loop.
//
//   raw_http --size N        prints the port it listens on (127.0.0.1), then serves until killed
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    size_t size = 0;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--size") == 0) size = std::strtoull(argv[i + 1], nullptr, 10);
    }
    const std::string body(size, 'x');
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                             "Content-Length: " + std::to_string(size) + "\r\nConnection: close\r\n\r\n";
    const int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 128) != 0) {
        std::perror("raw_http: bind/listen");
        return 1;
    }
    socklen_t len = sizeof a;
    ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
    std::printf("%d\n", ntohs(a.sin_port));
    std::fflush(stdout);
    std::string req;
    char buf[8192];
    for (;;) {
        const int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        req.clear();
        while (req.find("\r\n\r\n") == std::string::npos) {
            const ssize_t n = ::read(c, buf, sizeof buf);
            if (n <= 0) break;
            req.append(buf, static_cast<size_t>(n));
        }
        const std::string out = head + body;
        for (size_t done = 0; done < out.size();) {
            const ssize_t n = ::write(c, out.data() + done, out.size() - done);
            if (n <= 0) break;
            done += static_cast<size_t>(n);
        }
        ::shutdown(c, SHUT_WR);
        ::close(c);
    }
}
