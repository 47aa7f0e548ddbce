#include "command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace taskhub::plugins::slurm {
namespace {

std::string readAll(int fd, size_t max) {
    std::string out;
    if (fd < 0) return out;
    char buf[65536];
    off_t at = 0;
    while (out.size() < max) {
        const ssize_t n = ::pread(fd, buf, std::min(sizeof buf, max - out.size()), at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
        at += n;
    }
    return out;
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
    for (char& c : s) {
        if (c == '\n') c = ' ';
        else if (static_cast<unsigned char>(c) < 0x20) c = '?';
    }
    return s;
}

} // namespace

std::string CommandResult::describe(const std::string& program) const {
    if (!failure.empty()) return program + " " + failure;
    std::string m = program + " exited with code " + std::to_string(exit_code);
    if (!err.empty()) m += ": " + err;
    else if (!out.empty()) m += ": " + trimmed(out.substr(0, 512));
    return m;
}

std::unique_ptr<Child> Child::start(const std::string& program, const std::vector<std::string>& args,
                                    const std::vector<std::string>& env, std::string* err, int stdin_fd) {
    std::unique_ptr<Child> c(new Child);
    c->out_ = ::memfd_create("slurm-out", MFD_CLOEXEC);
    c->err_ = ::memfd_create("slurm-err", MFD_CLOEXEC);
    if (c->out_ < 0 || c->err_ < 0) {
        *err = std::string("cannot create memory files for its output: ") + std::strerror(errno);
        return nullptr;
    }
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(program.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    if (stdin_fd >= 0) {
        ::lseek(stdin_fd, 0, SEEK_SET);
        posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    } else {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_adddup2(&fa, c->out_, 1);
    posix_spawn_file_actions_adddup2(&fa, c->err_, 2);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    const int rc = ::posix_spawn(&c->pid_, program.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        c->pid_ = -1;
        *err = "cannot start " + program + ": " + std::strerror(rc);
        return nullptr;
    }
    c->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, c->pid_, 0));
    if (c->pidfd_ < 0) {
        *err = std::string("cannot watch its process (pidfd_open): ") + std::strerror(errno);
        return nullptr; // the destructor kills and reaps it
    }
    ::fcntl(c->pidfd_, F_SETFD, FD_CLOEXEC);
    return c;
}

Child::~Child() {
    if (pid_ > 0 && !reaped_) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
    for (int fd : {pidfd_, out_, err_}) {
        if (fd >= 0) ::close(fd);
    }
}

void Child::kill() {
    if (pid_ > 0 && !reaped_) ::kill(-pid_, SIGKILL);
}

CommandResult Child::finish() {
    CommandResult r;
    int status = 0;
    pid_t got;
    do {
        got = ::waitpid(pid_, &status, 0);
    } while (got < 0 && errno == EINTR);
    reaped_ = true;
    r.out = readAll(out_, kMaxOutput);
    r.err = trimmed(readAll(err_, 4096));
    if (got < 0) {
        r.failure = std::string("could not be reaped: ") + std::strerror(errno);
    } else if (!killed_.empty()) {
        r.failure = killed_;
    } else if (WIFEXITED(status)) {
        r.ran = true;
        r.exit_code = WEXITSTATUS(status);
    } else {
        r.failure = "was killed by signal " + std::to_string(WTERMSIG(status));
    }
    return r;
}

CommandResult runAndWait(const std::string& program, const std::vector<std::string>& args,
                         const std::vector<std::string>& env, uint64_t timeout_ms) {
    std::string err;
    auto child = Child::start(program, args, env, &err);
    if (!child) {
        CommandResult r;
        r.failure = "could not be started: " + err;
        return r;
    }
    pollfd p{child->pidfd(), POLLIN, 0};
    int rc;
    do {
        rc = ::poll(&p, 1, static_cast<int>(std::min<uint64_t>(timeout_ms, 24ull * 3600 * 1000)));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        child->kill();
        child->markKilled("did not answer within " + std::to_string(timeout_ms / 1000) + "s and was killed");
    }
    return child->finish();
}

} // namespace taskhub::plugins::slurm
