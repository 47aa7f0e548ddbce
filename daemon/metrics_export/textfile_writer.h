// [metrics] textfile: the metrics, in the Prometheus text format 0.0.4 that node_exporter's
// textfile collector reads, written to one file every textfile_interval, once at start and once
// at shutdown (docs/operations.md, "Prometheus").
//
// Each write is atomic for a reader of the file: the text goes to FILE.tmp.PID in the same
// directory (created afresh, O_EXCL | O_NOFOLLOW, mode 0644), is fsync'ed, and is renamed over
// FILE. A reader sees the old file or the new one, never a partial one, and the collector, which
// reads only *.prom, never reads the temporary file. A failed write leaves FILE as it was and
// removes its temporary file. Failures are logged once per change of the reason
// (METRICS_TEXTFILE_FAILED), a success after them once (METRICS_TEXTFILE_RECOVERED), and
// health() says the last write time or the failure, for `taskhubctl status`.
//
// Threading: construct, start(), stop() and health() on the event-loop thread, where the text is
// rendered (render is called there). The file is written on a thread of this writer's own, so a
// slow disk (fsync) never holds the loop; when it falls behind, only the newest text waits.
#ifndef TASKHUB_METRICS_EXPORT_TEXTFILE_WRITER_H
#define TASKHUB_METRICS_EXPORT_TEXTFILE_WRITER_H

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace taskhub::metrics_export {

struct TextfileHealth {
    std::string path;
    int64_t written_ms = 0;     // the last successful write (system clock); 0: none yet
    std::string error;          // why the last write failed; "" when it succeeded (or none yet)
    int64_t error_since_ms = 0; // when writes began to fail (0 while they succeed)
};

// Writes text to file atomically as described above. false: *err names the file and the step
// that failed, the system's reason and what would make it work.
bool writeFileAtomically(const std::filesystem::path& file, const std::string& text, std::string* err);

class TextfileWriter {
public:
    // render returns the OpenMetrics text (metrics::Metrics::render()); it is converted to the
    // text format here.
    TextfileWriter(boost::asio::io_context& io, std::filesystem::path file, std::chrono::milliseconds interval,
                   std::function<std::string()> render);
    ~TextfileWriter(); // stops the writer thread (without a last write; call stop() for that)
    TextfileWriter(const TextfileWriter&) = delete;
    TextfileWriter& operator=(const TextfileWriter&) = delete;

    // Writes now (on the writer thread) and then every interval.
    void start();
    // No more periodic writes; writes the text of now on the calling thread, after any write in
    // progress, and waits for it (shutdown: the file keeps the daemon's last numbers).
    void stop();

    TextfileHealth health() const;

private:
    struct Shared;
    void tick();
    void arm();
    void recordOutcome(bool ok, const std::string& err, int64_t at_ms);

    boost::asio::io_context& io_;
    std::filesystem::path file_;
    std::chrono::milliseconds interval_;
    std::function<std::string()> render_;
    std::shared_ptr<Shared> shared_; // with the writer thread and the outcomes it posts
    TextfileHealth health_;
    bool stopped_ = false;
};

} // namespace taskhub::metrics_export

#endif // TASKHUB_METRICS_EXPORT_TEXTFILE_WRITER_H
