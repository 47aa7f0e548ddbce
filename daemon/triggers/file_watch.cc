#include "triggers/file_watch.h"

#include <fcntl.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fnmatch.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "common/failpoint.h"
#include "common/inotify.h"
#include "common/log.h"
#include "triggers/beneath.h"

namespace taskhub::triggers {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using Kind = config::TriggerDef::Kind;
using SteadyClock = std::chrono::steady_clock;

namespace {

// FNV-1a, 64 bits, over the version's fields.
uint64_t versionHash(const std::string& key) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : key) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

struct Version {
    int64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t dev = 0; // not part of the recorded version key; compared when the file is handled
    bool operator==(const Version&) const = default;
    bool sameFile(const Version& o) const { return inode == o.inode && dev == o.dev; }
};

Version versionOf(const struct stat& st) {
    return Version{static_cast<int64_t>(st.st_ino), static_cast<int64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                   static_cast<int64_t>(st.st_dev)};
}

int64_t nowRealNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool endsWith(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

constexpr uint32_t kFileEvents = IN_CLOSE_WRITE | IN_MOVED_TO;
constexpr uint32_t kSelfEvents = IN_DELETE_SELF | IN_MOVE_SELF;

} // namespace

std::string FileWatch::versionKey(const std::string& path, int64_t inode, int64_t size, int64_t mtime_ns) {
    std::string key = path;
    for (int64_t v : {inode, size, mtime_ns}) {
        key += '\0';
        key += std::to_string(v);
    }
    return key;
}

std::string fileRunId(const std::string& workflow, const std::string& path, int64_t inode, int64_t size,
                      int64_t mtime_ns) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(versionHash(FileWatch::versionKey(path, inode, size, mtime_ns))));
    return workflow + "@file-" + hex;
}

bool ignoredFileName(const std::string& name, const std::string& pattern) {
    if (!name.empty() && name[0] == '.') return pattern.empty() || pattern[0] != '.';
    for (const char* suffix : {"~", ".tmp", ".part"}) {
        if (endsWith(name, suffix)) return !endsWith(pattern, suffix);
    }
    return false;
}

struct FileWatch::Impl {
    // A file trigger, by "<workflow>\n<describe()>" (stable across reloads that keep it).
    struct Trig {
        std::shared_ptr<const config::Workflow> wf;
        size_t index = 0;
        std::string state;
        const config::TriggerDef& def() const { return wf->triggers[index]; }
        // True when files directly in dir belong to this trigger.
        bool covers(const fs::path& dir) const {
            if (dir == def().watch) return true;
            if (!def().recursive) return false;
            const auto rel = dir.lexically_relative(def().watch);
            return !rel.empty() && *rel.begin() != "..";
        }
    };
    // A file waiting to be complete: it fires once its version is unchanged and its mtime at
    // least `wait` old.
    struct Pending {
        std::string trig;
        std::string path;
        Version version;
        std::chrono::nanoseconds wait{0};
        uint64_t generation = 0;
    };
    struct Watched {
        int wd = -1;
        int64_t inode = 0;
        uint32_t mask = 0;
    };
    // A watch root (by its configured path) and the directory it named when it was last watched.
    // Each handling opens the path again (rootFd) and uses the descriptor only if it is that
    // directory. The descriptor is held for the handling, not between handlings: a descriptor
    // held all the time would keep a removed directory's inode alive, and inotify reports
    // IN_DELETE_SELF only once the inode is freed, so a removed box would never be reported.
    struct Root {
        bool open = false;   // st is the directory being watched
        struct stat st {};   // its device and inode, through a descriptor opened with O_NOFOLLOW
        std::string problem; // when !open: why (the path is missing or a symlink)
        Refusal problem_kind = Refusal::None;
    };

    asio::io_context& io;
    Hooks hooks;
    common::Inotify inotify;
    std::string inotify_error;     // not empty: inotify could not be used and nothing is watched
    asio::steady_timer timer;      // the earliest pending file
    asio::steady_timer hook_timer; // test hook: the end of the simulated overflow
    bool stopped = false;
    bool resync_posted = false;
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);

    std::map<std::string, Trig> trigs;
    std::map<std::string, std::unordered_map<std::string, std::string>> seen; // workflow -> version key -> run
    std::map<std::string, std::vector<FileDrop>> paused_drops; // recorded as skipped while paused
    std::map<std::string, Watched> watched;                    // directory -> its watch
    std::map<std::string, Root> roots;                         // watch root path -> what it names
    std::unordered_map<int, std::string> wd_dir;
    std::unordered_map<std::string, Pending> pending; // trig + '\0' + path
    std::multimap<SteadyClock::time_point, std::pair<std::string, uint64_t>> due;
    uint64_t next_generation = 0;

    long overflow_after = -1; // test hook, see the header
    long events_read = 0;
    bool discarding = false;
    long handling_delay_ms = -1; // test hook, see the header

    // Mode of the descriptor walk: Auto, unless TASKHUB_TEST_NO_OPENAT2 (read in beneath.cc).
    static constexpr Resolver kResolver = Resolver::Auto;

    Impl(asio::io_context& i, Hooks h) : io(i), hooks(std::move(h)), inotify(i), timer(i), hook_timer(i) {
        if (!inotify.open(&inotify_error)) {
            spdlog::error("FILE_WATCH_FAILED {}; file drops are not watched (watch triggers do not fire until "
                          "taskhubd is restarted)",
                          inotify_error);
        }
        if (const char* n = std::getenv("TASKHUB_TEST_INOTIFY_OVERFLOW_AFTER")) {
            overflow_after = std::atol(n);
            spdlog::warn("FILE_WATCH_TEST_HOOK TASKHUB_TEST_INOTIFY_OVERFLOW_AFTER={}: an inotify overflow is "
                         "simulated after {} events",
                         n, overflow_after);
        }
        if (const char* n = std::getenv("TASKHUB_TEST_FILE_DROP_DELAY_MS")) {
            handling_delay_ms = std::max(0L, std::atol(n));
            spdlog::warn("FILE_WATCH_TEST_HOOK TASKHUB_TEST_FILE_DROP_DELAY_MS={}: each firing and each 'after' is "
                         "delayed by {} ms",
                         n, handling_delay_ms);
        }
        if (const char* n = std::getenv("TASKHUB_TEST_NO_OPENAT2"); n && *n && std::string(n) != "0") {
            spdlog::warn("FILE_WATCH_TEST_HOOK TASKHUB_TEST_NO_OPENAT2={}: dropped files are resolved by the "
                         "O_NOFOLLOW walk, as on a kernel without openat2",
                         n);
        }
        inotify.start({[this](const inotify_event& ev) { onEvent(ev); },
                       [this] {
                           if (!discarding) overflow();
                       },
                       {}});
    }

    std::unordered_map<std::string, std::string>& seenOf(const std::string& workflow) {
        auto it = seen.find(workflow);
        if (it != seen.end()) return it->second;
        auto& s = seen[workflow];
        if (hooks.recorded) {
            for (auto& [key, run] : hooks.recorded(workflow)) s.emplace(key, run);
        }
        return s;
    }

    // ---- the watched tree, through descriptors ----

    // Records the directory the watch root at path names now. The root itself may not be a
    // symbolic link: a link there is what a user who can write the parent directory would put in
    // place of the box to redirect the daemon.
    void openRoot(const std::string& path) {
        Root& r = roots[path];
        struct stat now {};
        Fd opened(::open(path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!opened || ::fstat(opened.get(), &st) != 0) {
            const int err = errno;
            r.open = false;
            if (::lstat(path.c_str(), &now) == 0 && S_ISLNK(now.st_mode)) {
                r.problem = path + " is a symbolic link; a watched directory must be the directory itself (name "
                                   "its target in 'watch')";
                r.problem_kind = Refusal::Symlink;
            } else {
                const bool missing = err == ENOENT || err == ENOTDIR;
                r.problem = path + (missing ? " does not exist" : ": " + std::string(std::strerror(err)));
                r.problem_kind = Refusal::Missing;
            }
            return;
        }
        if (r.open && sameFile(st, r.st)) return;
        if (r.open) {
            spdlog::warn("FILE_WATCH_ROOT_CHANGED {} was replaced by another directory (inode {} -> {}); files are "
                         "taken from the new one",
                         path, static_cast<int64_t>(r.st.st_ino), static_cast<int64_t>(st.st_ino));
        }
        r.open = true;
        r.st = st;
        r.problem.clear();
        r.problem_kind = Refusal::None;
    }

    // A descriptor of the watch root `watch`, opened now without following a final symlink, if
    // it is the directory being watched (same device and inode).
    Refusal rootFd(const fs::path& watch, Fd* out, std::string* why) {
        auto r = roots.find(watch.string());
        if (r == roots.end()) {
            *why = watch.string() + " is no longer watched";
            return Refusal::Missing;
        }
        if (!r->second.open) {
            *why = r->second.problem;
            return r->second.problem_kind;
        }
        Fd opened(::open(watch.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat now {};
        if (opened && ::fstat(opened.get(), &now) == 0 && sameFile(now, r->second.st)) {
            *out = std::move(opened);
            return Refusal::None;
        }
        if (!opened && errno == ENOENT) {
            *why = watch.string() + " does not exist any more";
            return Refusal::Missing;
        }
        *why = "the watched directory " + watch.string() +
               " is no longer the directory being watched (renamed, swapped or replaced by a link); nothing is "
               "taken through that path until it is watched again";
        return Refusal::Replaced;
    }

    // Looks at the dropped file at path beneath the watch root `watch`, through descriptors: the
    // root path must still name the directory being watched, and the file is resolved beneath a
    // descriptor of it (beneath.h). Refusal::Missing: it is gone (nothing to say).
    Refusal inspect(const fs::path& watch, const std::string& path, BeneathFile* f, std::string* why) {
        Fd root;
        if (Refusal r = rootFd(watch, &root, why); r != Refusal::None) return r;
        const auto rel = fs::path(path).lexically_relative(watch);
        if (rel.empty() || *rel.begin() == "..") {
            *why = path + " is not beneath " + watch.string();
            return Refusal::Escapes;
        }
        const Refusal res = openFileBeneath(root.get(), rel.string(), kResolver, f, why);
        if (res != Refusal::None) *why = "in " + watch.string() + ": " + *why;
        return res;
    }

    // A dropped file that is not acted on: said in the log, and in the run's events if it has one.
    void refuse(const std::string& workflow, const std::string& path, Refusal r, const std::string& why,
                const std::string& run_id = {}) {
        {
            logging::Context log_ctx({.workflow = workflow, .run_id = run_id});
            spdlog::warn("FILE_DROP_REFUSED {} {}: not acted on ({}): {}", workflow, path, refusalName(r), why);
        }
        if (!run_id.empty() && hooks.event) {
            hooks.event(run_id, "file_refused", path + " not acted on (" + refusalName(r) + "): " + why);
        }
    }

    // Test hook (TASKHUB_TEST_FILE_DROP_DELAY_MS): runs fn after the delay, saying what waits;
    // without it, runs fn now.
    void handleLater(const std::string& what, std::function<void()> fn) {
        if (handling_delay_ms < 0) {
            fn();
            return;
        }
        spdlog::warn("FILE_WATCH_TEST_HOOK {} in {} ms", what, handling_delay_ms);
        auto t = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(handling_delay_ms));
        t->async_wait([this, t, a = alive, fn = std::move(fn)](const boost::system::error_code& ec) {
            if (ec || !*a || stopped) return;
            fn();
        });
    }

    // ---- inotify ----

    void onEvent(const inotify_event& ev) {
        if (stopped) return;
        if (overflow_after >= 0 && ++events_read > overflow_after) startSimulatedOverflow();
        if (discarding) return;
        handle(ev);
    }

    void startSimulatedOverflow() {
        overflow_after = -1;
        discarding = true;
        spdlog::warn("FILE_WATCH_TEST_HOOK discarding inotify events for 200 ms");
        hook_timer.expires_after(std::chrono::milliseconds(200));
        hook_timer.async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopped) return;
            discarding = false;
            overflow();
        });
    }

    void handle(const inotify_event& ev) {
        if (ev.mask & (IN_IGNORED | kSelfEvents)) {
            requestResync();
            return;
        }
        auto dir = wd_dir.find(ev.wd);
        if (dir == wd_dir.end() || ev.len == 0) return;
        if (ev.mask & IN_ISDIR) {
            requestResync(); // a watched directory, or a directory on the way to one, appeared
            return;
        }
        if (ev.mask & kFileEvents) candidate(dir->second, ev.name, false);
    }

    void overflow() {
        spdlog::warn("FILE_WATCH_OVERFLOW the inotify queue overflowed; rescanning every watched directory");
        resync(false);
        for (auto& [key, t] : trigs) scanTree(key, false);
    }

    // ---- which directories are watched ----

    void requestResync() {
        if (resync_posted || stopped) return;
        resync_posted = true;
        asio::post(io, [this, a = alive] {
            if (!*a) return;
            resync_posted = false;
            if (!stopped) resync(true);
        });
    }

    // Watches what the triggers need now: each existing watched directory (and, recursive, its
    // subdirectories), or the nearest existing ancestor of a missing one. scan_new: files in
    // directories of a trigger that were not watched before are looked at (they appeared).
    void resync(bool scan_new) {
        if (!inotify.isOpen()) {
            for (auto& [key, t] : trigs) t.state = "not watched: " + inotify_error;
            return;
        }
        std::map<std::string, uint32_t> want;
        std::map<std::string, int64_t> inode_of;
        std::set<std::string> root_paths;
        for (auto& [key, t] : trigs) root_paths.insert(t.def().watch.string());
        for (auto it = roots.begin(); it != roots.end();) {
            it = root_paths.count(it->first) ? std::next(it) : roots.erase(it);
        }
        for (const auto& path : root_paths) openRoot(path);
        for (auto& [key, t] : trigs) {
            const auto& def = t.def();
            std::error_code ec;
            std::string state;
            const Root& root = roots.at(def.watch.string());
            if (root.open) {
                const uint32_t mask =
                    kFileEvents | kSelfEvents | IN_ONLYDIR | IN_DONT_FOLLOW | (def.recursive ? IN_CREATE : 0);
                want[def.watch.string()] |= mask;
                if (def.recursive) {
                    for (auto it = fs::recursive_directory_iterator(
                             def.watch, fs::directory_options::skip_permission_denied, ec);
                         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
                        if (it->is_directory(ec) && !it->is_symlink(ec)) want[it->path().string()] |= mask;
                    }
                }
                state = "watching";
            } else {
                const auto anc = common::nearestExistingParent(def.watch);
                want[anc.string()] |= IN_CREATE | IN_MOVED_TO | kSelfEvents | IN_ONLYDIR;
                state = root.problem_kind == Refusal::Symlink
                            ? "refused: " + root.problem + " (watching " + anc.string() + ")"
                            : "waiting: " + def.watch.string() + " does not exist (watching " + anc.string() + ")";
            }
            if (state != t.state) {
                if (state == "watching") {
                    spdlog::info("FILE_WATCH_WATCHING {}: watching {}{}", t.wf->name, def.watch.string(),
                                 def.recursive ? " and its subdirectories" : "");
                } else if (root.problem_kind == Refusal::Symlink) {
                    spdlog::warn("FILE_WATCH_ROOT_SYMLINK {}: {}", t.wf->name, state);
                } else {
                    spdlog::warn("FILE_WATCH_MISSING {}: {}", t.wf->name, state);
                }
                t.state = state;
            }
        }
        // Drop watches no longer wanted, or whose directory was replaced.
        for (auto it = watched.begin(); it != watched.end();) {
            struct stat st {};
            auto w = want.find(it->first);
            const bool same = w != want.end() && ::lstat(it->first.c_str(), &st) == 0 &&
                              static_cast<int64_t>(st.st_ino) == it->second.inode;
            if (!same) {
                inotify.removeWatch(it->second.wd);
                wd_dir.erase(it->second.wd);
                it = watched.erase(it);
            } else {
                ++it;
            }
        }
        std::vector<std::string> added;
        for (const auto& [dir, mask] : want) {
            auto it = watched.find(dir);
            if (it != watched.end() && it->second.mask == mask) continue;
            std::string why;
            TASKHUB_FAILPOINT("file_watch_add");
            const int wd = inotify.addWatch(dir, mask, &why);
            if (wd < 0) {
                spdlog::warn("FILE_WATCH_FAILED {}", why);
                // Removed between looking and watching (a tree being deleted): look again, so
                // that its nearest existing ancestor is watched instead and nothing is missed.
                if (struct stat st {}; ::lstat(dir.c_str(), &st) != 0 && errno == ENOENT) requestResync();
                continue;
            }
            struct stat st {};
            ::lstat(dir.c_str(), &st);
            if (it == watched.end()) added.push_back(dir);
            watched[dir] = Watched{wd, static_cast<int64_t>(st.st_ino), mask};
            wd_dir[wd] = dir;
        }
        // A directory made between looking and watching sent no event: look once more.
        if (!added.empty()) requestResync();
        if (!scan_new) return;
        for (const auto& dir : added) {
            for (auto& [key, t] : trigs) {
                if (t.covers(dir)) scanDir(key, dir, nullptr);
            }
        }
    }

    // ---- candidates ----

    // A file event (or a scan) saw dir/name: every trigger covering dir whose pattern matches
    // takes it.
    void candidate(const fs::path& dir, const std::string& name, bool scanned) {
        for (auto& [key, t] : trigs) {
            if (!t.covers(dir)) continue;
            const auto& def = t.def();
            if (::fnmatch(def.pattern.c_str(), name.c_str(), 0) != 0 || ignoredFileName(name, def.pattern)) continue;
            consider(key, (dir / name).string(), scanned);
        }
    }

    // The version of the file at path for trigger trig, looked at through descriptors; nullopt
    // when it is gone or refused (a refusal is logged).
    std::optional<Version> versionFor(const Trig& t, const std::string& path) {
        BeneathFile f;
        std::string why;
        const Refusal r = inspect(t.def().watch, path, &f, &why);
        if (r == Refusal::None) return versionOf(f.st);
        if (r != Refusal::Missing) refuse(t.wf->name, path, r, why);
        return std::nullopt;
    }

    void consider(const std::string& trig, const std::string& path, bool scanned) {
        const Trig& t = trigs.at(trig);
        const auto v = versionFor(t, path);
        if (!v) return;
        if (seenOf(t.wf->name).count(versionKey(path, v->inode, v->size, v->mtime_ns))) return;
        std::chrono::nanoseconds wait = t.def().settle;
        if (scanned) wait = std::max<std::chrono::nanoseconds>(wait, kScanSettle);
        if (wait.count() == 0) {
            fire(trig, path, *v, {});
            return;
        }
        Pending p{trig, path, *v, wait, ++next_generation};
        const std::string key = trig + '\0' + path;
        schedule(p);
        pending[key] = std::move(p);
    }

    void schedule(const Pending& p) {
        const auto age = std::chrono::nanoseconds(nowRealNs() - p.version.mtime_ns);
        auto left = p.wait - std::max(age, std::chrono::nanoseconds(0));
        left = std::clamp(left, std::chrono::nanoseconds(0), p.wait);
        due.emplace(SteadyClock::now() + left, std::make_pair(p.trig + '\0' + p.path, p.generation));
        arm();
    }

    void arm() {
        if (due.empty() || stopped) return;
        timer.expires_at(due.begin()->first);
        timer.async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopped) return;
            onTimer();
        });
    }

    void onTimer() {
        const auto now = SteadyClock::now();
        while (!due.empty() && due.begin()->first <= now) {
            auto [key, generation] = due.begin()->second;
            due.erase(due.begin());
            auto it = pending.find(key);
            if (it == pending.end() || it->second.generation != generation) continue;
            Pending p = std::move(it->second);
            pending.erase(it);
            auto t = trigs.find(p.trig);
            if (t == trigs.end()) continue; // the trigger was removed
            const auto v = versionFor(t->second, p.path);
            if (!v) continue; // gone before it was complete, or refused
            const auto age = std::chrono::nanoseconds(nowRealNs() - v->mtime_ns);
            if (*v == p.version && age >= p.wait) {
                fire(p.trig, p.path, *v, {});
                continue;
            }
            p.version = *v; // still changing: wait again
            p.generation = ++next_generation;
            schedule(p);
            pending[key] = std::move(p);
        }
        arm();
    }

    // ---- firing ----

    FileDrop makeDrop(const Trig& t, const std::string& path, const Version& v, std::string note) const {
        FileDrop d;
        d.workflow = t.wf;
        d.trigger = t.index;
        d.path = path;
        d.name = fs::path(path).filename().string();
        d.inode = v.inode;
        d.size = v.size;
        d.mtime_ns = v.mtime_ns;
        d.dev = v.dev;
        d.run_id = fileRunId(t.wf->name, path, v.inode, v.size, v.mtime_ns);
        d.note = std::move(note);
        return d;
    }

    void fire(const std::string& trig, const std::string& path, const Version& v, std::string note) {
        handleLater("firing " + path, [this, trig, path, v, note = std::move(note)]() mutable {
            fireNow(trig, path, v, std::move(note));
        });
    }

    void fireNow(const std::string& trig, const std::string& path, const Version& v, std::string note) {
        auto it = trigs.find(trig);
        if (it == trigs.end()) return; // the trigger was removed
        const Trig& t = it->second;
        auto& s = seenOf(t.wf->name);
        const std::string key = versionKey(path, v.inode, v.size, v.mtime_ns);
        if (s.count(key)) return;
        // Verified as late as possible, right before the run (and the path its tasks get) is made.
        BeneathFile f;
        std::string why;
        const Refusal r = inspect(t.def().watch, path, &f, &why);
        if (r == Refusal::Missing) return; // gone
        if (r != Refusal::None) {
            refuse(t.wf->name, path, r, why);
            return;
        }
        const Version now = versionOf(f.st);
        if (!now.sameFile(v)) {
            refuse(t.wf->name, path, Refusal::Replaced,
                   path + " is no longer the file that was dropped (inode " + std::to_string(v.inode) + ", now " +
                       std::to_string(now.inode) + "); a new file there fires on its own");
            return;
        }
        if (!(now == v)) {
            // Written again since it was looked at: its writer's close fires the new version.
            spdlog::debug("FILE_WATCH_CHANGED {} {}: changed before its run was created", t.wf->name, path);
            return;
        }
        FileDrop d = makeDrop(t, path, v, std::move(note));
        if (hooks.paused) d.skip_reason = hooks.paused(t.wf->name).value_or("");
        if (!hooks.fire(d)) return;
        s.emplace(key, d.run_id);
        if (!d.skip_reason.empty()) {
            paused_drops[t.wf->name].push_back(std::move(d));
            return;
        }
        whenSucceeded(t, std::move(d));
    }

    // `after` is applied once the run has succeeded.
    void whenSucceeded(const Trig& t, FileDrop d) {
        const auto& def = t.def();
        if (def.after == config::TriggerDef::After::Keep || !hooks.when_ended) return;
        const auto after = def.after;
        const auto after_dir = def.after_dir;
        const auto watch = def.watch;
        const std::string run_id = d.run_id;
        hooks.when_ended(run_id, [this, a = alive, d = std::move(d), after, after_dir, watch](bool succeeded) {
            if (!*a || !succeeded) return;
            handleLater("applying 'after' to " + d.path, [this, d, after, after_dir, watch] {
                applyAfter(d, after, after_dir, watch);
            });
        });
    }

    // The target directory of `after = "move:DIR"`. DIR is the workflow author's and trusted,
    // but if it lies inside the watched tree it is reached only beneath the root descriptor, never
    // through a path that a drop-box writer could redirect.
    Refusal openMoveTarget(const fs::path& watch, const fs::path& after_dir, Fd* out, std::string* why) {
        const auto rel = after_dir.lexically_relative(watch);
        if (!rel.empty() && *rel.begin() != "..") {
            Fd root;
            if (Refusal r = rootFd(watch, &root, why); r != Refusal::None) return r;
            const Refusal res = openDirBeneath(root.get(), rel.string(), kResolver, out, why);
            if (res != Refusal::None) *why = "in " + watch.string() + ": " + *why;
            return res;
        }
        Fd dir(::open(after_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!dir) {
            const int err = errno;
            const bool missing = err == ENOENT || err == ENOTDIR;
            *why = after_dir.string() + (missing ? " does not exist" : ": " + std::string(std::strerror(err)));
            return missing ? Refusal::Missing : Refusal::Error;
        }
        *out = std::move(dir);
        return Refusal::None;
    }

    void applyAfter(const FileDrop& d, config::TriggerDef::After after, const fs::path& after_dir,
                    const fs::path& watch) {
        const bool del = after == config::TriggerDef::After::Delete;
        auto report = [&](bool ok, const std::string& detail) {
            if (ok) {
                spdlog::info("FILE_AFTER {} {}: {}", d.workflow->name, d.run_id, detail);
            } else {
                spdlog::warn("FILE_AFTER_FAILED {} {}: {}", d.workflow->name, d.run_id, detail);
            }
            if (hooks.event) hooks.event(d.run_id, ok ? "file_after" : "file_after_failed", detail);
        };
        BeneathFile f;
        std::string why;
        const Refusal r = inspect(watch, d.path, &f, &why);
        if (r == Refusal::Missing) {
            report(false, d.path + " is gone; nothing to " + (del ? "delete" : "move"));
            return;
        }
        const auto refused = [&](Refusal kind, const std::string& reason) {
            const std::string detail = d.path + " is not " + (del ? "deleted" : "moved") + " (" + refusalName(kind) +
                                       "): " + reason + "; left in place";
            spdlog::warn("FILE_AFTER_REFUSED {} {}: {}", d.workflow->name, d.run_id, detail);
            if (hooks.event) hooks.event(d.run_id, "file_after_refused", detail);
        };
        if (r != Refusal::None) {
            refused(r, why);
            return;
        }
        const Version now = versionOf(f.st);
        if (!now.sameFile(Version{d.inode, d.size, d.mtime_ns, d.dev})) {
            refused(Refusal::Replaced, d.path + " is no longer the file its run was created for (inode " +
                                           std::to_string(d.inode) + ", now " + std::to_string(now.inode) + ")");
            return;
        }
        if (!(now == Version{d.inode, d.size, d.mtime_ns, d.dev})) {
            report(false, d.path + " changed since its run was created; left in place (the new version fires "
                                   "a run of its own)");
            return;
        }
        // Both act on the name in the directory descriptor just checked: a swap of any directory
        // above it since then cannot redirect them.
        if (del) {
            if (::unlinkat(f.dir.get(), f.leaf.c_str(), 0) == 0) {
                report(true, "deleted " + d.path);
            } else {
                report(false, "cannot delete " + d.path + ": " + std::strerror(errno));
            }
            return;
        }
        Fd target;
        const Refusal tr = openMoveTarget(watch, after_dir, &target, &why);
        if (tr == Refusal::Missing) {
            report(false, "cannot move " + d.path + ": the target directory " + after_dir.string() +
                              " does not exist (create it, or change 'after'); the file is left in place");
            return;
        }
        if (tr != Refusal::None) {
            refused(tr, "the target directory " + after_dir.string() + " cannot be used: " + why);
            return;
        }
        const auto target_path = (after_dir / f.leaf).string();
        if (::renameat(f.dir.get(), f.leaf.c_str(), target.get(), f.leaf.c_str()) == 0) {
            report(true, "moved " + d.path + " to " + target_path);
        } else {
            report(false, "cannot move " + d.path + " to " + target_path + ": " + std::strerror(errno) +
                              (errno == EXDEV ? " (the target must be on the same file system)" : ""));
        }
    }

    // ---- scans ----

    // The candidate files directly in dir for trigger trig. With out, collects them; without,
    // hands each to consider() as scanned.
    void scanDir(const std::string& trig, const fs::path& dir, std::vector<std::pair<std::string, Version>>* out) {
        const auto& t = trigs.at(trig);
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (::fnmatch(t.def().pattern.c_str(), name.c_str(), 0) != 0 || ignoredFileName(name, t.def().pattern)) {
                continue;
            }
            if (!out) {
                consider(trig, it->path().string(), true);
            } else if (auto v = versionFor(t, it->path().string())) {
                out->emplace_back(it->path().string(), *v);
            }
        }
    }

    void scanTree(const std::string& trig, bool catchup) {
        const auto& t = trigs.at(trig);
        std::vector<fs::path> dirs;
        for (const auto& [dir, w] : watched) {
            if (t.covers(dir)) dirs.push_back(dir);
        }
        if (!catchup) {
            for (const auto& dir : dirs) scanDir(trig, dir, nullptr);
            return;
        }
        std::vector<std::pair<std::string, Version>> files;
        for (const auto& dir : dirs) scanDir(trig, dir, &files);
        catchUp(trig, std::move(files));
    }

    // Files found at start (or when a trigger is new) that no run has recorded: the workflow's
    // catch-up policy decides which run.
    void catchUp(const std::string& trig, std::vector<std::pair<std::string, Version>> files) {
        const Trig& t = trigs.at(trig);
        const auto& wf = *t.wf;
        auto& s = seenOf(wf.name);
        const auto paused = hooks.paused ? hooks.paused(wf.name) : std::nullopt;
        std::vector<std::pair<std::string, Version>> fresh;
        for (auto& f : files) {
            auto known = s.find(versionKey(f.first, f.second.inode, f.second.size, f.second.mtime_ns));
            if (known == s.end()) {
                fresh.push_back(std::move(f));
            } else if (paused && hooks.paused_skip && hooks.paused_skip(known->second)) {
                // Recorded as skipped during a pause that outlived a restart: resume decides.
                paused_drops[wf.name].push_back(makeDrop(t, f.first, f.second, {}));
            }
        }
        if (fresh.empty()) return;
        std::sort(fresh.begin(), fresh.end(), [](const auto& a, const auto& b) {
            return a.second.mtime_ns != b.second.mtime_ns ? a.second.mtime_ns < b.second.mtime_ns : a.first < b.first;
        });
        const int64_t window_start = nowRealNs() - std::chrono::nanoseconds(wf.catchup_window).count();
        std::vector<std::pair<std::string, Version>> run;
        size_t passed = 0;
        for (size_t i = 0; i < fresh.size(); ++i) {
            const bool chosen = fresh[i].second.mtime_ns >= window_start &&
                                (wf.file_catchup == config::Catchup::All ||
                                 (wf.file_catchup == config::Catchup::Latest && i + 1 == fresh.size()));
            if (chosen) {
                run.push_back(fresh[i]);
                continue;
            }
            ++passed;
            FileDrop d = makeDrop(t, fresh[i].first, fresh[i].second, {});
            d.run_id.clear();
            if (hooks.pass_over) hooks.pass_over(d);
            s.emplace(versionKey(d.path, d.inode, d.size, d.mtime_ns), "");
        }
        spdlog::info("FILE_WATCH_CATCHUP {}: {} file(s) in {} not seen before; running {}, passing over {} "
                     "(catchup = {}, catchup_window = {}s)",
                     wf.name, fresh.size(), t.def().watch.string(), run.size(), passed,
                     config::toString(wf.file_catchup), wf.catchup_window.count());
        for (auto& [path, v] : run) consider(trig, path, true);
    }

    // ---- workflows ----

    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
        std::map<std::string, Trig> next;
        std::vector<std::string> fresh;
        for (const auto& [name, wf] : wfs) {
            for (size_t i = 0; i < wf->triggers.size(); ++i) {
                if (wf->triggers[i].kind != Kind::File) continue;
                const std::string key = name + "\n" + wf->triggers[i].describe();
                if (next.count(key)) continue; // the same trigger twice: one watch
                auto old = trigs.find(key);
                Trig t{wf, i, old != trigs.end() ? old->second.state : std::string{}};
                if (old == trigs.end()) fresh.push_back(key);
                next.emplace(key, std::move(t));
            }
        }
        trigs = std::move(next);
        for (auto it = seen.begin(); it != seen.end();) {
            it = wfs.count(it->first) ? std::next(it) : seen.erase(it); // reloaded from the store if it returns
        }
        resync(false);
        for (const auto& key : fresh) scanTree(key, true);
    }

    void resume(const std::string& workflow) {
        auto it = paused_drops.find(workflow);
        if (it == paused_drops.end()) return;
        std::vector<FileDrop> drops = std::move(it->second);
        paused_drops.erase(it);
        std::sort(drops.begin(), drops.end(), [](const FileDrop& a, const FileDrop& b) {
            return a.mtime_ns != b.mtime_ns ? a.mtime_ns < b.mtime_ns : a.path < b.path;
        });
        // Only versions still in place, of triggers still loaded, can run: looked at through
        // descriptors (a refused file stays skipped, with an event saying why).
        std::vector<std::pair<const Trig*, FileDrop>> live;
        for (auto& d : drops) {
            for (const auto& [key, t] : trigs) {
                if (t.wf->name != workflow || t.index != d.trigger) continue;
                BeneathFile f;
                std::string why;
                const Refusal r = inspect(t.def().watch, d.path, &f, &why);
                if (r != Refusal::None) {
                    if (r != Refusal::Missing) refuse(workflow, d.path, r, why, d.run_id);
                    break;
                }
                const Version v = versionOf(f.st);
                if (!(Version{v.inode, v.size, v.mtime_ns} == Version{d.inode, d.size, d.mtime_ns})) break;
                d.workflow = t.wf;
                d.dev = v.dev;
                live.emplace_back(&t, std::move(d));
                break;
            }
        }
        if (live.empty()) return;
        const auto policy = live.front().second.workflow->file_catchup;
        size_t first = policy == config::Catchup::All ? 0 : policy == config::Catchup::Latest ? live.size() - 1 : live.size();
        spdlog::info("FILE_WATCH_RESUMED {}: {} file(s) arrived while paused; running {} (catchup = {})", workflow,
                     live.size(), live.size() - first, config::toString(policy));
        for (size_t i = first; i < live.size(); ++i) {
            auto& [t, d] = live[i];
            d.skip_reason.clear();
            d.note = "catch-up of a file that arrived while the workflow was paused";
            if (hooks.fire(d)) whenSucceeded(*t, std::move(d));
        }
    }
};

FileWatch::FileWatch(asio::io_context& io, Hooks hooks) : impl_(std::make_unique<Impl>(io, std::move(hooks))) {}

FileWatch::~FileWatch() { *impl_->alive = false; }

void FileWatch::setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
    impl_->setWorkflows(wfs);
}

void FileWatch::resume(const std::string& workflow) { impl_->resume(workflow); }

void FileWatch::stop() {
    auto& im = *impl_;
    im.stopped = true;
    im.timer.cancel();
    im.hook_timer.cancel();
    im.inotify.stop();
}

std::vector<std::string> FileWatch::states(const std::string& workflow) const {
    std::vector<std::string> out;
    for (const auto& [key, t] : impl_->trigs) {
        if (t.wf->name != workflow) continue;
        if (out.size() < t.wf->triggers.size()) out.resize(t.wf->triggers.size());
        out[t.index] = t.state;
    }
    return out;
}

} // namespace taskhub::triggers
