"""Shell completion against a real taskhubd: `taskhubctl completion --candidates KIND` and the
generated bash script complete live workflow names, run ids and plugins over the socket typed on
the line; hostile names (from a stand-in daemon, since taskhubd refuses such file names) come out
as data or not at all; with no daemon, or a daemon that does not answer, nothing is printed and the
exit status is 0, at once or within the second the client waits.

The bash driver is tests/unit/ctl/completion_shells_test.py's (bash-completion plus the generated
script in build/ctl/completions, next to the taskhubctl under test)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "ctl"))
import harness  # noqa: E402
import completion_shells_test as shells  # noqa: E402

CTL = harness.BIN["ctl"]
BASH_SCRIPT = os.path.join(os.path.dirname(CTL), "completions", "taskhubctl")

WORKFLOW = """\
    [[task]]
    id = "noop"
    plugin = "shell"
    command = "true"
    """


def candidates(kind, sock, timeout=10):
    """(exit status, stdout, stderr, seconds) of `taskhubctl --socket SOCK completion --candidates KIND`."""
    start = time.monotonic()
    p = subprocess.run([CTL, "--socket", sock, "completion", "--candidates", kind], capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


class FakeDaemon:
    """A socket that answers every request with reply(request) (None: never answers)."""

    def __init__(self, reply):
        self.dir = tempfile.mkdtemp(prefix="th-fake-", dir="/tmp")
        self.socket = os.path.join(self.dir, "fake.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.socket)
        self.server.listen(8)
        self.reply = reply
        self.held = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            answer = self.reply(json.loads(data))
            if answer is None:
                self.held.append(conn)  # hangs: neither answers nor closes
                continue
            conn.sendall(json.dumps({"proto": 1, "ok": True, "data": answer}).encode() + b"\n")
            conn.close()

    def close(self):
        self.server.close()
        for c in self.held:
            c.close()
        os.unlink(self.socket)
        os.rmdir(self.dir)


class CompletionTest(harness.DaemonTestCase):
    def bash(self, line, cwd):
        """What bash completes at the end of line, which starts with the taskhubctl under test."""
        return shells.bash_complete(BASH_SCRIPT, line, shells.words_of(line), cwd)

    def test_live_workflows_runs_and_plugins(self):
        d = self.daemon()
        d.write_workflow("nightly-backup", WORKFLOW)
        d.write_workflow("nightly.db", WORKFLOW)
        d.write_workflow("weekly", WORKFLOW)
        # taskhubd refuses this name (and lists the file among the errors): never a candidate
        d.write_workflow("night $(touch pwned) *", WORKFLOW)
        d.start()
        run = d.ctl_ok("run", "nightly-backup")["id"]

        rc, out, err, _ = candidates("workflows", d.socket)
        self.assertEqual((rc, err), (0, b""))
        self.assertEqual(sorted(out.decode().splitlines()), ["nightly-backup", "nightly.db", "weekly"])
        rc, out, err, _ = candidates("runs", d.socket)
        self.assertEqual((rc, err), (0, b""))
        self.assertIn(run, out.decode().splitlines())
        rc, out, _, _ = candidates("plugins", d.socket)
        self.assertIn("shell", out.decode().splitlines())

        # bash, with the socket typed on the line passed on to --candidates
        line = "%s --socket %s " % (CTL, d.socket)
        self.assertEqual(self.bash(line + "run nigh", d.work), ["nightly-backup", "nightly.db"])
        self.assertEqual(self.bash(line + "watch " + run[:len("nightly-backup@")], d.work), [run])
        self.assertIn(run, self.bash(line + "show nightly-b", d.work))
        self.assertIn("nightly-backup", self.bash(line + "show nightly-b", d.work))
        self.assertEqual(self.bash(line + "plugin show sh", d.work), ["shell"])
        self.assertEqual(self.bash(line + "next --name we", d.work), ["weekly"])
        # with --socket=PATH too
        self.assertEqual(self.bash("%s --socket=%s run we" % (CTL, d.socket), d.work), ["weekly"])
        self.assertFalse(os.path.exists(os.path.join(d.work, "pwned")))

    def test_hostile_names_are_data_or_left_out(self):
        names = ["good", "evil $(touch pwned) *", "evil`touch pwned2`", "evil;touch pwned3", "two\nlines",
                 "esc\x1b]0;title\x07", "c1\u009b31m", "x" * 300, "*"]
        fake = FakeDaemon(lambda req: {"workflows": [{"name": n} for n in names], "errors": []}
                          if req["cmd"] == "list" else [])
        self.addCleanup(fake.close)
        rc, out, err, _ = candidates("workflows", fake.socket)
        self.assertEqual((rc, err), (0, b""))
        self.assertEqual(out.decode().split("\n"),
                         ["good", "evil $(touch pwned) *", "evil`touch pwned2`", "evil;touch pwned3", "*", ""])
        work = tempfile.mkdtemp(prefix="th-comp-", dir="/tmp")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", work]))
        for name in ("good.toml", "evil.toml"):
            open(os.path.join(work, name), "w").close()
        line = "%s --socket %s run " % (CTL, fake.socket)
        self.assertEqual(self.bash(line + "ev", work),
                         [r"evil\ \$\(touch\ pwned\)\ \*", r"evil\;touch\ pwned3", r"evil\`touch\ pwned2\`"])
        self.assertEqual(self.bash(line + "\\*", work), ["\\*"])  # a glob is not expanded to files
        self.assertEqual(self.bash(line, work),
                         ["\\*", r"evil\ \$\(touch\ pwned\)\ \*", r"evil\;touch\ pwned3", r"evil\`touch\ pwned2\`",
                          "good"])
        for f in ("pwned", "pwned2", "pwned3"):
            self.assertFalse(os.path.exists(os.path.join(work, f)), f)

    def test_no_daemon_nothing_and_exit_0(self):
        missing = "/tmp/th-no-such-dir/taskhub.sock"
        for kind in ("workflows", "runs", "plugins"):
            rc, out, err, took = candidates(kind, missing)
            self.assertEqual((rc, out, err), (0, b"", b""), kind)
            self.assertLess(took, 1.0, kind)
        # bash offers nothing (and no files) for a WORKFLOW then
        self.assertEqual(self.bash("%s --socket %s run " % (CTL, missing), "/"), [])

    def test_a_daemon_that_does_not_answer(self):
        fake = FakeDaemon(lambda req: None)
        self.addCleanup(fake.close)
        rc, out, err, took = candidates("runs", fake.socket)
        self.assertEqual((rc, out, err), (0, b"", b""))
        self.assertLess(took, 3.0)

    def test_zones_and_usage(self):
        rc, out, _, _ = candidates("zones", "/tmp/th-no-such-dir/taskhub.sock")
        self.assertEqual(rc, 0)
        zones = out.decode().splitlines()
        self.assertIn("Europe/Berlin", zones)
        self.assertIn("UTC", zones)
        p = subprocess.run([CTL, "completion", "--candidates", "nope"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--candidates: expected one of workflows, runs, plugins, zones, found 'nope'", p.stderr)
        p = subprocess.run([CTL, "completion", "tcsh"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("completion: expected bash, zsh or fish, found 'tcsh'", p.stderr)
        for shell, first in (("bash", "# bash completion"), ("zsh", "#compdef taskhubctl"), ("fish", "# fish")):
            p = subprocess.run([CTL, "completion", shell], capture_output=True, text=True, check=True)
            self.assertTrue(p.stdout.startswith(first), shell)
            # the script the build installs is this one
            name = {"bash": "taskhubctl", "zsh": "_taskhubctl", "fish": "taskhubctl.fish"}[shell]
            with open(os.path.join(os.path.dirname(BASH_SCRIPT), name)) as f:
                self.assertEqual(f.read(), p.stdout, shell)


if __name__ == "__main__":
    harness.main()
