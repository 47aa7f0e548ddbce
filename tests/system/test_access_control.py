"""Peer credentials decide access: a non-root peer that is not the daemon's user may read but
not mutate."""

import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

def raw_requests_as(demote, socket_path, requests):
    """Sends each request on one connection from a forked child that first calls demote();
    returns the reply lines."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python-level cleanup, just the requests
        status = 1
        try:
            os.close(rfd)
            demote()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(harness.TIMEOUT)
            s.connect(socket_path)
            f = s.makefile("rb")
            out = b""
            for req in requests:
                s.sendall(req.encode() + b"\n")
                out += f.readline()
            os.write(wfd, out)
            status = 0
        except BaseException as e:  # noqa: BLE001 - reported through the pipe
            os.write(wfd, ("child failed: %r\n" % e).encode())
        finally:
            os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        data = r.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise AssertionError(data.decode(errors="replace"))
    return data.decode().splitlines()


def as_nobody():
    return pwd.getpwnam("nobody").pw_uid, harness.demote_to_nobody


def accessible_to_others(path):
    """True when every directory up to path is searchable and path itself readable by others."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i])).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


@unittest.skipUnless(os.geteuid() == 0, "needs root to run a client as another user")
class AccessControlTest(harness.DaemonTestCase):
    def test_non_admin_peer_reads_but_does_not_mutate(self):
        nobody_uid, demote = as_nobody()
        if not accessible_to_others(harness.BIN["ctl"]):
            self.skipTest("user nobody cannot execute %s" % harness.BIN["ctl"])
        d = self.daemon()
        d.write_workflow("guarded", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "touch %s"
            """ % d.path("ran"))
        d.start()
        # The socket is created 0660 (owner and group only): by default nobody cannot connect.
        self.assertEqual(stat.S_IMODE(os.stat(d.socket).st_mode), 0o660)
        os.chmod(d.dir, 0o755)
        p = subprocess.run([harness.BIN["ctl"], "--socket", d.socket, "status"], preexec_fn=demote,
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 3, "nobody reached a 0660 socket: " + p.stdout + p.stderr)
        self.assertIn("Permission denied", p.stderr)

        os.chmod(d.socket, 0o666)
        rc, status, err = d.ctl("status", preexec_fn=demote)
        self.assertEqual(rc, 0, err)
        self.assertEqual(status["workflows"], 1)
        rc, listing, err = d.ctl("list", preexec_fn=demote)
        self.assertEqual(rc, 0, err)
        self.assertEqual([w["name"] for w in listing["workflows"]], ["guarded"])

        for args in (("run", "guarded"), ("run", "guarded", "--wait"), ("reload",)):
            rc, out, err = d.ctl(*args, preexec_fn=demote)
            self.assertEqual(rc, 1, "%s by nobody: %s %s" % (args, out, err))
            self.assertIn("uid %d may only use read-only commands" % nobody_uid, err)

        # The wire answer carries the code "forbidden"; read-only commands work on the same
        # connection.
        reqs = [json.dumps({"proto": 1, "cmd": c, "args": a}) for c, a in (
            ("run", {"workflow": "guarded"}), ("cancel", {"run": "x"}), ("reload", {}),
            ("status", {}), ("runs", {}))]
        replies = [json.loads(line) for line in raw_requests_as(demote, d.socket, reqs)]
        self.assertEqual(len(replies), len(reqs), replies)
        for r in replies[:3]:
            self.assertIs(r["ok"], False, r)
            self.assertEqual(r["error"]["code"], "forbidden", r)
        self.assertIs(replies[3]["ok"], True)
        self.assertEqual(replies[4]["data"], [], "a forbidden run was created anyway")

        self.assertEqual(d.ctl_ok("runs"), [])
        self.assertFalse(os.path.exists(d.path("ran")))

        # Root (here: also the daemon's own user) may mutate; nobody may then read the result.
        rc, run, err = d.ctl("run", "guarded", "--wait")
        self.assertEqual(rc, 0, err)
        rc, shown, err = d.ctl("show", run["id"], preexec_fn=demote)
        self.assertEqual(rc, 0, err)
        self.assertEqual(shown["state"], "succeeded")
        rc, log, err = d.ctl("logs", run["id"], "t", preexec_fn=demote)
        self.assertEqual(rc, 0, err)
        rc, waited, err = d.ctl("wait", run["id"], preexec_fn=demote)
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    harness.main()
