#include "common/identity.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace taskhub {
namespace {

// POSIX portable user and group names, plus what Debian's adduser and systemd accept beyond them
// ('$' at the end for machine accounts); nothing a shell or a separator could misread.
bool isAccountName(std::string_view s) {
    if (s.empty() || s.size() > 256 || s.front() == '-') return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '_' || c == '-' || c == '.' || (c == '$' && i + 1 == s.size());
        if (!ok) return false;
    }
    return true;
}

std::optional<unsigned long> asNumber(std::string_view s) {
    unsigned long n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return n;
}

// What a failed lookup adds to "no user ...": nothing when the entry just does not exist (which
// getpwnam_r(3) may also report as ENOENT, ESRCH, EBADF or EPERM), else the error.
std::string lookupError(int rc) {
    if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) return {};
    return std::string(" (lookup failed: ") + std::strerror(rc) + ")";
}

// getpwnam_r / getpwuid_r with a buffer that grows on ERANGE.
bool findUser(const std::string& user, passwd* pw, std::vector<char>* buf, std::string* err) {
    const std::optional<unsigned long> uid = asNumber(user);
    passwd* found = nullptr;
    int rc = 0;
    buf->resize(4096);
    while (true) {
        rc = uid ? ::getpwuid_r(static_cast<uid_t>(*uid), pw, buf->data(), buf->size(), &found)
                 : ::getpwnam_r(user.c_str(), pw, buf->data(), buf->size(), &found);
        if (rc != ERANGE || buf->size() >= (1u << 20)) break;
        buf->resize(buf->size() * 4);
    }
    if (found) return true;
    *err = uid ? "no user with uid " + user + " in the password database" + lookupError(rc)
               : "no user '" + user + "' in the password database" + lookupError(rc);
    return false;
}

bool findGroup(const std::string& group, gid_t* gid, std::string* name, std::string* err) {
    const std::optional<unsigned long> number = asNumber(group);
    struct group gr{};
    struct group* found = nullptr;
    std::vector<char> buf(4096);
    int rc = 0;
    while (true) {
        rc = number ? ::getgrgid_r(static_cast<gid_t>(*number), &gr, buf.data(), buf.size(), &found)
                    : ::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found);
        if (rc != ERANGE || buf.size() >= (1u << 20)) break;
        buf.resize(buf.size() * 4);
    }
    if (!found) {
        *err = number ? "no group with gid " + group + " in the group database" + lookupError(rc)
                      : "no group '" + group + "' in the group database" + lookupError(rc);
        return false;
    }
    *gid = gr.gr_gid;
    *name = gr.gr_name;
    return true;
}

} // namespace

std::optional<AccountSpec> parseAccountSpec(std::string_view text, std::string* err) {
    const size_t colon = text.find(':');
    AccountSpec spec;
    spec.user = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) spec.group = std::string(text.substr(colon + 1));
    const char* form = "expected \"user\" or \"user:group\" (names or numeric ids), e.g. \"nobody\" or "
                       "\"backup:backup\"";
    if (!isAccountName(spec.user)) {
        *err = std::string(spec.user.empty() ? "the user name is empty" : "'" + spec.user + "' is not a user name") +
               "; " + form + ", found \"" + std::string(text) + "\"";
        return std::nullopt;
    }
    if (colon != std::string_view::npos && !isAccountName(spec.group)) {
        *err = std::string(spec.group.empty() ? "the group after ':' is empty"
                                              : "'" + spec.group + "' is not a group name") +
               "; " + form + ", found \"" + std::string(text) + "\"";
        return std::nullopt;
    }
    return spec;
}

std::string Identity::describe() const {
    return user + ":" + (group.empty() ? std::to_string(gid) : group) + " (uid " + std::to_string(uid) +
           ", gid " + std::to_string(gid) + ")";
}

std::optional<Identity> resolveIdentity(const AccountSpec& spec, std::string* err) {
    passwd pw{};
    std::vector<char> buf;
    if (!findUser(spec.user, &pw, &buf, err)) return std::nullopt;
    Identity id;
    id.user = pw.pw_name;
    id.uid = pw.pw_uid;
    id.home = pw.pw_dir ? pw.pw_dir : "";
    id.shell = pw.pw_shell && *pw.pw_shell ? pw.pw_shell : "/bin/sh"; // login(1)'s default
    const gid_t passwd_gid = pw.pw_gid;
    if (spec.group.empty()) {
        id.gid = passwd_gid;
        std::string ignored;
        if (!findGroup(std::to_string(passwd_gid), &id.gid, &id.group, &ignored)) id.gid = passwd_gid;
    } else if (!findGroup(spec.group, &id.gid, &id.group, err)) {
        return std::nullopt;
    }
    // What initgroups(user, passwd gid) would install: every group listing the user, plus the
    // user's own primary group.
    int n = 32;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    while (::getgrouplist(id.user.c_str(), passwd_gid, groups.data(), &n) < 0) {
        if (n <= static_cast<int>(groups.size())) n = static_cast<int>(groups.size()) * 2;
        if (n > 65536) {
            *err = "user '" + id.user + "' is in more than 65536 groups";
            return std::nullopt;
        }
        groups.resize(static_cast<size_t>(n));
    }
    groups.resize(static_cast<size_t>(n));
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    id.groups = std::move(groups);
    return id;
}

bool becomeIdentity(const Identity& id, std::string* err) {
    auto failed = [&](const char* step) {
        *err = "cannot switch to " + id.describe() + ": " + step + ": " + std::strerror(errno);
        return false;
    };
    if (::setgroups(id.groups.size(), id.groups.data()) != 0) return failed("setgroups");
    if (::setresgid(id.gid, id.gid, id.gid) != 0) return failed("setgid");
    if (::setresuid(id.uid, id.uid, id.uid) != 0) return failed("setuid");
    if (id.uid != 0 && ::setuid(0) == 0) {
        *err = "after switching to " + id.describe() + ", setuid(0) still succeeded; refusing to go on";
        return false;
    }
    ::setenv("HOME", id.home.c_str(), 1);
    ::setenv("USER", id.user.c_str(), 1);
    ::setenv("LOGNAME", id.user.c_str(), 1);
    ::setenv("SHELL", id.shell.c_str(), 1);
    if (::chdir(id.home.c_str()) != 0 && ::chdir("/") != 0) return failed("chdir /");
    return true;
}

std::optional<Identity> resolveIdentity(std::string_view text, std::string* err) {
    auto spec = parseAccountSpec(text, err);
    if (!spec) return std::nullopt;
    return resolveIdentity(*spec, err);
}

} // namespace taskhub
