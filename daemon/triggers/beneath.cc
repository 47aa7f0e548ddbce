#include "triggers/beneath.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace taskhub::triggers {

void Fd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

const char* refusalName(Refusal r) {
    switch (r) {
    case Refusal::None: return "ok";
    case Refusal::Missing: return "missing";
    case Refusal::Symlink: return "symlink";
    case Refusal::Escapes: return "escapes";
    case Refusal::NotRegular: return "not-regular";
    case Refusal::HardLinked: return "hard-linked";
    case Refusal::Replaced: return "replaced";
    case Refusal::Error: return "error";
    }
    return "error";
}

namespace {

constexpr int kDirFlags = O_PATH | O_DIRECTORY | O_CLOEXEC;

// Set once openat2 answered ENOSYS: the kernel lacks it, so Auto walks from then on.
std::atomic<bool> g_no_openat2{false};

bool testHookNoOpenat2() {
    static const bool set = [] {
        const char* v = std::getenv("TASKHUB_TEST_NO_OPENAT2");
        return v && *v && std::string_view(v) != "0";
    }();
    return set;
}

std::string shown(const std::string& rel) { return rel.empty() ? "." : rel; }

// Splits rel into its components; false (with *why) when it is absolute or has a ".." component.
bool components(const std::string& rel, std::vector<std::string>* out, std::string* why) {
    if (!rel.empty() && rel[0] == '/') {
        *why = rel + " is an absolute path, not a path beneath the watched directory";
        return false;
    }
    size_t start = 0;
    while (start <= rel.size()) {
        size_t end = rel.find('/', start);
        if (end == std::string::npos) end = rel.size();
        std::string c = rel.substr(start, end - start);
        if (c == "..") {
            *why = rel + " contains '..', which would leave the watched directory";
            return false;
        }
        if (!c.empty() && c != ".") out->push_back(std::move(c));
        start = end + 1;
    }
    return true;
}

std::string joined(const std::vector<std::string>& parts, size_t n) {
    std::string s;
    for (size_t i = 0; i < n && i < parts.size(); ++i) {
        if (i) s += '/';
        s += parts[i];
    }
    return s;
}

// Classifies a failed lookup of name in dir (shown as `where`) after open failed with err.
Refusal classify(int dir, const std::string& name, const std::string& where, int err, std::string* why) {
    if (err == ENOENT) {
        *why = where + " does not exist";
        return Refusal::Missing;
    }
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            *why = where + " is a symbolic link";
            return Refusal::Symlink;
        }
        if (!S_ISDIR(st.st_mode)) {
            *why = where + " is not a directory";
            return Refusal::NotRegular;
        }
    }
    *why = "cannot open " + where + ": " + std::strerror(err);
    return Refusal::Error;
}

// The O_NOFOLLOW walk: one component at a time, each opened beneath the previous one.
Refusal walkDir(int root_fd, const std::vector<std::string>& parts, size_t n, Fd* out, std::string* why) {
    Fd cur(::openat(root_fd, ".", kDirFlags));
    if (!cur) {
        *why = std::string("cannot open the watched directory: ") + std::strerror(errno);
        return Refusal::Error;
    }
    for (size_t i = 0; i < n; ++i) {
        const std::string where = joined(parts, i + 1);
        Fd next(::openat(cur.get(), parts[i].c_str(), kDirFlags | O_NOFOLLOW));
        if (!next) return classify(cur.get(), parts[i], where, errno, why);
        struct stat st {};
        if (::fstat(next.get(), &st) != 0 || S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
            return classify(cur.get(), parts[i], where, ENOTDIR, why);
        }
        cur = std::move(next);
    }
    *out = std::move(cur);
    return Refusal::None;
}

long openat2Dir(int root_fd, const std::string& path) {
    open_how how{};
    how.flags = kDirFlags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
}

// The first n components of parts as a directory beneath root_fd.
Refusal resolveDir(int root_fd, const std::vector<std::string>& parts, size_t n, Resolver how, Fd* out,
                   std::string* why) {
    bool walk = how == Resolver::Walk;
    if (how == Resolver::Auto && (testHookNoOpenat2() || g_no_openat2.load(std::memory_order_relaxed))) walk = true;
    if (!walk) {
        const std::string path = n == 0 ? "." : joined(parts, n);
        long fd = -1;
        for (int attempt = 0; attempt < 3; ++attempt) { // EAGAIN: a rename raced the lookup
            fd = openat2Dir(root_fd, path);
            if (fd >= 0 || errno != EAGAIN) break;
        }
        if (fd >= 0) {
            *out = Fd(static_cast<int>(fd));
            return Refusal::None;
        }
        const int err = errno;
        if (err == ENOSYS && how == Resolver::Auto) {
            g_no_openat2.store(true, std::memory_order_relaxed);
            return walkDir(root_fd, parts, n, out, why);
        }
        if (err == EXDEV) {
            *why = path + " leads out of the watched directory";
            return Refusal::Escapes;
        }
        if (err == ELOOP || err == ENOTDIR || err == ENOENT) {
            // Which component? The walk names it; if the tree changed meanwhile, say it generally.
            Fd ignored;
            const Refusal r = walkDir(root_fd, parts, n, &ignored, why);
            if (r != Refusal::None && r != Refusal::Error) return r;
            if (err == ENOENT) {
                *why = path + " does not exist";
                return Refusal::Missing;
            }
            *why = err == ELOOP ? path + " has a symbolic link on its path" : path + " is not a directory";
            return err == ELOOP ? Refusal::Symlink : Refusal::NotRegular;
        }
        *why = "cannot open " + path + ": " + std::strerror(err);
        return Refusal::Error;
    }
    return walkDir(root_fd, parts, n, out, why);
}

} // namespace

Refusal openFileBeneath(int root_fd, const std::string& rel, Resolver how, BeneathFile* out, std::string* why) {
    std::vector<std::string> parts;
    if (!components(rel, &parts, why)) return Refusal::Escapes;
    if (parts.empty() || rel.back() == '/') {
        *why = shown(rel) + " is not a file name";
        return Refusal::NotRegular;
    }
    Fd dir;
    if (Refusal r = resolveDir(root_fd, parts, parts.size() - 1, how, &dir, why); r != Refusal::None) return r;
    const std::string& leaf = parts.back();
    // O_PATH | O_NOFOLLOW opens the name itself: a symlink as a symlink, a fifo without blocking.
    Fd file(::openat(dir.get(), leaf.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!file) {
        if (errno == ENOENT) {
            *why = rel + " does not exist";
            return Refusal::Missing;
        }
        *why = "cannot open " + rel + ": " + std::strerror(errno);
        return Refusal::Error;
    }
    struct stat st {};
    if (::fstat(file.get(), &st) != 0) {
        *why = "cannot stat " + rel + ": " + std::strerror(errno);
        return Refusal::Error;
    }
    if (S_ISLNK(st.st_mode)) {
        *why = rel + " is a symbolic link";
        return Refusal::Symlink;
    }
    if (!S_ISREG(st.st_mode)) {
        const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                           : S_ISFIFO(st.st_mode) ? "a fifo"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                           : S_ISCHR(st.st_mode)  ? "a character device"
                           : S_ISBLK(st.st_mode)  ? "a block device"
                                                  : "not a regular file";
        *why = rel + " is " + kind + ", not a regular file";
        return Refusal::NotRegular;
    }
    if (st.st_nlink == 0) { // unlinked while we looked
        *why = rel + " does not exist";
        return Refusal::Missing;
    }
    if (st.st_nlink != 1) {
        *why = rel + " has " + std::to_string(st.st_nlink) +
               " hard links; another name of it may be outside the watched directory";
        return Refusal::HardLinked;
    }
    out->dir = std::move(dir);
    out->leaf = leaf;
    out->st = st;
    return Refusal::None;
}

Refusal openDirBeneath(int root_fd, const std::string& rel, Resolver how, Fd* out, std::string* why) {
    std::vector<std::string> parts;
    if (!components(rel, &parts, why)) return Refusal::Escapes;
    return resolveDir(root_fd, parts, parts.size(), how, out, why);
}

} // namespace taskhub::triggers
