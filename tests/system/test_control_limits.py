"""The control socket is bounded: a hostile local user (here `nobody` and a few other unprivileged
uids) cannot exhaust the daemon's connections, memory or descriptors, and what it is refused is
said to it in one line and logged. Root still gets answers and scheduled tasks still run."""

import json
import os
import pwd
import select
import signal
import socket
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MIB = 1 << 20


def nobody_uid():
    return pwd.getpwnam("nobody").pw_uid


def rss_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "(comm)".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def first_lines(socks, wait, most=None):
    """The first line the daemon sent on each socket within `wait` seconds in all ('' if none);
    with `most`, only the first `most` bytes of each are read, leaving the rest of an answer unread."""
    data = {s: b"" for s in socks}
    open_socks = set(socks)
    deadline = time.monotonic() + wait
    while open_socks and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_socks), [], [], max(0.0, deadline - time.monotonic()))
        for s in ready:
            try:
                chunk = s.recv(65536 if most is None else most - len(data[s]))
            except OSError:
                chunk = b""
            data[s] += chunk
            if not chunk or b"\n" in data[s] or (most is not None and len(data[s]) >= most):
                open_socks.discard(s)
    return [data[s].split(b"\n", 1)[0].decode(errors="replace") for s in socks]


def first_lines_n(sock, n):
    """The next n lines read from sock."""
    chunks = []
    count = 0
    while count < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        count += chunk.count(b"\n")
    return b"".join(chunks).decode().splitlines()[:n]


class Attacker:
    """A forked child running as `uid` that opens `count` connections, sends each `payload`
    (ignoring refusals), reports the first line each connection received, and keeps its
    connections open until release() (or until the test's cleanup kills it)."""

    def __init__(self, socket_path, uid, count, payload, read_wait=1.0, read_most=None):
        self.report_r, report_w = os.pipe()
        go_r, self.go_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                os.close(self.report_r)
                os.close(self.go_w)
                os.setgroups([])
                os.setgid(uid if uid != nobody_uid() else pwd.getpwnam("nobody").pw_gid)
                os.setuid(uid)
                socks = []
                for _ in range(count):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(harness.TIMEOUT)
                    s.connect(socket_path)
                    socks.append(s)
                for s in socks:
                    if payload:
                        try:
                            s.settimeout(5)
                            s.sendall(payload)
                        except OSError:
                            pass  # refused and closed by the daemon, or it stopped reading
                lines = first_lines(socks, read_wait, read_most)
                os.write(report_w, (json.dumps(lines) + "\n").encode())
                os.read(go_r, 1)  # hold the connections until released
                status = 0
            except BaseException as e:  # noqa: BLE001 - reported through the pipe
                os.write(report_w, (json.dumps(["child failed: %r" % e]) + "\n").encode())
            finally:
                os._exit(status)
        os.close(report_w)
        os.close(go_r)
        self.released = False

    def lines(self):
        """The first line each connection received ('' when none), once all were sent."""
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self.report_r, 1 << 20)
            if not chunk:
                break
            data += chunk
        return json.loads(data)

    def release(self):
        if self.released:
            return
        self.released = True
        try:
            os.write(self.go_w, b"x")
        except OSError:
            pass
        os.close(self.go_w)
        os.close(self.report_r)
        _, status = os.waitpid(self.pid, 0)
        return status


@unittest.skipUnless(os.geteuid() == 0, "needs root to run clients as other users")
class ControlLimitsTest(harness.DaemonTestCase):
    def open_socket(self, d):
        # The socket is 0660 by default; these tests want every local user to reach it.
        os.chmod(d.dir, 0o755)
        os.chmod(d.socket, 0o666)

    def attacker(self, d, uid, count, payload=b"", read_wait=1.0, read_most=None):
        a = Attacker(d.socket, uid, count, payload, read_wait, read_most)
        self.addCleanup(a.release)
        return a

    def test_connection_caps_refuse_with_a_reason(self):
        d = self.daemon(extra_config="\n[control]\nmax_connections = 24\nmax_connections_per_uid = 16\n")
        d.start()
        self.open_socket(d)
        nobody = nobody_uid()
        a = self.attacker(d, nobody, 20)
        lines = a.lines()
        refused = [line for line in lines if line]
        self.assertEqual(len(refused), 4, lines)
        for line in refused:
            reply = json.loads(line)
            self.assertIs(reply["ok"], False)
            self.assertEqual(reply["error"]["code"], "too_many_connections")
            self.assertEqual(reply["error"]["message"],
                             "too many connections from uid %d (nobody) (max_connections_per_uid = 16)" % nobody)
        # taskhubctl run by nobody now says why it cannot get in.
        rc, out, err = d.ctl("status", json=False, preexec_fn=harness.demote_to_nobody)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("too many connections from uid %d (nobody) (max_connections_per_uid = 16)" % nobody, err)
        # Another user fills the rest of the total cap: 8 more, then refusals name max_connections.
        b = self.attacker(d, 40001, 12)
        lines = b.lines()
        refused = [json.loads(line) for line in lines if line]
        self.assertEqual(len(refused), 4, lines)
        for reply in refused:
            self.assertEqual(reply["error"]["message"], "too many connections (max_connections = 24)")
        # Root is exempt from both caps and gets in.
        self.assertEqual(d.ctl_ok("status")["pid"], d.proc.pid)
        # nobody's accepted connections still work as read-only connections of their own.
        a.release()
        b.release()
        log = d.log()
        self.assertIn("CTRL_CLIENT_REFUSED uid %d (nobody) pid " % nobody, log)

    def test_unterminated_requests_do_not_pin_memory(self):
        marker = "ticks"
        d = self.daemon()
        d.write_workflow("tick", """\
            [[trigger]]
            cron = "* * * * * *"

            [[task]]
            id = "t"
            plugin = "shell"
            command = "echo x >> %s"
            """ % d.path(marker))
        d.start()
        self.open_socket(d)
        rss_before = rss_kb(d.proc.pid)
        t_flood = time.monotonic()
        # 300 connections from 20 users, each sending 1 MiB without a newline.
        attackers = [self.attacker(d, uid, 15, b"a" * MIB, read_wait=0.2)
                     for uid in [nobody_uid()] + list(range(40001, 40020))]
        replies = []
        for a in attackers:
            replies += a.lines()
        codes = [json.loads(line)["error"]["code"] for line in replies if line]
        # The shared request buffer (16 MiB) was full long before 300 MiB arrived.
        self.assertGreater(codes.count("busy"), 200, codes)
        busy = [json.loads(line)["error"]["message"] for line in replies if '"busy"' in line]
        self.assertIn("request_buffer = 16777216 in [control] of taskhub.toml", busy[0])
        rss = rss_kb(d.proc.pid)
        self.assertLess(rss, 80 * 1024, "taskhubd's RSS grew from %d kB to %d kB" % (rss_before, rss))
        peak = rss_kb(d.proc.pid, "VmHWM")
        self.assertLess(peak, 80 * 1024, "taskhubd's RSS peaked at %d kB" % peak)
        # Root still gets prompt answers, and the schedule keeps firing.
        t0 = time.monotonic()
        self.assertEqual(d.ctl_ok("status")["pid"], d.proc.pid)
        self.assertLess(time.monotonic() - t0, 5.0)
        ticks = os.path.getsize(d.path(marker)) if os.path.exists(d.path(marker)) else 0
        harness.wait_until(lambda: os.path.exists(d.path(marker)) and os.path.getsize(d.path(marker)) > ticks,
                           what="the every-second task to run again during the flood")
        # The log got at most 5 refusal lines a second; the first refusal logged after a second
        # in which some were held back says how many (one more attacker, while the buffer is full).
        time.sleep(1.1)
        late = self.attacker(d, 40019, 1, b"a" * MIB, read_wait=0.2)
        late.lines()
        seconds = time.monotonic() - t_flood
        for a in attackers + [late]:
            a.release()
        refusal_lines = [line for line in d.log().splitlines() if "CTRL_CLIENT_REFUSED" in line]
        self.assertLessEqual(len(refusal_lines), 5 * (seconds + 1), "%d lines in %.1fs" % (len(refusal_lines), seconds))
        self.assertRegex(d.log(), r"CTRL_CLIENT_REFUSED .*\(\d+ similar line\(s\) suppressed\)")

    def test_unread_log_answers_do_not_pin_memory(self):
        d = self.daemon(extra_config="\n[control]\nclient_timeout = \"3s\"\n")
        d.write_workflow("chatty", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "head -c 16000000 /dev/zero | tr '\\\\0' 'a'"
            """)
        d.start()
        self.open_socket(d)
        run = d.ctl_ok("run", "chatty", "--wait")
        self.assertEqual(run["state"], "succeeded", run)
        request = (json.dumps({"proto": 1, "cmd": "logs",
                               "args": {"run": run["id"], "task": "t", "max_bytes": 16 << 20}}) + "\n").encode()
        rss_before = rss_kb(d.proc.pid)
        # 40 requests for 16 MB that are never read: 16 connections are served (each answer is cut
        # to max_answer_size), the other 24 are refused.
        a = self.attacker(d, nobody_uid(), 40, request, read_wait=10, read_most=32)
        lines = a.lines()
        refusals = [line for line in lines if line.startswith('{"proto":1,"ok":false')]
        self.assertEqual(len(refusals), 24, lines)
        self.assertEqual(len([line for line in lines if line.startswith('{"proto":1,"ok":true')]), 16, lines)
        time.sleep(1.0)
        rss = rss_kb(d.proc.pid)
        self.assertLess(rss, 80 * 1024, "taskhubd's RSS grew from %d kB to %d kB" % (rss_before, rss))
        peak = rss_kb(d.proc.pid, "VmHWM")
        self.assertLess(peak, 80 * 1024, "taskhubd's RSS peaked at %d kB" % peak)
        # Peers that never take their answer are closed after client_timeout.
        harness.wait_until(lambda: "did not take any of its answer within 3000 ms" in d.log(),
                           what="the stuck readers to be closed")
        # That freed nobody's connections. A reader as nobody gets the tail that fits, marked as
        # such; root gets all of it.
        rc, tail, err = d.ctl("logs", run["id"], "t", json=False, preexec_fn=harness.demote_to_nobody)
        self.assertEqual(rc, 0, err)
        self.assertIn("[... earlier output not shown ...]", tail)
        self.assertGreater(len(tail), 1 << 20)
        self.assertLess(len(tail), 2 << 20)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(harness.TIMEOUT)
            c.connect(d.socket)
            c.sendall(request)
            chunks = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = c.recv(1 << 20)
                self.assertTrue(chunk, "the daemon closed root's connection mid-answer")
                chunks.append(chunk)
            whole = json.loads(b"".join(chunks))
        self.assertEqual(len(whole["data"]["content"]), 16000000)
        a.release()

    def test_descriptor_exhaustion_backs_off(self):
        d = self.daemon()
        d.write_workflow("once", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "echo ran"
            """)
        d.start()
        pid = d.proc.pid
        # Lower the running daemon's descriptor limit to a few above what it holds, then connect
        # more clients than that: accept fails with EMFILE.
        limit = open_descriptors(pid) + 10
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (limit, limit)], check=True)
        clients = []
        try:
            for _ in range(30):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(harness.TIMEOUT)
                s.connect(d.socket)
                clients.append(s)
            harness.wait_until(lambda: "CTRL_ACCEPT_FAILED" in d.log(), what="accept to fail")
            cpu0 = cpu_seconds(pid)
            time.sleep(2.0)
            used = cpu_seconds(pid) - cpu0
            self.assertLess(used, 0.5, "taskhubd used %.2fs of CPU in 2s while out of descriptors" % used)
            failures = [line for line in d.log().splitlines() if "CTRL_ACCEPT_FAILED" in line]
            self.assertLessEqual(len(failures), 12, "\n".join(failures[:20]))
            self.assertIn("Too many open files: not accepting control connections for", failures[0])
        finally:
            for s in clients:
                s.close()
        # Once the clients are gone, the daemon answers and starts tasks again.
        self.assertEqual(d.ctl_ok("status")["pid"], pid)
        run = d.ctl_ok("run", "once", "--wait")
        self.assertEqual(run["state"], "succeeded", run)
        harness.wait_until(lambda: "CTRL_ACCEPT_RESUMED" in d.log(), what="CTRL_ACCEPT_RESUMED")

    def test_socket_clients_leave_descriptors_for_tasks(self):
        d = self.daemon()
        d.write_workflow("tick", """\
            [[trigger]]
            cron = "* * * * * *"
            %s
            """ % "\n".join("""
            [[task]]
            id = "t%d"
            plugin = "shell"
            command = "echo x >> %s"
            """ % (i, d.path("t%d" % i)) for i in range(4)))
        # Start taskhubd with only 64 descriptors (prlimit execs it: same pid, same cleanup).
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(
                ["prlimit", "--nofile=64:64", "--", harness.BIN["daemon"], "--config", d.config, "--log-target",
                 "stderr"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=d.dir,
                preexec_fn=lambda: harness._prctl(harness.PR_SET_PDEATHSIG, signal.SIGTERM))
        d.wait_ready()
        self.assertIn("CTRL_MAX_CONNECTIONS_LOWERED max_connections 256 lowered to", d.log())
        # Root, exempt from max_connections, opens far more connections than descriptors remain.
        clients = []
        try:
            for _ in range(60):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(d.socket)
                clients.append(s)
            lines = first_lines(clients, 3.0)
            refused = [line for line in lines if line]
            self.assertGreater(len(refused), 60 - 32, lines)
            for line in refused:
                self.assertIn("as many as its descriptor limit allows", json.loads(line)["error"]["message"])
            # With every connection the daemon allows held open, the four tasks still start.
            before = [os.path.getsize(d.path("t%d" % i)) if os.path.exists(d.path("t%d" % i)) else 0
                      for i in range(4)]

            def all_ran_again():
                return all(os.path.exists(d.path("t%d" % i)) and os.path.getsize(d.path("t%d" % i)) > before[i]
                           for i in range(4))
            harness.wait_until(all_ran_again, what="the four tasks to run while the connections are held")
        finally:
            for s in clients:
                s.close()
        self.assertNotIn("Too many open files", d.log())

    def test_large_answers_are_refused_before_they_are_built(self):
        d = self.daemon(extra_config="\n[control]\nmax_answer_size = \"64KB\"\n")
        d.write_workflow("many", """\
            [policy]
            overlap = "allow"

            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.start()
        self.open_socket(d)
        # 400 runs, triggered by root on one pipelined connection.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(harness.TIMEOUT)
            c.connect(d.socket)
            c.sendall(b"".join((json.dumps({"proto": 1, "cmd": "run", "args": {"workflow": "many"}}) + "\n").encode()
                               for _ in range(400)))
            answers = first_lines_n(c, 400)
        self.assertTrue(all(json.loads(a)["ok"] for a in answers), answers[:3])
        # 64 KiB hold at most 327 runs of at least 200 bytes: asking for more is refused before
        # the runs are loaded; asking for fewer that still do not fit is refused once built.
        for limit, message in (("1000", "more than 327 runs match, more than fit in max_answer_size = 65536"),
                               ("300", "the answer to 'runs' would be")):
            rc, out, err = d.ctl("runs", "--limit", limit, json=False, preexec_fn=harness.demote_to_nobody)
            self.assertEqual(rc, 1, out)
            self.assertIn(message, err)
        rc, runs, err = d.ctl("runs", "--limit", "10", preexec_fn=harness.demote_to_nobody)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(runs), 10)
        # Root has no answer limit.
        self.assertEqual(len(d.ctl_ok("runs", "--limit", "1000")), 400)

    def test_refused_mutation_is_logged(self):
        d = self.daemon()
        d.write_workflow("guarded", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        self.open_socket(d)
        for args in (("run", "guarded"), ("pause", "guarded"), ("reload",)):
            rc, out, err = d.ctl(*args, preexec_fn=harness.demote_to_nobody)
            self.assertEqual(rc, 1, "%s by nobody: %s %s" % (args, out, err))
        log = d.log()
        for cmd in ("run", "pause", "reload"):
            self.assertRegex(log, r"CTRL_COMMAND_REFUSED uid %d \(nobody\) pid \d+: mutating command '%s' refused"
                             % (nobody_uid(), cmd))

    def test_bad_control_settings_are_refused_at_start(self):
        d = self.daemon(extra_config="\n[control]\nmax_connections_per_uid = 0\nrequest_bufer = 5\n")
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertNotEqual(p.returncode, 0)
        out = p.stdout + p.stderr
        self.assertIn("'control.max_connections_per_uid' must be between 1 and 100000, found 0", out)
        self.assertIn("unknown key 'request_bufer' in [control]; did you mean 'request_buffer'?", out)


if __name__ == "__main__":
    harness.main()
