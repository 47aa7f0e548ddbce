"""Operator controls on runs in flight: pause and resume (with and without --freeze), cancel of
one task and of a run with a nested child run. Every change is recorded with the peer that asked."""

import os
import signal
import pwd
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def actor():
    """How the daemon names this test's uid in events: "uid N (name)"."""
    uid = os.getuid()
    try:
        return "uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name)
    except KeyError:
        return "uid %d" % uid


def cgroup_frozen(pid):
    """True when pid is in a cgroup v2 whose cgroup.events says "frozen 1" (with cgroups, pause
    --freeze freezes the attempt's cgroup instead of sending SIGSTOP; a frozen process keeps its
    state letter, usually S)."""
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            rel = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        if not rel or rel == "/":
            return False
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split() for l in f]
        mount = next(m[4] for m in mounts if m[m.index("-") + 1] == "cgroup2")
        with open(os.path.join(mount, rel.lstrip("/"), "cgroup.events")) as f:
            return "frozen 1" in f.read().split("\n")
    except (OSError, StopIteration):
        return False


def is_stopped(pid):
    """True when pid is stopped, or about to be: dash starts commands with vfork(), and a SIGSTOP
    that catches the child between vfork and exec leaves dash in the uninterruptible vfork wait
    (state D) with the SIGSTOP pending (SIGCONT discards it). Or frozen by its cgroup."""
    if cgroup_frozen(pid):
        return True
    state = proc_state(pid)
    if state == "T":
        return True
    if state != "D":
        return False
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("ShdPnd:", "SigPnd:")) and int(line.split()[1], 16) & (1 << (signal.SIGSTOP - 1)):
                    return True
    except FileNotFoundError:
        pass
    return False


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, Z, ...), or None when pid is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rfind(b")") + 2:][:1].decode()


def events_with(run, word):
    return [e for e in run["events"] if word in e["kind"]]


def read_int(d, name):
    try:
        return int(d.read(name))
    except (FileNotFoundError, ValueError):
        return None


class PauseResumeTest(harness.DaemonTestCase):
    def test_pause_lets_running_tasks_finish_and_starts_nothing(self):
        d = self.daemon()
        d.write_workflow("twostep", """\
            [[task]]
            id = "first"
            plugin = "shell"
            command = "touch %(started)s; sleep 1; touch %(first)s"

            [[task]]
            id = "second"
            plugin = "shell"
            depends_on = ["first"]
            command = "touch %(second)s"
            """ % {"started": d.path("first-started"), "first": d.path("first-done"),
                   "second": d.path("second-ran")})
        d.start()
        rid = d.ctl_ok("run", "twostep")["id"]
        harness.wait_until(lambda: os.path.exists(d.path("first-started")), what="task first to start")

        rc, paused, err = d.ctl("pause", rid)
        self.assertEqual(rc, 0, err)
        self.assertEqual(paused["id"], rid)
        self.assertEqual(paused["state"], "paused", paused)
        # Pausing twice is a conflict; resume of a run that is not paused too.
        rc, _, err = d.ctl("pause", rid)
        self.assertEqual(rc, 1)
        self.assertIn(rid, err)

        # The running task finishes while the run is paused; the next one does not start.
        run = d.wait_task_state(rid, "first", "succeeded", timeout=10)
        self.assertEqual(run["state"], "paused")
        time.sleep(1.0)
        run = d.run_record(rid)
        self.assertEqual(run["state"], "paused")
        self.assertIn(harness.task(run, "second")["state"], ("pending", "ready"), run)
        self.assertFalse(os.path.exists(d.path("second-ran")), "a task started in a paused run")

        rc, resumed, err = d.ctl("resume", rid)
        self.assertEqual(rc, 0, err)
        # Answered once durable: what was left to do may have finished by then.
        self.assertIn(resumed["state"], ("running", "succeeded"))
        final = d.wait_run_state(rid, ("succeeded", "failed", "cancelled"), timeout=10)
        self.assertEqual(final["state"], "succeeded", final)
        self.assertTrue(os.path.exists(d.path("second-ran")))

        # Both changes are in the event log with the uid (and name) that asked.
        for word in ("pause", "resume"):
            evs = events_with(final, word)
            self.assertTrue(evs, "no %s event in %r" % (word, final["events"]))
            self.assertTrue(any(actor() in e["detail"] for e in evs), evs)

        rc, _, err = d.ctl("resume", rid)
        self.assertEqual(rc, 1)
        self.assertIn(rid, err)

    def test_freeze_stops_the_process_group_and_its_timeout(self):
        d = self.daemon()
        marker = harness.new_marker()
        # Two seconds of work against a three-second timeout; frozen for four seconds on the way.
        d.write_workflow("freezer", """\
            [[task]]
            id = "work"
            plugin = "shell"
            timeout = "3s"
            command = "echo $$ > %(pid)s; sleep 2; touch %(done)s # %(m)s"
            env = { SYSTEST_MARKER = "%(m)s" }
            """ % {"pid": d.path("work.pid"), "done": d.path("work-done"), "m": marker})
        d.start()
        rid = d.ctl_ok("run", "freezer")["id"]
        shell_pid = harness.wait_until(lambda: read_int(d, "work.pid"), what="the task to write its pid")
        harness.wait_until(lambda: len(harness.processes_with_marker(marker)) >= 2,
                           what="the shell and its sleep to be visible")

        rc, paused, err = d.ctl("pause", rid, "--freeze")
        self.assertEqual(rc, 0, err)
        self.assertEqual(paused["state"], "paused")
        run = d.wait_task_state(rid, "work", "frozen", timeout=5)

        # Every process of the task is stopped (state T), and stays so past the timeout.
        def all_stopped():
            pids = harness.processes_with_marker(marker)
            return pids if pids and all(is_stopped(p) for p in pids) else None
        pids = harness.wait_until(all_stopped, timeout=5, what="the task's processes to be stopped")
        self.assertIn(shell_pid, pids)
        time.sleep(4.0)
        run = d.run_record(rid)
        self.assertEqual(harness.task(run, "work")["state"], "frozen", run)
        self.assertEqual(run["state"], "paused")
        for p in pids:
            self.assertTrue(is_stopped(p), "pid %d is no longer stopped" % p)
        self.assertFalse(os.path.exists(d.path("work-done")))

        rc, resumed, err = d.ctl("resume", rid)
        self.assertEqual(rc, 0, err)
        # Answered once durable: what was left to do may have finished by then.
        self.assertIn(resumed["state"], ("running", "succeeded"))
        final = d.wait_run_state(rid, ("succeeded", "failed", "cancelled"), timeout=10)
        self.assertEqual(final["state"], "succeeded", final)
        work = harness.task(final, "work")
        self.assertEqual(work["attempt"], 1)
        self.assertEqual(work["exit_code"], 0)
        self.assertTrue(os.path.exists(d.path("work-done")))
        self.assertEqual(harness.processes_with_marker(marker), [])
        self.assertTrue(any(actor() in e["detail"] for e in events_with(final, "pause")), final["events"])

    def test_pause_of_a_finished_or_unknown_run(self):
        d = self.daemon()
        d.write_workflow("quick", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        d.start()
        rc, run, err = d.ctl("run", "quick", "--wait")
        self.assertEqual(rc, 0, err)
        rc, _, err = d.ctl("pause", run["id"])
        self.assertEqual(rc, 1)
        self.assertIn(run["id"], err)
        rc, _, err = d.ctl("pause", "quick@20000101T000000Z")
        self.assertEqual(rc, 1)
        self.assertIn("no run with id quick@20000101T000000Z", err)
        # Usage errors name the argument.
        rc, _, err = d.ctl("pause")
        self.assertEqual(rc, 2)
        self.assertIn("pause takes one argument: RUN", err)
        rc, _, err = d.ctl("resume", run["id"], "--freeze")
        self.assertEqual(rc, 2)
        self.assertIn("resume does not take --freeze", err)


class CancelControlsTest(harness.DaemonTestCase):
    def test_cancel_one_task_downstream_follows_trigger_rules(self):
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("branches", """\
            [policy]
            on_failure = "continue"

            [[task]]
            id = "slow"
            plugin = "shell"
            command = "echo $$ > %(pid)s; sleep 600 # %(m)s"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "needs_slow"
            plugin = "shell"
            depends_on = ["slow"]
            command = "touch %(needs)s"

            [[task]]
            id = "cleanup"
            plugin = "shell"
            depends_on = ["slow"]
            trigger_rule = "all_done"
            command = "touch %(cleanup)s"

            [[task]]
            id = "other"
            plugin = "shell"
            command = "sleep 0.5"
            """ % {"pid": d.path("slow.pid"), "needs": d.path("needs-ran"),
                   "cleanup": d.path("cleanup-ran"), "m": marker})
        d.start()
        rid = d.ctl_ok("run", "branches")["id"]
        harness.wait_until(lambda: read_int(d, "slow.pid"), what="task slow to start")

        rc, _, err = d.ctl("cancel", rid, "--task", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("has no task 'nope'", err)

        rc, out, err = d.ctl("cancel", rid, "--task", "slow")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["id"], rid)
        # The run goes on without the task and ends failed, naming it.
        final = d.wait_run_state(rid, ("succeeded", "failed", "cancelled"), timeout=10)
        self.assertEqual(final["state"], "failed", final)
        self.assertIn("task 'slow' was cancelled", final["message"])
        states = {t["id"]: t["state"] for t in final["tasks"]}
        self.assertEqual(states, {"slow": "cancelled", "needs_slow": "skipped", "cleanup": "succeeded",
                                  "other": "succeeded"}, final)
        self.assertTrue(os.path.exists(d.path("cleanup-ran")))
        self.assertFalse(os.path.exists(d.path("needs-ran")))
        self.assertEqual(harness.processes_with_marker(marker), [])
        cancels = [e for e in final["events"] if e["task"] == "slow" and "cancel" in e["kind"]]
        self.assertTrue(any(actor() in e["detail"] for e in cancels), final["events"])

        rc, _, err = d.ctl("cancel", rid, "--task", "slow")
        self.assertEqual(rc, 1)

    def test_cancel_run_with_nested_child_run(self):
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("inner", """\
            [[task]]
            id = "deep"
            plugin = "shell"
            command = "echo $$ > %(pid)s; sleep 600 # %(m)s"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "wide"
            plugin = "shell"
            command = "sleep 600 # %(m)s"
            env = { SYSTEST_MARKER = "%(m)s" }
            """ % {"pid": d.path("deep.pid"), "m": marker})
        d.write_workflow("outer", """\
            [[task]]
            id = "sub"
            workflow = "inner"

            [[task]]
            id = "after"
            plugin = "shell"
            depends_on = ["sub"]
            command = "touch %(after)s"
            """ % {"after": d.path("after-ran")})
        d.start()
        rid = d.ctl_ok("run", "outer")["id"]
        harness.wait_until(lambda: read_int(d, "deep.pid"), what="the child run's task to start")
        harness.wait_until(lambda: len(harness.processes_with_marker(marker)) >= 2,
                           what="both child tasks to run")

        # show: the child run hangs under its workflow task.
        run = d.run_record(rid)
        sub = harness.task(run, "sub")
        self.assertEqual(sub["state"], "running")
        self.assertTrue(sub["child_run"], sub)
        self.assertEqual([c["id"] for c in run["children"]], [sub["child_run"]])
        child = run["children"][0]
        self.assertEqual(child["workflow"], "inner")
        self.assertEqual(child["parent_run"], rid)
        self.assertEqual(child["parent_task"], "sub")
        self.assertEqual(child["depth"], 1)
        self.assertEqual({t["id"]: t["state"] for t in child["tasks"]}, {"deep": "running", "wide": "running"})
        text = d.ctl_ok("show", rid, json=False)
        self.assertRegex(text, r"\n  run \S+ +running")
        self.assertRegex(text, r"\n    deep +running")

        rc, _, err = d.ctl("cancel", rid)
        self.assertEqual(rc, 0, err)
        final = d.wait_run_state(rid, "cancelled", timeout=10)
        self.assertEqual({t["id"]: t["state"] for t in final["tasks"]}, {"sub": "cancelled", "after": "cancelled"})
        child = final["children"][0]
        self.assertEqual(child["state"], "cancelled", child)
        self.assertEqual({t["id"]: t["state"] for t in child["tasks"]}, {"deep": "cancelled", "wide": "cancelled"})
        harness.wait_until(lambda: harness.processes_with_marker(marker) == [], timeout=5,
                           what="no task process to be left")
        self.assertFalse(os.path.exists(d.path("after-ran")))

    def test_pause_and_resume_apply_to_the_child_run(self):
        d = self.daemon()
        d.write_workflow("inner", """\
            [[task]]
            id = "one"
            plugin = "shell"
            command = "touch %(one)s; sleep 1"

            [[task]]
            id = "two"
            plugin = "shell"
            depends_on = ["one"]
            command = "touch %(two)s"
            """ % {"one": d.path("one-started"), "two": d.path("two-ran")})
        d.write_workflow("outer", """\
            [[task]]
            id = "sub"
            workflow = "inner"
            """)
        d.start()
        rid = d.ctl_ok("run", "outer")["id"]
        harness.wait_until(lambda: os.path.exists(d.path("one-started")), what="the child's first task")
        d.ctl_ok("pause", rid)
        run = d.run_record(rid)
        self.assertEqual(run["children"][0]["state"], "paused", run)

        def one_done():
            r = d.run_record(rid)
            return r if harness.task(r["children"][0], "one")["state"] == "succeeded" else None
        harness.wait_until(one_done, timeout=10, what="the child's running task to finish")
        time.sleep(0.8)
        self.assertFalse(os.path.exists(d.path("two-ran")), "a task of a paused child run started")
        d.ctl_ok("resume", rid)
        final = d.wait_run_state(rid, ("succeeded", "failed", "cancelled"), timeout=10)
        self.assertEqual(final["state"], "succeeded", final)
        self.assertEqual(final["children"][0]["state"], "succeeded")


class RunWaitTest(harness.DaemonTestCase):
    def test_run_wait_answers_a_firing_skipped_by_overlap_at_once(self):
        # `run --wait` of a run that its overlap policy records as skipped answers with that
        # skipped run (it has ended), instead of dropping the connection.
        d = self.daemon()
        go = d.path("go")
        d.write_workflow("q", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "while [ ! -e %s ]; do sleep 0.1; done"
            """ % go)
        d.start()
        first = d.ctl_ok("run", "q")
        self.assertEqual(first["state"], "running")
        rc, run, err = d.ctl("run", "q", "--wait")
        self.assertEqual(rc, 1, err)  # like any run --wait whose run did not succeed
        self.assertEqual(run["state"], "skipped")
        self.assertIn("is still active (overlap = skip)", run["message"])
        open(go, "w").close()
        self.assertEqual(d.wait_run_state(first["id"], "succeeded")["state"], "succeeded")


if __name__ == "__main__":
    harness.main()
