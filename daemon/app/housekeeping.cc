#include "app/housekeeping.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <vector>

#include "common/time_util.h"
#include "config/workflow.h"
#include "pool/worker_pool.h"
#include "store/store.h"

namespace taskhub::app {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// Whether the file a version names is still on disk as that version (same inode, size, mtime).
bool stillOnDisk(const store::Store::FileVersion& v) {
    struct stat st{};
    if (::stat(v.path.c_str(), &st) != 0) return false;
    const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    return static_cast<int64_t>(st.st_ino) == v.inode && static_cast<int64_t>(st.st_size) == v.size &&
           mtime_ns == v.mtime_ns;
}

} // namespace

struct Housekeeping::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::io_context& io, store::Store& s, pool::WorkerPool& p, fs::path dir, config::HistorySettings h,
         WorkflowLookup l)
        : timer(io), store(s), pool(p), log_dir(std::move(dir)), history(std::move(h)), lookup(std::move(l)) {}

    asio::steady_timer timer;
    store::Store& store;
    pool::WorkerPool& pool;
    fs::path log_dir;
    config::HistorySettings history;
    WorkflowLookup lookup;
    bool stopped = false;
    store::Store::PruneScan scan;
    store::Store::FileVersion version_cursor;

    store::Store::Retention rules(const std::string& workflow) const {
        store::Store::Retention r{history.keep_runs, history.keep_days};
        if (auto wf = lookup ? lookup(workflow) : nullptr) {
            if (wf->keep_runs) r.keep_runs = wf->keep_runs;
            if (wf->keep_days) r.keep_days = wf->keep_days;
        }
        return r;
    }

    void schedule(std::chrono::milliseconds after) {
        if (stopped) return;
        timer.expires_after(after);
        timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
            if (!ec && !self->stopped) self->pass();
        });
    }

    void pass() {
        scan.now_ms = nowMillis();
        scan.min_age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(kMinAge).count();
        scan.max_runs = kBatch;
        auto ids = store.prunableRuns([this](const std::string& wf) { return rules(wf); }, scan);

        std::vector<store::Store::FileVersion> forget;
        for (auto& v : store.orphanFileVersions(kBatch, &version_cursor)) {
            if (!stillOnDisk(v)) forget.push_back(std::move(v));
        }
        const size_t versions = forget.size();
        store.forgetFileVersions(std::move(forget));
        store.pruneRuns(ids);
        if (ids.empty() && versions == 0) {
            schedule(kInterval);
            return;
        }
        const bool full = ids.size() == kBatch;
        const uint64_t mark = store.writeMark();
        store.whenDurable(mark, [self = shared_from_this(), ids = std::move(ids), versions, full](bool ok) {
            self->pruned(ids, versions, ok, full);
        });
    }

    // The deletions of a pass are durable (ok) or failed: remove the logs of the runs that are gone.
    void pruned(const std::vector<std::string>& ids, size_t versions, bool ok, bool full) {
        if (stopped) return;
        std::vector<fs::path> dirs;
        if (ok) {
            for (const auto& id : ids) {
                // Top-level run ids only ("<workflow>@..."): never a path that leaves log_dir.
                if (id.empty() || id.find('/') != std::string::npos || id == "." || id == "..") continue;
                if (!store.runExists(id)) dirs.push_back(log_dir / id);
            }
        } else {
            spdlog::warn("HISTORY_PRUNE_FAILED the deletion of {} run(s) was not committed ({}); tried again later",
                         ids.size(), store.lastError());
        }
        if (!dirs.empty() || versions > 0) {
            spdlog::info("HISTORY_PRUNED {} run(s) deleted with their child runs, tasks, events and logs; {} file "
                         "version(s) forgotten",
                         dirs.size(), versions);
        }
        if (!dirs.empty()) {
            pool.post([dirs = std::move(dirs)] {
                for (const auto& d : dirs) {
                    std::error_code ec;
                    fs::remove_all(d, ec);
                    if (ec) spdlog::warn("HISTORY_LOG_NOT_REMOVED {}: {}", d.string(), ec.message());
                }
            });
        }
        schedule(ok && full ? std::chrono::milliseconds(0) : std::chrono::milliseconds(kInterval));
    }
};

Housekeeping::Housekeeping(asio::io_context& io, store::Store& store, pool::WorkerPool& pool, fs::path log_dir,
                           config::HistorySettings history, WorkflowLookup lookup)
    : impl_(std::make_shared<Impl>(io, store, pool, std::move(log_dir), std::move(history), std::move(lookup))) {
    impl_->schedule(kInterval);
}

Housekeeping::~Housekeeping() { stop(); }

void Housekeeping::stop() {
    impl_->stopped = true;
    impl_->timer.cancel();
}

} // namespace taskhub::app
