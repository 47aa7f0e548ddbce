// raw_fsync: the baseline of the store-throughput benchmark. Appends COUNT blocks of 4 KiB to a
// file in DIR, each followed by fdatasync(), as a WAL commit does at its least, and prints one
// JSON line: the mean cost of one write + fdatasync. With synchronous=FULL every commit of the
// store pays at least this (the WAL's fsync), so it bounds the commits per second.
//
//   raw_fsync DIR COUNT
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: raw_fsync DIR COUNT\n");
        return 2;
    }
    const std::string path = std::string(argv[1]) + "/raw_fsync.dat";
    const int count = std::atoi(argv[2]);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        std::perror(path.c_str());
        return 1;
    }
    char block[4096];
    std::memset(block, 'x', sizeof block);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < count; ++i) {
        if (::write(fd, block, sizeof block) != static_cast<ssize_t>(sizeof block) || ::fdatasync(fd) != 0) {
            std::perror(path.c_str());
            return 1;
        }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::close(fd);
    ::unlink(path.c_str());
    std::printf("{\"fsyncs\": %d, \"seconds\": %.6f, \"ms_per_fsync\": %.4f}\n", count, s, s * 1000 / count);
    return 0;
}
