// Store: opening the state database and closing it. The rest of the class lives in rooms:
// writer.cc (writes, the group-commit writer thread, durability), queries.cc (reads),
// retention.cc (history retention); schema.cc, open_checks.cc, rows.cc and connection.cc hold
// what they share through internal.h.
#include "store/internal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace taskhub::store {

std::unique_ptr<Store> Store::open(const std::filesystem::path& state_dir, const Options& options, std::string* err) {
    std::error_code ec;
    // Made 0700 here (mkdir's mode is the most the umask leaves); its parents as usual.
    const std::filesystem::path dir = state_dir.has_filename() ? state_dir : state_dir.parent_path();
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        *err = "cannot create state directory " + state_dir.string() + ": " + std::strerror(errno);
        return nullptr;
    }
    if (!makePrivate(state_dir, true, false, err)) return nullptr;
    const int lock_fd = lockStateDir(state_dir, err);
    if (lock_fd < 0) return nullptr;
    const auto path = state_dir / "taskhub.db";
    // Everything after the lock: on failure the lock is released below.
    auto opened = [&]() -> std::unique_ptr<Store> {
        // SQLite gives the -wal and -shm files the database file's mode.
        if (!makePrivate(path, false, true, err)) return nullptr;
        for (const char* suffix : {"-wal", "-shm", "-journal"}) {
            if (!makePrivate(path.string() + suffix, false, false, err)) return nullptr;
        }
        // Detects a damaged file before anything is written to it.
        if (std::string damage = databaseDamage(path); !damage.empty()) {
            *err = damagedMessage(path, damage);
            return nullptr;
        }
        sqlite3* writer_db = openConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err);
        if (!writer_db) return nullptr;
        auto writer = std::make_unique<Conn>(writer_db, path);
        // SQLite falls back to reading a file it may not write; such a connection never writes,
        // even once the file is writable again.
        if (sqlite3_db_readonly(writer->db(), "main") == 1) {
            *err = unwritableMessage(path, SQLITE_READONLY, 0) + "; taskhubd cannot start until it can write it";
            return nullptr;
        }
        std::string why;
        if (!exec(writer->db(), "PRAGMA journal_mode=WAL; PRAGMA cache_size=-16384;", path, &why) ||
            !exec(writer->db(), options.sync_normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", path,
                  &why) ||
            !migrate(writer->db(), path, &why)) {
            // A database that cannot be written (read-only file or file system, full disk) is
            // not damaged: say what to do about that instead.
            if (int code = sqlite3_errcode(writer->db()) & 0xff; isStorageError(code)) {
                *err = unwritableMessage(path, code, sqlite3_system_errno(writer->db())) +
                       "; taskhubd cannot start until it can write it";
                return nullptr;
            }
            *err = why + "\nThe state database was left untouched. If it is damaged, stop taskhubd, move " +
                   path.string() + " (and its -wal/-shm files) aside and start again to begin with an "
                   "empty history; `sqlite3 FILE .recover` may save the old one.";
            return nullptr;
        }
        if (!writer->prepare(err)) return nullptr;
        sqlite3* reader_db = openConnection(path, SQLITE_OPEN_READONLY, err);
        if (!reader_db) return nullptr;
        auto reader = std::make_unique<Conn>(reader_db, path);
        if (!reader->prepare(err)) return nullptr;
        std::unique_ptr<Store> store(new Store(std::move(writer), std::move(reader), path));
        auto& next = store->w_->stmt(kNextEventSeq);
        if (next.step() == SQLITE_ROW) store->next_event_seq_ = next.i64(0);
        next.finish();
        return store;
    }();
    if (!opened) {
        ::close(lock_fd);
        return nullptr;
    }
    opened->lock_fd_ = lock_fd;
    return opened;
}

Store::Store(std::unique_ptr<Conn> writer, std::unique_ptr<Conn> reader, std::filesystem::path path)
    : w_(std::move(writer)), r_(std::move(reader)), path_(std::move(path)) {}

Store::~Store() {
    if (writer_.joinable()) {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        writer_.join(); // writes what is still pending first
    } else {
        commit();
    }
    // The writer closes last: the last connection to close checkpoints the -wal file into the
    // database and removes it, so that a clean stop leaves no -wal (open() checks more after a
    // crash, when one is left).
    r_.reset();
    w_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

} // namespace taskhub::store
