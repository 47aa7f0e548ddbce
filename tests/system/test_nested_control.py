"""Nested workflows under control (issue 3): a retried workflow task starts a new child run
(`<parent>/<task>.2`); a workflow task's timeout stops its child run and its processes; pause and
resume of a parent apply to its subtree; a daemon killed while a tree runs leaves no run of the
tree active after the restart."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_nested as nested  # noqa: E402


class NestedControlTest(harness.DaemonTestCase):
    def test_retry_of_a_workflow_task_starts_a_new_child_run(self):
        d = self.daemon()
        d.write_workflow("parent", """\
            [[task]]
            id = "sub"
            workflow = "flaky"
            retries = 2
            retry_delay = "100ms"
            """)
        d.write_workflow("flaky", """\
            [[task]]
            id = "once"
            plugin = "shell"
            command = "if [ -e %(f)s ]; then echo second; else touch %(f)s; exit 9; fi"
            """ % {"f": d.path("failed-once")})
        d.start()
        rc, run, err = d.ctl("run", "parent", "--wait", timeout=30)
        self.assertEqual(rc, 0, (run, err))
        self.assertEqual(run["state"], "succeeded")
        sub = harness.task(run, "sub")
        self.assertEqual(sub["attempt"], 2)
        first, second = run["id"] + "/sub.1", run["id"] + "/sub.2"
        if "child_run" in sub:
            self.assertEqual(sub["child_run"], second)
        tree = nested.run_tree(d, run["id"])
        # run_tree follows "children" (both attempts' runs) or child_run (the last one).
        self.assertIn(second, tree)
        self.assertEqual(tree[second]["state"], "succeeded")
        rc, one, _ = d.ctl("show", first)
        self.assertEqual(rc, 0, "the first attempt's child run %s is not kept" % first)
        self.assertEqual(one["state"], "failed")
        self.assertIn("exit code 9", one["message"])
        if first not in tree:
            tree[first] = one
        ends = [e["detail"] for e in tree[run["id"]]["events"] if e["task"] == "sub" and e["kind"] == "end"]
        self.assertEqual(len(ends), 2, ends)
        self.assertIn(first, ends[0])
        self.assertIn("retry 1 of 2", ends[0])
        nested.check_event_log(self, tree, run["id"])

    def test_timeout_of_a_workflow_task_stops_its_child(self):
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("parent", """\
            [[task]]
            id = "sub"
            workflow = "slow"
            timeout = "1s"
            """)
        d.write_workflow("slow", """\
            [[task]]
            id = "deeper"
            workflow = "sleeper"
            """)
        d.write_workflow("sleeper", """\
            [[task]]
            id = "z"
            plugin = "shell"
            command = "sleep 600"
            env = { SYSTEST_MARKER = "%s" }
            """ % marker)
        d.start()
        t0 = time.monotonic()
        rc, run, err = d.ctl("run", "parent", "--wait", timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 1, (run, err))
        self.assertLess(elapsed, 8, "the workflow task's 1 s timeout took %.1f s to end the run" % elapsed)
        self.assertEqual(run["state"], "failed")
        sub = harness.task(run, "sub")
        self.assertEqual(sub["state"], "failed")
        self.assertIn("timed out after 1s", sub["message"])
        tree = nested.run_tree(d, run["id"])
        self.assertEqual(len(tree), 3, sorted(tree))
        for rid, r in tree.items():
            if rid != run["id"]:
                self.assertIn(r["state"], ("cancelled", "failed"), (rid, r["message"]))
        harness.wait_until(lambda: not harness.processes_with_marker(marker), timeout=5,
                           what="the timed-out child's `sleep 600` to exit")
        nested.check_event_log(self, tree, run["id"])

    def test_pause_and_resume_of_the_parent_apply_to_the_subtree(self):
        d = self.daemon()
        d.write_workflow("parent", """\
            [[task]]
            id = "sub"
            workflow = "steps"

            [[task]]
            id = "after"
            plugin = "shell"
            depends_on = ["sub"]
            command = "touch %s"
            """ % d.path("after-ran"))
        d.write_workflow("steps", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = "touch %(a)s; sleep 1"

            [[task]]
            id = "b"
            plugin = "shell"
            depends_on = ["a"]
            command = "touch %(b)s"
            """ % {"a": d.path("a-started"), "b": d.path("b-ran")})
        d.start()
        rid = d.ctl_ok("run", "parent")["id"]
        child = rid + "/sub.1"
        harness.wait_until(lambda: os.path.exists(d.path("a-started")), what="task a of the child to start")
        rc, _, err = d.ctl("pause", rid)
        if rc != 0 and "unknown command" in err:
            self.skipTest("taskhubctl pause is not available: %s" % err.strip())
        self.assertEqual(rc, 0, err)
        d.wait_task_state(child, "a", "succeeded", timeout=10)
        time.sleep(1.0)
        self.assertFalse(os.path.exists(d.path("b-ran")), "b of the child run started while the parent was paused")
        self.assertEqual(d.ctl_ok("show", rid)["state"], "paused")
        shown = d.ctl_ok("show", child)
        self.assertEqual(shown["state"], "paused")
        self.assertIn(harness.task(shown, "b")["state"], ("pending", "ready"))

        rc, _, err = d.ctl("resume", rid)
        self.assertEqual(rc, 0, err)
        final = d.wait_run_state(rid, ("succeeded", "failed", "cancelled"), timeout=10)
        self.assertEqual(final["state"], "succeeded", final["message"])
        self.assertTrue(os.path.exists(d.path("b-ran")))
        self.assertTrue(os.path.exists(d.path("after-ran")))
        nested.check_event_log(self, nested.run_tree(d, rid), rid)

    def test_restart_after_kill_leaves_no_active_run_in_the_tree(self):
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("root", """\
            [[task]]
            id = "sub"
            workflow = "mid"
            """)
        d.write_workflow("mid", """\
            [[task]]
            id = "deeper"
            workflow = "leaf"

            [[task]]
            id = "later"
            plugin = "shell"
            depends_on = ["deeper"]
            command = "true"
            """)
        d.write_workflow("leaf", """\
            [[task]]
            id = "z"
            plugin = "shell"
            command = "sleep 600"
            env = { SYSTEST_MARKER = "%s" }
            """ % marker)
        d.start()
        rid = d.ctl_ok("run", "root")["id"]
        harness.wait_until(lambda: harness.processes_with_marker(marker), what="the leaf to run")
        ids = sorted(nested.run_tree(d, rid))
        self.assertEqual(len(ids), 3, ids)
        d.stop(signal.SIGKILL)
        harness.reap_orphans()  # the orphaned `sleep 600`
        d.start()
        tree = nested.run_tree(d, rid)
        self.assertEqual(sorted(tree), ids)
        # The tree recovers as one: the leaf's lost attempt (no retries) fails it, and that
        # failure travels up through the workflow tasks that waited for the child runs.
        for r in tree.values():
            self.assertEqual(r["state"], "failed", (r["id"], r["state"], r["message"]))
            self.assertIn("lost", r["message"])
            self.assertIn("recovered", [e["kind"] for e in r["events"]], r["id"])
            for t in r["tasks"]:
                self.assertIn(t["state"], ("failed", "cancelled", "skipped"), (r["id"], t))
        status = d.ctl_ok("status")
        self.assertEqual(status["active_runs"], 0)
        self.assertEqual(status["running_tasks"], 0)
        # The workflows still run after the restart.
        d.write_workflow("leaf", """\
            [[task]]
            id = "z"
            plugin = "shell"
            command = "true"
            """)
        d.ctl_ok("reload")
        rc, run, err = d.ctl("run", "root", "--wait", timeout=30)
        self.assertEqual(rc, 0, (run, err))


if __name__ == "__main__":
    harness.main()
