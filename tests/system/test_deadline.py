"""Deadlines (issue 16): `deadline = "2s"` on workflows with 6-field cron triggers (every 5 s).

- a run that succeeds in time meets its deadline: no DEADLINE_MISSED, `show RUN` says met;
- a task still running at S + deadline misses it then (while it still runs), one that fails
  misses it, a firing skipped because the workflow is paused misses it; `runs` marks them and
  `show WORKFLOW` lists them;
- taskhubd stopped across S and S + deadline (SIGTERM, then kill -9), or killed while the run
  runs and started again after S + deadline: the miss is found after the restart, once, and not
  again after a further restart;
- firings from before the key was added never count;
- a miss reaches the workflow's `deadline_missed` notify targets once and counts in
  taskhub_deadline_misses_total.
"""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

EVERY_5S = 'cron = "*/5 * * * * *"'
WAIT = 30.0  # generous: a few firings of a 5 s schedule on a loaded machine


def workflow(command, deadline='deadline = "2s"'):
    return """\
        %s

        [[trigger]]
        %s

        [[task]]
        id = "t"
        plugin = "shell"
        command = "%s"
        """ % (deadline, EVERY_5S, command)


def missed_lines(d, workflow_name):
    """The DEADLINE_MISSED lines of the log for a workflow, by firing id (a list per id)."""
    out = {}
    for line in d.log().splitlines():
        m = re.search(r"DEADLINE_MISSED %s: firing (\S+) " % re.escape(workflow_name), line)
        if m:
            out.setdefault(m.group(1), []).append(line)
    return out


def ts(iso):
    return harness.parse_iso(iso).timestamp()


def misses(d, workflow_name):
    return d.ctl_ok("show", workflow_name)["deadline_misses"]


class DeadlineTest(harness.DaemonTestCase):
    def test_met_running_failed_paused(self):
        d = self.daemon()
        d.write_workflow("fast", workflow("true"))
        d.write_workflow("slow", workflow("sleep 4"))
        d.write_workflow("failing", workflow("exit 3"))
        d.write_workflow("held", workflow("true"))
        d.start()
        self.assertEqual(d.ctl_ok("show", "fast")["deadline"], "2s")
        d.ctl_ok("pause", "held")

        # The slow task is still running at S + 2s: the miss is recorded then, with the run's
        # state "running", and its run ends afterwards.
        slow = harness.wait_until(lambda: misses(d, "slow"), WAIT, what="a miss of slow")[0]
        self.assertEqual(slow["run_state"], "running")
        self.assertEqual(slow["reason"], "still running")
        self.assertEqual(slow["deadline"], "2s")
        self.assertEqual(ts(slow["due"]) - ts(slow["scheduled"]), 2.0)
        run = d.wait_run_state(slow["run_id"], "succeeded", timeout=WAIT)
        self.assertGreater(ts(run["ended"]), ts(slow["due"]))
        self.assertEqual(run["deadline"]["state"], "missed")
        self.assertEqual(run["deadline_missed_ms"], round(ts(slow["due"]) * 1000))
        text = d.ctl_ok("show", slow["run_id"], json=False)
        self.assertIn("deadline  missed at", text)
        self.assertIn("(2s after its scheduled instant", text)

        failing = harness.wait_until(lambda: misses(d, "failing"), WAIT, what="a miss of failing")[0]
        self.assertEqual(failing["run_state"], "failed")
        self.assertTrue(failing["reason"].startswith("failed: "), failing)
        runs = d.ctl_ok("runs", "failing")
        marked = [r for r in runs if r["deadline_missed_ms"] is not None]
        self.assertIn(failing["run_id"], [r["id"] for r in marked])
        self.assertIn("! deadline missed", d.ctl_ok("runs", "failing", json=False))

        held = harness.wait_until(lambda: misses(d, "held"), WAIT, what="a miss of the paused workflow")[0]
        self.assertEqual(held["run_state"], "skipped")
        self.assertIn("paused", held["reason"])
        shown = d.ctl_ok("show", "held", json=False)
        self.assertIn("deadline     2s", shown)
        self.assertIn("missed       " + held["run_id"], shown)

        # fast: several runs have passed their due instants by now, each met.
        def fast_met():
            done = [r for r in d.ctl_ok("runs", "fast") if r["state"] == "succeeded"
                    and ts(r["scheduled"]) + 2 < time.time() - 1]
            return done if len(done) >= 2 else None
        for r in harness.wait_until(fast_met, WAIT, what="two runs of fast past their deadline"):
            shown = d.ctl_ok("show", r["id"])
            self.assertEqual(shown["deadline"]["state"], "met", shown)
            self.assertIsNone(shown["deadline_missed_ms"])
        self.assertEqual(misses(d, "fast"), [])
        self.assertEqual(missed_lines(d, "fast"), {})
        for name in ("slow", "failing", "held"):
            for firing, lines in missed_lines(d, name).items():
                self.assertEqual(len(lines), 1, lines)

    def test_outage_across_s_and_due_is_found_once(self):
        d = self.daemon()
        d.write_workflow("nightly", workflow("true"))
        d.start()
        # Wait for a firing that met its deadline: the schedule is running.
        harness.wait_until(lambda: [r for r in d.ctl_ok("runs", "nightly") if r["state"] == "succeeded"],
                           WAIT, what="a run of nightly")
        found = set()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if sig == signal.SIGKILL:
                d.proc.kill()
                d.proc.wait()
            else:
                d.stop(sig)
            down_at = time.time()
            time.sleep(9)  # a 5 s schedule: some firing S has S and S + 2s inside the outage
            up_at = time.time()
            d.start()
            new = [m for m in misses(d, "nightly") if m["run_id"] not in found]
            outage = [m for m in new if down_at <= ts(m["scheduled"])
                      and ts(m["due"]) <= up_at]
            self.assertTrue(outage, "no miss of a firing inside the outage (signal %d): %r" % (sig, new))
            for m in outage:
                self.assertIsNone(m["run_state"], m)
                self.assertEqual(m["reason"], "no run: taskhubd was not running at its scheduled instant")
                self.assertGreaterEqual(ts(m["detected"]), up_at - 1)
            found.update(m["run_id"] for m in new)
        # One more restart finds nothing again; each firing was logged once over all processes.
        d.stop()
        d.start()
        time.sleep(1)
        self.assertTrue(found <= {m["run_id"] for m in misses(d, "nightly")})
        for firing, lines in missed_lines(d, "nightly").items():
            self.assertEqual(len(lines), 1, "%s logged %d times:\n%s" % (firing, len(lines), "\n".join(lines)))

    def test_killed_while_the_run_runs_and_back_after_its_due_instant(self):
        d = self.daemon()
        d.write_workflow("longrun", workflow("sleep 4"))
        d.start()

        def running_early():
            # A run of the current firing that is running, seen well before S + 2s.
            for r in d.ctl_ok("runs", "longrun"):
                if r["state"] == "running" and time.time() < ts(r["scheduled"]) + 1.5:
                    return r
            return None
        run = harness.wait_until(running_early, WAIT, interval=0.02, what="a run of longrun early in its firing")
        d.proc.kill()
        d.proc.wait()
        time.sleep(4)  # past S + 2s
        d.start()
        found = [m for m in misses(d, "longrun") if m["run_id"] == run["id"]]
        self.assertEqual(len(found), 1, misses(d, "longrun"))
        # What the store said at the restart: still running, or failed once recovery found the
        # attempt lost.
        self.assertIn(found[0]["run_state"], ("running", "failed"), found[0])
        d.stop()
        d.start()
        time.sleep(1)
        self.assertEqual(len(missed_lines(d, "longrun").get(run["id"], [])), 1)

    def test_firings_before_the_key_never_count(self):
        d = self.daemon()
        d.write_workflow("late", workflow("exit 3", deadline=""))
        d.start()
        before = harness.wait_until(
            lambda: [r for r in d.ctl_ok("runs", "late") if r["state"] == "failed"] or None,
            WAIT, what="a failed run of late")
        self.assertIsNone(d.ctl_ok("show", "late")["deadline"])
        earlier = {r["id"] for r in d.ctl_ok("runs", "late")}  # every firing before the key
        self.assertTrue({r["id"] for r in before} <= earlier)
        d.write_workflow("late", workflow("exit 3"))
        d.ctl_ok("reload")
        self.assertEqual(d.ctl_ok("show", "late")["deadline"], "2s")
        first = harness.wait_until(lambda: misses(d, "late"), WAIT, what="a miss after the key was added")
        self.assertFalse({m["run_id"] for m in first} & earlier, first)
        # A restart does not look at the firings before the key either.
        d.stop()
        d.start()
        time.sleep(1)
        after = misses(d, "late")
        self.assertFalse({m["run_id"] for m in after} & earlier, after)
        self.assertFalse(set(missed_lines(d, "late")) & earlier)

    def test_a_miss_notifies_once_and_is_counted(self):
        # A miss reaches the workflow's deadline_missed targets once per firing, with the firing's
        # facts, and counts in taskhub_deadline_misses_total.
        d = self.daemon(start=False)
        events = os.path.join(d.work, "events")
        d.write_workflow("late", workflow("exit 3") + """
        [[notify]]
        on = ["deadline_missed"]
        command = "echo $TASKHUB_EVENT $TASKHUB_RUN_ID $TASKHUB_WORKFLOW >> %s"
        """ % events)
        d.start()
        miss = harness.wait_until(lambda: misses(d, "late"), WAIT, what="a miss of late")[-1]

        def notified():
            if not os.path.exists(events):
                return None
            with open(events) as f:
                lines = f.read().splitlines()
            return lines if ("deadline_missed %s late" % miss["run_id"]) in lines else None

        lines = harness.wait_until(notified, WAIT, what="the deadline_missed notification")
        self.assertEqual(len([l for l in lines if miss["run_id"] in l]), 1, lines)
        self.assertTrue(all(l.startswith("deadline_missed ") for l in lines), lines)

        def value(name_and_labels):
            text = d.ctl_ok("metrics", json=False)
            m = re.search(r"^%s (\S+)$" % re.escape(name_and_labels), text, re.M)
            self.assertIsNotNone(m, text)
            return float(m.group(1))

        self.assertGreaterEqual(value('taskhub_deadline_misses_total{workflow="late"}'), 1.0)
        # The command has written its line; the notifier counts it sent once the command exits.
        harness.wait_until(lambda: value('taskhub_notifications_total{target="command",result="sent"}') >= 1.0,
                           WAIT, what="the notification counted as sent")

    def test_deadline_without_time_trigger_is_refused(self):
        d = self.daemon()
        d.write_workflow("bootonly", """\
            deadline = "5m"

            [[trigger]]
            cron = "@reboot"

            [[task]]
            id = "t"
            plugin = "noop"
            """)
        path = os.path.join(d.workflows_dir, "bootonly.toml")
        p = subprocess.run([harness.BIN["ctl"], "--config", d.config, "validate", path],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("bootonly.toml:1: 'deadline' needs a cron, every or at trigger", p.stdout + p.stderr)


if __name__ == "__main__":
    harness.main()
