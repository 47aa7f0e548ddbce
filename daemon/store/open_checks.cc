// What open() checks before it writes anything: the state directory and files are private to
// taskhubd, one daemon holds the directory, and the database file is a sound TaskHub database.
#include "store/internal.h"

#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace taskhub::store {

// The state directory and the database files are private to the daemon: they hold every run's
// params and outputs, which others may only see through the control socket's access rules.
// Opens `path` (a directory or a file of the state directory; a missing file is created when
// `create`) and takes away every permission of group and others, logging when there were any, so
// that the result does not depend on the umask or on how an older taskhubd left it.
bool makePrivate(const std::filesystem::path& path, bool directory, bool create, std::string* err) {
    // The state directory itself may be a symbolic link the operator made; files in it may not.
    const int flags = O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    int fd = create ? ::open(path.c_str(), flags | O_CREAT, 0600) : ::open(path.c_str(), flags);
    if (fd < 0) {
        if (errno == ENOENT && !create) return true;
        *err = "cannot open " + path.string() + " to make it private to taskhubd: " + std::strerror(errno) +
               (errno == ELOOP ? " (it is a symbolic link: keep the state files themselves in state_dir)" : "");
        return false;
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
        const mode_t want = st.st_mode & 0700;
        if (::fchmod(fd, want) != 0) {
            const int errno_chmod = errno;
            ::close(fd);
            *err = "cannot make " + path.string() + " private to taskhubd (chmod go= " + path.string() +
                   "): " + std::strerror(errno_chmod);
            return false;
        }
        char from[8], to[8];
        std::snprintf(from, sizeof from, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        std::snprintf(to, sizeof to, "%04o", static_cast<unsigned>(want));
        spdlog::warn("STORE_PERMISSIONS_FIXED {} had mode {}, now {}: the state holds every run's params and "
                     "outputs, only taskhubd may read it",
                     path.string(), from, to);
    }
    ::close(fd);
    return true;
}

// One daemon per state directory: a second one must not touch the first one's runs.
int lockStateDir(const std::filesystem::path& state_dir, std::string* err) {
    auto lock_path = state_dir / "taskhub.lock";
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = "cannot open " + lock_path.string() + ": " + std::strerror(errno);
        return -1;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        *err = "state directory " + state_dir.string() + " is in use by another taskhubd (pid " + pid +
               "); stop it first or give this one its own state_dir";
        return -1;
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    // The pid is informational only; the lock itself is what counts.
    if (::ftruncate(fd, 0) == 0) {
        [[maybe_unused]] ssize_t n = ::pwrite(fd, pid.data(), pid.size(), 0);
    }
    return fd;
}

namespace {

off_t fileSize(const std::filesystem::path& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

uint32_t bigEndian32(const unsigned char* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// What is wrong with the database file at path, from its size and its SQLite header, or "".
// *after_crash: a -wal file with frames lies beside it, so the last process did not close the
// database (or something put a stray -wal there).
std::string headerDamage(const std::filesystem::path& path, bool* after_crash) {
    const off_t size = fileSize(path);
    const off_t wal = fileSize(path.string() + "-wal");
    *after_crash = wal > 0;
    if (size <= 0) {
        // Missing or empty: a new database (SQLite leaves an empty file when the process dies
        // before its first commit: nothing can have been lost). A -wal with frames beside it
        // cannot be its own, and replaying it would make some other database's pages ours.
        if (wal > 0) return "the database file is empty but a " + std::to_string(wal) + "-byte -wal file lies beside it";
        return "";
    }
    unsigned char h[100];
    ssize_t n = -1;
    if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
        n = ::pread(fd, h, sizeof h, 0);
        ::close(fd);
    }
    if (n < 0) return ""; // unreadable: SQLite says why when it opens it
    if (n < static_cast<ssize_t>(sizeof h)) {
        return "file is not a database: " + std::to_string(size) + " bytes, shorter than a SQLite header";
    }
    if (std::memcmp(h, "SQLite format 3", 16) != 0) return "file is not a database: it does not start with the SQLite header";
    uint32_t page = uint32_t{h[16]} << 8 | h[17];
    if (page == 1) page = 65536;
    if (page < 512 || (page & (page - 1)) != 0) return "its header is damaged (page size " + std::to_string(page) + ")";
    if (size % page != 0) {
        return "it is truncated: " + std::to_string(size) + " bytes is not a whole number of " + std::to_string(page) +
               "-byte pages";
    }
    // The header's page count is valid when its change counter matches "version valid for"; a
    // -wal being replayed may still hold pages beyond the end of the file.
    const uint32_t pages = bigEndian32(h + 28);
    const bool count_valid = pages != 0 && bigEndian32(h + 24) == bigEndian32(h + 92);
    if (count_valid && wal <= 0 && static_cast<uint64_t>(size) / page < pages) {
        return "it is truncated: its header says " + std::to_string(pages) + " pages, the file holds " +
               std::to_string(size / page);
    }
    return "";
}

} // namespace

// What is wrong with the database file at path, or "" when nothing is seen. Reads only, on a
// connection of its own that is read-only: closing a read-write connection would checkpoint a
// -wal file into the database, the very change a damaged database must be kept from.
std::string databaseDamage(const std::filesystem::path& path) {
    bool after_crash = false;
    if (std::string d = headerDamage(path, &after_crash); !d.empty()) return d;
    if (fileSize(path) <= 0) return "";
    // A read-only connection to a WAL database makes an empty -wal and a -shm: the ones it made
    // are removed again after the check.
    const std::string wal = path.string() + "-wal";
    const std::string shm = path.string() + "-shm";
    const bool had_wal = fileSize(wal) >= 0;
    const bool had_shm = fileSize(shm) >= 0;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        std::string m = db ? sqlite3_errmsg(db) : "cannot open it";
        sqlite3_close(db);
        return m;
    }
    sqlite3_busy_timeout(db, 5000);
    // PRAGMA quick_check reads every page: 0.23 s for 100,000 runs (133 MB) from the page cache,
    // but 2.5 s from a cold disk (after a reboot or a power loss), more than the whole start-up
    // may take. So it runs for at most kQuickCheckBudget: a small database is checked whole, a
    // large one as far as the budget goes (what is left is checked by SQLite as it is read).
    // The header, the schema and, after a crash, the -wal (its pages must leave a TaskHub
    // database) are always checked.
    constexpr auto kQuickCheckBudget = std::chrono::milliseconds(500);
    std::string out;
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, nullptr);
    if (rc == SQLITE_OK) {
        // The check is one step of one statement (a progress handler is not called within it):
        // a watchdog interrupts it when the budget is spent.
        std::mutex m;
        std::condition_variable cv;
        bool finished = false;
        std::thread watchdog([&] {
            std::unique_lock lock(m);
            if (!cv.wait_for(lock, kQuickCheckBudget, [&] { return finished; })) sqlite3_interrupt(db);
        });
        rc = sqlite3_step(s);
        {
            std::lock_guard lock(m);
            finished = true;
        }
        cv.notify_one();
        watchdog.join(); // before finalize(), which clears an interrupt that came late
        if (rc == SQLITE_ROW) {
            auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
            if (std::string v = p ? p : ""; v != "ok") out = v;
        }
    }
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_INTERRUPT) out = sqlite3_errmsg(db);
    if (rc == SQLITE_INTERRUPT) {
        spdlog::info("STORE_CHECKED {}: PRAGMA quick_check stopped after {} ms (a large database or a cold disk); "
                     "the rest is checked as it is read",
                     path.string(), kQuickCheckBudget.count());
    }
    sqlite3_finalize(s);
    if (out.empty() && after_crash) {
        // A -wal from another database would make its pages ours when replayed.
        std::string why;
        const auto app = pragmaInt(db, "PRAGMA application_id", path, &why);
        const auto tables = app ? pragmaInt(db, "SELECT count(*) FROM sqlite_master", path, &why) : std::nullopt;
        if (!tables) {
            out = why;
        } else if (*app != kApplicationId && (*app != 0 || *tables != 0)) {
            out = "its -wal file does not belong to it: with it, the database is not a TaskHub state database "
                  "(application_id " + std::to_string(*app) + ")";
        }
    }
    sqlite3_close(db);
    if (!had_wal && fileSize(wal) == 0) ::unlink(wal.c_str());
    if (!had_shm) ::unlink(shm.c_str());
    // quick_check's report names the schema and takes lines; one line reads better in a log.
    if (out.rfind("*** in database main ***", 0) == 0) out.erase(0, std::strlen("*** in database main ***"));
    for (auto& c : out) {
        if (c == '\n') c = ' ';
    }
    while (!out.empty() && out.front() == ' ') out.erase(0, 1);
    return out;
}

// The message a damaged database is refused with: what is wrong and what to do.
std::string damagedMessage(const std::filesystem::path& path, const std::string& damage) {
    std::string mv;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        const std::string f = path.string() + suffix;
        if (fileSize(f) >= 0) mv += (mv.empty() ? "" : "; ") + std::string("mv ") + f + " " + f + ".damaged";
    }
    return path.string() + " is damaged (" + damage + "); taskhubd will not modify it. Restore it from a backup, "
           "or move it aside to start with an empty history: " + mv +
           " (`sqlite3 " + path.string() + ".damaged .recover` may save some of it)";
}

std::string Store::checkDatabase(const std::filesystem::path& state_dir) {
    const auto path = state_dir / "taskhub.db";
    std::string damage = databaseDamage(path);
    return damage.empty() ? "" : damagedMessage(path, damage);
}

} // namespace taskhub::store
