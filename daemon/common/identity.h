// Accounts that task processes run as (`run_as`, `default_run_as`, a runner's `user`): parsing
// the "user" / "user:group" text and resolving it against the password and group databases.
//
// Resolution happens twice on purpose: when a workflow file is loaded (an unknown account is a
// load-time error naming file, line and key) and again when each attempt starts (the databases
// may have changed since; a vanished account fails that attempt). Any thread: only the
// re-entrant getpwnam_r / getgrnam_r / getgrouplist family is used.
#ifndef TASKHUB_COMMON_IDENTITY_H
#define TASKHUB_COMMON_IDENTITY_H

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub {

// "user" or "user:group" as written. Either part may also be a number (uid, gid), which must
// still exist in the password (group) database: the task needs the account's home and shell.
struct AccountSpec {
    std::string user;
    std::string group; // empty: the user's primary group from the password database
};

// Splits and checks the text of a run_as value. On error returns std::nullopt and sets *err to
// what is wrong and what would be right (the caller adds file, line and key).
std::optional<AccountSpec> parseAccountSpec(std::string_view text, std::string* err);

// An account resolved from the databases: everything a process needs to become it.
struct Identity {
    std::string user;          // the user name (also when the spec gave a uid)
    uid_t uid = 0;
    gid_t gid = 0;             // primary group: the spec's group, else the user's own
    std::string group;         // the primary group's name ("" when the group has no entry)
    std::vector<gid_t> groups; // supplementary groups, as initgroups(user, passwd gid) sets them
    std::string home;
    std::string shell;

    // "nobody:nogroup (uid 65534, gid 65534)", for messages and `taskhubctl show`.
    std::string describe() const;
};

// Looks the account up. On error returns std::nullopt and sets *err, e.g. "no user 'bakup' in
// the password database" or "no group 'wheel' in the group database".
std::optional<Identity> resolveIdentity(const AccountSpec& spec, std::string* err);
std::optional<Identity> resolveIdentity(std::string_view text, std::string* err);

// Makes the calling process `id` for good, in cronie's order: supplementary groups, gid, uid
// (real, effective and saved), then checks that setuid(0) fails; sets HOME, USER, LOGNAME and
// SHELL and enters the home directory (else /). For a process that is still single-threaded
// (taskhub-runner before it loads its plugin): the libc calls change this process only. Returns
// false with *err naming the step that failed.
bool becomeIdentity(const Identity& id, std::string* err);

} // namespace taskhub

#endif // TASKHUB_COMMON_IDENTITY_H
