// Task containment with cgroup v2 (docs/operations.md, "Containment"): one cgroup per attempt,
// killed, frozen, measured and removed as a whole, the way systemd handles a service's processes.
//
// Layout below the daemon's base cgroup (systemd's delegation rules: processes only in leaves):
//
//   <base>/daemon                              taskhubd itself
//   <base>/tasks/<attempt>                     an attempt of an in-process plugin
//   <base>/runners/<plugin>/runner             the taskhub-runner of an isolated plugin
//   <base>/runners/<plugin>/tasks/<attempt>    that plugin's attempts (cgroup.procs handed to the
//                                              runner's user, so that it may start them there)
//
// <base> is the daemon's own cgroup when systemd delegated it (Delegate=yes); otherwise (tests,
// scripts/demo) <own>/taskhub-<id>, where <id> is derived from the state directory so that the
// next start after a crash finds the same subtree.
//
// Threading: Manager and AttemptCgroup are used on the event-loop thread; probe() and the pure
// functions anywhere.
#ifndef TASKHUB_CGROUP_CGROUP_H
#define TASKHUB_CGROUP_CGROUP_H

#include "cgroup/resources.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace taskhub::cgroup {

// [daemon] containment: auto (cgroups when a writable cgroup2 exists, else process groups),
// cgroup (refuse to start without), process-group (never use cgroups).
enum class Containment { Auto, Cgroup, ProcessGroup };
const char* toString(Containment c) noexcept; // "auto" | "cgroup" | "process-group"

// What this machine offers, found without changing anything (taskhubd --check, taskhubctl
// validate, and Manager::setup()).
struct Probe {
    std::filesystem::path mount;       // the cgroup2 mount from mountinfo; empty: none
    std::string own;                   // this process's cgroup2 path ("/..."), from /proc/self/cgroup
    bool delegated = false;            // systemd delegated `own` to us (Delegate=yes)
    std::set<std::string> controllers; // cgroup.controllers of the would-be base
    std::string why_not;               // non-empty: no usable (writable) cgroup2, and why
    std::string hint;                  // how to get missing controllers (see Support::hint)
};
Probe probe(const std::filesystem::path& proc_self = "/proc/self");

// Identity of an attempt, as encoded in its cgroup's name.
struct AttemptKey {
    std::string run_id;
    std::string task_id;
    uint32_t attempt = 0;
    bool operator==(const AttemptKey&) const = default;
};
// The cgroup directory name of an attempt: unambiguous, at most 255 bytes, no '/', never "." or
// ".."; parseAttemptCgroupName() inverts it.
std::string attemptCgroupName(const AttemptKey& key);
//
// Form: "<attempt>.<task_id>.<run_id>", task and run id percent-encoded ("%2E" for '.', "%2F" for
// '/'; only [A-Za-z0-9_@:+=,-] stay as they are). When that is longer than 255 bytes (a run id of
// more than ~120 characters), "<attempt>.~<16 hex digits of a hash of task and run id>": that name
// identifies no attempt (parseAttemptCgroupName() returns nullopt), so recovery treats such a
// cgroup as an unknown leftover.
std::string attemptCgroupName(const AttemptKey& key);
std::optional<AttemptKey> parseAttemptCgroupName(const std::string& name);

// The subtree a daemon with this state directory uses outside systemd: "taskhub-" followed by 16
// hex digits of the FNV-1a 64-bit hash of the absolute, normalised state directory (without a
// trailing '/'). Test harnesses compute the same name to remove what a killed daemon left.
std::string subtreeName(const std::filesystem::path& state_dir);

// One attempt's cgroup. Destroying the object closes its descriptor; it does not remove the cgroup.
class AttemptCgroup {
public:
    virtual ~AttemptCgroup() = default;
    virtual const AttemptKey& key() const = 0;
    virtual const std::filesystem::path& path() const = 0; // absolute, in cgroupfs
    virtual std::string relativePath() const = 0;          // from the cgroup2 mount (for runners)
    // An O_RDONLY | O_DIRECTORY | O_CLOEXEC descriptor of the cgroup (for CLONE_INTO_CGROUP).
    virtual int fd() const = 0;
    virtual bool populated() const = 0;            // cgroup.events "populated 1"
    virtual std::vector<pid_t> pids() const = 0;   // cgroup.procs of it and its descendants
    virtual int signalAll(int sig) const = 0;      // sends sig to each of pids(); returns how many
    // cgroup.kill (SIGKILL to everything, atomically against forks); where the kernel lacks it
    // (before 5.14), SIGKILL to each of pids() until none is left. false: *err says why.
    virtual bool kill(std::string* err) = 0;
    virtual bool freeze(bool on, std::string* err) = 0; // writes cgroup.freeze
    virtual bool frozen() const = 0;                    // cgroup.events "frozen 1"
    virtual Usage usage() const = 0;                    // cpu.stat, memory.*, io.stat
    // Removes the cgroup and any cgroups a task created below it (deepest first). false when it
    // still holds processes or cannot be removed (*err says why).
    virtual bool remove(std::string* err) = 0;
};

class Manager {
public:
    struct Options {
        Containment containment = Containment::Auto;
        std::filesystem::path state_dir;           // names the subtree outside systemd
        std::filesystem::path proc_self = "/proc/self";
        // false: leave the calling process where it is (unit tests, which must not move the test
        // runner); <base>/daemon is still created, and shutdown() does not move anything back.
        bool move_self = true;
    };
    // Sets up the base (moving taskhubd into <base>/daemon and enabling every available
    // controller in the subtree_control files on the way to the attempts). nullptr with *why
    // when containment is process-group or no writable cgroup2 exists.
    static std::unique_ptr<Manager> setup(boost::asio::io_context& io, const Options& options,
                                          std::string* why);
    virtual ~Manager() = default;

    virtual Support support() const = 0;
    virtual const std::filesystem::path& mount() const = 0;
    virtual const std::filesystem::path& base() const = 0; // absolute, in cgroupfs
    // One line for `taskhubctl status`: base path and controllers.
    virtual std::string describe() const = 0;

    // Creates <base>/tasks/<name> (or, with runner_plugin, <base>/runners/<plugin>/tasks/<name>,
    // its cgroup.procs owned by the runner's user) and writes the limits. A cgroup of that name
    // left from before is emptied and reused. nullptr with *err naming the file that failed.
    virtual std::unique_ptr<AttemptCgroup> createAttempt(const AttemptKey& key, const Limits& limits,
                                                         const std::string& runner_plugin,
                                                         std::string* err) = 0;
    // The cgroup of an isolated plugin's runner, <base>/runners/<plugin>/runner, created with its
    // parent delegated to uid/gid (cgroup.procs, as systemd delegates to a unit's User=).
    // Returns the absolute path, or nullopt with *err.
    virtual std::optional<std::filesystem::path> runnerCgroup(const std::string& plugin, uid_t uid,
                                                              gid_t gid, std::string* err) = 0;

    // Calls done once, on the event loop, when the cgroup's cgroup.events says "populated 0"
    // (at once when it already does). The cgroup must outlive the wait, or cancelWaits() be
    // called for it first.
    virtual void whenEmpty(AttemptCgroup& cg, std::function<void()> done) = 0;
    // Calls done(true) once "frozen 1", or done(false) after timeout.
    virtual void whenFrozen(AttemptCgroup& cg, std::chrono::milliseconds timeout,
                            std::function<void(bool)> done) = 0;
    virtual void cancelWaits(AttemptCgroup& cg) = 0;

    // Recovery: every attempt cgroup left in tasks/ and runners/*/tasks/ (by a previous daemon
    // that crashed, or kept leftovers), opened so that it can be killed, measured and removed.
    // A cgroup whose name parseAttemptCgroupName() does not accept has an empty key (attempt 0,
    // empty run and task id): an unknown leftover.
    virtual std::vector<std::unique_ptr<AttemptCgroup>> existingAttempts() = 0;

    // At exit: removes empty attempt cgroups and, outside systemd, moves taskhubd back to the
    // cgroup it started in and removes the subtree when nothing is left in it.
    virtual void shutdown() = 0;
};

} // namespace taskhub::cgroup

#endif // TASKHUB_CGROUP_CGROUP_H
