"""Resource limits and accounting (issue 17), as a user meets them through taskhubctl.

On a machine whose cgroup2 offers no memory/cpu/pids/io controller (a hybrid hierarchy, as on our
CI machines), a workflow with a limit is refused at load time with a message that names the key,
the controller and what to change -- by the daemon and by `taskhubctl validate` alike. Bad
`leftovers` values are refused with their line. A task that burns CPU shows what it cost in
`show --json`, in `show`'s CPU column and in the metrics. Where the memory controller is
available, a task over memory_max ends "killed: memory limit 32M reached"."""

import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CONTROLLER_KEYS = {"memory": "memory_max", "cpu": "cpu_max", "pids": "tasks_max", "io": "io_weight"}


def containment(d):
    """The daemon's containment as `status` reports it: {mode, base, controllers, reason}."""
    status = d.ctl_ok("status")
    c = status.get("containment")
    if c is None:
        return None
    return c


def base_controllers(c):
    """The controllers of the daemon's cgroup base, read from cgroup.controllers where the status
    says the base is (an absolute path in cgroupfs); none outside cgroup mode."""
    if not c or c.get("mode") != "cgroup" or not c.get("base"):
        return set()
    try:
        with open(os.path.join(c["base"], "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


class LimitsTest(harness.DaemonTestCase):
    def validate(self, d, *files):
        return subprocess.run([harness.BIN["ctl"], "--config", d.config, "validate"] + list(files),
                              capture_output=True, text=True, timeout=harness.TIMEOUT)

    def test_limit_without_its_controller_is_refused_at_load(self):
        d = self.daemon()
        path = d.write_workflow("capped", """\
            leftovers = "keep"

            [[task]]
            id = "big"
            plugin = "shell"
            command = "true"
            memory_max = "32M"
            """)
        d.write_workflow("plain", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        c = containment(d)
        if "memory" in base_controllers(c):
            self.skipTest("the memory controller is available to taskhubd here: memory_max is applied, not refused")
        listing = d.ctl_ok("list")
        self.assertEqual([w["name"] for w in listing["workflows"]], ["plain"], "the other workflow still loads")
        errors = [e["message"] for e in listing["errors"] if e["file"] == path]
        self.assertEqual(len(errors), 1, listing["errors"])
        msg = errors[0]
        self.assertTrue(msg.startswith(path + ":7: task 'big': memory_max needs "), msg)
        if c and c.get("mode") == "cgroup":
            # cgroups, but not this controller: say which, what there is, and how to get it.
            self.assertIn("memory_max needs the memory controller, which taskhubd's cgroup does not offer (available: ",
                          msg)
        else:
            self.assertIn("memory_max needs cgroup containment, which is unavailable (", msg)
            self.assertIn("Delegate=yes", msg)
        rc, _, err = d.ctl("run", "capped")
        self.assertEqual(rc, 1)
        self.assertIn("no workflow named 'capped'", err)
        self.assertIn("memory_max needs", err)
        self.assertIn("CONFIG_WORKFLOW_INVALID " + path + ":7: task 'big': memory_max needs", d.log())

        # taskhubctl validate says the same, offline: it checks against this machine's cgroup2.
        p = self.validate(d, path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(path + ":7: task 'big': memory_max needs ", p.stdout)
        self.assertIn("memory controller" if c and c.get("mode") == "cgroup" else "cgroup containment", p.stdout)

        # Each limit is refused at its own line, workflow-level ones without a task name.
        path = d.write_workflow("many", """\
            cpu_max = "50%"
            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            tasks_max = 10
            io_weight = 50
            """)
        p = self.validate(d, path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        for line, prefix in ((1, ""), (6, "task 'a': "), (7, "task 'a': ")):
            self.assertRegex(p.stdout, re.escape("%s:%d: %s" % (path, line, prefix)) + r"(cpu_max|tasks_max|io_weight) needs")

    def test_leftovers_values_and_where_they_may_be(self):
        d = self.daemon()
        bad = d.write_workflow("bad_leftovers", """\
            leftovers = "maybe"

            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            leftovers = 1
            """)
        child = d.write_workflow("child", """\
            [[task]]
            id = "c"
            plugin = "shell"
            command = "true"
            """)
        parent = d.write_workflow("parent", """\
            [[task]]
            id = "sub"
            workflow = "child"
            leftovers = "keep"
            """)
        ok = d.write_workflow("keeps", """\
            leftovers = "keep"
            [[task]]
            id = "a"
            plugin = "shell"
            command = "echo kept"
            leftovers = "kill"
            """)
        p = self.validate(d, bad, parent, ok, child)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(bad + ":1: 'leftovers' must be kill | keep, found \"maybe\"", p.stdout)
        self.assertIn(bad + ":7: task 'a': 'leftovers' must be a string", p.stdout)
        self.assertIn(parent + ":4: task 'sub': 'leftovers' applies to plugin tasks only (a workflow task runs no "
                      "process; set leftovers in workflow 'child' or on its tasks)", p.stdout)
        # leftovers needs no controller: accepted with or without cgroups.
        self.assertIn(ok + ": ok (1 task(s))", p.stdout)
        d.start()
        rc, run, err = d.ctl("run", "keeps", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")

    def test_cpu_of_a_busy_task_is_measured_and_shown(self):
        d = self.daemon()
        # About 0.5 s of CPU, measured by the loop itself (its process's CPU time), so that a
        # loaded machine makes it take longer, not cost less.
        d.write_workflow("burn", """\
            [[task]]
            id = "spin"
            plugin = "shell"
            command = "python3 -c 'import time\\nwhile time.process_time() < 0.5: pass'"
            """)
        d.start()
        if containment(d) is None:
            self.skipTest("this build has no containment (status has no 'containment'): attempts are not measured "
                          "before lanes cglib, spawn and contain are merged")
        rc, run, err = d.ctl("run", "burn", "--wait")
        self.assertEqual(rc, 0, err)
        shown = d.ctl_ok("show", run["id"])
        spin = harness.task(shown, "spin")
        usage = spin["usage"]
        self.assertIsNotNone(usage, "the attempt's usage is recorded: %r" % spin)
        self.assertIn(usage["source"], ("cgroup", "rusage"))
        cpu_us = usage["cpu_user_us"] + usage["cpu_system_us"]
        self.assertGreaterEqual(cpu_us, 300000, usage)
        self.assertLess(cpu_us, 60 * 1000000, usage)
        for key in ("memory_peak", "oom_kills", "io_read_bytes", "io_write_bytes"):
            self.assertIn(key, usage)
        self.assertEqual(spin["attempts"], [{"attempt": 1, "usage": usage}])
        usage_events = [e for e in shown["events"] if e["kind"] == "usage"]
        self.assertEqual(len(usage_events), 1, shown["events"])

        # The human view: a CPU column with the seconds, and MEM.
        text = d.ctl_ok("show", run["id"], json=False)
        header = next(l for l in text.splitlines() if l.startswith("TASK"))
        self.assertEqual(header.split(), ["TASK", "STATE", "ATTEMPT", "EXIT", "DURATION", "CPU", "MEM", "MESSAGE"])
        row = next(l for l in text.splitlines() if l.startswith("spin "))
        self.assertIn("%.2fs" % (cpu_us / 1e6), row)
        self.assertRegex(text, r"  spin +usage +attempt 1: cpu %.2fs" % (cpu_us / 1e6))

        # And the metrics: the workflow's CPU seconds, user and system.
        metrics = d.ctl_ok("metrics", json=False)
        total = 0.0
        for mode in ("user", "system"):
            m = re.search(r'^taskhub_task_cpu_seconds_total\{workflow="burn",mode="%s"\} (\S+)$' % mode, metrics, re.M)
            self.assertIsNotNone(m, metrics)
            total += float(m.group(1))
        self.assertAlmostEqual(total, cpu_us / 1e6, places=3)
        self.assertRegex(metrics, r'(?m)^taskhub_task_oom_kills_total\{workflow="burn"\} 0$')

    def test_leftovers_are_counted_in_the_tasks_events(self):
        d = self.daemon()
        marker = harness.new_marker()

        def kill_marked():
            for pid in harness.processes_with_marker(marker):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.addCleanup(kill_marked)
        # Two processes the main shell does not wait for: a setsid sleep and a double-forked one.
        d.write_workflow("litter", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "setsid sleep 301 & (sleep 302 &); echo started"
            env = { SYSTEST_MARKER = "%s" }
            """ % marker)
        d.start()
        c = containment(d)
        if not c or c.get("mode") != "cgroup":
            self.skipTest("taskhubd runs without cgroups here (%r): no cgroup to find leftovers in" % c)
        rc, run, err = d.ctl("run", "litter", "--wait")
        self.assertEqual(rc, 0, err)
        shown = d.ctl_ok("show", run["id"])
        t = harness.task(shown, "t")
        found = t["leftovers"]["found"]
        self.assertGreaterEqual(found, 2, t)  # the two sleeps (and a setsid not yet exec'd)
        self.assertEqual(t["leftovers"]["action"], "kill", t)
        self.assertIn({"kind": "leftovers", "task": "t",
                       "detail": "%d processes left after the main process exited: killed" % found},
                      [{k: e[k] for k in ("kind", "task", "detail")} for e in shown["events"]])
        self.assertEqual(harness.processes_with_marker(marker), [])

    def test_memory_limit_kill_says_so(self):
        d = self.daemon()
        d.write_workflow("plain", '[[task]]\nid = "a"\nplugin = "shell"\ncommand = "true"\n')
        d.start()
        c = containment(d)
        controllers = base_controllers(c)
        if "memory" not in controllers:
            self.skipTest("no memory controller in taskhubd's cgroup here (containment %r, controllers %s): "
                          "memory_max is refused at load time instead (test_limit_without_its_controller_is_"
                          "refused_at_load)" % (c and c.get("mode"), sorted(controllers) or "none"))
        d.write_workflow("hog", """\
            [[task]]
            id = "hog"
            plugin = "shell"
            memory_max = "32M"
            command = "python3 -c 'b = []\\nwhile True: b.append(bytearray(1 << 20))'"
            """)
        d.ctl_ok("reload")
        rc, run, err = d.ctl("run", "hog", "--wait")
        self.assertEqual(rc, 1, err)
        hog = harness.task(run, "hog")
        self.assertEqual(hog["state"], "failed")
        self.assertTrue(hog["message"].startswith("killed: memory limit 32M reached (oom_kill "), hog["message"])
        shown = d.ctl_ok("show", run["id"])
        usage = harness.task(shown, "hog")["usage"]
        self.assertGreaterEqual(usage["oom_kills"], 1)
        self.assertLessEqual(usage["memory_peak"], 32 << 20)


if __name__ == "__main__":
    harness.main()
