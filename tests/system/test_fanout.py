"""Fan-out (`foreach`, issue 20; docs/workflow-format.md#fan-out-foreach) with a real taskhubd,
through taskhubctl only: a 1,000-item fan-out of shell tasks over an upstream output, a fan-out
of child workflows keyed by item, an empty list, hostile items (shell metacharacters) landing as
data, cancel and retry of instances, and a kill -9 in the middle of a fan-out (finished
instances kept, the list not expanded again)."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def instances(run, fan):
    return [t for t in run["tasks"] if t.get("fan_out") == fan]


class FanOutTest(harness.DaemonTestCase):
    def test_thousand_shell_instances_over_an_output(self):
        d = self.daemon(start=False)
        out = d.path("out")
        os.makedirs(out)
        d.write_workflow("big", """\
            [[task]]
            id = "list"
            plugin = "shell"
            command = "printf '::set-output files=['; seq -s, 0 999 | tr -d '\\\\n'; printf ']\\\\n'"

            [[task]]
            id = "convert"
            plugin = "shell"
            depends_on = ["list"]
            foreach = "${tasks.list.outputs.files}"
            max_parallel = 8
            command = "echo item-${item} index-${index} > %s/${item}; echo ::set-output n=${item}"

            [[task]]
            id = "report"
            plugin = "shell"
            depends_on = ["convert"]
            command = "echo converted ${tasks.convert.outputs.succeeded} of ${tasks.convert.outputs.count} > %s/report"
            """ % (out, out))
        d.start()
        rid = d.ctl_ok("run", "big")["id"]
        # watch (not a terminal): the fan-out's progress, not a line per instance.
        rc, watched, err = d.ctl("watch", rid, json=False, timeout=240)
        self.assertEqual(rc, 0, (watched, err))
        self.assertRegex(watched, r"convert  \d+/1000")
        self.assertNotIn("convert[5]", watched)
        self.assertIn("progress: 3/3 tasks done (3 succeeded)", watched)
        rc, run, err = d.ctl("wait", rid, timeout=60)
        self.assertEqual(rc, 0, (run, err))
        self.assertEqual(run["state"], "succeeded")
        fan = harness.task(run, "convert")
        self.assertEqual(fan["state"], "succeeded")
        self.assertEqual(fan["instances"], {"succeeded": 1000, "count": 1000})
        self.assertEqual(fan["outputs"]["count"], "1000")
        self.assertEqual(fan["outputs"]["n"][:3], ["0", "1", "2"])  # a typed output: a JSON array
        self.assertEqual(len(instances(run, "convert")), 1000)
        self.assertEqual(len(os.listdir(out)), 1001)
        self.assertEqual(d.read("out", "7"), "item-7 index-7\n")
        self.assertEqual(d.read("out", "report"), "converted 1000 of 1000\n")
        # Each instance has its own log.
        logs = d.ctl_ok("logs", run["id"], "convert[7]", json=False)
        self.assertIn("::set-output n=7", logs)
        # show groups the instances under their task.
        text = d.ctl_ok("show", run["id"], json=False)
        self.assertIn("convert[*]", text)
        self.assertIn("1000 instances: 1000 succeeded", text)
        self.assertNotIn("convert[500] ", text)
        # A read-only caller, whose answers are bounded (max_answer_size), gets the run without
        # the instances that succeeded and their routine events, with the counts.
        if os.geteuid() == 0 and os.stat(harness.BIN["ctl"]).st_mode & 0o001:
            os.chmod(d.dir, 0o755)
            os.chmod(d.socket, 0o666)
            rc, small, err = d.ctl("show", run["id"], preexec_fn=harness.demote_to_nobody)
            self.assertEqual(rc, 0, err)
            fan = harness.task(small, "convert")
            self.assertEqual(fan["instances"]["succeeded"], 1000)
            self.assertEqual(fan["instances_omitted"], 1000)
            self.assertEqual(instances(small, "convert"), [])
            self.assertFalse([e for e in small["events"] if e["task"].startswith("convert[")])

    def test_child_workflows_per_item_keyed(self):
        d = self.daemon(start=False)
        d.write_workflow("deploy", """\
            [params]
            region = ""

            [[task]]
            id = "go"
            plugin = "shell"
            command = "echo ${params.region} >> %s"
            """ % d.path("regions"))
        d.write_workflow("rollout", """\
            [params]
            regions = ["eu", "us", "ap"]

            [[task]]
            id = "per_region"
            workflow = "deploy"
            foreach = "${params.regions}"
            foreach_key = "${item}"
            params = { region = "${item}" }
            """)
        d.start()
        run = d.ctl_ok("run", "rollout", "--wait", timeout=60)
        self.assertEqual(run["state"], "succeeded")
        ids = sorted(t["id"] for t in instances(run, "per_region"))
        self.assertEqual(ids, ["per_region[ap]", "per_region[eu]", "per_region[us]"])
        self.assertEqual(sorted(d.read("regions").split()), ["ap", "eu", "us"])
        child = harness.task(run, "per_region[eu]")["child_run"]
        self.assertEqual(child, run["id"] + "/per_region[eu].1")
        self.assertEqual(d.ctl_ok("show", child)["params"], {"region": "eu"})
        # A run's param overrides the list.
        run2 = d.ctl_ok("run", "rollout", "--param", 'regions=["x"]', "--wait", timeout=60)
        self.assertEqual([t["id"] for t in instances(run2, "per_region")], ["per_region[x]"])

    def test_empty_list_and_bad_lists(self):
        d = self.daemon(start=False)
        d.write_workflow("edge", """\
            [policy]
            on_failure = "continue"

            [params]
            l = []
            notlist = '{"a": 1}'

            [[task]]
            id = "empty"
            plugin = "shell"
            foreach = "${params.l}"
            command = "true"

            [[task]]
            id = "skipped"
            plugin = "shell"
            foreach = "${params.l}"
            on_empty = "skip"
            command = "true"

            [[task]]
            id = "bad"
            plugin = "shell"
            foreach = "${params.notlist}"
            command = "true"

            [[task]]
            id = "fine"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        rc, run, err = d.ctl("run", "edge", "--wait", timeout=60)
        self.assertEqual(rc, 1, (run, err))
        self.assertEqual(harness.task(run, "empty")["state"], "succeeded")
        self.assertEqual(harness.task(run, "skipped")["state"], "skipped")
        self.assertEqual(harness.task(run, "fine")["state"], "succeeded")
        bad = harness.task(run, "bad")
        self.assertEqual(bad["state"], "failed")
        self.assertIn("foreach = \"${params.notlist}\" is a JSON object, not a list", bad["message"])
        # Nothing else was disturbed: the daemon still answers.
        d.ctl_ok("status")

    def test_hostile_items_are_data(self):
        d = self.daemon(start=False)
        pwned = d.path("pwned")
        d.write_workflow("hostile", """\
            [[task]]
            id = "list"
            plugin = "shell"
            command = '''printf '%%s\\n' '::set-output l=["$(touch %s)", "a;b", "`id`", "x\\\\ny"]' '''

            [[task]]
            id = "use"
            plugin = "shell"
            depends_on = ["list"]
            foreach = "${tasks.list.outputs.l}"
            command = "printf '%%s|' ${item} >> %s"
            """ % (pwned, d.path("seen")))
        d.start()
        run = d.ctl_ok("run", "hostile", "--wait", timeout=60)
        self.assertEqual(run["state"], "succeeded", run)
        self.assertFalse(os.path.exists(pwned))
        seen = d.read("seen")
        for item in ("$(touch %s)|" % pwned, "a;b|", "`id`|", "x\\ny|"):
            self.assertIn(item, seen)

    def test_cancel_one_instance_and_retry_the_failed(self):
        d = self.daemon(start=False)
        gate = d.path("gate")
        d.write_workflow("fan", """\
            [[task]]
            id = "t"
            plugin = "shell"
            foreach = [0, 1, 2, 3]
            max_parallel = 1
            max_failures = 1
            command = "while [ ! -e %s ]; do sleep 0.05; done; test ${item} != 1 || test -e %s.fixed"
            """ % (gate, gate))
        d.start()
        rid = d.ctl_ok("run", "fan")["id"]
        d.wait_task_state(rid, "t[0]", "running")
        d.ctl_ok("cancel", rid, "--task", "t[3]")
        run = d.run_record(rid)
        self.assertEqual(harness.task(run, "t[3]")["state"], "cancelled")
        rc, out, err = d.ctl("cancel", rid, "--task", "t[9]")
        self.assertNotEqual(rc, 0)
        self.assertIn("has no instance t[9]", err + json.dumps(out))
        # watch-style progress while it runs
        text = d.ctl_ok("show", rid, json=False)
        self.assertIn("4 instances:", text)
        open(gate, "w").close()
        run = d.wait_run_state(rid, ("failed", "succeeded"), timeout=60)
        self.assertEqual(run["state"], "failed")
        self.assertEqual(harness.task(run, "t[1]")["state"], "failed")
        # t[3] cancelled (1, tolerated), then t[1] failed: over max_failures, the run stops (fail_fast)
        # and t[2] is cancelled.
        self.assertIn("3 of 4 instances did not succeed (max_failures = 1)", harness.task(run, "t")["message"])
        self.assertEqual(harness.task(run, "t[2]")["state"], "cancelled")
        open(gate + ".fixed", "w").close()
        d.ctl_ok("retry", rid, "--task", "t")
        run = d.wait_run_state(rid, ("failed", "succeeded"), timeout=60)
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(harness.task(run, "t[0]")["attempt"], 1)
        self.assertEqual(harness.task(run, "t[1]")["attempt"], 2)
        self.assertEqual(harness.task(run, "t[3]")["attempt"], 1)

    def test_kill9_in_the_middle_keeps_finished_instances(self):
        d = self.daemon(start=False)
        runs_log = d.path("runs.log")
        gate = d.path("gate")
        d.write_workflow("fan", """\
            [[task]]
            id = "t"
            plugin = "shell"
            foreach = ["a", "b", "c", "d", "e", "f"]
            max_parallel = 2
            retries = 1
            command = "echo ${item} >> %s; test ${item} = a -o ${item} = b || while [ ! -e %s ]; do sleep 0.05; done"
            """ % (runs_log, gate))
        d.start()
        rid = d.ctl_ok("run", "fan")["id"]
        d.wait_task_state(rid, "t[3]", "running", timeout=30)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        harness.reap_orphans()
        open(gate, "w").close()
        d.start()
        run = d.wait_run_state(rid, ("failed", "succeeded"), timeout=60)
        self.assertEqual(run["state"], "succeeded", run)
        with open(runs_log) as f:
            lines = f.read().split()
        # a and b ended before the kill and never ran again; c, d were lost and ran again.
        self.assertEqual(lines.count("a"), 1)
        self.assertEqual(lines.count("b"), 1)
        self.assertEqual(harness.task(run, "t[0]")["attempt"], 1)
        self.assertEqual(harness.task(run, "t[3]")["attempt"], 2)
        self.assertEqual(run["lost"], 2)
        expanded = [e for e in d.ctl_ok("show", rid)["events"] if e["kind"] == "expanded"]
        self.assertEqual(len(expanded), 1, expanded)


if __name__ == "__main__":
    harness.main()
