// Trust in what taskhubd reads and runs: the config file, workflows_dir, each workflow file and
// each plugin directory and plugin file (docs/operations.md, "Who may write what taskhubd trusts").
//
// The rule, StrictModes' and cronie's: what is trusted, and every directory above its real
// location up to "/", is owned by root or by the daemon's own user and not writable by group or
// others. One exception: a root-owned sticky directory (such as /tmp) may be writable by others
// above a directory that passes (others cannot rename or replace what root or the daemon's user
// own in it), so it may hold a trusted directory but is never a trusted file's own directory. The trusted object itself is never group- or world-writable,
// sticky or not; a trusted regular file has exactly one hard link (a second link could sit in a
// directory that others write); a symbolic link on the way is followed only when it is owned by
// root or the daemon's user, and the directories above its target are checked like the others.
//
// Race-free by construction: the path is walked from "/" one component at a time through
// descriptors (openat with O_PATH|O_NOFOLLOW relative to the already-checked parent, symbolic links
// read through their own descriptor), the object is opened relative to its checked parent and the
// checks run on fstat() of the descriptors, so a rename between check and use cannot substitute
// anything. Callers read the content from the returned descriptor, never from the path again.
//
// Everything here is a function of its arguments (no logging, no globals); errors are returned
// as one sentence naming the path, the owner or mode that failed and what would pass.
#ifndef TASKHUB_COMMON_TRUST_H
#define TASKHUB_COMMON_TRUST_H

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

namespace taskhub::trust {

// An owned file descriptor, closed on destruction.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd();

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

private:
    int fd_ = -1;
};

enum class Kind { RegularFile, Directory };

// Who may own trusted objects: root and `daemon_uid` (taskhubd's effective uid; when it runs
// unprivileged, e.g. in tests or scripts/demo, its own files pass).
struct Owners {
    uid_t daemon_uid = 0;
    bool allows(uid_t uid) const { return uid == 0 || uid == daemon_uid; }
};

// The owners for this process: root and geteuid().
Owners processOwners();

// A trusted object, opened and checked.
struct Opened {
    UniqueFd fd;                         // O_RDONLY|O_CLOEXEC (with O_DIRECTORY for directories)
    struct stat st {};                   // fstat() of fd
    std::filesystem::path real_path;     // where it really is (symbolic links resolved)
};

// Opens `path` (relative paths resolve against the working directory) as described above.
// Returns the open object, or nullopt with *why set to the reason it is refused (or cannot be
// opened). Regular files are opened with O_NONBLOCK so that a FIFO put in their place cannot block
// the caller; the flag is cleared before returning.
std::optional<Opened> openTrusted(const std::filesystem::path& path, Kind kind, Owners owners, std::string* why);

// The checks openTrusted() applies, over stat results, exposed for tests and for callers that
// already hold a descriptor. `path` is only used in the message.
//
// Each returns true when the check passes, or false with *why saying what is wrong and how to fix it.
//
// The trusted object itself: type, owner, not group/world-writable (sticky or not), one link.
bool trustedObject(const std::string& path, const struct stat& st, Kind kind, Owners owners, std::string* why);
// A directory above the trusted object. `is_parent`: it is a trusted file's own directory, where
// the sticky exception does not apply.
bool trustedDirectory(const std::string& path, const struct stat& st, bool is_parent, Owners owners,
                      std::string* why);
// A symbolic link on the way.
bool trustedSymlink(const std::string& path, const struct stat& st, Owners owners, std::string* why);

// Reads the whole file from `fd` (from its current offset). Returns false with *err set on error.
bool readAll(int fd, std::string* out, std::string* err);

// "0755": the permission bits of `mode` as octal text.
std::string modeText(mode_t mode);

} // namespace taskhub::trust

#endif // TASKHUB_COMMON_TRUST_H
