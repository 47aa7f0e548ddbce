"""A failing task fails its run; on_failure = fail_fast cancels the rest, "continue" lets
independent branches finish and skips what depends on the failure."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class FailurePolicyTest(harness.DaemonTestCase):
    def test_failing_task_fails_run(self):
        d = self.daemon()
        d.write_workflow("broken", """\
            [[task]]
            id = "bad"
            plugin = "shell"
            command = "echo about to fail; exit 3"
            """)
        d.start()
        rc, run, err = d.ctl("run", "broken", "--wait")
        self.assertEqual(rc, 1, "run --wait of a failing run must exit 1: %s %s" % (run, err))
        self.assertEqual(run["state"], "failed")
        self.assertIn("'bad'", run["message"], "the run's message names the failed task")

        shown = d.ctl_ok("show", run["id"])
        self.assertEqual(shown["state"], "failed")
        bad = harness.task(shown, "bad")
        self.assertEqual(bad["state"], "failed")
        self.assertEqual(bad["exit_code"], 3)
        self.assertIn("3", bad["message"])
        self.assertIn("bad", shown["message"])
        self.assertIn("exit code 3", shown["message"])

        # `wait` on the ended run answers at once, also with 1; without --json the reason is on stderr.
        rc, _, err = d.ctl("wait", run["id"], json=False)
        self.assertEqual(rc, 1)
        self.assertIn(run["id"], err)
        self.assertIn("failed", err)
        self.assertEqual(d.ctl_ok("logs", run["id"], "bad", json=False), "about to fail\n")

    def test_fail_fast_cancels_parallel_and_downstream(self):
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("fastfail", """\
            [policy]
            on_failure = "fail_fast"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "sleep 0.3; exit 3"

            [[task]]
            id = "long"
            plugin = "shell"
            command = "echo $$ > %s; sleep 600 # %s"
            env = { SYSTEST_MARKER = "%s" }

            [[task]]
            id = "after"
            plugin = "shell"
            depends_on = ["bad"]
            command = "touch %s"
            """ % (d.path("long.pid"), marker, marker, d.path("after-ran")))
        d.start()
        t0 = time.monotonic()
        rc, run, err = d.ctl("run", "fastfail", "--wait")
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 1, err)
        self.assertLess(elapsed, 15, "fail_fast did not stop the long task promptly")
        self.assertEqual(run["state"], "failed")
        self.assertIn("'bad'", run["message"])
        states = {t["id"]: t["state"] for t in run["tasks"]}
        # `after` depends on `bad`: its trigger rule (all_success) can no longer be met, so it is
        # skipped rather than cancelled; the running `long` is cancelled by fail_fast.
        self.assertEqual(states, {"bad": "failed", "long": "cancelled", "after": "skipped"})
        self.assertEqual(harness.task(run, "bad")["exit_code"], 3)
        self.assertEqual(harness.task(run, "after")["attempt"], 0, "the downstream task must never start")
        self.assertFalse(os.path.exists(d.path("after-ran")), "the downstream task ran")
        self.assertEqual(harness.task(run, "long")["attempt"], 1, "the long task never started")
        harness.wait_until(lambda: not harness.processes_with_marker(marker), timeout=10,
                           what="the cancelled task's processes to be gone")

    def test_continue_runs_independent_branch(self):
        d = self.daemon()
        d.write_workflow("carryon", """\
            [policy]
            on_failure = "continue"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 3"

            [[task]]
            id = "down"
            plugin = "shell"
            depends_on = ["bad"]
            command = "touch %s"

            [[task]]
            id = "further"
            plugin = "shell"
            depends_on = ["down"]
            command = "touch %s"

            [[task]]
            id = "other"
            plugin = "shell"
            command = "sleep 0.5; echo other > %s"

            [[task]]
            id = "other2"
            plugin = "noop"
            depends_on = ["other"]
            sleep_ms = 10
            """ % (d.path("down-ran"), d.path("further-ran"), d.path("other-ran")))
        d.start()
        rc, run, err = d.ctl("run", "carryon", "--wait")
        self.assertEqual(rc, 1, err)
        self.assertEqual(run["state"], "failed")
        self.assertIn("'bad'", run["message"])
        states = {t["id"]: t["state"] for t in run["tasks"]}
        self.assertEqual(states, {"bad": "failed", "down": "skipped", "further": "skipped",
                                  "other": "succeeded", "other2": "succeeded"})
        self.assertEqual(d.read("other-ran"), "other\n")
        self.assertFalse(os.path.exists(d.path("down-ran")))
        self.assertFalse(os.path.exists(d.path("further-ran")))

    def test_retries_and_timeout(self):
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("flaky", """\
            [[task]]
            id = "second-time-lucky"
            plugin = "shell"
            retries = 2
            retry_delay = "200ms"
            command = "echo attempt $TASKHUB_ATTEMPT; if [ ! -e %s ]; then touch %s; exit 5; fi"
            """ % (d.path("tried"), d.path("tried")))
        d.write_workflow("slowpoke", """\
            [[task]]
            id = "stuck"
            plugin = "shell"
            timeout = "500ms"
            command = "sleep 600 # %s"
            env = { SYSTEST_MARKER = "%s" }
            """ % (marker, marker))
        d.start()

        rc, run, err = d.ctl("run", "flaky", "--wait")
        self.assertEqual(rc, 0, err)
        t = harness.task(run, "second-time-lucky")
        self.assertEqual((t["state"], t["attempt"], t["exit_code"]), ("succeeded", 2, 0))
        self.assertEqual(d.ctl_ok("logs", run["id"], "second-time-lucky", "--attempt", "1", json=False),
                         "attempt 1\n")
        self.assertEqual(d.ctl_ok("logs", run["id"], "second-time-lucky", json=False), "attempt 2\n")
        ends = [e["detail"] for e in d.ctl_ok("show", run["id"])["events"] if e["kind"] == "end"]
        self.assertEqual(len(ends), 2, ends)
        self.assertIn("retry 1 of 2", ends[0])

        t0 = time.monotonic()
        rc, run, err = d.ctl("run", "slowpoke", "--wait")
        self.assertEqual(rc, 1, err)
        self.assertLess(time.monotonic() - t0, 10)
        t = harness.task(run, "stuck")
        self.assertEqual(t["state"], "failed")
        self.assertIn("timed out after", t["message"])
        harness.wait_until(lambda: not harness.processes_with_marker(marker), timeout=10,
                           what="the timed-out task's processes to be gone")


if __name__ == "__main__":
    harness.main()
