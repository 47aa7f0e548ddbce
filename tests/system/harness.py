"""Harness for TaskHub's system tests: a real taskhubd in a private temp dir, driven over its socket.

Each test gets its own temp dir (config, workflows, state, socket), so tests run in parallel.
The binaries come from the environment, which CTest sets (see CMakeLists.txt):

    TASKHUB_DAEMON      path of taskhubd
    TASKHUB_CTL         path of taskhubctl
    TASKHUB_PLUGIN_DIR  directory holding shell.so and noop.so
    TASKHUB_UNIT        the built systemd unit (only test_systemd_unit needs it)
    TASKHUB_FIXTURE_DIR the fixture plugins of tests/fixtures (only the plugin tests need them)

To run one file by hand: TASKHUB_BUILD_DIR=build-systest python3 tests/system/test_dag_order.py
(the four paths are then derived from the build directory).

Cleanup: every daemon is stopped (SIGTERM, then SIGKILL) when its test ends, and gets SIGTERM if
this process dies first (PR_SET_PDEATHSIG). This process is a child subreaper, so task processes
orphaned by a killed daemon are re-parented here and killed at cleanup as well. The cgroup
subtree a daemon made (docs/operations.md, "Containment": <own cgroup>/taskhub-<hash of the state
directory>) is emptied with cgroup.kill and removed once the daemon is gone, so that a daemon
killed with SIGKILL leaves no cgroup behind.
"""

import atexit
import ctypes
import datetime
import json as _json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import uuid

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# Generous limits for a shared, loaded 2-core CI box: things that take well under a second
# normally get this long before a test gives up.
TIMEOUT = 20.0
POLL = 0.05

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option, arg):
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_prctl(PR_SET_CHILD_SUBREAPER, 1)


def _binaries():
    build = os.environ.get("TASKHUB_BUILD_DIR")
    paths = {
        "daemon": os.environ.get("TASKHUB_DAEMON") or (build and os.path.join(build, "daemon", "taskhubd")),
        "ctl": os.environ.get("TASKHUB_CTL") or (build and os.path.join(build, "ctl", "taskhubctl")),
        "plugin_dir": os.environ.get("TASKHUB_PLUGIN_DIR") or (build and os.path.join(build, "plugins")),
        "unit": os.environ.get("TASKHUB_UNIT") or (build and os.path.join(build, "systemd", "taskhubd.service")),
        # The fixture plugins of tests/fixtures (only the plugin tests need them).
        "fixture_dir": os.environ.get("TASKHUB_FIXTURE_DIR") or (build and os.path.join(build, "fixture_plugins")),
    }
    missing = [k for k in ("daemon", "ctl", "plugin_dir") if not paths[k] or not os.path.exists(paths[k])]
    if missing:
        raise RuntimeError(
            "system tests need TASKHUB_DAEMON, TASKHUB_CTL and TASKHUB_PLUGIN_DIR (or TASKHUB_BUILD_DIR); "
            "missing or not found: %s (%r)" % (", ".join(missing), paths))
    return paths


BIN = _binaries()


def parse_iso(s):
    """A timestamp of the protocol ("2026-11-22T10:23:17.123Z") as an aware UTC datetime."""
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def wait_until(predicate, timeout=TIMEOUT, interval=POLL, what="condition"):
    """Polls predicate() until it returns something truthy and returns that; fails the test after
    timeout seconds, naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last value: %r)" % (timeout, what, value))
        time.sleep(interval)


def new_marker():
    return "systest-" + uuid.uuid4().hex


def processes_with_marker(marker):
    """Pids of live (non-zombie) processes whose command line or environment contains marker."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X"):
                continue
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read()
            try:
                with open("/proc/%d/environ" % pid, "rb") as f:
                    environ = f.read()
            except PermissionError:
                environ = b""
        except (FileNotFoundError, ProcessLookupError):
            continue
        if needle in cmdline or needle in environ:
            found.append(pid)
    return found


def pid_alive(pid):
    """True when pid names a live process that is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(root, children, exclude=()):
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c in exclude:
                continue
            out.append(c)
            todo.append(c)
    return out


def cgroup2_mount():
    """The cgroup2 mount point from /proc/self/mountinfo, or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if "-" not in fields:
                    continue
                dash = fields.index("-")
                if dash + 1 < len(fields) and fields[dash + 1] == "cgroup2" and fields[3] == "/":
                    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
    except OSError:
        pass
    return None


def own_cgroup(pid="self"):
    """The cgroup2 path ("/...") of a process, from /proc/PID/cgroup, or None."""
    try:
        with open("/proc/%s/cgroup" % pid) as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        pass
    return None


def cgroup_subtree_name(state_dir):
    """taskhubd's subtree outside systemd: "taskhub-" + FNV-1a 64 of the absolute, normalised state
    directory (cgroup::subtreeName())."""
    h = 1469598103934665603
    for b in os.path.normpath(os.path.abspath(state_dir)).encode():
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return "taskhub-%016x" % h


def remove_cgroup_tree(path, timeout=10.0):
    """Kills every process in the cgroup path and below (cgroup.kill, or SIGKILL to each where the
    kernel has none), then removes its cgroups deepest first. Returns what could not be removed."""
    if not os.path.isdir(path):
        return []
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(os.path.join(path, "cgroup.kill"), "w") as f:
                f.write("1")
        except FileNotFoundError:
            for root, _, files in os.walk(path):
                try:
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                except OSError:
                    pass
        except OSError:
            pass
        reap_orphans(timeout=0.5)
        try:
            with open(os.path.join(path, "cgroup.events")) as f:
                populated = "populated 1" in f.read()
        except OSError:
            populated = False
        if not populated or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    left = []
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append("%s (%s)" % (os.path.join(root, d), e.strerror))
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        left.append("%s (%s)" % (path, e.strerror))
    return left


def reap_orphans(timeout=5.0):
    """Kills and reaps the processes left below this one -- task processes re-parented here
    because their daemon died -- except live daemons and their own tasks."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        live = {d.proc.pid for d in Daemon._all if d.proc is not None and d.proc.poll() is None}
        strays = _descendants(me, _children_map(), exclude=live)
        if not strays or time.monotonic() > deadline:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass  # not our direct child (yet): its parent dies first, then it comes to us
        time.sleep(0.02)


class Connection:
    """A raw client connection to the control socket (JSON lines)."""

    def __init__(self, path, timeout=TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(_json.dumps(obj).encode() + b"\n")

    def recv_line(self):
        """The next reply line as bytes (without the newline); b'' when the daemon closed."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self):
        line = self.recv_line()
        if not line:
            raise AssertionError("the daemon closed the connection without a reply")
        return _json.loads(line)

    def request(self, obj):
        self.send(obj)
        return self.recv()

    def pending(self, wait=0.2):
        """Bytes the daemon sent beyond what was read (b'' if none arrive within `wait`)."""
        if self.buf:
            return self.buf
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return b""
        finally:
            self.sock.settimeout(TIMEOUT)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Daemon:
    """One taskhubd in its own temp dir. Files: taskhub.toml, workflows.d/, state/, taskhub.sock,
    daemon.log (the daemon's stderr, one file across restarts), work/ (free for the tasks).
    plugin_dirs holds the build's plugin directory, then extra_plugin_dirs."""

    _all = []

    def __init__(self, shutdown_grace="1s", extra_config="", extra_plugin_dirs=()):
        self.dir = tempfile.mkdtemp(prefix="th-", dir="/tmp")
        self.workflows_dir = os.path.join(self.dir, "workflows.d")
        self.state_dir = os.path.join(self.dir, "state")
        self.work = os.path.join(self.dir, "work")
        self.socket = os.path.join(self.dir, "taskhub.sock")
        self.config = os.path.join(self.dir, "taskhub.toml")
        self.log_path = os.path.join(self.dir, "daemon.log")
        assert len(self.socket.encode()) < 108, self.socket
        os.makedirs(self.workflows_dir)
        os.makedirs(self.work)
        with open(self.config, "w") as f:
            f.write(textwrap.dedent("""\
                workflows_dir = "workflows.d"
                plugin_dirs = [%s]
                state_dir = "state"
                socket = "taskhub.sock"
                timezone = "UTC"
                shutdown_grace = "%s"
                log_level = "debug"

                [pool]
                min_workers = 1
                max_workers = 4
                idle_timeout = "10s"

                [plugins.shell]
                kill_grace = "2s"
                """) % (", ".join(_json.dumps(d) for d in (BIN["plugin_dir"],) + tuple(extra_plugin_dirs)),
                        shutdown_grace))
            f.write(extra_config)
        self.proc = None
        self.final_log = ""
        self.cleaned = False
        self.cgroup_subtrees = set()  # what the daemon's cgroups were seen to be (for cleanup)
        Daemon._all.append(self)

    # ---- files ----

    def write_workflow(self, name, text):
        path = os.path.join(self.workflows_dir, name + ".toml")
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def read(self, *parts):
        with open(self.path(*parts)) as f:
            return f.read()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return self.final_log

    # ---- process ----

    def start(self, wait=True, extra_env=None, log_target="stderr", prefix=()):
        """Starts taskhubd (and waits until it answers, unless wait is false). extra_env: variables
        added to this process's environment for this start only (e.g. TASKHUB_FAILPOINT).
        log_target: taskhubd's --log-target; stderr (lines "<N>LEVEL MESSAGE" in daemon.log)
        unless a test asks for the journal, so that no test depends on the machine's journal.
        prefix: a command that execs taskhubd's argv (e.g. unshare ...), keeping its pid."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                list(prefix) + [BIN["daemon"], "--config", self.config, "--log-target", log_target],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir,
                env=self._env(extra_env),
                preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGTERM))
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self.proc

    @staticmethod
    def _env(extra_env):
        # Without INVOCATION_ID: a test runner started by a systemd service passes it on, and
        # taskhubd would take the runner's own cgroup for one systemd delegated to it.
        env = dict(os.environ, **extra_env) if extra_env else dict(os.environ)
        env.pop("INVOCATION_ID", None)
        return env

    def cgroup_subtree(self):
        """Where this daemon's cgroup subtree is (it need not exist): below the cgroup this process
        (and so the daemon it starts) runs in; None without cgroup2."""
        mount, own = cgroup2_mount(), own_cgroup()
        if mount is None or own is None:
            return None
        return os.path.join(mount, own.lstrip("/"), cgroup_subtree_name(self.state_dir))

    def _note_cgroup(self):
        own = own_cgroup(self.proc.pid) if self.proc is not None else None
        mount = cgroup2_mount()
        if own and mount and own.endswith("/daemon"):
            base = os.path.dirname(own)
            if os.path.basename(base).startswith("taskhub-"):
                self.cgroup_subtrees.add(os.path.join(mount, base.lstrip("/")))

    def remove_cgroups(self):
        """Kills what is left in the daemon's cgroup subtree and removes it (the daemon must be
        gone). Returns what could not be removed."""
        left = []
        for path in self.cgroup_subtrees | {p for p in [self.cgroup_subtree()] if p}:
            left += remove_cgroup_tree(path)
        return left

    def wait_ready(self, timeout=TIMEOUT):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("taskhubd exited with %s during start-up; log:\n%s"
                                     % (self.proc.returncode, self.log()))
            if not os.path.exists(self.socket):
                return False
            rc, _, _ = self.ctl("status", json=True, timeout=TIMEOUT)
            if rc == 0:
                self._note_cgroup()
            return rc == 0
        wait_until(ready, timeout, what="taskhubd to answer `taskhubctl status`")

    def stop(self, sig=signal.SIGTERM, timeout=TIMEOUT):
        """Sends sig and waits for the exit; returns (exit status, seconds it took). Kills the
        daemon with SIGKILL and fails if it does not exit within timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("taskhubd did not exit within %.0fs of signal %d" % (timeout, sig))
        return rc, time.monotonic() - t0

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            reap_orphans()
            left = self.remove_cgroups()
            if left:
                sys.stderr.write("harness: cgroups of %s left behind: %s\n" % (self.dir, ", ".join(left)))
            self.final_log = self.log()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- clients ----

    def ctl(self, *args, json=True, timeout=TIMEOUT, socket_path=None, preexec_fn=None, env=None):
        """Runs taskhubctl --socket S [--json] ARGS. Returns (exit code, parsed JSON -- or the text
        when json=False or stdout is not JSON --, stderr). With --json taskhubctl prints an error as
        {"error": {"code", "message"}} on stdout and nothing on stderr (test_ctl_manners checks
        that); then the object is returned as the output and "taskhubctl: MESSAGE" as stderr, as
        taskhubctl prints it without --json."""
        argv = [BIN["ctl"], "--socket", socket_path or self.socket]
        if json:
            argv.append("--json")
        argv += list(args)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, preexec_fn=preexec_fn, env=env)
        out = p.stdout
        err = p.stderr
        if json and out.strip():
            try:
                out = _json.loads(out)
            except ValueError:
                pass
            if isinstance(out, dict) and list(out) == ["error"] and isinstance(out["error"], dict) and not err:
                err = "taskhubctl: %s\n" % out["error"].get("message", "")
        return p.returncode, out, err

    def ctl_ok(self, *args, **kw):
        """ctl() that must succeed; returns the output."""
        rc, out, err = self.ctl(*args, **kw)
        if rc != 0:
            raise AssertionError("taskhubctl %s exited %d: %s%s" % (" ".join(args), rc, err, out))
        return out

    def connect(self):
        return Connection(self.socket)

    def committed_handle(self, run_id, task_id):
        """The external handle (ABI 1.6) the store has committed for the task's latest attempt,
        read from the database file as a restarted taskhubd reads it; None when there is none."""
        con = sqlite3.connect(os.path.join(self.state_dir, "taskhub.db"), timeout=5)
        try:
            row = con.execute("SELECT t.handle FROM tasks t JOIN runs r ON t.key >> 20 = r.key "
                              "WHERE r.id = ? AND t.task_id = ?", (run_id, task_id)).fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            con.close()
        return row[0] if row and row[0] else None

    def run_record(self, run_id):
        return self.ctl_ok("show", run_id)

    def wait_run_state(self, run_id, states, timeout=TIMEOUT):
        """Polls `show RUN` until the run's state is one of states; returns the run."""
        if isinstance(states, str):
            states = (states,)

        def check():
            run = self.run_record(run_id)
            return run if run["state"] in states else None
        return wait_until(check, timeout, what="run %s to reach %s" % (run_id, "/".join(states)))

    def wait_task_state(self, run_id, task_id, states, timeout=TIMEOUT):
        if isinstance(states, str):
            states = (states,)

        def check():
            run = self.run_record(run_id)
            return run if task(run, task_id)["state"] in states else None
        return wait_until(check, timeout, what="task %s of %s to reach %s" % (task_id, run_id, "/".join(states)))


def demote_to_nobody():
    """preexec_fn (or the first call of a forked child) that makes the process user nobody, with
    group nogroup and no supplementary groups: the attacker of the attack tests."""
    pw = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def task(run, task_id):
    """The task entry task_id of a run record."""
    for t in run["tasks"]:
        if t["id"] == task_id:
            return t
    raise AssertionError("run %s has no task %r: %r" % (run.get("id"), task_id, run["tasks"]))


@atexit.register
def _cleanup_all():
    for d in Daemon._all:
        try:
            d.cleanup()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class DaemonTestCase(unittest.TestCase):
    """Base class: self.daemon(...) makes a Daemon that is cleaned up after the test; a failing
    test prints the daemon's log."""

    def setUp(self):
        self._daemons = []

    def daemon(self, start=True, **kw):
        d = Daemon(**kw)
        self._daemons.append(d)
        self.addCleanup(d.cleanup)
        return d

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result else 0
        out = super().run(result)
        after = (len(result.failures) + len(result.errors)) if result else 0
        if after > before:
            for d in getattr(self, "_daemons", []):
                if not (d.final_log or d.log()):
                    continue
                sys.stderr.write("\n---- taskhubd log of %s (%s) ----\n%s---- end of log ----\n"
                                 % (self.id(), d.dir, d.final_log or d.log()))
        return out

    def assertIso(self, value, what="timestamp"):
        self.assertIsInstance(value, str, what)
        self.assertRegex(value, ISO_MS, "%s is not ISO 8601 with milliseconds in UTC" % what)


def main():
    unittest.main(verbosity=2)
