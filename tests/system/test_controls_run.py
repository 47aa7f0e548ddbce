"""Starting and following runs: `run --param`, `retry` of a failed task with --downstream, and the
`watch` / `run --follow` view when stdout is not a terminal."""

import json
import os
import pty
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class RetryTest(harness.DaemonTestCase):
    def test_retry_failed_task_with_downstream(self):
        d = self.daemon()
        # flaky fails the first time only: the marker file is its memory.
        d.write_workflow("flow", """\
            [[task]]
            id = "prepare"
            plugin = "shell"
            command = "echo x >> %(prep)s"

            [[task]]
            id = "flaky"
            plugin = "shell"
            depends_on = ["prepare"]
            command = "if [ -e %(mark)s ]; then exit 0; fi; touch %(mark)s; exit 3"

            [[task]]
            id = "publish"
            plugin = "shell"
            depends_on = ["flaky"]
            command = "echo x >> %(pub)s"
            """ % {"prep": d.path("prepare-count"), "mark": d.path("flaky-tried"),
                   "pub": d.path("publish-count")})
        d.start()
        rc, run, err = d.ctl("run", "flow", "--wait")
        self.assertEqual(rc, 1, err)
        rid = run["id"]
        self.assertEqual(run["state"], "failed")
        states = {t["id"]: t["state"] for t in run["tasks"]}
        self.assertEqual(states["prepare"], "succeeded")
        self.assertEqual(states["flaky"], "failed")
        self.assertIn(states["publish"], ("skipped", "cancelled"))

        rc, _, err = d.ctl("retry", rid, "--task", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("has no task 'nope'", err)
        rc, _, err = d.ctl("retry", rid, "--task", "prepare")
        self.assertEqual(rc, 1, "a task that succeeded is not retried")

        rc, out, err = d.ctl("retry", rid, "--task", "flaky", "--downstream")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["id"], rid)
        # The answer comes once the retry is durable; the quick attempts may have ended by then.
        self.assertIn(out["state"], ("running", "succeeded"))
        rc, final, err = d.ctl("wait", rid)
        self.assertEqual(rc, 0, "%s %s" % (final, err))
        self.assertEqual(final["state"], "succeeded")
        by_id = {t["id"]: t for t in final["tasks"]}
        self.assertEqual(by_id["prepare"]["attempt"], 1, "the succeeded upstream task is not re-run")
        self.assertEqual(by_id["flaky"]["attempt"], 2)
        self.assertEqual(by_id["flaky"]["state"], "succeeded")
        self.assertEqual(by_id["publish"]["state"], "succeeded")
        self.assertEqual(d.read("prepare-count"), "x\n")
        self.assertEqual(d.read("publish-count"), "x\n")
        # Each attempt has its own log.
        rc, log1, err = d.ctl("logs", rid, "flaky", "--attempt", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(log1["attempt"], 1)
        shown = d.ctl_ok("show", rid)
        retries = [e for e in shown["events"] if "retry" in e["kind"]]
        self.assertTrue(any("uid %d" % os.getuid() in e["detail"] for e in retries), shown["events"])

        rc, _, err = d.ctl("retry", rid)
        self.assertEqual(rc, 1, "nothing is left to retry in a succeeded run")

    def test_retry_usage_errors(self):
        d = self.daemon()
        d.write_workflow("noop", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        d.start()
        rc, _, err = d.ctl("retry", "noop@20000101T000000Z", "--task")
        self.assertEqual(rc, 2)
        self.assertIn("--task needs a value: a task id", err)
        rc, _, err = d.ctl("retry", "noop@20000101T000000Z", "--follow")
        self.assertEqual(rc, 2)
        self.assertIn("retry does not take --follow (its options: --task, --downstream)", err)
        rc, _, err = d.ctl("retry", "noop@20000101T000000Z")
        self.assertEqual(rc, 1)
        self.assertIn("no run with id noop@20000101T000000Z", err)


class ParamsTest(harness.DaemonTestCase):
    def test_run_with_params(self):
        d = self.daemon()
        d.write_workflow("greet", """\
            [params]
            region = "eu"
            who = "world"

            [[task]]
            id = "say"
            plugin = "shell"
            command = "echo '${params.who} in ${params.region}' > %s"
            """ % d.path("said"))
        d.start()
        rc, run, err = d.ctl("run", "greet", "--param", "region=us-east", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["params"], {"region": "us-east", "who": "world"})
        self.assertEqual(d.read("said"), "world in us-east\n")

        rc, run, err = d.ctl("run", "greet", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["params"], {"region": "eu", "who": "world"})
        self.assertEqual(d.read("said"), "world in eu\n")

        # A value may hold '=' and spaces; the form --param=NAME=VALUE works too.
        rc, run, err = d.ctl("run", "greet", "--param=who=a b=c", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(d.read("said"), "a b=c in eu\n")

        rc, _, err = d.ctl("run", "greet", "--param", "colour=red")
        self.assertEqual(rc, 1)
        self.assertIn("has no param 'colour'", err)
        rc, _, err = d.ctl("run", "greet", "--param", "region")
        self.assertEqual(rc, 2)
        self.assertIn("--param needs NAME=VALUE", err)
        self.assertIn("'region'", err)
        rc, _, err = d.ctl("run", "greet", "--param", "who=a", "--param", "who=b")
        self.assertEqual(rc, 2)
        self.assertIn("--param who given twice", err)
        rc, _, err = d.ctl("run", "greet", "--wait", "--follow")
        self.assertEqual(rc, 2)
        self.assertIn("not both", err)

        # Over the protocol, params must be strings.
        with d.connect() as c:
            r = c.request({"proto": 1, "cmd": "run", "args": {"workflow": "greet", "params": {"who": 7}}})
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertIn("'who'", r["error"]["message"])


class WatchTest(harness.DaemonTestCase):
    def write_pipeline(self, d):
        d.write_workflow("pipe", """\
            [[task]]
            id = "fetch"
            plugin = "shell"
            command = "sleep 0.7"

            [[task]]
            id = "build"
            plugin = "shell"
            depends_on = ["fetch"]
            command = "sleep 0.7"
            """)
        d.write_workflow("broken", """\
            [[task]]
            id = "boom"
            plugin = "shell"
            command = "sleep 0.3; exit 4"
            """)

    def watch(self, d, *args):
        p = subprocess.run([harness.BIN["ctl"], "--socket", d.socket] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        return p.returncode, p.stdout, p.stderr

    def test_watch_prints_changes_when_not_a_terminal(self):
        d = self.daemon()
        self.write_pipeline(d)
        d.start()
        rid = d.ctl_ok("run", "pipe")["id"]
        rc, out, err = self.watch(d, "watch", rid)
        self.assertEqual(rc, 0, err + out)
        self.assertNotIn("\x1b", out, "no terminal control sequences when stdout is not a terminal")
        lines = out.splitlines()
        line = re.compile(r"^\d\d:\d\d:\d\d  ")
        body = [l for l in lines if not l.startswith("progress:")]
        for l in body:
            self.assertRegex(l, line)
        texts = [l[10:] for l in body]
        # Each change once, in order.
        self.assertEqual(len(texts), len(set(texts)), out)
        build_done = [i for i, t in enumerate(texts) if t.startswith("build  succeeded  attempt 1")]
        fetch_done = [i for i, t in enumerate(texts) if t.startswith("fetch  succeeded  attempt 1")]
        self.assertEqual(len(build_done), 1, out)
        self.assertEqual(len(fetch_done), 1, out)
        self.assertLess(fetch_done[0], build_done[0])
        self.assertTrue(any(t.startswith("build  running  attempt 1") for t in texts), out)
        self.assertTrue(any(t.startswith("run %s  succeeded" % rid) for t in texts), out)
        self.assertEqual(lines[-1][:len("progress: 2/2 tasks done (2 succeeded); run succeeded, ")],
                         "progress: 2/2 tasks done (2 succeeded); run succeeded, ", out)

        # A finished run: watch prints its state once and exits at once.
        rc, out, _ = self.watch(d, "watch", rid)
        self.assertEqual(rc, 0)
        self.assertIn("progress: 2/2", out)

    def test_run_follow_and_json_lines(self):
        d = self.daemon()
        self.write_pipeline(d)
        d.start()
        rc, out, err = self.watch(d, "run", "broken", "--follow")
        self.assertEqual(rc, 1, out)
        self.assertIn("boom  failed  attempt 1", out)
        self.assertRegex(err, r"run broken@\S+ failed")

        rc, out, err = self.watch(d, "--json", "run", "pipe", "--follow")
        self.assertEqual(rc, 0, err)
        changes = [json.loads(l) for l in out.splitlines()]
        self.assertTrue(changes)
        for c in changes:
            self.assertEqual(set(c), {"time", "run", "task", "state", "attempt", "duration_ms", "message"})
        self.assertEqual(changes[-1]["task"], "")
        self.assertEqual(changes[-1]["state"], "succeeded")
        self.assertIn({"task": "build", "state": "succeeded"},
                      [{"task": c["task"], "state": c["state"]} for c in changes])

        rc, _, err = self.watch(d, "watch", "pipe")
        self.assertEqual(rc, 1)
        self.assertIn("'pipe' is a workflow, not a run id", err)

    def test_watch_redraws_on_a_terminal(self):
        d = self.daemon()
        self.write_pipeline(d)
        d.start()
        rid = d.ctl_ok("run", "pipe")["id"]
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([harness.BIN["ctl"], "--socket", d.socket, "watch", rid], stdin=subprocess.DEVNULL,
                                 stdout=slave, stderr=subprocess.PIPE)
            os.close(slave)
            slave = None
            out = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the watcher exited and closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            rc = p.wait(harness.TIMEOUT)
            p.stderr.close()
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        text = out.decode(errors="replace")
        self.assertEqual(rc, 0, text)
        # Frames after the first move the cursor back up over the previous one and redraw it.
        self.assertRegex(text, r"\x1b\[\d+F")
        self.assertIn("\x1b[2K", text)
        self.assertIn("run %s  (pipe)" % rid, text)
        self.assertIn("progress: 2/2 tasks done (2 succeeded); run succeeded", text)


class WaitingTest(harness.DaemonTestCase):
    def test_show_says_why_a_ready_task_waits(self):
        d = self.daemon(extra_config="max_concurrency = 1\n")
        d.write_workflow("pair", """\
            [[task]]
            id = "one"
            plugin = "shell"
            command = "sleep 1"

            [[task]]
            id = "two"
            plugin = "shell"
            command = "sleep 1"
            """)
        d.start()
        rid = d.ctl_ok("run", "pair")["id"]
        run = d.run_record(rid)
        by_id = {t["id"]: t for t in run["tasks"]}
        waiting = [t for t in by_id.values() if t["state"] == "ready"]
        self.assertEqual(len(waiting), 1, run)
        self.assertIn("max_concurrency (1)", waiting[0]["waiting"])
        running = [t for t in by_id.values() if t["state"] == "running"]
        self.assertEqual([t["waiting"] for t in running], [None])
        text = d.ctl_ok("show", rid, json=False)
        self.assertIn("max_concurrency (1)", text)
        final = d.wait_run_state(rid, ("succeeded", "failed"), timeout=10)
        self.assertEqual(final["state"], "succeeded")
        self.assertEqual([t["waiting"] for t in final["tasks"]], [None, None])


if __name__ == "__main__":
    harness.main()
