// The shell plugin, driven through the C ABI as taskhubd drives it: parameter checks, how the
// child process is set up (output, environment, descriptors, working directory), how its end is
// reported, and that cancelling or destroying leaves no process behind.
#include "fake_host.h"
#include "test_support.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using taskhub::tests::Completion;
using taskhub::tests::FakeHost;
using taskhub::tests::LoadedPlugin;
using taskhub::tests::TaskSpec;

namespace {

const LoadedPlugin& shellPlugin() {
    static const LoadedPlugin plugin(TASKHUB_SHELL_PLUGIN_PATH);
    return plugin;
}

// An unlinked temporary file standing in for the attempt's log, opened for appending like the
// host's. Deliberately not close-on-exec: the child must not inherit it beyond stdout/stderr.
class LogFile {
public:
    LogFile() {
        char path[] = "/tmp/taskhub-shell-test-XXXXXX";
        fd_ = ::mkostemp(path, O_APPEND);
        REQUIRE(fd_ >= 0);
        ::unlink(path);
    }
    ~LogFile() { ::close(fd_); }
    LogFile(const LogFile&) = delete;
    LogFile& operator=(const LogFile&) = delete;

    int fd() const { return fd_; }
    std::string contents() const {
        std::string text;
        char buf[4096];
        for (off_t offset = 0;;) {
            ssize_t n = ::pread(fd_, buf, sizeof buf, offset);
            if (n <= 0) break;
            text.append(buf, static_cast<size_t>(n));
            offset += n;
        }
        return text;
    }

private:
    int fd_ = -1;
};

TaskSpec shellTask(const std::string& params_json, const LogFile& log) {
    TaskSpec spec;
    spec.params_json = params_json;
    spec.log_fd = log.fd();
    return spec;
}

// Makes processes orphaned by the commands under test children of this test process instead of
// init, so the test can reap them and check their process group really is empty.
void adoptOrphans() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }

// Runs the loop until the command has printed "pgid=<n>" (its $$, which is its process group).
pid_t waitForPgid(FakeHost& host, const LogFile& log) {
    const auto deadline = FakeHost::Clock::now() + 3s;
    while (FakeHost::Clock::now() < deadline) {
        std::string text = log.contents();
        size_t at = text.find("pgid=");
        size_t end = text.find('\n', at);
        if (at != std::string::npos && end != std::string::npos)
            return static_cast<pid_t>(std::stol(text.substr(at + 5, end - at - 5)));
        host.runFor(10ms);
    }
    FAIL("the command did not print its pgid; log: " << log.contents());
    return -1;
}

// True once no process of the group exists any more, reaping those that were orphaned to us.
bool groupGone(pid_t pgid, std::chrono::milliseconds timeout) {
    const auto deadline = FakeHost::Clock::now() + timeout;
    for (;;) {
        while (::waitpid(-pgid, nullptr, WNOHANG) > 0) {
        }
        if (::kill(-pgid, 0) != 0 && errno == ESRCH) return true;
        if (FakeHost::Clock::now() >= deadline) return false;
        ::usleep(10'000);
    }
}

// Kills and reaps whatever is left of a group when a test fails half-way.
class GroupGuard {
public:
    explicit GroupGuard(pid_t pgid) : pgid_(pgid) {}
    ~GroupGuard() {
        if (::kill(-pgid_, SIGKILL) == 0) groupGone(pgid_, 2s);
    }
    GroupGuard(const GroupGuard&) = delete;
    GroupGuard& operator=(const GroupGuard&) = delete;

private:
    pid_t pgid_;
};

void requireCleanHost(const FakeHost& host) {
    CHECK(host.pendingWatches() == 0);
    CHECK(host.pendingTimers() == 0);
    CHECK(host.duplicateCompletions() == 0);
    CHECK(host.offLoopCalls() == 0);
}

} // namespace

TEST_CASE("shell: declares its name, capabilities and threading", "[shell]") {
    const th_plugin_api* api = shellPlugin().api();
    REQUIRE(api != nullptr);
    CHECK(api->magic == TH_ABI_MAGIC);
    CHECK(api->abi_major == TH_ABI_VERSION_MAJOR);
    CHECK(api->struct_size == sizeof(th_plugin_api));
    CHECK(std::string(api->name) == "shell");
    CHECK(api->capabilities ==
          (TH_CAP_CANCEL | TH_CAP_HEALTH_CHECK | TH_CAP_SUSPEND | TH_CAP_RUN_AS | TH_CAP_CGROUP));
    CHECK(api->suspend != nullptr);
    CHECK(api->resume != nullptr);
    CHECK(api->thread_safety == TH_THREADS_SERIAL);
    // ABI 1.3: `command` is shell text, so the host escapes its templates for the shell.
    REQUIRE(api->shell_params != nullptr);
    CHECK(std::string(api->shell_params[0]) == "command");
    CHECK(api->shell_params[1] == nullptr);
}

TEST_CASE("shell: settings accept kill_grace durations and reject anything else", "[shell]") {
    for (const char* config : {"{}", R"({"kill_grace":"500ms"})", R"({"kill_grace":"2m"})"}) {
        INFO(config);
        CHECK(FakeHost::createFailure(shellPlugin(), config).first == TH_OK);
    }

    auto [status, message] = FakeHost::createFailure(shellPlugin(), R"({"kill_grase":"1s"})");
    CHECK(status == TH_ERR_FAILED);
    CHECK(message ==
          "unknown setting 'kill_grase' in [plugins.shell] (accepted: kill_grace); did you mean "
          "'kill_grace'?");

    std::tie(status, message) = FakeHost::createFailure(shellPlugin(), R"({"kill_grace":"5 sec"})");
    CHECK(status == TH_ERR_FAILED);
    CHECK(message == "[plugins.shell] kill_grace must be a duration: a whole number followed by "
                     "ms, s, m, h or d, like \"5s\" or \"500ms\", found '5 sec'");

    std::tie(status, message) = FakeHost::createFailure(shellPlugin(), R"({"kill_grace":5})");
    CHECK(status == TH_ERR_FAILED);
    CHECK(message.ends_with(", found integer"));
}

TEST_CASE("shell: validate accepts a command and an absolute cwd", "[shell]") {
    FakeHost host(shellPlugin());
    CHECK(host.validate(R"({"command":"echo hi"})").status == TH_OK);
    CHECK(host.validate(R"({"command":"make","cwd":"/srv/build"})").status == TH_OK);
}

TEST_CASE("shell: validate names the bad parameter and says what would be right", "[shell]") {
    FakeHost host(shellPlugin());
    struct Case {
        const char* params;
        const char* key;
        const char* message;
    };
    const Case cases[] = {
        {R"({"comand":"echo hi"})", "comand",
         "unknown parameter 'comand' for plugin shell (accepted: argv, command, cwd); did you mean "
         "'command'?"},
        {R"({"command":"x","timeout_s":5})", "timeout_s",
         "unknown parameter 'timeout_s' for plugin shell (accepted: argv, command, cwd)"},
        {R"({"command":"x","argv":["x"]})", "argv",
         "'command' and 'argv' cannot both be set (command is a line for /bin/sh, argv a program and its "
         "arguments run without a shell; keep one)"},
        {R"({"argv":[]})", "argv",
         "'argv' must be a non-empty array of strings (the program and its arguments, e.g. [\"cp\", \"--\", "
         "\"${params.file}\", \"/srv/in\"]), found an empty array"},
        {R"({"argv":"ls -l"})", "argv",
         "'argv' must be a non-empty array of strings (the program and its arguments, e.g. [\"cp\", \"--\", "
         "\"${params.file}\", \"/srv/in\"]), found string"},
        {R"({"argv":["ls",1]})", "argv", "'argv' elements must be strings, found integer"},
        {R"({"argv":["","x"]})", "argv", "'argv' must start with the program to run, found an empty string"},
        {R"({"command":42})", "command", "'command' must be a string, found integer"},
        {R"({"command":"x","cwd":["/"]})", "cwd", "'cwd' must be a string, found array"},
        {R"({})", "command",
         "missing required parameter 'command' (the shell command line to run) or 'argv' (a program and "
         "its arguments, run without a shell)"},
        {R"({"command":""})", "command",
         "'command' must not be empty (the shell command line to run)"},
        {R"({"command":"ls","cwd":"srv/build"})", "cwd",
         "'cwd' must be an absolute path, found 'srv/build'"},
        {R"(["echo hi"])", "", "parameters for plugin shell must be a table, found array"},
    };
    for (const Case& c : cases) {
        INFO(c.params);
        auto result = host.validate(c.params);
        CHECK(result.status == TH_ERR_INVALID);
        CHECK(result.key == c.key);
        CHECK(result.message == c.message);
    }
}

TEST_CASE("shell: a command that exits 0 succeeds and its output lands in the log", "[shell]") {
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(1, shellTask(R"({"command":"echo hi; echo oops >&2"})", log)) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(done->exit_code == 0);
    CHECK(done->message == "exit code 0");
    CHECK(log.contents() == "hi\noops\n");
    requireCleanHost(host);
}

TEST_CASE("shell: a non-zero exit fails with that exit code", "[shell]") {
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(1, shellTask(R"({"command":"exit 3"})", log)) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_FAILED);
    CHECK(done->exit_code == 3);
    CHECK(done->message == "exit code 3");
    requireCleanHost(host);
}

TEST_CASE("shell: death by a signal fails with 128+signal and names the signal", "[shell]") {
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(1, shellTask(R"({"command":"kill -9 $$"})", log)) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_FAILED);
    CHECK(done->exit_code == 128 + SIGKILL);
    CHECK(done->message == "killed by signal 9 (SIGKILL)");
    requireCleanHost(host);
}

TEST_CASE("shell: the command runs in cwd; a missing cwd refuses to start", "[shell]") {
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(1, shellTask(R"({"command":"pwd","cwd":"/"})", log)) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(log.contents() == "/\n");

    std::string error;
    CHECK(host.execute(2, shellTask(R"({"command":"pwd","cwd":"/nope"})", log), &error) ==
          TH_ERR_FAILED);
    CHECK(error == "cannot start /bin/sh for task t1: cwd '/nope': No such file or directory");
    host.runFor(50ms);
    CHECK_FALSE(host.completion(2));
    requireCleanHost(host);
}

TEST_CASE("shell: the child sees a scrubbed environment plus the task's entries", "[shell]") {
    REQUIRE(::setenv("SECRET_X", "1", 1) == 0);
    FakeHost host(shellPlugin());
    LogFile log;
    // The shell's own initial environment, exactly as the plugin passed it (a child's `env`
    // would show what the shell re-exports, which hides duplicates).
    TaskSpec spec = shellTask(R"({"command":"cat /proc/$$/environ | tr '\\0' '\\n'"})", log);
    spec.env.push_back("GREETING=hello world");
    spec.env.push_back("HOME=/task-home");
    REQUIRE(host.execute(1, spec) == TH_OK);
    auto done = host.waitFor(1, 3s);
    ::unsetenv("SECRET_X");
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);

    std::string env = "\n" + log.contents();
    INFO(env);
    CHECK(env.find("\nTASKHUB_RUN_ID=run-1\n") != std::string::npos);
    CHECK(env.find("\nTASKHUB_WORKFLOW=wf\n") != std::string::npos);
    CHECK(env.find("\nTASKHUB_TASK_ID=t1\n") != std::string::npos);
    CHECK(env.find("\nGREETING=hello world\n") != std::string::npos);
    CHECK(env.find("\nPATH=") != std::string::npos);
    // The task's entry replaced the daemon's HOME rather than adding a second one.
    CHECK(env.find("\nHOME=/task-home\n") != std::string::npos);
    CHECK(env.find("\nHOME=") == env.find("\nHOME=/task-home\n"));
    CHECK(env.find("\nHOME=", env.find("\nHOME=") + 1) == std::string::npos);
    CHECK(env.find("SECRET_X") == std::string::npos);
}

TEST_CASE("shell: the child inherits only stdin, stdout and stderr", "[shell]") {
    int extra = ::open("/dev/null", O_RDONLY); // deliberately without O_CLOEXEC
    REQUIRE(extra >= 0);
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(1, shellTask(R"({"command":"ls /proc/$$/fd; readlink /proc/$$/fd/0"})",
                                      log)) == TH_OK);
    auto done = host.waitFor(1, 3s);
    ::close(extra);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(log.contents() == "0\n1\n2\n/dev/null\n");
}

TEST_CASE("shell: cancel stops a running command with SIGTERM and leaves no process", "[shell]") {
    adoptOrphans();
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(7, shellTask(R"({"command":"echo pgid=$$; sleep 600"})", log)) ==
            TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);

    const auto started = FakeHost::Clock::now();
    REQUIRE(host.cancel(7) == TH_OK);
    auto done = host.waitFor(7, 3s);
    REQUIRE(done);
    CHECK(FakeHost::Clock::now() - started < 2s); // well within the default 5s grace
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(done->message == "cancelled (SIGTERM)");
    CHECK(groupGone(pgid, 2s));
    requireCleanHost(host);
}

TEST_CASE("shell: cancel also kills background children, even ones ignoring SIGTERM",
          "[shell]") {
    adoptOrphans();
    FakeHost host(shellPlugin(), R"({"kill_grace":"30s"})");
    LogFile log;
    // The background sleep ignores SIGTERM and outlives the shell; only the group SIGKILL sent
    // when the leader exits can end it, long before the 30s grace.
    REQUIRE(host.execute(8, shellTask(R"({"command":"(trap '' TERM; exec sleep 600) & )"
                                      R"(sleep 600 & echo pgid=$$; wait"})",
                                      log)) == TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);

    const auto started = FakeHost::Clock::now();
    REQUIRE(host.cancel(8) == TH_OK);
    auto done = host.waitFor(8, 3s);
    REQUIRE(done);
    CHECK(FakeHost::Clock::now() - started < 2s);
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(done->message == "cancelled (SIGTERM)");
    CHECK(groupGone(pgid, 2s));
    requireCleanHost(host);
}

TEST_CASE("shell: a command ignoring SIGTERM gets SIGKILL after kill_grace", "[shell]") {
    adoptOrphans();
    FakeHost host(shellPlugin(), R"({"kill_grace":"200ms"})");
    LogFile log;
    REQUIRE(host.execute(9, shellTask(R"({"command":"trap '' TERM; echo pgid=$$; sleep 600"})",
                                      log)) == TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);

    const auto started = FakeHost::Clock::now();
    REQUIRE(host.cancel(9) == TH_OK);
    host.runFor(100ms);
    CHECK_FALSE(host.completion(9)); // SIGTERM alone does not end it
    auto done = host.waitFor(9, 3s);
    REQUIRE(done);
    CHECK(FakeHost::Clock::now() - started >= 200ms);
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(done->exit_code == 128 + SIGKILL);
    CHECK(done->message == "cancelled (SIGKILL after 200ms grace)");
    CHECK(groupGone(pgid, 2s));
    requireCleanHost(host);
}

TEST_CASE("shell: cancel of an unknown or finished attempt changes nothing", "[shell]") {
    FakeHost host(shellPlugin());
    LogFile log;
    CHECK(host.cancel(42) == TH_OK);
    REQUIRE(host.execute(1, shellTask(R"({"command":"true"})", log)) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(host.cancel(1) == TH_OK);
    host.runFor(50ms);
    CHECK(host.completion(1)->outcome == TH_OUTCOME_SUCCEEDED);
    requireCleanHost(host);
}

namespace {

// The state letter of /proc/PID/stat ('T' stopped, 'S' sleeping, ...), or '?' when unreadable.
char procState(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    size_t paren = stat.rfind(')'); // the command name may hold spaces and parentheses
    return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
}

// True when pid is stopped, or is about to be: dash starts commands with vfork(), and a SIGSTOP
// that catches its child between vfork and exec stops the child while dash itself waits in the
// uninterruptible vfork wait ('D') with the SIGSTOP pending; SIGCONT discards that pending stop.
bool isStopped(pid_t pid) {
    char state = procState(pid);
    if (state == 'T') return true;
    if (state != 'D') return false;
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("ShdPnd:", 0) == 0 || line.rfind("SigPnd:", 0) == 0) {
            unsigned long long mask = std::stoull(line.substr(line.find_first_not_of(" \t", 7)), nullptr, 16);
            if (mask & (1ULL << (SIGSTOP - 1))) return true;
        }
    }
    return false;
}

// Waits up to three seconds (a loaded CI machine) for pid to reach, or with want false leave,
// the stopped state.
bool stoppedBecomes(pid_t pid, bool want) {
    const auto deadline = FakeHost::Clock::now() + 3s;
    while (isStopped(pid) != want) {
        if (FakeHost::Clock::now() >= deadline) return false;
        ::usleep(5'000);
    }
    return true;
}

} // namespace

TEST_CASE("shell: suspend stops the process group until resume, then the command finishes",
          "[shell][suspend]") {
    adoptOrphans();
    FakeHost host(shellPlugin());
    LogFile log;
    taskhub::testing::TempDir dir("th-shell-suspend");
    const std::string gate = (dir.path / "gate").string();
    // Finishes as soon as the gate file exists, which it does only once the group is stopped.
    REQUIRE(host.execute(3, shellTask(R"({"command":"echo pgid=$$; while [ ! -e )" + gate +
                                          R"( ]; do sleep 0.01; done; echo done"})",
                                      log)) == TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);

    REQUIRE(host.suspend(3) == TH_OK);
    REQUIRE(stoppedBecomes(pgid, true));
    CHECK(host.suspend(3) == TH_OK); // already suspended: nothing changes
    dir.write("gate", "");
    host.runFor(300ms); // thirty polls of the gate, had it been running
    CHECK_FALSE(host.completion(3));
    CHECK(log.contents().find("done") == std::string::npos);
    CHECK(isStopped(pgid));

    REQUIRE(host.resume(3) == TH_OK);
    CHECK(stoppedBecomes(pgid, false));
    auto done = host.waitFor(3, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(log.contents().ends_with("done\n"));
    requireCleanHost(host);
}

TEST_CASE("shell: cancel reaches a suspended command", "[shell][suspend]") {
    adoptOrphans();
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(4, shellTask(R"({"command":"echo pgid=$$; sleep 600"})", log)) == TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);
    REQUIRE(host.suspend(4) == TH_OK);
    REQUIRE(stoppedBecomes(pgid, true));

    const auto started = FakeHost::Clock::now();
    REQUIRE(host.cancel(4) == TH_OK);
    auto done = host.waitFor(4, 3s);
    REQUIRE(done);
    CHECK(FakeHost::Clock::now() - started < 2s); // SIGTERM acted on, no SIGKILL grace needed
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(done->message == "cancelled (SIGTERM)");
    CHECK(groupGone(pgid, 2s));
    requireCleanHost(host);
}

TEST_CASE("shell: suspend and resume of an unknown or finished attempt change nothing",
          "[shell][suspend]") {
    FakeHost host(shellPlugin());
    LogFile log;
    CHECK(host.suspend(42) == TH_OK);
    CHECK(host.resume(42) == TH_OK);
    REQUIRE(host.execute(1, shellTask(R"({"command":"true"})", log)) == TH_OK);
    REQUIRE(host.waitFor(1, 3s));
    CHECK(host.suspend(1) == TH_OK);
    CHECK(host.resume(1) == TH_OK);
    CHECK(host.completion(1)->outcome == TH_OUTCOME_SUCCEEDED);
    requireCleanHost(host);
}

TEST_CASE("shell: health is ok while /bin/sh is executable", "[shell]") {
    FakeHost host(shellPlugin());
    th_health_state state = TH_HEALTH_UNHEALTHY;
    std::string message;
    CHECK(host.health(&state, &message) == TH_OK);
    CHECK(state == TH_HEALTH_OK);
    CHECK(message == "/bin/sh is executable");
}

TEST_CASE("shell: destroying the instance kills a command that still runs", "[shell]") {
    adoptOrphans();
    LogFile log;
    pid_t pgid = -1;
    {
        FakeHost host(shellPlugin());
        REQUIRE(host.execute(1, shellTask(R"({"command":"echo pgid=$$; sleep 600"})", log)) ==
                TH_OK);
        pgid = waitForPgid(host, log);
    }
    GroupGuard guard(pgid);
    CHECK(groupGone(pgid, 2s));
}

// The lines of a command's output, sorted, for comparing environments.
static std::vector<std::string> sortedLines(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    std::sort(lines.begin(), lines.end());
    return lines;
}

static Completion runToEnd(FakeHost& host, uint64_t token, TaskSpec spec) {
    REQUIRE(host.execute(token, spec) == TH_OK);
    auto done = host.waitFor(token, 3s);
    REQUIRE(done);
    return *done;
}

TEST_CASE("shell: a command without shell syntax runs as the shell would run it", "[shell]") {
    // The same program once directly (plain words) and once through /bin/sh (the trailing `;`
    // is shell syntax): same environment, PWD included and physical, same working directory.
    taskhub::testing::TempDir dir("th-shell-direct");
    std::filesystem::create_directory(dir.path / "real");
    std::filesystem::create_directory_symlink(dir.path / "real", dir.path / "link");
    const std::string cwd = (dir.path / "link").string();
    FakeHost host(shellPlugin());
    uint64_t token = 0;
    for (const char* program : {"env", "/bin/pwd"}) {
        INFO(program);
        LogFile direct, shell;
        std::string plain = std::string(R"({"command":")") + program + R"(","cwd":")" + cwd + "\"}";
        std::string with_sh = std::string(R"({"command":")") + program + R"(;","cwd":")" + cwd + "\"}";
        CHECK(runToEnd(host, ++token, shellTask(plain, direct)).outcome == TH_OUTCOME_SUCCEEDED);
        CHECK(runToEnd(host, ++token, shellTask(with_sh, shell)).outcome == TH_OUTCOME_SUCCEEDED);
        CHECK(sortedLines(direct.contents()) == sortedLines(shell.contents()));
        CHECK(direct.contents().find((dir.path / "real").string()) != std::string::npos);
    }
    LogFile log;
    Completion done = runToEnd(host, ++token, shellTask(R"({"command":"false"})", log));
    CHECK(done.outcome == TH_OUTCOME_FAILED);
    CHECK(done.message == "exit code 1");
    requireCleanHost(host);
}

TEST_CASE("shell: a program that cannot be exec'd directly is left to the shell", "[shell]") {
    taskhub::testing::TempDir dir("th-shell-direct");
    // Earlier in PATH but not executable, then a script without a #! line, which only a shell
    // can run.
    dir.write("a/prog", "echo wrong one\n");
    auto script = dir.write("b/prog", "echo from script \"$1\"\n");
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    FakeHost host(shellPlugin());
    LogFile log;
    TaskSpec spec = shellTask(R"({"command":"prog arg1"})", log);
    spec.env.push_back("PATH=" + (dir.path / "a").string() + ":" + (dir.path / "b").string());
    Completion done = runToEnd(host, 1, spec);
    CHECK(done.outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(log.contents() == "from script arg1\n");

    // Not found: the shell's own message and exit code.
    LogFile missing;
    done = runToEnd(host, 2, shellTask(R"({"command":"no-such-program-th --x"})", missing));
    CHECK(done.outcome == TH_OUTCOME_FAILED);
    CHECK(done.exit_code == 127);
    CHECK(missing.contents().find("no-such-program-th: not found") != std::string::npos);
    requireCleanHost(host);
}

TEST_CASE("shell: cancel reaches a program run without the shell", "[shell]") {
    adoptOrphans();
    taskhub::testing::TempDir dir("th-shell-direct");
    auto script = dir.write("run", "#!/bin/sh\necho pgid=$$\nexec sleep 600\n");
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    FakeHost host(shellPlugin());
    LogFile log;
    REQUIRE(host.execute(1, shellTask(R"({"command":")" + script.string() + R"( --now"})", log)) ==
            TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);
    REQUIRE(host.cancel(1) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(groupGone(pgid, 2s));
    requireCleanHost(host);
}

TEST_CASE("shell: argv runs the program without a shell, one element one argument", "[shell][argv]") {
    FakeHost host(shellPlugin());
    LogFile log;
    // Shell syntax in an element is plain data: nothing is expanded, split or run.
    Completion done = runToEnd(
        host, 1,
        shellTask(R"({"argv":["printf","[%s]\\n","a;id>pwned;","$(id) `id`","q' \"x\"\nline","","-n"]})", log));
    CHECK(done.outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(log.contents() == "[a;id>pwned;]\n[$(id) `id`]\n[q' \"x\"\nline]\n[]\n[-n]\n");

    // A program that cannot be exec'd refuses to start with the reason; no shell steps in.
    LogFile missing;
    std::string error;
    CHECK(host.execute(2, shellTask(R"({"argv":["no-such-program-th","x"]})", missing), &error) == TH_ERR_FAILED);
    CHECK(error == "cannot start 'no-such-program-th' for task t1: exec: No such file or directory");
    host.runFor(50ms);
    CHECK_FALSE(host.completion(2));
    requireCleanHost(host);
}

TEST_CASE("shell: values that are not valid UTF-8 reach the program byte for byte", "[shell][argv]") {
    FakeHost host(shellPlugin());
    LogFile log;
    // What the engine hands over when a dropped file's name is not UTF-8: raw bytes in the JSON.
    Completion done = runToEnd(host, 1, shellTask("{\"argv\":[\"printf\",\"%s\",\"\xff\xfe;x\"]}", log));
    CHECK(done.outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(log.contents() == "\xff\xfe;x");
    LogFile shell_log;
    done = runToEnd(host, 2, shellTask("{\"command\":\"printf %s '\xff\xfe;x'\"}", shell_log));
    CHECK(done.outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(shell_log.contents() == "\xff\xfe;x");
    requireCleanHost(host);
}

// ---- run_as (ABI 1.3 th_task.run_as) ----

namespace {

// th_identity for nobody:nogroup as Debian's base system has it (uid and gid looked up, so the
// test does not hard-code 65534), with no supplementary groups beyond nogroup.
struct NobodyIdentity {
    std::vector<uint32_t> groups;
    th_identity id{};
    NobodyIdentity() {
        const passwd* pw = ::getpwnam("nobody");
        const group* gr = ::getgrnam("nogroup");
        REQUIRE(pw != nullptr);
        REQUIRE(gr != nullptr);
        groups = {gr->gr_gid};
        id.struct_size = sizeof id;
        id.user = "nobody";
        id.uid = pw->pw_uid;
        id.gid = gr->gr_gid;
        id.groups = groups.data();
        id.n_groups = groups.size();
        id.home = "/nonexistent";
        id.shell = "/usr/sbin/nologin";
    }
};

} // namespace

TEST_CASE("shell: run_as drops to the account: ids, groups, environment, working directory",
          "[shell][run_as]") {
    if (::geteuid() != 0) {
        WARN("skipped: switching users needs root");
        return;
    }
    NobodyIdentity nobody;
    FakeHost host(shellPlugin());
    LogFile log;
    TaskSpec spec = shellTask(R"({"command":"id -u; id -g; id -G; pwd; cat /proc/$$/environ | tr '\\0' '\\n'"})",
                              log);
    spec.run_as = &nobody.id;
    REQUIRE(host.execute(1, spec) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    const std::string out = log.contents();
    INFO(out);
    const std::string uid = std::to_string(nobody.id.uid), gid = std::to_string(nobody.id.gid);
    // uid, gid, the group list (only nogroup: root's groups are gone), then / because nobody's
    // home does not exist.
    CHECK(out.starts_with(uid + "\n" + gid + "\n" + gid + "\n/\n"));
    CHECK(out.find("\nHOME=/nonexistent\n") != std::string::npos);
    CHECK(out.find("\nUSER=nobody\n") != std::string::npos);
    CHECK(out.find("\nLOGNAME=nobody\n") != std::string::npos);
    CHECK(out.find("\nSHELL=/usr/sbin/nologin\n") != std::string::npos);
    CHECK(out.find("\nPATH=") != std::string::npos);
}

TEST_CASE("shell: a run_as task cannot regain root or write what only root may write",
          "[shell][run_as]") {
    if (::geteuid() != 0) {
        WARN("skipped: switching users needs root");
        return;
    }
    taskhub::testing::TempDir dir;
    const std::string target = (dir.path / "root-only").string();
    ::chmod(dir.path.c_str(), 0755);
    NobodyIdentity nobody;
    FakeHost host(shellPlugin());
    LogFile log;
    // perl is part of Debian's base system; its POSIX::setuid is the setuid(2) a task could try.
    TaskSpec spec = shellTask(R"({"command":"echo x > )" + target +
                                  R"( && echo WROTE; perl -MPOSIX -e 'print POSIX::setuid(0) ? \"ROOT\\n\" : \"no root\\n\"'; id -u"})",
                              log);
    spec.run_as = &nobody.id;
    REQUIRE(host.execute(1, spec) == TH_OK);
    auto done = host.waitFor(1, 3s);
    REQUIRE(done);
    const std::string out = log.contents();
    INFO(out);
    CHECK(out.find("WROTE") == std::string::npos);
    CHECK(out.find("ROOT") == std::string::npos);
    CHECK(out.find("no root\n" + std::to_string(nobody.id.uid) + "\n") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(target));
}

TEST_CASE("shell: a cwd the run_as user cannot enter refuses to start, saying so", "[shell][run_as]") {
    if (::geteuid() != 0) {
        WARN("skipped: switching users needs root");
        return;
    }
    taskhub::testing::TempDir dir;
    ::chmod(dir.path.c_str(), 0700);
    NobodyIdentity nobody;
    FakeHost host(shellPlugin());
    LogFile log;
    TaskSpec spec = shellTask(R"({"command":"pwd","cwd":")" + dir.path.string() + R"("})", log);
    spec.run_as = &nobody.id;
    std::string error;
    CHECK(host.execute(1, spec, &error) == TH_ERR_FAILED);
    CHECK(error == "cannot start /bin/sh for task t1: cwd '" + dir.path.string() +
                       "' cannot be entered as user nobody (uid " + std::to_string(nobody.id.uid) +
                       "): Permission denied (give that user search permission on it, or pick another cwd)");
    requireCleanHost(host);
}

TEST_CASE("shell: suspend, resume and cancel reach a command running as another user",
          "[shell][run_as]") {
    if (::geteuid() != 0) {
        WARN("skipped: switching users needs root");
        return;
    }
    adoptOrphans();
    NobodyIdentity nobody;
    FakeHost host(shellPlugin());
    LogFile log;
    TaskSpec spec = shellTask(R"({"command":"echo pgid=$$; sleep 600"})", log);
    spec.run_as = &nobody.id;
    REQUIRE(host.execute(7, spec) == TH_OK);
    pid_t pgid = waitForPgid(host, log);
    GroupGuard guard(pgid);
    REQUIRE(host.suspend(7) == TH_OK);
    REQUIRE(host.resume(7) == TH_OK);
    REQUIRE(host.cancel(7) == TH_OK);
    auto done = host.waitFor(7, 3s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(done->message == "cancelled (SIGTERM)");
    CHECK(groupGone(pgid, 2s));
    requireCleanHost(host);
}
