// What /proc says about processes: a process's start time (to tell it from a later process that
// reused its pid), the boot it belongs to, and which processes carry given environment entries.
// Linux only. Any thread.
#ifndef TASKHUB_COMMON_PROC_H
#define TASKHUB_COMMON_PROC_H

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub {

// The start time of process pid in clock ticks after boot (/proc/PID/stat field 22), or
// std::nullopt when no such process exists (or it cannot be read).
std::optional<int64_t> processStartTicks(pid_t pid);

// True when pid is alive and started at start_ticks: the very process that was recorded, not a
// later one that got the same pid. A zombie counts as gone.
bool sameProcess(pid_t pid, int64_t start_ticks);

// The kernel's id of the current boot (/proc/sys/kernel/random/boot_id), "" when unreadable.
// Start times in ticks compare only within one boot.
std::string bootId();

// The processes (other than this one) whose environment holds the entry `required`
// ("NAME=value"), each with its start time and the values of the variables `names` (in that
// order; "" for one it lacks), and its real user id (/proc/PID/status: anyone can put any
// variable in a process's environment, so who runs it is what tells whose it can be). Processes
// whose environment or status cannot be read are passed over. One pass over /proc.
struct FoundProcess {
    pid_t pid = 0;
    int64_t start_ticks = 0;
    std::vector<std::string> values;
    uid_t uid = 0;
};
std::vector<FoundProcess> processesWithEnvironment(const std::string& required,
                                                   const std::vector<std::string>& names);

} // namespace taskhub

#endif // TASKHUB_COMMON_PROC_H
