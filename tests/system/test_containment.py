"""Nothing escapes (issue 17): every attempt of a shell task runs in a cgroup of its own, and no
process of it outlives the attempt's end, however it hides.

Each task here starts processes that a process group cannot hold: one that double-forks
(`(sleep &)`, re-parented away from the task), one in a session of its own (`setsid`), and one that
ignores SIGTERM (`trap "" TERM`). All carry the test's marker in their environment, so a scan of
/proc (cmdline and environ) finds every one of them wherever it went. The attempt is then ended by
its timeout, `taskhubctl cancel`, fail_fast (a sibling fails), daemon shutdown, and a kill -9 of
the daemon followed by a restart (recovery by cgroup) -- and no marked process may be left. After
a successful end, leftovers are killed (the default) or kept (leftovers = "keep"; the test then
kills them itself). `pause --freeze` freezes the whole cgroup, setsid children included, and
`resume` lets the run complete.

Runs as root with a writable cgroup2; skipped when the harness daemon reports
`containment: process-group` (no usable cgroup2 on this machine).
"""

import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")

# The escapees: a double-forked sleep, a setsid sleep, and a setsid shell that ignores SIGTERM
# (its sleep too, through the inherited disposition). Then the task itself waits, ignoring TERM.
ESCAPEES = ('trap "" TERM; (sleep 3001 &); setsid sleep 3002 & '
            'setsid sh -c \'trap "" TERM; sleep 3003\' & ')


def escaping_task(tid, marker, tail="sleep 600", extra=""):
    return """
        [[task]]
        id = "%s"
        plugin = "shell"
        command = '''%s %s'''
        env = { SYSTEST_MARKER = "%s" }
        %s
        """ % (tid, ESCAPEES, tail, marker, extra)


def kill_marked(marker):
    for pid in harness.processes_with_marker(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def proc_cgroup(pid):
    """The cgroup2 path ("/...") of pid, or None when it is gone."""
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cgroup_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4].replace("\\040", " ")
    return None


def cgroup_frozen(rel):
    try:
        with open(os.path.join(cgroup_mount(), rel.lstrip("/"), "cgroup.events")) as f:
            return "frozen 1" in f.read().split("\n")
    except FileNotFoundError:
        return False


def utime(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    return int(stat[stat.rfind(b")") + 2:].split()[11])


class ContainmentCase(harness.DaemonTestCase):
    """Set-up and checks shared by the tests below (no tests of its own)."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("cgroups need root")
        self.marker = harness.new_marker()
        self.addCleanup(kill_marked, self.marker)

    def start(self, d):
        d.start()
        status = d.ctl_ok("status")
        c = status.get("containment") or {}
        if c.get("mode") != "cgroup":
            self.skipTest("containment: process-group (%s)" % c.get("reason"))
        return status

    def escaped(self, at_least=4):
        """Waits until the task's processes (the shell and the three escapees at least) run."""
        def enough():
            pids = harness.processes_with_marker(self.marker)
            return pids if len(pids) >= at_least else None
        return harness.wait_until(enough, what="the task and its escapees to run")

    def assertNothingLeft(self):
        harness.wait_until(lambda: not harness.processes_with_marker(self.marker), timeout=10,
                           what="no process with the marker to be left")

    def attempt_cgroups(self, pids):
        return {proc_cgroup(p) for p in pids} - {None}

    def assertRemoved(self, cgroups):
        mount = cgroup_mount()
        for rel in cgroups:
            path = os.path.join(mount, rel.lstrip("/"))
            harness.wait_until(lambda: not os.path.exists(path), timeout=10,
                               what="the attempt's cgroup %s to be removed" % path)


class ContainmentTest(ContainmentCase):
    def test_every_process_of_an_attempt_is_in_its_cgroup(self):
        d = self.daemon()
        d.write_workflow("hide", escaping_task("t", self.marker))
        self.start(d)
        rid = d.ctl_ok("run", "hide")["id"]
        pids = self.escaped()
        cgroups = self.attempt_cgroups(pids)
        self.assertEqual(len(cgroups), 1, "all processes of the attempt share one cgroup: %r" % cgroups)
        name = os.path.basename(next(iter(cgroups)))
        self.assertTrue(name.startswith("1.t."), name)  # <attempt>.<task>.<run>
        d.ctl_ok("cancel", rid)
        d.wait_run_state(rid, "cancelled")
        self.assertNothingLeft()
        self.assertRemoved(cgroups)

    def test_timeout_ends_every_escapee(self):
        d = self.daemon()
        d.write_workflow("hide", escaping_task("t", self.marker, extra='timeout = "2s"'))
        self.start(d)
        rid = d.ctl_ok("run", "hide")["id"]
        cgroups = self.attempt_cgroups(self.escaped())
        run = d.wait_run_state(rid, FINAL, timeout=30)
        self.assertEqual(run["state"], "failed", run)
        self.assertIn("timed out", harness.task(run, "t")["message"])
        self.assertNothingLeft()
        self.assertRemoved(cgroups)

    def test_cancel_ends_every_escapee(self):
        d = self.daemon()
        d.write_workflow("hide", escaping_task("t", self.marker))
        self.start(d)
        rid = d.ctl_ok("run", "hide")["id"]
        cgroups = self.attempt_cgroups(self.escaped())
        d.ctl_ok("cancel", rid)
        run = d.wait_run_state(rid, FINAL, timeout=30)
        self.assertEqual(run["state"], "cancelled", run)
        # The run ends only once its attempt's cgroup is empty.
        self.assertEqual(harness.processes_with_marker(self.marker), [])
        self.assertRemoved(cgroups)

    def test_fail_fast_ends_every_escapee_of_the_sibling(self):
        d = self.daemon()
        ready = d.path("ready")
        d.write_workflow("hide", """
            [policy]
            on_failure = "fail_fast"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "while [ ! -e %s ]; do sleep 0.1; done; exit 3"
            """ % ready + escaping_task("long", self.marker, tail="touch %s; sleep 600" % ready))
        self.start(d)
        rid = d.ctl_ok("run", "hide")["id"]
        run = d.wait_run_state(rid, FINAL, timeout=30)
        self.assertEqual(run["state"], "failed", run)
        self.assertEqual(harness.task(run, "long")["state"], "cancelled", run)
        self.assertEqual(harness.processes_with_marker(self.marker), [])

    def test_shutdown_ends_every_escapee(self):
        d = self.daemon(shutdown_grace="1s")
        d.write_workflow("hide", escaping_task("t", self.marker))
        self.start(d)
        d.ctl_ok("run", "hide")
        cgroups = self.attempt_cgroups(self.escaped())
        rc, _ = d.stop()
        self.assertEqual(rc, 0, d.log())
        self.assertEqual(harness.processes_with_marker(self.marker), [])
        self.assertRemoved(cgroups)

    def test_leftovers_after_success_are_killed_by_default(self):
        d = self.daemon()
        d.write_workflow("hide", escaping_task("t", self.marker, tail="true"))
        self.start(d)
        rc, run, err = d.ctl("run", "hide", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded", run)
        # The run's end waited for the cgroup to be empty.
        self.assertEqual(harness.processes_with_marker(self.marker), [])
        self.assertRegex(d.log(), r"CONTAINMENT_LEFTOVERS .*task t attempt 1 of plugin shell: [34] process\(es\) left "
                                  r"in its cgroup after its main process exited; killed \(leftovers = \"kill\"\)")
        # The task's events say how many were found and what was done.
        shown = d.ctl_ok("show", run["id"])
        found = harness.task(shown, "t")["leftovers"]["found"]
        self.assertIn(found, (3, 4), shown)  # the escapees (and a setsid not yet exec'd)
        self.assertIn("%d processes left after the main process exited: killed" % found,
                      [e["detail"] for e in shown["events"] if e["kind"] == "leftovers"])

    def test_leftovers_keep_leaves_them_running(self):
        d = self.daemon()
        d.write_workflow("hide", escaping_task("t", self.marker, tail="true", extra='leftovers = "keep"'))
        self.start(d)
        rc, run, err = d.ctl("run", "hide", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded", run)
        left = harness.processes_with_marker(self.marker)
        self.assertGreaterEqual(len(left), 3, "the kept leftovers run on")
        cgroups = self.attempt_cgroups(left)
        self.assertEqual(len(cgroups), 1, cgroups)
        self.assertRegex(d.log(), r"CONTAINMENT_LEFTOVERS .*task t attempt 1 of plugin shell: [34] process\(es\) left "
                                  r"in its cgroup after its main process exited; kept")
        shown = d.ctl_ok("show", run["id"])
        found = harness.task(shown, "t")["leftovers"]["found"]
        self.assertEqual(harness.task(shown, "t")["leftovers"]["action"], "keep", shown)
        self.assertIn("%d processes left after the main process exited: kept (leftovers = keep)" % found,
                      [e["detail"] for e in shown["events"] if e["kind"] == "leftovers"])
        # Once they are gone the cgroup is removed.
        kill_marked(self.marker)
        self.assertNothingLeft()
        self.assertRemoved(cgroups)

    def test_freeze_stops_setsid_children_and_resume_completes(self):
        d = self.daemon()
        done = d.path("done")
        # A busy setsid child whose CPU time must stop advancing while frozen.
        d.write_workflow("hide", """
            [[task]]
            id = "t"
            plugin = "shell"
            command = '''setsid sh -c 'while :; do :; done' & (sleep 3005 &); sleep 2; touch %s'''
            env = { SYSTEST_MARKER = "%s" }
            """ % (done, self.marker))
        self.start(d)
        rid = d.ctl_ok("run", "hide")["id"]
        pids = self.escaped(at_least=4)
        cgroups = self.attempt_cgroups(pids)
        self.assertEqual(len(cgroups), 1, cgroups)
        rc, paused, err = d.ctl("pause", rid, "--freeze")
        self.assertEqual(rc, 0, err)
        d.wait_task_state(rid, "t", "frozen", timeout=5)
        cg = next(iter(cgroups))
        harness.wait_until(lambda: cgroup_frozen(cg), timeout=5, what="cgroup.events frozen 1")
        for p in harness.processes_with_marker(self.marker):
            self.assertEqual(proc_cgroup(p), cg, "process %d is outside the frozen cgroup" % p)
        before = {p: utime(p) for p in harness.processes_with_marker(self.marker)}
        time.sleep(2.5)
        after = {p: utime(p) for p in before if harness.pid_alive(p)}
        self.assertEqual(before, after, "a frozen process used CPU")
        self.assertFalse(os.path.exists(done))
        rc, _, err = d.ctl("resume", rid)
        self.assertEqual(rc, 0, err)
        final = d.wait_run_state(rid, FINAL, timeout=20)
        self.assertEqual(final["state"], "succeeded", final)
        self.assertTrue(os.path.exists(done))
        self.assertNothingLeft()
        self.assertRemoved(cgroups)

    def test_kill9_then_recovery_leaves_nothing(self):
        d = self.daemon()
        d.write_workflow("hide", escaping_task("t", self.marker))
        self.start(d)
        rid = d.ctl_ok("run", "hide")["id"]
        d.wait_task_state(rid, "t", "running")
        cgroups = self.attempt_cgroups(self.escaped())
        d.proc.kill()
        d.proc.wait()
        # The escapees outlived their daemon...
        time.sleep(0.3)
        self.assertGreaterEqual(len(harness.processes_with_marker(self.marker)), 3)
        # ...until the next start finds their cgroup.
        d.start()
        self.assertEqual(harness.processes_with_marker(self.marker), [])
        run = d.wait_run_state(rid, FINAL, timeout=30)
        t = harness.task(run, "t")
        self.assertEqual(t["state"], "failed", run)
        self.assertIn("lost", t["message"])
        self.assertIn("killed (cgroup.kill)", t["message"])
        self.assertTrue([e for e in run["events"] if e["kind"] == "lost"], run["events"])
        self.assertRemoved(cgroups)
        self.assertIn("CONTAINMENT_RECOVERED 1 attempt cgroup(s)", d.log())


class ContainmentAttackTest(ContainmentCase):
    """A task that does not run as root cannot leave its attempt's cgroup: cgroupfs is root's, so
    moving itself (or a child) to another cgroup, or making a cgroup of its own, is refused, and
    the end of the attempt still reaches everything it started."""

    def test_task_as_nobody_cannot_move_out_of_its_cgroup(self):
        d = self.daemon()
        mount = cgroup_mount()
        # Each escape route and its result on a line of its own; then a setsid child and a long
        # wait. In a file nobody can read (the daemon's directory is root's, mode 0700).
        fd, script = tempfile.mkstemp(prefix="th-attack-", suffix=".sh", dir="/tmp")
        self.addCleanup(os.unlink, script)
        with os.fdopen(fd, "w") as f:
            f.write("""own=$(cut -d: -f3 /proc/self/cgroup | tail -n 1)
for t in %(mount)s/cgroup.procs "$(dirname "%(mount)s$own")/cgroup.procs"; do
  if echo 0 > "$t"; then echo "moved-to $t"; else echo "refused $t"; fi
done
if mkdir "%(mount)s/escape-$$" 2>/dev/null; then echo made-cgroup; rmdir "%(mount)s/escape-$$"; else echo mkdir-refused; fi
setsid sleep 3011 &
sleep 600
""" % {"mount": mount})
        os.chmod(script, 0o644)
        d.write_workflow("attack", """
            [[task]]
            id = "t"
            plugin = "shell"
            run_as = "nobody"
            command = "sh %s"
            env = { SYSTEST_MARKER = "%s" }
            """ % (script, self.marker))
        self.start(d)
        rid = d.ctl_ok("run", "attack")["id"]
        pids = self.escaped(at_least=2)
        cgroups = self.attempt_cgroups(pids)
        self.assertEqual(len(cgroups), 1, "every process stayed in the attempt's cgroup: %r" % cgroups)
        self.assertTrue(os.path.basename(next(iter(cgroups))).startswith("1.t."), cgroups)

        def logged():
            rc, out, _ = d.ctl("logs", rid, "t", json=False)
            return out if rc == 0 and "mkdir-" in str(out) else None
        out = harness.wait_until(logged, what="the task to report its escape attempts")
        self.assertNotIn("moved-to", out)
        self.assertNotIn("made-cgroup", out)
        self.assertEqual(out.count("refused "), 2, out)
        d.ctl_ok("cancel", rid)
        d.wait_run_state(rid, FINAL, timeout=30)
        self.assertNothingLeft()
        self.assertRemoved(cgroups)


if __name__ == "__main__":
    harness.main()
