"""taskhub.toml.d: drop-ins merged over taskhub.toml (docs/operations.md, "Drop-ins"), as taskhubd
and taskhubctl read them: a drop-in moves the socket and both follow it; a broken drop-in is named
with its line by both; the trust rule of the config file applies to the drop-ins and their
directory."""

import os
import subprocess
import unittest

import harness


class ConfigDropInsTest(harness.DaemonTestCase):
    def drop_in(self, d, name, text, mode=0o644):
        dirname = d.config + ".d"
        os.makedirs(dirname, exist_ok=True)
        path = os.path.join(dirname, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def ctl_by_config(self, d, *args):
        """taskhubctl with --config and no --socket: it finds the socket in the merged config."""
        env = dict(os.environ)
        env.pop("TASKHUB_SOCKET", None)
        return subprocess.run([harness.BIN["ctl"], "--config", d.config, "--json"] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                              timeout=harness.TIMEOUT)

    def check(self, d):
        return subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True,
                              text=True, timeout=harness.TIMEOUT)

    def test_a_drop_in_moves_the_socket_for_daemon_and_ctl(self):
        d = self.daemon()
        d.write_workflow("w", """\
            [[task]]
            id = "t"
            plugin = "noop"
            """)
        early = self.drop_in(d, "10-socket.toml", 'socket = "early.sock"\n[pool]\nmax_workers = 3\n')
        late = self.drop_in(d, "20-socket.toml", 'socket = "moved.sock"\n')
        # Not read: a backup, a hidden file and a file of another kind.
        self.drop_in(d, "20-socket.toml~", 'socket = "backup.sock"\n')
        self.drop_in(d, ".30-socket.toml", 'socket = "hidden.sock"\n')
        self.drop_in(d, "30-socket.conf", 'socket = "conf.sock"\n')
        d.socket = os.path.join(d.dir, "moved.sock")
        d.start()
        self.assertFalse(os.path.exists(os.path.join(d.dir, "taskhub.sock")))
        self.assertFalse(os.path.exists(os.path.join(d.dir, "early.sock")))

        p = self.ctl_by_config(d, "run", "w")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        p = self.check(d)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines()[:2], ["%s: merged over %s" % (early, d.config),
                                                     "%s: merged over %s" % (late, d.config)])

    def test_a_broken_drop_in_is_named_by_daemon_and_ctl(self):
        d = self.daemon()
        bad = self.drop_in(d, "50-local.toml", "# local settings\n[pool]\nmax_wrokers = 8\n")
        proc = d.start(wait=False)
        self.assertEqual(proc.wait(harness.TIMEOUT), 1)
        self.assertIn("%s:3: unknown key 'max_wrokers' in [pool]; did you mean 'max_workers'?" % bad, d.log())

        p = self.ctl_by_config(d, "status")
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("%s:3: unknown key 'max_wrokers'" % bad, p.stdout + p.stderr)

        p = self.check(d)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("%s:3: unknown key 'max_wrokers'" % bad, p.stderr)

    def test_the_trust_rule_applies_to_drop_ins(self):
        d = self.daemon()
        loose = self.drop_in(d, "50-local.toml", "[pool]\nmax_workers = 3\n", mode=0o666)
        proc = d.start(wait=False)
        self.assertEqual(proc.wait(harness.TIMEOUT), 1)
        self.assertIn("%s: config drop-in refused: %s is writable by group and others (mode 0666)" % (loose, loose),
                      d.log())
        os.chmod(loose, 0o644)
        os.chmod(d.config + ".d", 0o777)
        proc = d.start(wait=False)
        self.assertEqual(proc.wait(harness.TIMEOUT), 1)
        self.assertIn("%s.d: config drop-in directory refused: %s.d is writable by group and others (mode 0777)"
                      % (d.config, d.config), d.log())
        os.chmod(d.config + ".d", 0o755)
        d.start()


if __name__ == "__main__":
    harness.main()
