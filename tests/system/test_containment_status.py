"""Containment (docs/operations.md, "Containment"): taskhubd puts itself and its tasks' cgroups in
a subtree of the cgroup it starts in when a writable cgroup2 exists, says which mode it uses once at
start and in `taskhubctl status`, removes the subtree when it stops, falls back to process groups
where cgroup2 is not writable (with [daemon] containment = "auto") and refuses to start there with
containment = "cgroup"."""

import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def cgroup_usable():
    """None when this machine gives a root test a writable cgroup2, else why not."""
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    mount, own = harness.cgroup2_mount(), harness.own_cgroup()
    if mount is None or own is None:
        return "no cgroup2 here"
    if not os.access(os.path.join(mount, own.lstrip("/")), os.W_OK):
        return "the cgroup2 this test runs in is not writable"
    return None


def read_only_cgroup2(mount):
    """A prefix for Daemon.start(): taskhubd in a mount namespace of its own in which the cgroup2
    mount is read-only (a bind remount changes this namespace's mount only, not the file system)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -o remount,bind,ro "$0" && exec "$@"', mount]


def log_lines(d, log_id):
    return [line for line in d.log().splitlines() if (" " + log_id + " ") in line]


class ContainmentStatusTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        why = cgroup_usable()
        if why:
            self.skipTest(why)

    def test_cgroup_containment_on_this_machine(self):
        d = self.daemon()
        subtree = d.cgroup_subtree()
        self.assertFalse(os.path.exists(subtree), "a fresh state directory has no subtree yet")
        d.start()

        status = d.ctl_ok("status")
        c = status["containment"]
        self.assertEqual(c["mode"], "cgroup", status)
        self.assertEqual(c["base"], subtree)
        self.assertIsNone(c["reason"])
        self.assertIsInstance(c["controllers"], list)
        with open(os.path.join(os.path.dirname(subtree), "cgroup.subtree_control")) as f:
            offered = set(f.read().split())
        self.assertLessEqual(set(c["controllers"]), offered, "only what the parent offers can be enabled")

        # taskhubd lives in the leaf <base>/daemon; tasks/ and runners/ wait for attempts.
        self.assertEqual(harness.own_cgroup(d.proc.pid),
                         "/" + os.path.relpath(os.path.join(subtree, "daemon"), harness.cgroup2_mount()))
        for sub in ("daemon", "tasks", "runners"):
            self.assertTrue(os.path.isdir(os.path.join(subtree, sub)), sub)

        text = d.ctl_ok("status", json=False)
        controllers = " ".join(c["controllers"]) or "none"
        self.assertIn("containment: cgroup (%s, controllers: %s)\n" % (subtree, controllers), text)

        lines = log_lines(d, "CONTAINMENT_MODE")
        self.assertEqual(len(lines), 1, d.log())
        self.assertIn("CONTAINMENT_MODE cgroup: %s (controllers: %s)" % (subtree, controllers), lines[0])

        # A clean stop gives the subtree back.
        rc, _ = d.stop()
        self.assertEqual(rc, 0, d.log())
        self.assertFalse(os.path.exists(subtree), "taskhubd removes its subtree when it stops")

    def test_same_state_directory_same_subtree_after_a_crash(self):
        d = self.daemon()
        d.start()
        subtree = d.ctl_ok("status")["containment"]["base"]
        d.stop(sig=signal.SIGKILL)
        self.assertTrue(os.path.isdir(subtree), "a killed daemon cannot clean up")
        d.start()
        self.assertEqual(d.ctl_ok("status")["containment"]["base"], subtree,
                         "the next start finds the subtree its predecessor left (recovery looks there)")
        rc, _ = d.stop()
        self.assertEqual(rc, 0, d.log())
        self.assertFalse(os.path.exists(subtree))

    def test_harness_removes_what_a_killed_daemon_left(self):
        d = self.daemon()
        d.start()
        subtree = d.ctl_ok("status")["containment"]["base"]
        d.stop(sig=signal.SIGKILL)
        self.assertTrue(os.path.isdir(subtree))
        d.cleanup()
        self.assertFalse(os.path.exists(subtree), "the harness leaves no cgroup behind")

    def test_process_group_when_configured(self):
        d = self.daemon(extra_config='\n[daemon]\ncontainment = "process-group"\n')
        d.start()
        c = d.ctl_ok("status")["containment"]
        self.assertEqual(c, {"mode": "process-group", "base": None, "controllers": [],
                             "reason": '[daemon] containment = "process-group" in taskhub.toml'})
        self.assertIn('containment: process-group ([daemon] containment = "process-group" in taskhub.toml)\n',
                      d.ctl_ok("status", json=False))
        self.assertFalse(os.path.exists(d.cgroup_subtree()), "process-group mode never touches cgroups")
        self.assertEqual(harness.own_cgroup(d.proc.pid), harness.own_cgroup())
        lines = log_lines(d, "CONTAINMENT_MODE")
        self.assertEqual(len(lines), 1, d.log())
        self.assertTrue(lines[0].startswith("<6>"), "configured, so info, not a warning: %s" % lines[0])

    def test_auto_falls_back_when_cgroup2_is_read_only(self):
        d = self.daemon()
        d.start(prefix=read_only_cgroup2(harness.cgroup2_mount()))
        c = d.ctl_ok("status")["containment"]
        self.assertEqual(c["mode"], "process-group")
        self.assertIsNone(c["base"])
        self.assertIn("is not writable", c["reason"])
        self.assertIn("Read-only file system", c["reason"])
        text = d.ctl_ok("status", json=False)
        self.assertIn("containment: process-group (", text)
        self.assertIn("Read-only file system", text)
        self.assertFalse(os.path.exists(d.cgroup_subtree()))

        # Said once, at start, as a warning naming why and what is lost.
        lines = log_lines(d, "CONTAINMENT_MODE")
        self.assertEqual(len(lines), 1, d.log())
        self.assertTrue(lines[0].startswith("<4>"), lines[0])
        self.assertIn("Read-only file system", lines[0])
        self.assertIn("tasks run in process groups", lines[0])

        # Tasks still run.
        d.write_workflow("hello", """\
            [[task]]
            id = "hi"
            plugin = "shell"
            command = "echo hi"
            """)
        d.ctl_ok("reload")
        run = d.ctl_ok("run", "hello", "--wait")
        self.assertEqual(run["state"], "succeeded", run)

    def test_cgroup_refuses_to_start_without_a_writable_cgroup2(self):
        d = self.daemon(extra_config='\n[daemon]\ncontainment = "cgroup"\n')
        proc = d.start(wait=False, prefix=read_only_cgroup2(harness.cgroup2_mount()))
        try:
            rc = proc.wait(harness.TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("taskhubd kept running without a writable cgroup2: " + d.log())
        self.assertEqual(rc, 1, d.log())
        lines = log_lines(d, "CONTAINMENT_UNAVAILABLE")
        self.assertEqual(len(lines), 1, d.log())
        self.assertIn('[daemon] containment = "cgroup" in ' + d.config, lines[0])
        self.assertIn("is not writable (Read-only file system)", lines[0])
        self.assertIn("Delegate=yes", lines[0])
        self.assertFalse(os.path.exists(d.socket), "nothing was started")

    def test_cgroup_mode_starts_where_cgroup2_is_writable(self):
        d = self.daemon(extra_config='\n[daemon]\ncontainment = "cgroup"\n')
        d.start()
        self.assertEqual(d.ctl_ok("status")["containment"]["mode"], "cgroup")


if __name__ == "__main__":
    harness.main()
