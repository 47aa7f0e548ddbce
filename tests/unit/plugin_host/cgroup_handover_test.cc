// How the plugin host hands an attempt's cgroup to a TH_CAP_CGROUP plugin (ABI 1.4), in process
// (th_task.cgroup_fd) and through taskhub-runner (the execute frame's cgroup path, opened by the
// runner below --cgroup-mount), that runners start in their runner cgroup, and that the rusage of
// an attempt's main process becomes AttemptResult::usage when the attempt had no cgroup.
//
// The real shell plugin runs `cat /proc/self/cgroup`; a real cgroup2 is needed (root), else the
// cgroup cases skip. cgroup::Manager is the cglib lane's; here a small stand-in creates the runner
// cgroup in a scratch cgroup, which is all RemotePlugin asks of it.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include <taskhub/plugin_api.h>

#include "cgroup/cgroup.h"
#include "plugin_host/containment.h"
#include "plugin_host/plugin_host.h"
#include "pool/worker_pool.h"
#include "scratch_cgroup.h"

using namespace taskhub::plugin_host;
using namespace std::chrono_literals;
using taskhub::tests::ScratchCgroup;
using Outcome = AttemptResult::Outcome;
namespace fs = std::filesystem;
namespace cg = taskhub::cgroup;

namespace {

bool runUntil(boost::asio::io_context& io, const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.run_for(10ms);
    }
    return pred();
}

// The part of cgroup::Manager that the plugin host uses (mount(), runnerCgroup()), over a
// scratch cgroup; nothing else of it is called here.
class ScratchManager final : public cg::Manager {
public:
    explicit ScratchManager(const ScratchCgroup& scratch) : scratch_(scratch) {}
    cg::Support support() const override { return {}; }
    const fs::path& mount() const override { return scratch_.mount(); }
    const fs::path& base() const override { return scratch_.path(); }
    std::string describe() const override { return scratch_.path().string(); }
    std::unique_ptr<cg::AttemptCgroup> createAttempt(const cg::AttemptKey&, const cg::Limits&, const std::string&,
                                                     std::string* err) override {
        *err = "not used here";
        return nullptr;
    }
    std::optional<fs::path> runnerCgroup(const std::string& plugin, uid_t uid, gid_t, std::string* err) override {
        ++runner_calls;
        last_uid = uid;
        const fs::path dir = scratch_.path() / ("runner-" + plugin);
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            *err = "mkdir " + dir.string() + ": " + std::strerror(errno);
            return std::nullopt;
        }
        return dir;
    }
    void whenEmpty(cg::AttemptCgroup&, std::function<void()>) override {}
    void whenFrozen(cg::AttemptCgroup&, std::chrono::milliseconds, std::function<void(bool)>) override {}
    void cancelWaits(cg::AttemptCgroup&) override {}
    std::vector<std::unique_ptr<cg::AttemptCgroup>> existingAttempts() override { return {}; }
    void shutdown() override {}

    int runner_calls = 0;
    uid_t last_uid = 0;

private:
    const ScratchCgroup& scratch_;
};

// An attempt's log: an unlinked temporary file.
struct LogFile {
    int fd = -1;
    LogFile() {
        char path[] = "/tmp/taskhub-cgroup-handover-XXXXXX";
        fd = ::mkostemp(path, O_APPEND | O_CLOEXEC);
        REQUIRE(fd >= 0);
        ::unlink(path);
    }
    ~LogFile() { ::close(fd); }
    std::string contents() const {
        std::string text;
        char buf[4096];
        for (off_t off = 0;;) {
            ssize_t n = ::pread(fd, buf, sizeof buf, off);
            if (n <= 0) break;
            text.append(buf, static_cast<size_t>(n));
            off += n;
        }
        return text;
    }
};

std::optional<AttemptResult> run(boost::asio::io_context& io, Plugin& p, AttemptSpec spec) {
    std::optional<AttemptResult> result;
    p.start(spec, [&](AttemptResult r) { result = std::move(r); });
    runUntil(io, [&] { return result.has_value(); }, 20s);
    return result;
}

AttemptSpec catCgroup(const LogFile& log) {
    AttemptSpec spec;
    spec.workflow = "wf";
    spec.run_id = "run-1";
    spec.task_id = "t";
    spec.params_json = R"({"command":"cat /proc/self/cgroup"})";
    spec.log_fd = log.fd;
    return spec;
}

} // namespace

TEST_CASE("capabilityNames names TH_CAP_CGROUP \"cgroup\"", "[cgroup]") {
    CHECK(capabilityNames(TH_CAP_CGROUP | TH_CAP_CANCEL) == std::vector<std::string>{"cancel", "cgroup"});
    CHECK(capabilityNames(TH_CAP_DURABLE_START | 0x400) == std::vector<std::string>{"durable_start", "0x400"});
    CHECK(capabilityNames(TH_CAP_HOLD) == std::vector<std::string>{"hold"});
    CHECK(capabilityNames(TH_CAP_ADOPT) == std::vector<std::string>{"adopt"});
}

TEST_CASE("in process: the shell plugin gets the attempt's cgroup and starts the task in it", "[cgroup]") {
    ScratchCgroup scratch("handover");
    if (!scratch.usable()) {
        WARN("skipped: " << scratch.why());
        return;
    }
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    boost::asio::io_context io;
    taskhub::pool::WorkerPool pool(0, 2, 1s);
    PluginHost host(&io, &pool);
    REQUIRE_FALSE(host.loadFile(SHELL_PLUGIN, {}));
    Plugin& shell = *host.find("shell");
    CHECK((shell.info().capabilities & TH_CAP_CGROUP) != 0);

    LogFile log;
    AttemptSpec spec = catCgroup(log);
    spec.cgroup_fd = scratch.fd();
    spec.cgroup_path = scratch.relative();
    auto r = run(io, shell, spec);
    REQUIRE(r);
    CHECK(r->outcome == Outcome::Succeeded);
    CHECK(log.contents().find("0::" + scratch.procName() + "\n") != std::string::npos);
    // Contained: the cgroup, not the main process, is the attempt's usage (the host's to read).
    CHECK_FALSE(r->usage);
}

TEST_CASE("without a cgroup the attempt's usage is its main process's rusage", "[cgroup]") {
    boost::asio::io_context io;
    taskhub::pool::WorkerPool pool(0, 2, 1s);
    PluginHost host(&io, &pool);
    REQUIRE_FALSE(host.loadFile(SHELL_PLUGIN, {}));
    LogFile log;
    AttemptSpec spec = catCgroup(log);
    spec.params_json = R"({"command":"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"})";
    auto r = run(io, *host.find("shell"), spec);
    REQUIRE(r);
    CHECK(r->outcome == Outcome::Succeeded);
    REQUIRE(r->usage);
    CHECK(r->usage->source == cg::Usage::Source::Rusage);
    CHECK(r->usage->cpu_user_us + r->usage->cpu_system_us > 0);
    REQUIRE(r->usage->memory_peak);
    CHECK(*r->usage->memory_peak > 0);
}

TEST_CASE("isolated: the runner starts in its runner cgroup and opens the attempt's cgroup by path",
          "[cgroup][isolation]") {
    ScratchCgroup scratch("runner");
    if (!scratch.usable()) {
        WARN("skipped: " << scratch.why());
        return;
    }
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    const fs::path attempt = scratch.path() / "attempt-1";
    REQUIRE(::mkdir(attempt.c_str(), 0755) == 0);

    boost::asio::io_context io;
    taskhub::pool::WorkerPool pool(0, 2, 1s);
    ScratchManager manager(scratch);
    {
        PluginHost host(&io, &pool);
        LoadPolicy policy;
        policy.isolate = true;
        policy.runner = RUNNER;
        policy.cgroups = &manager;
        host.setLoadPolicy(policy);
        std::map<std::string, taskhub::config::PluginSettings> settings;
        settings["shell"].isolation = Isolation::Process;
        REQUIRE_FALSE(host.loadFile(SHELL_PLUGIN, settings));
        // The runner's side of the handover, below the host's containment (containment.h), which
        // would create the attempt's cgroup itself.
        Plugin* found = host.find("shell");
        if (auto* contained = dynamic_cast<ContainedPlugin*>(found)) found = &contained->inner();
        Plugin& shell = *found;
        REQUIRE(shell.info().isolation == Isolation::Process);
        CHECK(manager.runner_calls == 1);
        CHECK(manager.last_uid == ::geteuid());

        // The runner itself, from before it loaded the plugin.
        std::string runner_cgroup;
        {
            std::ifstream procs(scratch.path() / "runner-shell" / "cgroup.procs");
            procs >> runner_cgroup;
        }
        CHECK_FALSE(runner_cgroup.empty()); // a pid: the runner is in its cgroup

        LogFile log;
        AttemptSpec spec = catCgroup(log);
        spec.cgroup_fd = scratch.fd(); // the daemon's descriptor is not sent; the path is
        spec.cgroup_path = scratch.relative() + "/attempt-1";
        auto r = run(io, shell, spec);
        REQUIRE(r);
        INFO(r->message);
        CHECK(r->outcome == Outcome::Succeeded);
        CHECK(log.contents().find("0::" + scratch.procName() + "/attempt-1\n") != std::string::npos);
        CHECK_FALSE(r->usage);

        // A path that leaves the mount is refused by the runner, and the task does not run.
        LogFile log2;
        AttemptSpec escape = catCgroup(log2);
        escape.cgroup_fd = scratch.fd();
        escape.cgroup_path = scratch.relative() + "/../..";
        r = run(io, shell, escape);
        REQUIRE(r);
        CHECK(r->outcome == Outcome::Failed);
        CHECK(r->message.find("is not a path below the cgroup2 mount") != std::string::npos);
        CHECK(log2.contents().empty());

        // Without a cgroup, the rusage comes back through the runner.
        LogFile log3;
        r = run(io, shell, catCgroup(log3));
        REQUIRE(r);
        CHECK(r->outcome == Outcome::Succeeded);
        REQUIRE(r->usage);
        CHECK(r->usage->source == cg::Usage::Source::Rusage);
        CHECK(log3.contents().find("0::" + scratch.procName() + "/runner-shell\n") != std::string::npos);
    }
}
