"""Nested workflows (issue 3), the seed project's scenarios as system tests:

- 32 parallel workflow tasks, each a child workflow of 8 parallel `sleep 0.2` tasks, complete with
  a pool of one worker in about the critical path, and leave no process behind;
- every task of every run of the tree records ready -> start -> end exactly once (or is skipped /
  cancelled without a start);
- a failing leaf fails the chain up to the root with the leaf's reason;
- depth 10 succeeds, depth 11 fails with `nesting depth exceeds limit (10): a -> ... -> k`;
- cancelling a parent run cancels its whole subtree, and its processes go away.

The helpers at the top (configure, run_tree, check_event_log) are also used by the other
test_nested_*.py files.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Task events that make up a task's life cycle; others (timeout, cancel_requested, frozen, ...)
# may come in between and are not part of the invariant.
LIFECYCLE = ("ready", "start", "end", "skipped", "cancelled")

# The lifecycle sequences a task may record, by its final state (no retries in these tests).
ALLOWED = {
    "succeeded": [["ready", "start", "end"]],
    "failed": [["ready", "start", "end"]],
    "skipped": [["skipped"], ["ready", "skipped"]],
    "cancelled": [["cancelled"], ["ready", "cancelled"], ["ready", "start", "cancelled"]],
}


def configure(d, top_level="", max_workers=None, min_workers=None):
    """Edits the harness's taskhub.toml before the daemon starts: top-level keys go before the
    first table; the pool's worker counts are replaced."""
    with open(d.config) as f:
        text = f.read()
    if top_level:
        text = text.replace("[pool]", top_level.rstrip("\n") + "\n\n[pool]", 1)
    if max_workers is not None:
        text, n = re.subn(r"(?m)^max_workers = \d+$", "max_workers = %d" % max_workers, text)
        assert n == 1, text
    if min_workers is not None:
        text, n = re.subn(r"(?m)^min_workers = \d+$", "min_workers = %d" % min_workers, text)
        assert n == 1, text
    with open(d.config, "w") as f:
        f.write(text)


def run_tree(d, run_id):
    """The run and its whole subtree: {run id: run record with "tasks" and "events"}. Uses the
    "children" of `show RUN --json` when the daemon sends them, else follows each workflow task's
    child_run (and, failing that, the id scheme <parent>/<task>.<attempt>) with one `show` each."""
    out = {}

    def visit(node):
        out[node["id"]] = node
        children = node.get("children")
        if children is None:
            children = []
            for t in node["tasks"]:
                cid = t.get("child_run") or ""
                if not cid and t.get("plugin", "x") == "" and t.get("attempt"):
                    cid = "%s/%s.%d" % (node["id"], t["id"], t["attempt"])
                if cid:
                    rc, child, _ = d.ctl("show", cid)
                    if rc == 0:
                        children.append(child)
        for c in children:
            if "events" not in c:  # a tree without events per child: ask for the child itself
                c = d.ctl_ok("show", c["id"])
            visit(c)

    visit(d.ctl_ok("show", run_id))
    return out


def lifecycle(run, task_id):
    return [e["kind"] for e in run["events"] if e["task"] == task_id and e["kind"] in LIFECYCLE]


def check_event_log(test, tree, root_id):
    """Asserts the event-log invariant over a run tree (see run_tree) and the parent/child links.
    Returns the number of tasks checked."""
    checked = 0
    for rid, run in tree.items():
        tasks = {t["id"]: t for t in run["tasks"]}
        # Events name only tasks of the run.
        strangers = {e["task"] for e in run["events"] if e["task"]} - set(tasks)
        test.assertEqual(strangers, set(), "%s: events of unknown tasks" % rid)
        for tid, t in tasks.items():
            seq = lifecycle(run, tid)
            test.assertIn(t["state"], ALLOWED, "%s task %s ended in state %r" % (rid, tid, t["state"]))
            # Earlier attempts (retries) each recorded ready -> start -> end before the last one.
            earlier = ["ready", "start", "end"] * max(0, (t.get("attempt") or 0) - 1)
            test.assertIn(seq, [earlier + a for a in ALLOWED[t["state"]]],
                          "%s task %s (%s, attempt %s): lifecycle events %r"
                          % (rid, tid, t["state"], t.get("attempt"), seq))
            checked += 1
        # The run's own events: created, started and ended once each, ended last.
        kinds = [e["kind"] for e in run["events"] if not e["task"]]
        for k in ("run_created", "run_start", "run_end"):
            test.assertEqual(kinds.count(k), 1, "%s: %s events: %r" % (rid, k, kinds))
        test.assertEqual(run["events"][-1]["kind"], "run_end", "%s: last event %r" % (rid, run["events"][-1]))
        # Links: a child is <parent>/<task>.<attempt>, one level deeper, triggered by its parent.
        if rid == root_id:
            test.assertEqual(run.get("depth", 0), 0)
            test.assertEqual(run.get("parent_run", ""), "")
        else:
            parent_id, _, last = rid.rpartition("/")
            task_id, _, attempt = last.rpartition(".")
            test.assertIn(parent_id, tree, "%s: parent not in the tree" % rid)
            parent = tree[parent_id]
            test.assertEqual(run["parent_run"], parent_id, rid)
            test.assertEqual(run["parent_task"], task_id, rid)
            test.assertEqual(run["depth"], parent["depth"] + 1, rid)
            test.assertEqual(run["trigger"], "parent", rid)
            ptask = harness.task(parent, task_id)
            # A retried workflow task keeps the child runs of its earlier attempts.
            test.assertGreaterEqual(ptask["attempt"], int(attempt), rid)
            if "child_run" in ptask and ptask["attempt"] == int(attempt):
                test.assertEqual(ptask["child_run"], rid)
            # The parent task's start names the child run.
            starts = [e["detail"] for e in parent["events"] if e["task"] == task_id and e["kind"] == "start"]
            test.assertEqual(len([x for x in starts if x.endswith("child run " + rid)]), 1, (rid, starts))
    # Every workflow task that started has its child in the tree.
    for rid, run in tree.items():
        for t in run["tasks"]:
            if t.get("child_run"):
                test.assertIn(t["child_run"], tree, "%s task %s: child run missing from the tree" % (rid, t["id"]))
    return checked


def overlap(intervals):
    """The largest number of (start, end) intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


def iso_seconds(text):
    # 2026-11-23T01:30:00.123Z -> seconds of the day (the runs here never span midnight... almost:
    # take the whole date into account anyway).
    import datetime
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def thread_count(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except FileNotFoundError:
        return 0


def chain(d, names, leaf_command):
    """Workflows names[0] -> names[1] -> ... -> names[-1]; the last runs leaf_command."""
    for i, name in enumerate(names):
        if i + 1 < len(names):
            d.write_workflow(name, """\
                [[task]]
                id = "down"
                workflow = "%s"
                """ % names[i + 1])
        else:
            d.write_workflow(name, """\
                [[task]]
                id = "leaf"
                plugin = "shell"
                command = '%s'
                """ % leaf_command)


class NestedTest(harness.DaemonTestCase):
    def test_parallel_nested_with_one_worker(self):
        """The seed deadlock: 32 parallel workflow tasks x 8 parallel leaves, max_workers = 1."""
        d = self.daemon()
        configure(d, max_workers=1, min_workers=1)
        marker = harness.new_marker()
        d.write_workflow("outer", "".join("""
            [[task]]
            id = "m%02d"
            workflow = "mid"
            """ % i for i in range(32)))
        d.write_workflow("mid", "".join("""
            [[task]]
            id = "s%d"
            plugin = "shell"
            command = "sleep 0.2"
            env = { SYSTEST_MARKER = "%s" }
            """ % (i, marker) for i in range(8)))
        d.start()
        baseline_threads = thread_count(d.proc.pid)

        t0 = time.monotonic()
        run = d.ctl_ok("run", "outer")
        rid = run["id"]
        peak_threads = baseline_threads
        while True:
            peak_threads = max(peak_threads, thread_count(d.proc.pid))
            shown = d.ctl_ok("show", rid)
            if shown["state"] not in ("queued", "running"):
                break
            if time.monotonic() - t0 > 30:
                self.fail("the nested run did not end within 30 s (deadlock?); state: %r" %
                          {t["id"]: t["state"] for t in shown["tasks"]})
            time.sleep(0.05)
        wall = time.monotonic() - t0
        self.assertEqual(shown["state"], "succeeded", shown["message"])
        # Serially this is 256 x 0.2 s = 51 s; the critical path is 0.2 s.
        self.assertLess(wall, 5.0, "the 32x8 nested run took %.2f s (critical path 0.2 s)" % wall)
        sys.stderr.write("\n32x8 nested, max_workers = 1: %.2f s wall, daemon threads %d -> peak %d\n"
                         % (wall, baseline_threads, peak_threads))

        tree = run_tree(d, rid)
        self.assertEqual(len(tree), 33, sorted(tree))
        leaves = []
        for cid, child in tree.items():
            if cid == rid:
                continue
            self.assertEqual(child["state"], "succeeded", (cid, child["message"]))
            self.assertEqual(child["workflow"], "mid")
            self.assertEqual(len(child["tasks"]), 8)
            for t in child["tasks"]:
                self.assertEqual(t["state"], "succeeded", (cid, t))
                leaves.append((iso_seconds(t["started"]), iso_seconds(t["ended"])))
        self.assertEqual(len(leaves), 256)
        # Not serialised: many leaves of different children were running at the same time.
        self.assertGreaterEqual(overlap(leaves), 32, "at most %d leaves ran at once" % overlap(leaves))
        mids = [(iso_seconds(t["started"]), iso_seconds(t["ended"])) for t in tree[rid]["tasks"]]
        self.assertGreaterEqual(overlap(mids), 16, "at most %d child runs were running at once" % overlap(mids))

        # The event log invariant over all 33 runs (32 + 256 tasks).
        self.assertEqual(check_event_log(self, tree, rid), 32 + 256)

        # No thread is held per waiting child: 32 children waiting must not mean 32 threads.
        self.assertLess(peak_threads, baseline_threads + 8,
                        "daemon threads grew from %d to %d during the nested run" % (baseline_threads, peak_threads))
        self.assertEqual(harness.processes_with_marker(marker), [])
        status = d.ctl_ok("status")
        self.assertEqual(status["active_runs"], 0)
        self.assertEqual(status["running_tasks"], 0)

    def test_failing_leaf_fails_the_chain(self):
        """top -> mid -> leaf; a leaf task exits 7: every level fails, the root's message carries
        the child run ids and the leaf's reason."""
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("top", """\
            [[task]]
            id = "first"
            plugin = "shell"
            command = "true"

            [[task]]
            id = "to-mid"
            workflow = "mid"
            depends_on = ["first"]

            [[task]]
            id = "after"
            plugin = "shell"
            depends_on = ["to-mid"]
            command = "touch %s"
            """ % d.path("after-ran"))
        d.write_workflow("mid", """\
            [[task]]
            id = "to-leaf"
            workflow = "leaf"

            [[task]]
            id = "slow"
            plugin = "shell"
            command = "sleep 600"
            env = { SYSTEST_MARKER = "%s" }
            """ % marker)
        d.write_workflow("leaf", """\
            [[task]]
            id = "fine"
            plugin = "shell"
            command = "true"

            [[task]]
            id = "boom"
            plugin = "shell"
            depends_on = ["fine"]
            command = "echo about to fail; exit 7"
            """)
        d.start()

        t0 = time.monotonic()
        rc, run, err = d.ctl("run", "top", "--wait", timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 1, (run, err))
        self.assertIsInstance(run, dict, (run, err))
        rid = run["id"]
        mid_id = rid + "/to-mid.1"
        leaf_id = mid_id + "/to-leaf.1"
        # fail_fast in mid cancels its `sleep 600` sibling: nothing waits for it.
        self.assertLess(elapsed, 10.0, "the failing chain took %.1f s to end" % elapsed)

        self.assertEqual(run["state"], "failed")
        msg = run["message"]
        for part in (mid_id, leaf_id, "'boom'", "exit code 7"):
            self.assertIn(part, msg, "the root's message does not name %r: %r" % (part, msg))

        tree = run_tree(d, rid)
        self.assertEqual(set(tree), {rid, mid_id, leaf_id})
        top = tree[rid]
        self.assertEqual(harness.task(top, "first")["state"], "succeeded")
        to_mid = harness.task(top, "to-mid")
        self.assertEqual(to_mid["state"], "failed")
        for part in (mid_id, "'boom'", "exit code 7"):
            self.assertIn(part, to_mid["message"])
        self.assertIn(harness.task(top, "after")["state"], ("skipped", "cancelled"))
        self.assertFalse(os.path.exists(d.path("after-ran")))

        mid = tree[mid_id]
        self.assertEqual(mid["state"], "failed")
        self.assertIn(leaf_id, mid["message"])
        self.assertIn("exit code 7", mid["message"])
        self.assertEqual(harness.task(mid, "to-leaf")["state"], "failed")
        self.assertEqual(harness.task(mid, "slow")["state"], "cancelled")

        leaf = tree[leaf_id]
        self.assertEqual(leaf["state"], "failed")
        self.assertIn("task 'boom' failed", leaf["message"])
        self.assertIn("exit code 7", leaf["message"])
        boom = harness.task(leaf, "boom")
        self.assertEqual(boom["state"], "failed")
        self.assertEqual(boom["exit_code"], 7)
        self.assertEqual(d.ctl_ok("logs", leaf_id, "boom", json=False), "about to fail\n")

        check_event_log(self, tree, rid)
        harness.wait_until(lambda: not harness.processes_with_marker(marker), timeout=10,
                           what="the cancelled `sleep 600` to exit")

    def test_depth_limit(self):
        """Default max_nesting_depth 10: a chain reaching depth 10 succeeds, depth 11 fails naming
        the chain; every level of the failing chain fails with that message."""
        d = self.daemon()
        ok = ["ok%02d" % i for i in range(11)]        # ok00 (depth 0) ... ok10 (depth 10)
        deep = ["deep%02d" % i for i in range(12)]    # deep11 would be depth 11
        chain(d, ok, "echo leaf ran")
        chain(d, deep, "touch %s" % d.path("too-deep-ran"))
        d.start()

        rc, run, err = d.ctl("run", "ok00", "--wait", timeout=30)
        self.assertEqual(rc, 0, (run, err))
        self.assertEqual(run["state"], "succeeded", run)
        tree = run_tree(d, run["id"])
        self.assertEqual(len(tree), 11, sorted(tree))
        self.assertEqual(sorted(r["depth"] for r in tree.values()), list(range(11)))
        deepest = run["id"] + "".join("/down.1" for _ in range(10))
        self.assertIn(deepest, tree)
        self.assertEqual(tree[deepest]["workflow"], "ok10")
        self.assertEqual(d.ctl_ok("logs", deepest, "leaf", json=False), "leaf ran\n")
        check_event_log(self, tree, run["id"])

        rc, run, err = d.ctl("run", "deep00", "--wait", timeout=30)
        self.assertEqual(rc, 1, (run, err))
        self.assertEqual(run["state"], "failed")
        expected = "nesting depth exceeds limit (10): " + " -> ".join(deep)
        self.assertIn(expected, run["message"])
        self.assertFalse(os.path.exists(d.path("too-deep-ran")))
        tree = run_tree(d, run["id"])
        # deep00 .. deep10 ran (depths 0..10); deep11 was never started.
        self.assertEqual(len(tree), 11, sorted(tree))
        self.assertNotIn("deep11", {r["workflow"] for r in tree.values()})
        bottom = run["id"] + "".join("/down.1" for _ in range(10))
        self.assertEqual(tree[bottom]["workflow"], "deep10")
        down = harness.task(tree[bottom], "down")
        self.assertEqual(down["state"], "failed")
        self.assertEqual(down["message"], expected)
        self.assertEqual(down.get("child_run", ""), "")
        for r in tree.values():
            self.assertEqual(r["state"], "failed", r["id"])
            self.assertIn(expected, r["message"], r["id"])
        check_event_log(self, tree, run["id"])

    def test_depth_limit_configured(self):
        """max_nesting_depth = 2 in taskhub.toml: depth 2 runs, depth 3 fails with (2)."""
        d = self.daemon()
        configure(d, top_level="max_nesting_depth = 2")
        chain(d, ["a", "b", "c"], "true")
        chain(d, ["w", "x", "y", "z"], "true")
        d.start()
        rc, run, err = d.ctl("run", "a", "--wait")
        self.assertEqual(rc, 0, (run, err))
        rc, run, err = d.ctl("run", "w", "--wait")
        self.assertEqual(rc, 1, (run, err))
        self.assertIn("nesting depth exceeds limit (2): w -> x -> y -> z", run["message"])

    def test_cancel_parent_cancels_subtree(self):
        """Cancelling the root run cancels every child run below it and kills their processes."""
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("root", """\
            [[task]]
            id = "left"
            workflow = "branch"

            [[task]]
            id = "right"
            workflow = "branch"

            [[task]]
            id = "own"
            plugin = "shell"
            command = "sleep 600"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "later"
            plugin = "shell"
            depends_on = ["left", "right"]
            command = "touch %(later)s"
            """ % {"m": marker, "later": d.path("later-ran")})
        d.write_workflow("branch", """\
            [[task]]
            id = "deeper"
            workflow = "leaves"

            [[task]]
            id = "s1"
            plugin = "shell"
            command = "sleep 600"
            env = { SYSTEST_MARKER = "%s" }
            """ % marker)
        d.write_workflow("leaves", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = "sleep 600"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "b"
            plugin = "shell"
            command = "sleep 600 & wait"
            env = { SYSTEST_MARKER = "%(m)s" }

            [[task]]
            id = "c"
            plugin = "shell"
            depends_on = ["a"]
            command = "touch %(c)s"
            """ % {"m": marker, "c": d.path("c-ran")})
        d.start()

        rid = d.ctl_ok("run", "root")["id"]
        # own + 2 x (s1 + a + b (sh + sleep)) = 9 processes
        harness.wait_until(lambda: len(harness.processes_with_marker(marker)) >= 9,
                           what="all leaf processes of the tree to run")
        before = run_tree(d, rid)
        self.assertEqual(len(before), 5, sorted(before))
        for r in before.values():
            self.assertEqual(r["state"], "running", r["id"])

        t0 = time.monotonic()
        rc, out, err = d.ctl("cancel", rid)
        self.assertEqual(rc, 0, err)
        final = d.wait_run_state(rid, "cancelled", timeout=10)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertIn("cancelled by uid", final["message"])
        harness.wait_until(lambda: not harness.processes_with_marker(marker), timeout=5,
                           what="every process of the subtree to exit after cancel")

        tree = run_tree(d, rid)
        self.assertEqual(set(tree), set(before))
        for r in tree.values():
            self.assertEqual(r["state"], "cancelled", "%s: %s %s" % (r["id"], r["state"], r["message"]))
            for t in r["tasks"]:
                self.assertEqual(t["state"], "cancelled", (r["id"], t))
        self.assertFalse(os.path.exists(d.path("later-ran")))
        self.assertFalse(os.path.exists(d.path("c-ran")))
        check_event_log(self, tree, rid)
        status = d.ctl_ok("status")
        self.assertEqual(status["active_runs"], 0)
        self.assertEqual(status["running_tasks"], 0)


if __name__ == "__main__":
    harness.main()
