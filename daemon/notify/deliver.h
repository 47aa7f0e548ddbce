// The blocking half of delivery, run on the notifier's delivery threads (never on the event
// loop): a program with an environment and stdin, bounded in time, and the mbox fallback for
// mail when no MTA is installed.
#ifndef TASKHUB_NOTIFY_DELIVER_H
#define TASKHUB_NOTIFY_DELIVER_H

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace taskhub::notify {

struct ProcessSpec {
    std::vector<std::string> argv;   // argv[0] is an absolute path
    std::vector<std::string> env;    // the whole environment, "NAME=value"
    std::string stdin_data;
    std::string run_as;              // "user" or "user:group"; "" = taskhubd's own user
    std::chrono::milliseconds timeout{30'000};
    // When set and it becomes true (taskhubd is stopping), the program is killed at once.
    const std::atomic<bool>* cancel = nullptr;
};

// Runs the program in its own process group with stdin fed from stdin_data, stdout and stderr
// captured (the last 512 bytes are kept for the error), as run_as when given (the account is
// resolved now; supplementary groups, gid and uid are dropped in the child before exec). Killed
// with its whole process group after timeout. true when it exited 0; else *err says why
// ("exit 3: <its last output>", "timed out after 30000 ms (killed)", "cancelled: ...").
bool runProcess(const ProcessSpec& spec, std::string* err);

// The mbox that takes mail when no MTA is installed, and its bound: when appending would take it
// beyond max_bytes it is renamed to PATH.1 (replacing an older one) and a new one begins.
inline constexpr uint64_t kMaxMboxBytes = 16u << 20;
// Appends entry (mboxEntry()) to path (created 0600, its directory 0700; a symlink is refused).
bool appendMbox(const std::filesystem::path& path, const std::string& entry, uint64_t max_bytes, std::string* err);

// True when path names an executable regular file.
bool isExecutable(const std::string& path);

} // namespace taskhub::notify

#endif // TASKHUB_NOTIFY_DELIVER_H
