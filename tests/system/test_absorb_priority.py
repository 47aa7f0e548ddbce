"""Failures a run absorbs and workflow priorities, end to end (issue 20,
docs/workflow-format.md#on_failure-on-a-task-failures-a-run-absorbs and
#workflow-priority-across-runs): a task with on_failure = "continue" fails, its handler runs, the
run succeeds with failures_absorbed = 1 as `runs`, `show` (text and --json) and the metrics say,
and a retry keeps the count honest; an unabsorbed failure still fails the run; and with the shell
plugin at max_concurrency = 1, an urgent workflow's ready task starts before a bulk workflow's
tasks that were waiting longer. Tasks wait on marker files, never on measured sleeps."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_trigger_rules import shell_task  # noqa: E402


def metric(d, name, workflow):
    text = d.ctl_ok("metrics", json=False)
    m = re.search(r'(?m)^%s\{workflow="%s"\} (\S+)$' % (re.escape(name), re.escape(workflow)), text)
    if not m:
        raise AssertionError("no %s for %s in:\n%s" % (name, workflow, text))
    return float(m.group(1))


class AbsorbTest(harness.DaemonTestCase):
    def test_try_else_handle_succeeds_with_the_failure_counted(self):
        d = self.daemon()
        d.write_workflow("tryit", shell_task("try", "echo trying; exit 3", extra='on_failure = "continue"\n') +
                         shell_task("handle", "echo handled >> %s" % d.path("handled"), ["try"], "one_failed") +
                         shell_task("after", "true", ["try"]) +
                         shell_task("done", "true", ["handle", "after"], "all_done"))
        d.start()
        self.assertEqual(metric(d, "taskhub_task_failures_absorbed_total", "tryit"), 0)

        rc, run, err = d.ctl("run", "tryit", "--wait", timeout=30)
        self.assertEqual(rc, 0, (run, err))  # the run succeeded: taskhubctl exits 0
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["failures_absorbed"], 1)
        states = {t["id"]: t["state"] for t in run["tasks"]}
        self.assertEqual(states, {"try": "failed", "handle": "succeeded", "after": "skipped", "done": "succeeded"})
        self.assertEqual(harness.task(run, "try")["message"], "exit code 3")
        self.assertEqual(d.read("handled"), "handled\n")
        rid = run["id"]

        shown = d.ctl_ok("show", rid)
        self.assertEqual(shown["failures_absorbed"], 1)
        events = [(e["task"], e["kind"], e["detail"]) for e in shown["events"] if e["kind"] == "failure_absorbed"]
        self.assertEqual(events, [("try", "failure_absorbed", "on_failure = continue: the run goes on (exit code 3)")])
        text = d.ctl_ok("show", rid, json=False)
        self.assertRegex(text, r"(?m)^state     succeeded$")
        self.assertRegex(text, r"(?m)^absorbed  1 task failure\(s\) the run went on from")
        runs = d.ctl_ok("runs", json=False)
        line = [x for x in runs.splitlines() if x.startswith(rid)]
        self.assertEqual(len(line), 1, runs)
        self.assertIn("succeeded (1 absorbed)", line[0])
        self.assertEqual(d.ctl_ok("runs")[0]["failures_absorbed"], 1)
        self.assertEqual(metric(d, "taskhub_task_failures_absorbed_total", "tryit"), 1)

        # Retry: the absorbed failed task runs again; it fails again, so the count stays 1
        # (taken back, then counted again), and the metric counts the second absorption.
        d.ctl_ok("retry", rid)
        run = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["failures_absorbed"], 1)
        self.assertEqual(harness.task(run, "try")["attempt"], 2)
        self.assertEqual(metric(d, "taskhub_task_failures_absorbed_total", "tryit"), 2)

    def test_an_unabsorbed_failure_still_fails_the_run(self):
        d = self.daemon()
        gate = d.path("gate")
        d.write_workflow("mixed", shell_task("soft", "exit 4", extra='on_failure = "continue"\n') +
                         shell_task("hard", "while [ ! -e %s ]; do sleep 0.05; done; exit 5" % gate))
        d.start()
        rid = d.ctl_ok("run", "mixed")["id"]
        d.wait_task_state(rid, "soft", "failed")
        # soft's failure did not stop the run (fail_fast): hard is still running.
        self.assertEqual(harness.task(d.run_record(rid), "hard")["state"], "running")
        open(gate, "w").close()
        run = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(run["state"], "failed")
        self.assertEqual(run["message"], "task 'hard' failed: exit code 5")
        self.assertEqual(run["failures_absorbed"], 1)
        rc, out, err = d.ctl("wait", rid, json=False)
        self.assertEqual(rc, 1, (out, err))

    def test_bad_values_are_refused_naming_file_line_and_task(self):
        d = self.daemon()
        path = d.write_workflow("bad", 'priority = 5000\n' + shell_task("t", "true", extra='on_failure = "sometimes"\n'))
        d.start()
        listing = d.ctl_ok("list")
        self.assertEqual(listing["workflows"], [])
        self.assertEqual(sorted(e["message"] for e in listing["errors"]), [
            path + ":1: 'priority' must be between -1000 and 1000, found 5000",
            path + ":7: task 't': 'on_failure' must be fail | continue, found \"sometimes\""])


class PriorityTest(harness.DaemonTestCase):
    def test_urgent_workflow_overtakes_bulk_at_max_concurrency(self):
        # extra_config lands in the harness's [plugins.shell] table.
        d = self.daemon(extra_config="max_concurrency = 1\n")
        order, gate = d.path("order"), d.path("gate")

        def step(name):
            return "echo %s >> %s; while [ ! -e %s ]; do sleep 0.05; done" % (name, order, gate)

        d.write_workflow("bulk", "".join(shell_task(b, step(b)) for b in ("b1", "b2", "b3")))
        d.write_workflow("urgent", "priority = 100\n" + shell_task("u", step("u")))
        d.start()
        bulk = d.ctl_ok("run", "bulk")["id"]
        harness.wait_until(lambda: os.path.exists(order), what="a bulk task to start")
        urgent = d.ctl_ok("run", "urgent")["id"]
        run = d.wait_task_state(urgent, "u", "ready")
        self.assertIn("max_concurrency (1)", harness.task(run, "u")["waiting"])
        waiting = [t["id"] for t in d.run_record(bulk)["tasks"] if t["state"] == "ready"]
        self.assertEqual(len(waiting), 2)  # two bulk tasks were ready before u
        open(gate, "w").close()
        self.assertEqual(d.wait_run_state(bulk, ("succeeded", "failed"))["state"], "succeeded")
        self.assertEqual(d.wait_run_state(urgent, ("succeeded", "failed"))["state"], "succeeded")
        started = d.read("order").split()
        self.assertEqual(len(started), 4, started)
        self.assertEqual(started[1], "u", started)
        self.assertEqual(sorted(started[:1] + started[2:]), ["b1", "b2", "b3"])


if __name__ == "__main__":
    harness.main()
