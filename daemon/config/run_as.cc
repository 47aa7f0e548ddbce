#include "config/run_as.h"

#include <sys/stat.h>

#include <cstdio>

#include "common/identity.h"

namespace taskhub::config::detail {

namespace fs = std::filesystem;

std::optional<std::string> accountProblem(const std::string& text) {
    std::string err;
    if (!resolveIdentity(text, &err)) return err;
    return std::nullopt;
}

bool isRootAccount(const std::string& text) {
    std::string err;
    auto id = resolveIdentity(text, &err);
    return id && id->uid == 0;
}

std::optional<std::string> writableByOthers(const fs::path& dir) {
    struct stat st{};
    if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
    fs::path p = dir;
    bool first = true;
    while (true) {
        if (::stat(p.c_str(), &st) != 0) return std::nullopt;
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        if (st.st_uid != 0) {
            return p.string() + " is owned by uid " + std::to_string(st.st_uid) + ", not root";
        }
        // Others cannot rename or remove what root owns in a sticky directory (/tmp), so a
        // sticky writable ancestor does not open the directory below it.
        const bool shielded = !first && (st.st_mode & S_ISVTX);
        if ((st.st_mode & S_IWOTH) && !shielded) return p.string() + " has mode " + mode + " and is world-writable";
        if ((st.st_mode & S_IWGRP) && !shielded) {
            return p.string() + " has mode " + mode + " and is writable by group " + std::to_string(st.st_gid);
        }
        if (p == p.root_path() || !p.has_parent_path() || p.parent_path() == p) break;
        p = p.parent_path();
        first = false;
    }
    return std::nullopt;
}

} // namespace taskhub::config::detail
