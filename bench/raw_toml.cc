// The raw baseline of the reload benchmark: workflow files read and parsed by toml11 alone, with
// nothing around it (no checks, no plugins, no daemon).
//
//   raw_toml load DIR    reads and parses every *.toml file of DIR; prints the file count and the
//                        seconds it took, as JSON
//   raw_toml watch DIR   watches DIR with inotify; reads and parses each file renamed into it
//                        (IN_MOVED_TO) and then prints its name on a line; ends when stdin closes
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <toml.hpp>

namespace fs = std::filesystem;

namespace {

size_t parse(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::istringstream text(ss.str());
    auto root = toml::parse<toml::discard_comments, std::map, std::vector>(text, file.string());
    return root.as_table().size();
}

int load(const fs::path& dir) {
    const auto t0 = std::chrono::steady_clock::now();
    size_t files = 0, keys = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().extension() != ".toml") continue;
        keys += parse(e.path());
        ++files;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"files\": %zu, \"keys\": %zu, \"seconds\": %.6f}\n", files, keys, s);
    return 0;
}

int watch(const fs::path& dir) {
    const int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 || inotify_add_watch(fd, dir.c_str(), IN_MOVED_TO) < 0) {
        std::perror("inotify");
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    pollfd fds[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
    alignas(inotify_event) char buf[4096];
    for (;;) {
        if (poll(fds, 2, -1) < 0) return 1;
        if (fds[1].revents) return 0; // stdin closed (or written to): done
        const ssize_t n = read(fd, buf, sizeof buf);
        for (char* p = buf; n > 0 && p < buf + n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(p);
            if (ev->len) {
                parse(dir / ev->name);
                std::printf("%s\n", ev->name);
                std::fflush(stdout);
            }
            p += sizeof(inotify_event) + ev->len;
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "load") == 0) return load(argv[2]);
    if (argc == 3 && std::strcmp(argv[1], "watch") == 0) return watch(argv[2]);
    std::fprintf(stderr, "usage: raw_toml load|watch DIR\n");
    return 2;
}
