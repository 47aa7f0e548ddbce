#include "common/trust.h"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <vector>

namespace taskhub::trust {

namespace fs = std::filesystem;

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.release();
    }
    return *this;
}

UniqueFd::~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
}

Owners processOwners() { return Owners{::geteuid()}; }

std::string modeText(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

namespace {

std::string userText(uid_t uid) {
    std::string out = "uid " + std::to_string(uid);
    struct passwd pw {};
    struct passwd* res = nullptr;
    std::vector<char> buf(4096);
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) out += std::string(" (") + pw.pw_name + ")";
    return out;
}

std::string typeText(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISLNK(mode)) return "a symbolic link";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "of an unknown type";
}

// Whether uid may own what taskhubd trusts; false: *why says who should own `what path`.
bool ownerAllowed(const std::string& what, const std::string& path, uid_t uid, Owners owners, std::string* why) {
    if (owners.allows(uid)) return true;
    std::string allowed = "root";
    if (owners.daemon_uid != 0) allowed += " or the daemon's user (" + userText(owners.daemon_uid) + ")";
    *why = what + path + " is owned by " + userText(uid) + ": make it owned by " + allowed + " (chown root " +
           path + ")";
    return false;
}

std::string writersText(mode_t mode) {
    const bool g = mode & S_IWGRP, o = mode & S_IWOTH;
    return g && o ? "group and others" : o ? "others" : "group";
}

std::string errnoText(const std::string& what, const std::string& path, int err) {
    return "cannot open " + what + path + ": " + std::strerror(err);
}

} // namespace

bool trustedObject(const std::string& path, const struct stat& st, Kind kind, Owners owners, std::string* why) {
    const bool dir = kind == Kind::Directory;
    if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        *why = path + " is " + typeText(st.st_mode) + ", expected " + (dir ? "a directory" : "a regular file");
        return false;
    }
    if (!ownerAllowed("", path, st.st_uid, owners, why)) return false;
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        *why = path + " is writable by " + writersText(st.st_mode) + " (mode " + modeText(st.st_mode) +
               "): make it " + modeText(st.st_mode & ~mode_t{S_IWGRP | S_IWOTH | S_ISVTX}) +
               " (chmod go-w " + path + "); what taskhubd trusts may be written only by its owner";
        return false;
    }
    if (!dir && st.st_nlink > 1) {
        *why = path + " has " + std::to_string(st.st_nlink) +
               " hard links: a trusted file must have exactly one (another link may sit where others can "
               "write); replace it with a copy (cp " + path + " " + path + ".new && mv " + path + ".new " + path + ")";
        return false;
    }
    return true;
}

bool trustedDirectory(const std::string& path, const struct stat& st, bool is_parent, Owners owners,
                      std::string* why) {
    const std::string what = "directory ";
    if (!S_ISDIR(st.st_mode)) {
        *why = path + " is " + typeText(st.st_mode) + ", expected a directory";
        return false;
    }
    if (!(st.st_mode & (S_IWGRP | S_IWOTH))) return ownerAllowed(what, path, st.st_uid, owners, why);
    // Others may write here. Only a root-owned sticky directory above the trusted object's own
    // directory is acceptable: the sticky bit keeps others from renaming or replacing our entries.
    if ((st.st_mode & S_ISVTX) && st.st_uid == 0 && !is_parent) return true;
    std::string message = what + path + " is writable by " + writersText(st.st_mode) + " (mode " +
                          modeText(st.st_mode) + "): make it " +
                          modeText(st.st_mode & ~mode_t{S_IWGRP | S_IWOTH | S_ISVTX}) + " (chmod go-w " + path + ")";
    if (is_parent) {
        message += "; a trusted file's own directory may not be writable by others, sticky or not";
    } else {
        message += "; above a trusted file only a root-owned sticky directory such as /tmp may be writable by others";
    }
    if (std::string owner; !ownerAllowed(what, path, st.st_uid, owners, &owner)) message += "; also " + owner;
    *why = std::move(message);
    return false;
}

bool trustedSymlink(const std::string& path, const struct stat& st, Owners owners, std::string* why) {
    return ownerAllowed("symbolic link ", path, st.st_uid, owners, why);
}

std::optional<Opened> openTrusted(const fs::path& path_in, Kind kind, Owners owners, std::string* why) {
    std::error_code ec;
    const fs::path path = fs::absolute(path_in, ec);
    if (ec || path.empty()) {
        *why = "cannot resolve " + path_in.string() + ": " + ec.message();
        return std::nullopt;
    }
    // The real location walked so far: each entry an O_PATH descriptor of a checked directory.
    struct Step {
        std::string path;
        UniqueFd fd;
        struct stat st {};
    };
    std::vector<Step> walked;
    {
        Step root{"/", UniqueFd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)), {}};
        if (!root.fd || ::fstat(root.fd.get(), &root.st) != 0) {
            *why = errnoText("directory ", "/", errno);
            return std::nullopt;
        }
        if (!trustedDirectory("/", root.st, false, owners, why)) {
            return std::nullopt;
        }
        walked.push_back(std::move(root));
    }
    auto childPath = [&](const std::string& name) {
        return walked.back().path == "/" ? "/" + name : walked.back().path + "/" + name;
    };
    std::deque<std::string> todo;
    for (const auto& part : path.relative_path()) todo.push_back(part.string());
    int links = 0;
    while (!todo.empty()) {
        const std::string name = std::move(todo.front());
        todo.pop_front();
        if (name.empty() || name == ".") continue;
        if (name == "..") {
            if (walked.size() > 1) walked.pop_back();
            continue;
        }
        const std::string here = childPath(name);
        UniqueFd fd(::openat(walked.back().fd.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0) {
            *why = errnoText("", here, errno);
            return std::nullopt;
        }
        if (S_ISLNK(st.st_mode)) {
            // The link's own directory has been checked; the link is followed only when its owner
            // is trusted (in a sticky directory, someone else's link could point anywhere).
            if (!trustedSymlink(here, st, owners, why)) {
                return std::nullopt;
            }
            if (++links > 40) {
                *why = "cannot open " + path.string() + ": too many levels of symbolic links";
                return std::nullopt;
            }
            std::vector<char> target(static_cast<size_t>(st.st_size > 0 ? st.st_size : 255) + 2);
            const ssize_t n = ::readlinkat(fd.get(), "", target.data(), target.size());
            if (n < 0 || static_cast<size_t>(n) >= target.size()) {
                *why = "cannot read symbolic link " + here + ": " +
                       (n < 0 ? std::strerror(errno) : "it changed while being read");
                return std::nullopt;
            }
            const fs::path to(std::string(target.data(), static_cast<size_t>(n)));
            std::vector<std::string> parts;
            for (const auto& part : to.relative_path()) parts.push_back(part.string());
            todo.insert(todo.begin(), parts.begin(), parts.end());
            if (to.is_absolute()) walked.resize(1);
            continue;
        }
        if (!todo.empty()) {
            // A directory on the way (also where a symbolic link sits): checked before anything in
            // it is looked at.
            if (!S_ISDIR(st.st_mode)) {
                *why = "cannot open " + path.string() + ": " + here + " is " + typeText(st.st_mode) +
                       ", not a directory";
                return std::nullopt;
            }
            if (!trustedDirectory(here, st, false, owners, why)) {
                return std::nullopt;
            }
            walked.push_back(Step{here, std::move(fd), st});
            continue;
        }
        // The object itself. A file's own directory gets the strict rule (no sticky exception); a
        // trusted directory may sit in a root-owned sticky one such as /tmp.
        if (kind == Kind::RegularFile) {
            if (!trustedDirectory(walked.back().path, walked.back().st, true, owners, why)) {
                return std::nullopt;
            }
        }
        if (!trustedObject(here, st, kind, owners, why)) {
            return std::nullopt;
        }
        const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                          (kind == Kind::Directory ? O_DIRECTORY : O_NONBLOCK | O_NOCTTY);
        Opened out;
        out.fd = UniqueFd(::openat(walked.back().fd.get(), name.c_str(), flags));
        if (!out.fd || ::fstat(out.fd.get(), &out.st) != 0) {
            *why = errnoText("", here, errno);
            return std::nullopt;
        }
        if (out.st.st_dev != st.st_dev || out.st.st_ino != st.st_ino) {
            *why = here + " was replaced while being opened; try again";
            return std::nullopt;
        }
        // Checked again on what was opened: the mode or owner may have changed in between.
        if (!trustedObject(here, out.st, kind, owners, why)) {
            return std::nullopt;
        }
        if (kind == Kind::RegularFile) ::fcntl(out.fd.get(), F_SETFL, ::fcntl(out.fd.get(), F_GETFL) & ~O_NONBLOCK);
        out.real_path = here;
        return out;
    }
    // The path named "/" itself (or resolved to it).
    Opened out;
    out.fd = UniqueFd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!out.fd || ::fstat(out.fd.get(), &out.st) != 0) {
        *why = errnoText("", "/", errno);
        return std::nullopt;
    }
    if (!trustedObject("/", out.st, kind, owners, why)) {
        return std::nullopt;
    }
    out.real_path = "/";
    return out;
}

bool readAll(int fd, std::string* out, std::string* err) {
    out->clear();
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n == 0) return true;
        if (n < 0) {
            if (errno == EINTR) continue;
            *err = std::strerror(errno);
            return false;
        }
        out->append(buf, static_cast<size_t>(n));
    }
}

} // namespace taskhub::trust
