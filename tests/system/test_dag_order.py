"""A diamond DAG runs in dependency order; `run --wait --json` reports the finished run."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def step(name, log, pause):
    # One line at start and one at the end, with a wall-clock timestamp; appends are atomic.
    return ('echo "start %s $(date +%%s.%%N)" >> %s; sleep %s; echo "end %s $(date +%%s.%%N)" >> %s; '
            'echo "%s done"' % (name, log, pause, name, log, name))


class DagOrderTest(harness.DaemonTestCase):
    def test_diamond(self):
        d = self.daemon()
        log = d.path("order.log")
        d.write_workflow("diamond", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = '%s'

            [[task]]
            id = "b"
            plugin = "shell"
            depends_on = ["a"]
            command = '%s'

            [[task]]
            id = "c"
            plugin = "shell"
            depends_on = ["a"]
            command = '%s'

            [[task]]
            id = "d"
            plugin = "shell"
            depends_on = ["b", "c"]
            command = '%s'
            """ % (step("a", log, "0.1"), step("b", log, "0.6"), step("c", log, "0.6"), step("d", log, "0")))
        d.start()

        rc, run, err = d.ctl("run", "diamond", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertIsInstance(run, dict, run)

        # What the tasks wrote: every start and end once, a before b and c, d after both.
        events = []
        for line in d.read("order.log").splitlines():
            what, name, ts = line.split()
            events.append((what, name, float(ts)))
        order = [(w, n) for w, n, _ in events]
        self.assertEqual(sorted(order), sorted((w, n) for w in ("start", "end") for n in "abcd"), order)
        pos = {e: i for i, e in enumerate(order)}
        for x in "bc":
            self.assertLess(pos[("end", "a")], pos[("start", x)], order)
            self.assertLess(pos[("end", x)], pos[("start", "d")], order)
        # b and c are independent: they run in parallel, both started before either ended.
        self.assertLess(max(pos[("start", "b")], pos[("start", "c")]),
                        min(pos[("end", "b")], pos[("end", "c")]), order)
        ts = {(w, n): t for w, n, t in events}
        self.assertLessEqual(ts[("end", "a")], min(ts[("start", "b")], ts[("start", "c")]))
        self.assertLessEqual(max(ts[("end", "b")], ts[("end", "c")]), ts[("start", "d")])

        # The JSON answer of --wait.
        self.assertRegex(run["id"], r"^diamond@\d{8}T\d{6}Z-m[0-9a-f]{4}$")
        self.assertEqual(run["workflow"], "diamond")
        self.assertEqual(run["trigger"], "manual")
        self.assertEqual(run["state"], "succeeded")
        self.assertIso(run["started"], "started")
        self.assertIso(run["ended"], "ended")
        self.assertLessEqual(run["started"], run["ended"])
        self.assertEqual([t["id"] for t in run["tasks"]], ["a", "b", "c", "d"])
        for t in run["tasks"]:
            for key in ("id", "state", "exit_code", "message", "started", "ended", "attempt"):
                self.assertIn(key, t)
            self.assertEqual(t["state"], "succeeded", t)
            self.assertEqual(t["exit_code"], 0, t)
            self.assertEqual(t["attempt"], 1, t)
            self.assertIsInstance(t["message"], str)
            self.assertIso(t["started"], "task started")
            self.assertIso(t["ended"], "task ended")
        tasks = {t["id"]: t for t in run["tasks"]}
        for x in "bc":
            self.assertLessEqual(tasks["a"]["ended"], tasks[x]["started"])
            self.assertLessEqual(tasks[x]["ended"], tasks["d"]["started"])

        # The same run through show, runs and logs.
        shown = d.ctl_ok("show", run["id"])
        self.assertEqual(shown["state"], "succeeded")
        self.assertEqual({t["id"]: t["state"] for t in shown["tasks"]}, {x: "succeeded" for x in "abcd"})
        kinds = [(e["task"], e["kind"]) for e in shown["events"]]
        for x in "abcd":
            # ready -> start -> end, each exactly once (what the attempt cost, `usage`, is
            # recorded between start and end since issue 17)
            mine = [k for t, k in kinds if t == x and k != "usage"]
            self.assertEqual(mine, ["ready", "start", "end"], (x, kinds))
        self.assertEqual(kinds[-1], ("", "run_end"))
        self.assertEqual(d.ctl_ok("runs", "diamond")[0]["id"], run["id"])
        self.assertEqual(d.ctl_ok("logs", run["id"], "d", json=False), "d done\n")

        # Without --json: a human table, still exit 0.
        rc, text, err = d.ctl("run", "diamond", "--wait", json=False)
        self.assertEqual(rc, 0, err)
        self.assertIn("succeeded", text)


if __name__ == "__main__":
    harness.main()
