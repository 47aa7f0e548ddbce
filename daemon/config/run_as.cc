#include "config/run_as.h"

#include <sys/stat.h>

#include <cstdio>

#include "common/identity.h"

namespace taskhub::config::detail {

namespace fs = std::filesystem;

bool accountUsable(const std::string& text, std::string* why) { return resolveIdentity(text, why).has_value(); }

bool isRootAccount(const std::string& text) {
    std::string err;
    auto id = resolveIdentity(text, &err);
    return id && id->uid == 0;
}

bool onlyRootWrites(const fs::path& dir, std::string* why) {
    struct stat st{};
    if (::stat(dir.c_str(), &st) != 0) return true;
    fs::path p = dir;
    bool first = true;
    while (true) {
        if (::stat(p.c_str(), &st) != 0) return true;
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        if (st.st_uid != 0) {
            *why = p.string() + " is owned by uid " + std::to_string(st.st_uid) + ", not root";
            return false;
        }
        // Others cannot rename or remove what root owns in a sticky directory (/tmp), so a
        // sticky writable ancestor does not open the directory below it.
        const bool shielded = !first && (st.st_mode & S_ISVTX);
        if ((st.st_mode & S_IWOTH) && !shielded) {
            *why = p.string() + " has mode " + mode + " and is world-writable";
            return false;
        }
        if ((st.st_mode & S_IWGRP) && !shielded) {
            *why = p.string() + " has mode " + mode + " and is writable by group " + std::to_string(st.st_gid);
            return false;
        }
        if (p == p.root_path() || !p.has_parent_path() || p.parent_path() == p) break;
        p = p.parent_path();
        first = false;
    }
    return true;
}

} // namespace taskhub::config::detail
