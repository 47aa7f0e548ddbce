#include "notify/deliver.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/identity.h"

namespace taskhub::notify {

namespace {

constexpr size_t kKeptOutput = 512;

#ifdef SYS_setgroups32
constexpr long kSysSetgroups = SYS_setgroups32, kSysSetresgid = SYS_setresgid32, kSysSetresuid = SYS_setresuid32,
               kSysSetuid = SYS_setuid32;
#else
constexpr long kSysSetgroups = SYS_setgroups, kSysSetresgid = SYS_setresgid, kSysSetresuid = SYS_setresuid,
               kSysSetuid = SYS_setuid;
#endif

[[noreturn]] void childFail(const char* step) {
    const char* e = std::strerror(errno); // glibc's table: no allocation
    (void)!::write(STDERR_FILENO, "taskhubd: cannot run the notifier: ", 35);
    (void)!::write(STDERR_FILENO, step, std::strlen(step));
    (void)!::write(STDERR_FILENO, ": ", 2);
    (void)!::write(STDERR_FILENO, e, std::strlen(e));
    _exit(127);
}

std::string tail(const std::string& out) {
    std::string t = out.size() > kKeptOutput ? out.substr(out.size() - kKeptOutput) : out;
    for (auto& ch : t) {
        if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
    }
    while (!t.empty() && t.back() == ' ') t.pop_back();
    return t;
}

} // namespace

bool isExecutable(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

bool runProcess(const ProcessSpec& spec, std::string* err) {
    if (spec.argv.empty()) {
        *err = "nothing to run";
        return false;
    }
    std::optional<Identity> id;
    if (!spec.run_as.empty()) {
        std::string why;
        id = resolveIdentity(spec.run_as, &why);
        if (!id) {
            *err = "run_as " + spec.run_as + ": " + why;
            return false;
        }
    }
    // Everything the child needs is built before fork: the child of a threaded process must not
    // allocate.
    std::vector<std::string> env = spec.env;
    if (id) {
        env.push_back("HOME=" + id->home);
        env.push_back("USER=" + id->user);
        env.push_back("LOGNAME=" + id->user);
    }
    std::vector<char*> argv, envp;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const char* home = id && !id->home.empty() ? id->home.c_str() : "/";

    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
        *err = std::string("pipe: ") + std::strerror(errno);
        return false;
    }
    if (::pipe2(out, O_CLOEXEC) != 0) {
        *err = std::string("pipe: ") + std::strerror(errno);
        ::close(in[0]);
        ::close(in[1]);
        return false;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        *err = std::string("fork: ") + std::strerror(errno);
        for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
        return false;
    }
    if (pid > 0) ::setpgid(pid, pid); // also here: kill(-pid) must find the group at once
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL); // taskhubd ignores it; an ignored signal stays ignored across exec
        ::setpgid(0, 0);
        if (::dup2(in[0], STDIN_FILENO) < 0 || ::dup2(out[1], STDOUT_FILENO) < 0 || ::dup2(out[1], STDERR_FILENO) < 0)
            childFail("dup2");
        if (id) {
            if (::syscall(kSysSetgroups, static_cast<long>(id->groups.size()), id->groups.data()) != 0)
                childFail("setgroups");
            if (::syscall(kSysSetresgid, (long)id->gid, (long)id->gid, (long)id->gid) != 0) childFail("setgid");
            if (::syscall(kSysSetresuid, (long)id->uid, (long)id->uid, (long)id->uid) != 0) childFail("setuid");
            if (id->uid != 0 && ::syscall(kSysSetuid, 0L) == 0) {
                errno = EPERM;
                childFail("regain root");
            }
        }
        if (::chdir(home) != 0 && ::chdir("/") != 0) childFail("chdir");
        ::syscall(SYS_close_range, 3U, ~0U, 0U);
        ::execve(argv[0], argv.data(), envp.data());
        childFail(argv[0]);
    }
    ::close(in[0]);
    ::close(out[1]);
    // A program that exits without reading all of its stdin must not raise SIGPIPE in this
    // process (taskhubd ignores it; a test or another caller may not): blocked in this thread while
    // it writes, and a pending one taken away after.
    sigset_t pipe_set, old_mask;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    ::fcntl(in[1], F_SETFL, O_NONBLOCK);
    ::fcntl(out[0], F_SETFL, O_NONBLOCK);

    const auto deadline = std::chrono::steady_clock::now() + spec.timeout;
    size_t written = 0;
    int in_fd = in[1];
    int out_fd = out[0];
    if (spec.stdin_data.empty()) {
        ::close(in_fd);
        in_fd = -1;
    }
    std::string output;
    int status = 0;
    bool exited = false, timed_out = false, cancelled = false;
    while (!exited) {
        if (spec.cancel && spec.cancel->load()) {
            cancelled = timed_out = true;
            break;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd fds[2];
        nfds_t n = 0;
        if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
        if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
        ::poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 50)));
        for (nfds_t i = 0; i < n; ++i) {
            if (fds[i].fd == out_fd && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                char buf[4096];
                ssize_t r = ::read(out_fd, buf, sizeof buf);
                if (r > 0) {
                    output.append(buf, static_cast<size_t>(r));
                    if (output.size() > 4 * kKeptOutput) output.erase(0, output.size() - kKeptOutput);
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    ::close(out_fd);
                    out_fd = -1;
                }
            } else if (fds[i].fd == in_fd && (fds[i].revents & (POLLOUT | POLLHUP | POLLERR))) {
                ssize_t w = ::write(in_fd, spec.stdin_data.data() + written, spec.stdin_data.size() - written);
                if (w > 0) written += static_cast<size_t>(w);
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == spec.stdin_data.size()) {
                    ::close(in_fd); // a program that does not read its stdin is no failure
                    in_fd = -1;
                }
            }
        }
        if (::waitpid(pid, &status, WNOHANG) == pid) exited = true;
    }
    if (in_fd >= 0) ::close(in_fd);
    if (!sigismember(&old_mask, SIGPIPE)) {
        const timespec zero{0, 0};
        while (::sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
        }
        ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    }
    if (timed_out) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    } else if (out_fd >= 0) {
        // Drain what the program left in the pipe (its children may hold it open: no waiting).
        char buf[4096];
        ssize_t r;
        while ((r = ::read(out_fd, buf, sizeof buf)) > 0) output.append(buf, static_cast<size_t>(r));
    }
    if (out_fd >= 0) ::close(out_fd);
    if (cancelled) {
        *err = "cancelled: taskhubd is stopping (killed)";
        return false;
    }
    if (timed_out) {
        *err = "timed out after " + std::to_string(spec.timeout.count()) + " ms (killed)";
        return false;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    const std::string said = tail(output);
    if (WIFEXITED(status)) *err = "exit " + std::to_string(WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) *err = "killed by signal " + std::to_string(WTERMSIG(status));
    else *err = "ended abnormally";
    if (!said.empty()) *err += ": " + said;
    return false;
}

bool appendMbox(const std::filesystem::path& path, const std::string& entry, uint64_t max_bytes, std::string* err) {
    const auto dir = path.parent_path();
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        *err = "cannot create " + dir.string() + ": " + std::strerror(errno);
        return false;
    }
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<uint64_t>(st.st_size) + entry.size() > max_bytes) {
        const std::string old = path.string() + ".1";
        if (::rename(path.c_str(), old.c_str()) != 0) {
            *err = "cannot rotate " + path.string() + ": " + std::strerror(errno);
            return false;
        }
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = "cannot open " + path.string() + ": " + std::strerror(errno);
        return false;
    }
    size_t done = 0;
    while (done < entry.size()) {
        ssize_t w = ::write(fd, entry.data() + done, entry.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            *err = "cannot write " + path.string() + ": " + std::strerror(errno);
            ::close(fd);
            return false;
        }
        done += static_cast<size_t>(w);
    }
    ::fsync(fd);
    ::close(fd);
    return true;
}

} // namespace taskhub::notify
