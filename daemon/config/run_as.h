// The run_as checks of the config module (docs/workflow-format.md, "run_as"): whether an account
// text names an existing account, and whether a watched directory can be written by users other
// than root. Internal to taskhub_config; both read the system databases or the file system, so
// their results are as of the moment the file is loaded.
#ifndef TASKHUB_CONFIG_RUN_AS_H
#define TASKHUB_CONFIG_RUN_AS_H

#include <filesystem>
#include <string>

namespace taskhub::config::detail {

// True when `text` ("user" or "user:group") resolves to an account; otherwise *why says why not,
// e.g. "no user 'bakup' in the password database".
bool accountUsable(const std::string& text, std::string* why);

// True when `text` resolves to uid 0 (root).
bool isRootAccount(const std::string& text);

// True when only root can change what is in `dir`, or when dir does not exist (yet). Otherwise
// *why names the first of dir and its ancestors (up to /) that is owned by another user, or
// world- or group-writable (an ancestor with the sticky bit excepted; dir itself counts even when
// sticky), as "/srv/in is owned by uid 1000, not root" or "/srv has mode 0777 and is
// world-writable".
bool onlyRootWrites(const std::filesystem::path& dir, std::string* why);

} // namespace taskhub::config::detail

#endif // TASKHUB_CONFIG_RUN_AS_H
