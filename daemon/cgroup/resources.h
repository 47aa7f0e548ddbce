// Resource limits of a task attempt (workflow keys memory_max, cpu_max, tasks_max, io_weight),
// what taskhubd writes into an attempt's cgroup for them, and what an attempt cost (Usage). Pure:
// no I/O, no Asio; the config module parses workflow files with it, the cgroup module applies
// limits and reads usage, the engine and the store record usage.
//
// docs/workflow-format.md, "Resource limits and leftovers", is the user's view.
#ifndef TASKHUB_CGROUP_RESOURCES_H
#define TASKHUB_CGROUP_RESOURCES_H

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace taskhub::cgroup {

// cgroup v2 period taskhubd uses for cpu.max, in microseconds.
inline constexpr uint64_t kCpuPeriodUs = 100'000;

struct Limits {
    std::optional<uint64_t> memory_max; // bytes -> memory.max (memory.swap.max is left alone)
    std::optional<uint64_t> cpu_quota_us; // per kCpuPeriodUs -> cpu.max "QUOTA 100000"
    std::optional<uint64_t> tasks_max;  // -> pids.max
    std::optional<uint32_t> io_weight;  // 1..10000 -> io.weight "default N"
    // The text each was written as, for messages ("256M", "50%"); empty when unset.
    std::string memory_max_text, cpu_max_text;

    bool empty() const noexcept {
        return !memory_max && !cpu_quota_us && !tasks_max && !io_weight;
    }
    bool operator==(const Limits&) const = default;
};

// A task's own limit wins over its workflow's, key by key.
Limits merged(const Limits& workflow, const Limits& task);

// "50%" (of one CPU) or "1.5" (CPUs; "2" = two CPUs) -> quota in microseconds per kCpuPeriodUs.
// At least 1000 us (1 %); nullopt with *err saying what is wrong and what would be right.
std::optional<uint64_t> parseCpuMax(const std::string& text, std::string* err);
// (memory_max is parsed by config::parseByteSize: "256M", "1G", "1048576".)

// The controllers the limits need: of "memory", "cpu", "pids", "io".
std::set<std::string> requiredControllers(const Limits& limits);

// (file name inside the attempt's cgroup, content) for each set limit, in a fixed order.
std::vector<std::pair<std::string, std::string>> limitFiles(const Limits& limits);

// What the cgroup hierarchy of this machine (or this daemon) can do, for checking workflow files
// at load time: a limit whose controller is missing refuses the workflow.
struct Support {
    bool cgroups = false;              // attempts get cgroups (containment: cgroup)
    std::set<std::string> controllers; // enabled for attempt cgroups
    std::string why_not;               // when !cgroups: why (the fallback reason)
    // How to get a missing controller, for the refusal message (e.g. "the memory controller
    // belongs to cgroup v1 on this machine: boot with systemd.unified_cgroup_hierarchy=1").
    std::string hint;
};

// Why `limits` cannot be applied with `support` (naming the key, the controller and what to
// change), or std::nullopt when they can.
std::optional<std::string> unsupported(const Limits& limits, const Support& support);

// The end of an attempt its memory limit killed: "killed: memory limit 256M reached
// (oom_kill 1)"; std::nullopt when no memory limit is set or oom_kills is 0.
std::optional<std::string> memoryLimitMessage(const Limits& limits, uint64_t oom_kills);

// What happens to processes still in an attempt's cgroup after its main process exited.
enum class Leftovers { Kill, Keep };
const char* toString(Leftovers l) noexcept; // "kill" | "keep"

// What one attempt cost, read from its cgroup when it ended (or, in process-group mode, from
// wait4's rusage of its main process: CPU times and max RSS only).
struct Usage {
    enum class Source { Cgroup, Rusage };
    Source source = Source::Cgroup;
    uint64_t cpu_user_us = 0;   // cpu.stat user_usec
    uint64_t cpu_system_us = 0; // cpu.stat system_usec
    std::optional<uint64_t> memory_peak; // bytes: memory.peak (memory controller), or ru_maxrss
    std::optional<uint64_t> oom_kills;   // memory.events oom_kill (memory controller)
    std::optional<uint64_t> io_read_bytes, io_write_bytes; // io.stat rbytes/wbytes summed (io controller)
    bool operator==(const Usage&) const = default;
};
const char* toString(Usage::Source s) noexcept; // "cgroup" | "rusage"

// Parsers of the cgroup files behind Usage (text as read; unknown lines are ignored). Each
// returns false when the text has none of the fields it looks for.
bool parseCpuStat(const std::string& text, Usage* usage);      // cpu.stat
bool parseMemoryEvents(const std::string& text, Usage* usage); // memory.events: oom_kill
bool parseIoStat(const std::string& text, Usage* usage);       // io.stat: rbytes=, wbytes= of every device

// Processes found in an attempt's cgroup after its main process exited, and what was done.
struct LeftoverReport {
    int found = 0; // processes in the cgroup (recursively) when the main process had exited
    Leftovers action = Leftovers::Kill;
    bool operator==(const LeftoverReport&) const = default;
};

} // namespace taskhub::cgroup

#endif // TASKHUB_CGROUP_RESOURCES_H
