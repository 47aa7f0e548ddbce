"""`taskhubctl cancel` stops a running run within a second and leaves no process behind."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class CancelTest(harness.DaemonTestCase):
    def test_cancel_running_run(self):
        d = self.daemon()
        marker = harness.new_marker()
        # Two tasks in parallel: a shell that waits for a backgrounded sleep, and a plain sleep.
        # The marker is in each shell's command line and, through env, in every descendant's
        # environment.
        d.write_workflow("sleeper", """\
            [[task]]
            id = "bg"
            plugin = "shell"
            command = "sleep 600 & echo $! > %(bgpid)s; echo $$ > %(shpid)s; wait # %(m)s"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "fg"
            plugin = "shell"
            command = "echo $$ > %(fgpid)s; sleep 600 # %(m)s"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "later"
            plugin = "shell"
            depends_on = ["bg"]
            command = "touch %(later)s"
            """ % {"bgpid": d.path("bg.pid"), "shpid": d.path("sh.pid"), "fgpid": d.path("fg.pid"),
                   "later": d.path("later-ran"), "m": marker})
        d.start()

        run = d.ctl_ok("run", "sleeper")
        rid = run["id"]
        self.assertIn(run["state"], ("running", "queued"))
        def started():
            try:
                return [int(d.read(n)) for n in ("bg.pid", "sh.pid", "fg.pid")]
            except (FileNotFoundError, ValueError):
                return None
        pids = harness.wait_until(started, what="the tasks to write their pids")
        harness.wait_until(lambda: len(harness.processes_with_marker(marker)) >= 3,
                           what="the task processes to be visible")
        for pid in pids:
            self.assertTrue(harness.pid_alive(pid), pid)
        running = d.ctl_ok("show", rid)
        self.assertEqual(running["state"], "running")
        self.assertEqual(harness.task(running, "bg")["state"], "running")

        # overlap = skip (the default): a second run while this one is active is recorded as
        # skipped, and `run` exits 1.
        _, skipped, err = d.ctl("run", "sleeper")
        self.assertIsInstance(skipped, dict, err)
        self.assertEqual(skipped["state"], "skipped", skipped)
        self.assertIn(rid, skipped["message"])
        rc, _, err = d.ctl("run", "sleeper", json=False)
        self.assertEqual(rc, 1)
        self.assertIn("overlap = skip", err)

        t0 = time.monotonic()
        rc, out, err = d.ctl("cancel", rid)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["id"], rid)
        final = d.wait_run_state(rid, "cancelled", timeout=10)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0, "the run took %.2fs to become cancelled" % elapsed)

        self.assertEqual({t["id"]: t["state"] for t in final["tasks"]},
                         {"bg": "cancelled", "fg": "cancelled", "later": "cancelled"})
        self.assertIn("cancelled by uid", final["message"])
        self.assertIso(final["ended"], "ended")
        self.assertFalse(os.path.exists(d.path("later-ran")))

        # Nothing is left: not the shells, not the backgrounded sleep, not the foreground sleep.
        leftovers = harness.processes_with_marker(marker)
        self.assertEqual(leftovers, [], "processes left after cancel: %r" % leftovers)
        for pid in pids:
            self.assertFalse(harness.pid_alive(pid), "pid %d is still alive after cancel" % pid)

        # A second cancel, and `wait`, see a finished run.
        rc, _, err = d.ctl("cancel", rid)
        self.assertEqual(rc, 1)
        self.assertIn("already ended", err)
        rc, waited, _ = d.ctl("wait", rid)
        self.assertEqual(rc, 1)
        self.assertEqual(waited["state"], "cancelled")

        status = d.ctl_ok("status")
        self.assertEqual(status["active_runs"], 0)
        self.assertEqual(status["running_tasks"], 0)

    def test_cancel_unknown_run(self):
        d = self.daemon()
        d.write_workflow("noop", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        d.start()
        rc, _, err = d.ctl("cancel", "noop@20000101T000000Z")
        self.assertEqual(rc, 1)
        self.assertIn("no run", err)


if __name__ == "__main__":
    harness.main()
