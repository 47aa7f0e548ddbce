// Resolving a dropped file beneath its watch root without following symbolic links.
//
// A drop box is writable by people the daemon (root) must not serve: they choose the names and
// can rename, swap (renameat2 RENAME_EXCHANGE) and symlink anything inside it at any moment. So
// the daemon never acts on a dropped file through its full path: it opens a descriptor of the
// watch root (checked to be the directory being watched), resolves the file's directory beneath
// that descriptor refusing every symbolic link and every way out of the root, and then looks at
// the file itself through a descriptor of its own (O_PATH | O_NOFOLLOW, so a fifo is never opened
// for reading and a symlink is seen as one). Whatever it then does (compare the version, unlink,
// rename) is done relative to the directory descriptor this returns, so a later swap of a
// directory on the path cannot redirect it.
//
// Resolution uses openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
// (Linux 5.6; glibc 2.36 has no wrapper, so it is called through syscall(2)). Where the kernel
// lacks it (ENOSYS) the same rules are kept by a walk that opens one component at a time with
// O_NOFOLLOW. Either way ".." is refused outright: paths of dropped files never contain it.
//
// Test hook: with TASKHUB_TEST_NO_OPENAT2=1 in the environment, Resolver::Auto behaves as on a
// kernel without openat2 (the walk is used), so that system tests exercise the fallback.
//
// Threading: the functions are reentrant; the descriptors they return belong to the caller.
#ifndef TASKHUB_TRIGGERS_BENEATH_H
#define TASKHUB_TRIGGERS_BENEATH_H

#include <sys/stat.h>

#include <string>

namespace taskhub::triggers {

// An owned file descriptor, closed on destruction. -1 when empty.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// How to resolve: Auto uses openat2 and falls back to the walk on ENOSYS (or when the test hook
// says so); the other two force one way (unit tests cover both).
enum class Resolver { Auto, Openat2, Walk };

// Why a path beneath the root is not acted on. Names (refusalName) are stable: they appear in
// log lines and run events.
enum class Refusal {
    None,       // resolved: a regular file with one link
    Missing,    // the file or a directory on its path does not exist (any more)
    Symlink,    // the file, or a directory on its path, is a symbolic link
    Escapes,    // the path is absolute or contains ".." (or openat2 saw it leave the root)
    NotRegular, // a directory, fifo, socket or device (or, for a directory lookup, not a directory)
    HardLinked, // a regular file with more than one hard link: another name may be outside the box
    Replaced,   // not the version that was dropped: device or inode differ (see sameFile)
    Error,      // another error (permission, I/O, too many open files); see the message
};

// "symlink", "hard-linked", ... for logs and events.
const char* refusalName(Refusal r);

// A dropped file found beneath the root: its parent directory (an O_PATH descriptor, the base
// for unlinkat/renameat), its name in that directory, and its stat through its own descriptor.
struct BeneathFile {
    Fd dir;
    std::string leaf;
    struct stat st {};
};

// Resolves rel (a relative path of '/'-separated components, e.g. "a/b/x.csv") beneath the
// directory root_fd and checks that it names a regular file with exactly one link. On success
// fills *out and returns Refusal::None; otherwise returns why not and sets *why to a sentence
// naming rel and what was found (e.g. "a/b is a symbolic link"). Never follows a symlink, never
// opens the file for reading or writing.
Refusal openFileBeneath(int root_fd, const std::string& rel, Resolver how, BeneathFile* out, std::string* why);

// Resolves the directory rel beneath root_fd under the same rules (an empty rel or "." is the
// root itself) and returns an O_PATH descriptor of it in *out.
Refusal openDirBeneath(int root_fd, const std::string& rel, Resolver how, Fd* out, std::string* why);

// True when both stats are of the same file (device and inode).
inline bool sameFile(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_BENEATH_H
