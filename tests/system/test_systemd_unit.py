"""The shipped systemd unit passes `systemd-analyze verify` when pointed at the built daemon."""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


@unittest.skipIf(shutil.which("systemd-analyze") is None, "systemd-analyze is not installed")
class SystemdUnitTest(harness.DaemonTestCase):
    def test_verify(self):
        unit = harness.BIN["unit"]
        self.assertTrue(unit and os.path.exists(unit), "the built unit is missing: %r" % unit)
        d = self.daemon()
        d.write_workflow("w", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        with open(unit) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^Type=notify$")
        self.assertRegex(text, r"(?m)^ExecStart=\S*/taskhubd(\s|$)")

        def rewrite(m):
            args = shlex.split(m.group(2))
            self.assertTrue(args[0].endswith("/taskhubd"), m.group(0))
            args[0] = harness.BIN["daemon"]
            if "--config" in args:
                args[args.index("--config") + 1] = d.config
            else:
                args += ["--config", d.config]
            return m.group(1) + " ".join(shlex.quote(a) for a in args)
        text, n = re.subn(r"(?m)^(ExecStart(?:Pre)?=)(.*)$", rewrite, text)
        self.assertGreaterEqual(n, 1)
        path = os.path.join(d.dir, "taskhubd.service")
        with open(path, "w") as f:
            f.write(text)

        p = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
        self.assertEqual(p.returncode, 0, "systemd-analyze verify %s failed:\n%s%s\n%s"
                         % (path, p.stdout, p.stderr, text))
        # verify exits 0 even for settings it ignores ("Failed to parse ..., ignoring"): any
        # complaint about this unit counts.
        complaints = [l for l in (p.stdout + p.stderr).splitlines() if "taskhubd.service" in l]
        self.assertEqual(complaints, [], "systemd-analyze complains about the unit")

        # An ExecStartPre (if the unit has one), as systemd would run it, passes on this config.
        for pre in re.findall(r"(?m)^ExecStartPre=(.*)$", text):
            p = subprocess.run(shlex.split(pre), capture_output=True, text=True, timeout=harness.TIMEOUT)
            self.assertEqual(p.returncode, 0, pre + "\n" + p.stdout + p.stderr)

    def test_default_unit_leaves_root_jobs_alone_and_the_hardened_drop_in_verifies(self):
        unit = harness.BIN["unit"]
        with open(unit) as f:
            text = f.read()
        # Tasks inherit the unit's sandbox: nothing that breaks ordinary root cron jobs by default.
        for setting in ("ProtectClock", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                        "ProtectControlGroups", "RestrictAddressFamilies", "RestrictRealtime", "LockPersonality"):
            self.assertNotRegex(text, r"(?m)^%s=" % setting)
        self.assertRegex(text, r"(?m)^StateDirectoryMode=0700$")
        drop_in = os.path.join(os.path.dirname(unit), "taskhubd.service.d", "hardening.conf")
        self.assertTrue(os.path.exists(drop_in), drop_in)
        with open(drop_in) as f:
            hardening = f.read()
        for setting in ("ProtectClock=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"):
            self.assertRegex(hardening, r"(?m)^%s$" % setting)

        # systemd reads the drop-in next to the unit without a complaint, and rates it safer.
        work = tempfile.mkdtemp(prefix="th-unit-", dir="/tmp")
        self.addCleanup(shutil.rmtree, work, True)
        with open(os.path.join(work, "taskhubd.service"), "w") as f:
            f.write(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=" + harness.BIN["daemon"], text))
        env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice")

        def exposure():
            p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                                os.path.join(work, "taskhubd.service")],
                               capture_output=True, text=True, timeout=60, env=env)
            m = re.search(r"Overall exposure level for taskhubd.service: ([0-9.]+)", p.stdout + p.stderr)
            self.assertIsNotNone(m, p.stdout + p.stderr)
            return float(m.group(1))
        default = exposure()
        os.mkdir(os.path.join(work, "taskhubd.service.d"))
        shutil.copy(drop_in, os.path.join(work, "taskhubd.service.d", "hardening.conf"))
        p = subprocess.run(["systemd-analyze", "verify", os.path.join(work, "taskhubd.service")],
                           capture_output=True, text=True, timeout=60, env=env)
        complaints = [l for l in (p.stdout + p.stderr).splitlines() if "taskhubd.service" in l]
        self.assertEqual((p.returncode, complaints), (0, []), p.stdout + p.stderr)
        self.assertLess(exposure(), default)


class SdNotifyTest(harness.DaemonTestCase):
    """Type=notify: systemd considers the service started only on READY=1."""

    def test_ready_and_stopping(self):
        d = self.daemon()
        d.write_workflow("w", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        notify_path = os.path.join(d.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(notify_path)
        sock.settimeout(harness.TIMEOUT)
        os.environ["NOTIFY_SOCKET"] = notify_path
        try:
            d.start(wait=False)
        finally:
            del os.environ["NOTIFY_SOCKET"]

        def receive():
            # STATUS= lines (test_watchdog.py checks them) come at any time: not counted here.
            while True:
                data = sock.recv(4096).decode()
                if not data.startswith("STATUS="):
                    return set(data.split("\n"))
        ready = receive()
        self.assertIn("READY=1", ready)
        # READY=1 comes once the socket answers.
        rc, status, err = d.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertEqual(status["pid"], d.proc.pid)

        d.proc.send_signal(signal.SIGHUP)  # reload: RELOADING=1, then READY=1 again
        self.assertIn("RELOADING=1", receive())
        self.assertIn("READY=1", receive())

        d.proc.send_signal(signal.SIGTERM)
        self.assertIn("STOPPING=1", receive())
        self.assertEqual(d.proc.wait(harness.TIMEOUT), 0)


if __name__ == "__main__":
    harness.main()
