"""What taskhubd trusts is checked on what it opens, all the way up to "/"; its state is private;
task logs are bounded by default.

As root, as CI runs it: a world-writable workflows_dir or config file stops the daemon at start
with the reason; a workflow that is a symbolic link into a directory another user owns, or a
hard-linked one, is a load error of that file (listed by `taskhubctl list`) while the others run; a
plugin directory that group may write, or one below such a directory, is refused. The state
directory and the database are 0700/0600 under umask 000, and a looser existing mode is fixed at
start and logged. A task printing 70 MiB leaves a log of at most 64 MiB starting with the marker.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

NOOP = """\
    [[task]]
    id = "t"
    plugin = "noop"
    """


def nobody():
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return None


def mode(path):
    return os.stat(path).st_mode & 0o7777


@unittest.skipUnless(os.geteuid() == 0, "the daemon's trust rule against other users needs root to set up")
class TrustTest(harness.DaemonTestCase):
    def errors_by_file(self, d):
        return {e["file"]: e["message"] for e in d.ctl_ok("list")["errors"]}

    def names(self, d):
        return sorted(w["name"] for w in d.ctl_ok("list")["workflows"])

    def test_world_writable_workflows_dir_is_fatal_at_start(self):
        d = self.daemon()
        d.write_workflow("w", NOOP)
        os.chmod(d.workflows_dir, 0o777)
        why = "%s is writable by group and others (mode 0777): make it 0755 (chmod go-w %s)" % (
            d.workflows_dir, d.workflows_dir)
        proc = d.start(wait=False)
        self.assertNotEqual(proc.wait(harness.TIMEOUT), 0)
        self.assertIn("CONFIG_WORKFLOWS_DIR_REFUSED", d.log())
        self.assertIn(why, d.log())
        # --check says the same and fails.
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(why, p.stdout)
        # Sticky does not help the directory itself.
        os.chmod(d.workflows_dir, 0o1777)
        proc = d.start(wait=False)
        self.assertNotEqual(proc.wait(harness.TIMEOUT), 0)
        self.assertIn("(mode 1777): make it 0755", d.log())
        os.chmod(d.workflows_dir, 0o755)
        d.start()
        self.assertEqual(self.names(d), ["w"])

    def test_group_writable_config_file_is_fatal(self):
        d = self.daemon()
        os.chmod(d.config, 0o664)
        proc = d.start(wait=False)
        self.assertNotEqual(proc.wait(harness.TIMEOUT), 0)
        self.assertIn("%s: config file refused: %s is writable by group (mode 0664): make it 0644" % (d.config, d.config),
                      d.log())

    @unittest.skipIf(nobody() is None, "no user nobody")
    def test_symlink_into_a_directory_another_user_owns_is_refused(self):
        uid, gid = nobody()
        d = self.daemon()
        d.write_workflow("good", NOOP)
        theirs = os.path.join(d.dir, "theirs")
        os.mkdir(theirs, 0o755)
        target = os.path.join(theirs, "evil.toml")
        with open(target, "w") as f:
            f.write('[[task]]\nid = "t"\nplugin = "shell"\ncommand = "touch %s"\n' % d.path("pwned"))
        os.chmod(target, 0o644)  # a root-owned, well-moded file: its directory is what is wrong
        os.chown(theirs, uid, gid)
        link = os.path.join(d.workflows_dir, "evil.toml")
        os.symlink(target, link)
        d.start()
        errors = self.errors_by_file(d)
        self.assertIn(link, errors, errors)
        self.assertIn("file refused: directory %s is owned by uid %d (nobody): make it owned by root" % (theirs, uid),
                      errors[link])
        self.assertEqual(self.names(d), ["good"])
        rc, _, err = d.ctl("run", "evil")
        self.assertEqual(rc, 1)
        self.assertFalse(os.path.exists(d.path("pwned")))
        # The same target in a directory that passes loads (the target is what counts).
        os.chown(theirs, 0, 0)
        d.ctl_ok("reload")
        self.assertEqual(self.names(d), ["evil", "good"])
        self.assertEqual(self.errors_by_file(d), {})

    def test_hard_linked_workflow_is_refused_by_the_watch(self):
        d = self.daemon()
        d.write_workflow("good", NOOP)
        d.start()
        outside = os.path.join(d.dir, "outside.toml")
        with open(outside, "w") as f:
            f.write(NOOP.replace("    ", ""))
        os.chmod(outside, 0o644)
        linked = os.path.join(d.workflows_dir, "linked.toml")
        os.link(outside, linked)
        errors = harness.wait_until(lambda: self.errors_by_file(d), what="linked.toml to be refused")
        self.assertIn("file refused: %s has 2 hard links" % linked, errors.get(linked, ""), errors)
        self.assertEqual(self.names(d), ["good"])
        # One link left: it loads (the watch sees the link count change).
        os.unlink(outside)
        os.chmod(linked, 0o644)
        harness.wait_until(lambda: self.names(d) == ["good", "linked"], what="linked to load")

    def test_plugin_directories_and_their_ancestors_are_checked(self):
        top = tempfile.mkdtemp(prefix="th-plugins-", dir="/tmp")
        self.addCleanup(shutil.rmtree, top, True)
        group_writable = os.path.join(top, "gw")
        below = os.path.join(top, "gwparent", "plugins")
        os.makedirs(group_writable)
        os.makedirs(below)
        os.chmod(group_writable, 0o775)
        os.chmod(os.path.join(top, "gwparent"), 0o775)
        d = self.daemon(extra_plugin_dirs=(group_writable, below))
        d.write_workflow("w", NOOP)
        d.start()
        refused = {r["file"]: r["reason"] for r in d.ctl_ok("plugins")["refused"]}
        self.assertIn("%s is writable by group (mode 0775): make it 0755" % group_writable,
                      refused.get(group_writable, ""), refused)
        self.assertIn("directory %s is writable by group (mode 0775)" % os.path.join(top, "gwparent"),
                      refused.get(below, ""), refused)
        self.assertIn("PLUGIN_DIR_REFUSED", d.log())
        # The build's plugins still load.
        self.assertEqual(self.names(d), ["w"])

    def test_state_is_private_whatever_the_umask_and_loose_modes_are_fixed(self):
        d = self.daemon()
        d.write_workflow("w", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "echo hello"
            """)
        old = os.umask(0)
        try:
            d.start()
        finally:
            os.umask(old)
        rc, run, err = d.ctl("run", "w", "--wait")
        self.assertEqual(rc, 0, err)
        db = os.path.join(d.state_dir, "taskhub.db")
        self.assertEqual(mode(d.state_dir), 0o700)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix) or suffix == "":
                self.assertEqual(mode(db + suffix), 0o600, db + suffix)
        for root, dirs, files in os.walk(os.path.join(d.state_dir, "logs")):
            for name in dirs + files:
                self.assertEqual(mode(os.path.join(root, name)) & 0o007, 0, os.path.join(root, name))
        self.assertNotIn("STORE_PERMISSIONS_FIXED", d.log())
        d.stop()
        # As an older taskhubd left them: fixed at start, and said so.
        os.chmod(d.state_dir, 0o755)
        os.chmod(db, 0o644)
        d.start()
        self.assertEqual(mode(d.state_dir), 0o700)
        self.assertEqual(mode(db), 0o600)
        log = d.log()
        self.assertIn("STORE_PERMISSIONS_FIXED %s had mode 0755, now 0700" % d.state_dir, log)
        self.assertIn("STORE_PERMISSIONS_FIXED %s had mode 0644, now 0600" % db, log)


class LogCapTest(harness.DaemonTestCase):
    def test_default_max_log_size_keeps_a_70_mib_output_under_64_mib(self):
        d = self.daemon()
        d.write_workflow("big", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "head -c 73400320 /dev/zero"
            timeout = "5m"
            """)
        d.start()
        rc, run, err = d.ctl("run", "big", "--wait", timeout=300)
        self.assertEqual(rc, 0, err)
        logs = []
        for root, _, files in os.walk(os.path.join(d.state_dir, "logs")):
            logs += [os.path.join(root, f) for f in files]
        self.assertEqual(len(logs), 1, logs)
        size = os.path.getsize(logs[0])
        self.assertLessEqual(size, 64 << 20)
        self.assertGreaterEqual(size, 32 << 20)
        with open(logs[0], "rb") as f:
            first = f.readline()
        self.assertRegex(first, rb"^\[taskhub: \d+ bytes of older output dropped \(max_log_size = 64MB\)\]\n$")
        dropped = int(first.split()[1])
        self.assertEqual(dropped + size - len(first), 73400320)


if __name__ == "__main__":
    harness.main()
