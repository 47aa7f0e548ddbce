"""SIGTERM while a task runs: the daemon gives it shutdown_grace, cancels it, exits 0, and the
run is recorded as cancelled."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class GracefulShutdownTest(harness.DaemonTestCase):
    def test_sigterm_cancels_running_task(self):
        d = self.daemon(shutdown_grace="1s")
        marker = harness.new_marker()
        d.write_workflow("longjob", """\
            [[task]]
            id = "sleep"
            plugin = "shell"
            command = "echo $$ > %s; sleep 600 & wait # %s"
            env = { SYSTEST_MARKER = "%s" }
            """ % (d.path("sh.pid"), marker, marker))
        d.start()
        rid = d.ctl_ok("run", "longjob")["id"]
        harness.wait_until(lambda: os.path.exists(d.path("sh.pid")) and
                           len(harness.processes_with_marker(marker)) >= 2,
                           what="the task to start")
        d.wait_task_state(rid, "sleep", "running")

        rc, took = d.stop(signal.SIGTERM, timeout=20)
        self.assertEqual(rc, 0, "taskhubd exit status after SIGTERM")
        # shutdown_grace (1s) plus a little: SIGTERM ends `sleep` at once.
        self.assertLess(took, 5, "taskhubd took %.1fs to stop with shutdown_grace = 1s" % took)
        self.assertGreaterEqual(took, 0.9, "taskhubd did not give the task its shutdown_grace")
        leftovers = harness.processes_with_marker(marker)
        self.assertEqual(leftovers, [], "task processes left after shutdown: %r" % leftovers)

        d.start()
        run = d.ctl_ok("show", rid)
        self.assertEqual(run["state"], "cancelled", run)
        self.assertIn("shut down", run["message"])
        self.assertEqual(harness.task(run, "sleep")["state"], "cancelled")
        self.assertEqual(d.ctl_ok("status")["active_runs"], 0)

    def test_sigterm_lets_short_task_finish(self):
        # A task that ends within shutdown_grace is not cancelled: it completes.
        d = self.daemon(shutdown_grace="10s")
        d.write_workflow("short", """\
            [[task]]
            id = "nap"
            plugin = "shell"
            command = "touch %s; sleep 0.5; echo finished > %s"
            """ % (d.path("started"), d.path("finished")))
        d.start()
        rid = d.ctl_ok("run", "short")["id"]
        harness.wait_until(lambda: os.path.exists(d.path("started")), what="the task to start")
        rc, took = d.stop(signal.SIGTERM, timeout=20)
        self.assertEqual(rc, 0)
        self.assertLess(took, 8, "taskhubd waited for the whole grace instead of the task")
        self.assertEqual(d.read("finished"), "finished\n")
        d.start()
        self.assertEqual(d.ctl_ok("show", rid)["state"], "succeeded")


if __name__ == "__main__":
    harness.main()
