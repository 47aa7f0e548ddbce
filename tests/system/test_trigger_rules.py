"""Trigger rules end to end (issue 3, docs/workflow-format.md#trigger-rules): a DAG with one
failing task, every rule against succeeded / failed / skipped upstream tasks, under
on_failure = "continue" (pure rule semantics) and under the default fail_fast."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_nested as nested  # noqa: E402


def shell_task(tid, command, deps=(), rule=None, extra=""):
    text = '\n[[task]]\nid = "%s"\nplugin = "shell"\ncommand = \'%s\'\n' % (tid, command)
    if deps:
        text += "depends_on = [%s]\n" % ", ".join('"%s"' % x for x in deps)
    if rule:
        text += 'trigger_rule = "%s"\n' % rule
    return text + extra


class TriggerRulesTest(harness.DaemonTestCase):
    def test_truth_table_on_failure_continue(self):
        d = self.daemon()
        log = d.path("ran.log")

        def mark(tid):
            return "echo %s >> %s" % (tid, log)

        # Upstream outcomes: ok = S, bad = F, bad2 = F, sk = K (all_success below bad), sk2 = K.
        # bad ends 0.5 s after the start, so that `always` visibly does not wait for it.
        # name: (upstream, rule, expected final state)
        cases = {
            "ss_all_success": (["ok", "ok2"], "all_success", "succeeded"),
            "sf_all_success": (["ok", "bad"], "all_success", "skipped"),
            "sk_all_success": (["ok", "sk"], "all_success", "skipped"),
            "sf_all_done": (["ok", "bad"], "all_done", "succeeded"),
            "kk_all_done": (["sk", "sk2"], "all_done", "succeeded"),
            "sf_one_failed": (["ok", "bad"], "one_failed", "succeeded"),
            "fk_one_failed": (["bad", "sk"], "one_failed", "succeeded"),
            "sk_one_failed": (["ok", "sk"], "one_failed", "skipped"),
            "ss_one_failed": (["ok", "ok2"], "one_failed", "skipped"),
            "ss_none_failed": (["ok", "ok2"], "none_failed", "succeeded"),
            "sk_none_failed": (["ok", "sk"], "none_failed", "succeeded"),
            "kk_none_failed": (["sk", "sk2"], "none_failed", "succeeded"),
            "sf_none_failed": (["ok", "bad"], "none_failed", "skipped"),
            "sf_one_success": (["ok", "bad"], "one_success", "succeeded"),
            "fk_one_success": (["bad", "sk"], "one_success", "skipped"),
            "ff_all_failed": (["bad", "bad2"], "all_failed", "succeeded"),
            "sf_all_failed": (["ok", "bad"], "all_failed", "skipped"),
            "f_always": (["bad"], "always", "succeeded"),
            "kk_always": (["sk", "sk2"], "always", "succeeded"),
            # skips propagate as the rules say
            "below_skip": (["sf_all_success"], "all_success", "skipped"),
            "below_skip_none_failed": (["sf_all_success"], "none_failed", "succeeded"),
            "below_one_failed": (["sf_one_failed"], "all_success", "succeeded"),
        }
        text = '[policy]\non_failure = "continue"\n'
        text += shell_task("ok", mark("ok"))
        text += shell_task("ok2", mark("ok2"))
        text += shell_task("bad", "sleep 0.5; %s; exit 3" % mark("bad"))
        text += shell_task("bad2", "%s; exit 4" % mark("bad2"))
        text += shell_task("sk", mark("sk"), ["bad"])
        text += shell_task("sk2", mark("sk2"), ["bad2"])
        for tid, (deps, rule, _) in cases.items():
            text += shell_task(tid, mark(tid), deps, rule)
        with open(os.path.join(d.workflows_dir, "rules.toml"), "w") as f:
            f.write(text)
        d.start()

        rc, run, err = d.ctl("run", "rules", "--wait", timeout=30)
        self.assertEqual(rc, 1, (run, err))
        self.assertEqual(run["state"], "failed")
        self.assertIn(run["message"], ("task 'bad' failed: exit code 3", "task 'bad2' failed: exit code 4"))

        states = {t["id"]: t["state"] for t in run["tasks"]}
        expected = {"ok": "succeeded", "ok2": "succeeded", "bad": "failed", "bad2": "failed",
                    "sk": "skipped", "sk2": "skipped"}
        expected.update({tid: want for tid, (_, _, want) in cases.items()})
        wrong = {tid: (states.get(tid), want) for tid, want in expected.items() if states.get(tid) != want}
        self.assertEqual(wrong, {}, "tasks whose final state breaks the truth table: {id: (got, expected)}")

        # Exactly the tasks that succeeded or failed ran, once each.
        with open(log) as f:
            ran = f.read().split()
        self.assertEqual(sorted(ran), sorted(t for t, s in expected.items() if s in ("succeeded", "failed")))
        for tid, want in expected.items():
            t = harness.task(run, tid)
            if want == "skipped":
                self.assertIsNone(t["started"], tid)
                self.assertIn("trigger_rule", t["message"], (tid, t["message"]))

        # always starts at once, without waiting for bad (which sleeps 0.5 s first).
        shown = d.ctl_ok("show", run["id"])
        f_always = harness.task(shown, "f_always")
        bad = harness.task(shown, "bad")
        self.assertLess(nested.iso_seconds(f_always["started"]), nested.iso_seconds(bad["ended"]),
                        "`always` waited for its upstream")
        # A task is decided as soon as the outcome is certain: sf_one_success runs once ok has
        # succeeded, before bad has ended.
        self.assertLess(nested.iso_seconds(harness.task(shown, "sf_one_success")["started"]),
                        nested.iso_seconds(bad["ended"]))
        nested.check_event_log(self, {run["id"]: shown}, run["id"])

    def test_fail_fast_spares_cleanup_rules(self):
        """Under fail_fast the failure cancels what has not started, except tasks whose rule can
        run after a failure (all_done, one_failed, always); running tasks are cancelled."""
        d = self.daemon()
        marker = harness.new_marker()
        log = d.path("ran.log")

        def mark(tid):
            return "echo %s >> %s" % (tid, log)

        text = shell_task("always_first", mark("always_first"), rule="always")
        text += shell_task("slow", "sleep 600", extra='env = { SYSTEST_MARKER = "%s" }\n' % marker)
        text += shell_task("bad", "sleep 0.3; exit 3")
        text += shell_task("after_slow", mark("after_slow"), ["slow"])
        text += shell_task("cleanup", mark("cleanup"), ["slow", "bad"], "all_done")
        text += shell_task("alert", mark("alert"), ["bad"], "one_failed")
        text += shell_task("nf", mark("nf"), ["bad"], "none_failed")
        text += shell_task("after_alert", mark("after_alert"), ["alert"])
        with open(os.path.join(d.workflows_dir, "ff.toml"), "w") as f:
            f.write(text)
        d.start()

        t0 = time.monotonic()
        rc, run, err = d.ctl("run", "ff", "--wait", timeout=30)
        self.assertEqual(rc, 1, (run, err))
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(run["state"], "failed")
        self.assertEqual(run["message"], "task 'bad' failed: exit code 3")
        states = {t["id"]: t["state"] for t in run["tasks"]}
        # A pending task whose rule can no longer be met once its upstream ended (after_slow below
        # the cancelled slow, nf below the failed bad) is skipped by its rule, as in
        # test_failure_policy; one whose rule is met while the run is stopping (after_alert, below
        # alert, which ran after the failure) is cancelled.
        want = {"always_first": "succeeded", "slow": "cancelled", "bad": "failed", "after_slow": "skipped",
                "cleanup": "succeeded", "alert": "succeeded", "nf": "skipped", "after_alert": "cancelled"}
        self.assertEqual(states, want)
        with open(log) as f:
            ran = sorted(f.read().split())
        self.assertNotIn("after_slow", ran)
        self.assertNotIn("nf", ran)
        self.assertIn("cleanup", ran)
        self.assertIn("alert", ran)
        self.assertEqual(harness.processes_with_marker(marker), [])
        shown = d.ctl_ok("show", run["id"])
        nested.check_event_log(self, {run["id"]: shown}, run["id"])

    def test_rules_on_nested_workflow_tasks(self):
        """Trigger rules apply to workflow tasks like to plugin tasks: a failed child run is a
        failed upstream."""
        d = self.daemon()
        d.write_workflow("failing", """\
            [[task]]
            id = "x"
            plugin = "shell"
            command = "exit 5"
            """)
        d.write_workflow("fine", """\
            [[task]]
            id = "y"
            plugin = "shell"
            command = "true"
            """)
        d.write_workflow("parent", """\
            [policy]
            on_failure = "continue"

            [[task]]
            id = "f"
            workflow = "failing"

            [[task]]
            id = "g"
            workflow = "fine"

            [[task]]
            id = "handler"
            workflow = "fine"
            depends_on = ["f"]
            trigger_rule = "one_failed"

            [[task]]
            id = "skipped_child"
            workflow = "fine"
            depends_on = ["f", "g"]

            [[task]]
            id = "done"
            plugin = "shell"
            command = "true"
            depends_on = ["f", "g", "skipped_child"]
            trigger_rule = "all_done"
            """)
        d.start()
        rc, run, err = d.ctl("run", "parent", "--wait", timeout=30)
        self.assertEqual(rc, 1, (run, err))
        states = {t["id"]: t["state"] for t in run["tasks"]}
        self.assertEqual(states, {"f": "failed", "g": "succeeded", "handler": "succeeded",
                                  "skipped_child": "skipped", "done": "succeeded"})
        self.assertIn("exit code 5", harness.task(run, "f")["message"])
        tree = nested.run_tree(d, run["id"])
        # f, g, handler started child runs; skipped_child did not.
        self.assertEqual(sorted(tree), sorted([run["id"]] + ["%s/%s.1" % (run["id"], t) for t in ("f", "g", "handler")]))
        nested.check_event_log(self, tree, run["id"])


if __name__ == "__main__":
    harness.main()
