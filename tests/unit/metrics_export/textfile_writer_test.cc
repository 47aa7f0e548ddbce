// The textfile: atomic writes, their failures and recovery.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <fstream>
#include <sstream>

#include <sys/stat.h>
#include <unistd.h>

#include "metrics_export/textfile_writer.h"
#include "test_support.h"

using namespace taskhub::metrics_export;
using taskhub::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs the loop until pred() holds (at most ~10 s).
template <typename Pred>
bool runUntil(boost::asio::io_context& io, Pred pred) {
    for (int i = 0; i < 1000 && !pred(); ++i) {
        io.restart();
        io.run_for(std::chrono::milliseconds(10));
    }
    return pred();
}

size_t entries(const fs::path& dir) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
    return n;
}

} // namespace

TEST_CASE("a textfile is written whole, mode 0644 whatever the umask, with no temporary file left", "[textfile]") {
    TempDir dir;
    const auto file = dir.path / "taskhub.prom";
    const mode_t old = ::umask(077);
    std::string err;
    const bool ok = writeFileAtomically(file, "a 1\n", &err);
    ::umask(old);
    REQUIRE(ok);
    CHECK(slurp(file) == "a 1\n");
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    REQUIRE(writeFileAtomically(file, "a 2\n", &err));
    CHECK(slurp(file) == "a 2\n");
    CHECK(entries(dir.path) == 1);
}

TEST_CASE("a link planted at the temporary name is not followed", "[textfile]") {
    TempDir dir;
    const auto victim = dir.write("victim", "precious\n");
    const auto file = dir.path / "taskhub.prom";
    const auto tmp = file.string() + ".tmp." + std::to_string(getpid());
    fs::create_symlink(victim, tmp);
    std::string err;
    REQUIRE(writeFileAtomically(file, "a 1\n", &err));
    CHECK(slurp(victim) == "precious\n");
    CHECK(slurp(file) == "a 1\n");
    CHECK_FALSE(fs::exists(fs::symlink_status(tmp)));
}

TEST_CASE("a textfile that cannot be written says which file, why and what would help", "[textfile]") {
    TempDir dir;
    std::string err;
    CHECK_FALSE(writeFileAtomically(dir.path / "missing" / "taskhub.prom", "a 1\n", &err));
    CHECK(err == "cannot create " + (dir.path / "missing" / "taskhub.prom").string() + ".tmp." +
                     std::to_string(getpid()) + ": No such file or directory (taskhubd writes " +
                     (dir.path / "missing" / "taskhub.prom").string() + ".tmp." + std::to_string(getpid()) +
                     " and renames it over " + (dir.path / "missing" / "taskhub.prom").string() +
                     ": the directory must exist and be writable by taskhubd)");
    // The target is a directory: the rename fails, and the temporary file is removed.
    fs::create_directory(dir.path / "taken.prom");
    err.clear();
    CHECK_FALSE(writeFileAtomically(dir.path / "taken.prom", "a 1\n", &err));
    CHECK(err.rfind("cannot rename ", 0) == 0);
    CHECK(entries(dir.path) == 1); // taken.prom/ alone: no temporary file left beside it
}

TEST_CASE("the writer writes the text format at start, on each tick and at stop; failures show and recover",
          "[textfile]") {
    TempDir dir;
    boost::asio::io_context io;
    int n = 0;
    auto render = [&n] { return "# TYPE taskhub_n gauge\ntaskhub_n " + std::to_string(++n) + "\n# EOF\n"; };
    const auto file = dir.path / "sub" / "taskhub.prom";
    TextfileWriter w(io, file, std::chrono::milliseconds(20), render);
    CHECK(w.health().path == file.string());
    CHECK(w.health().written_ms == 0);
    w.start();
    // The directory does not exist yet: the failure is reported.
    REQUIRE(runUntil(io, [&] { return !w.health().error.empty(); }));
    CHECK(w.health().error.find("No such file or directory") != std::string::npos);
    CHECK(w.health().error_since_ms > 0);
    fs::create_directory(dir.path / "sub");
    REQUIRE(runUntil(io, [&] { return w.health().error.empty() && w.health().written_ms > 0; }));
    CHECK(w.health().error_since_ms == 0);
    const std::string text = slurp(file);
    CHECK(text.rfind("# TYPE taskhub_n gauge\ntaskhub_n ", 0) == 0);
    CHECK(text.find("# EOF") == std::string::npos);
    w.stop();
    CHECK(slurp(file) == "# TYPE taskhub_n gauge\ntaskhub_n " + std::to_string(n) + "\n");
    const int after_stop = n;
    io.restart();
    io.run_for(std::chrono::milliseconds(100));
    CHECK(n == after_stop); // no tick after stop
}
