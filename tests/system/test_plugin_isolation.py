"""Crash isolation (isolation = "process", docs/runner-protocol.md): a plugin that segfaults,
aborts or exits takes only its taskhub-runner down; its attempt fails as a transient error that
says how, is retried when it has retries, the runner comes back with a new pid, and the daemon and
the other workflows go on. Also: a plugin that throws in process, hangs, completes twice or never
completes; outputs, suspend/resume and cancel through a runner; a runner whose health check hangs.
"""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# In a sanitizer build the runner's sanitizer runtime would catch a crash and exit on its own
# terms; a production runner dies of the signal itself, which is what these tests check.
for _var in ("TSAN_OPTIONS", "ASAN_OPTIONS"):
    os.environ[_var] = (os.environ.get(_var, "") + " handle_segv=0 handle_abort=0").strip()


def isolated_daemon(test, fixtures, extra=""):
    """A daemon whose second plugin directory holds copies of the fixture plugins `fixtures`, with
    every plugin not shipped with TaskHub in a runner (default_isolation), and noop too."""
    d = test.daemon(start=False)
    plugin_dir = os.path.join(d.dir, "plugins")
    os.makedirs(plugin_dir)
    for name in fixtures:
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], name + ".so"), plugin_dir)
    with open(d.config) as f:
        text = f.read()
    text = text.replace("plugin_dirs = [", "plugin_dirs = [%s, " % harness._json.dumps(plugin_dir), 1)
    text = text.replace('state_dir = "state"', 'state_dir = "state"\ndefault_isolation = "process"', 1)
    with open(d.config, "w") as f:
        f.write(text + '\n[plugins.noop]\nisolation = "process"\n' + extra)
    return d


def runner_pids(d, plugin):
    """Live taskhub-runner processes serving `plugin` for daemon d (matched on the plugin's path,
    which is under the daemon's directory)."""
    path = os.path.join(d.dir, "plugins", plugin + ".so")
    return [p for p in harness.processes_with_marker(path) if b"--describe" not in _cmdline(p)]


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def one_runner(d, plugin, other_than=None):
    def check():
        pids = runner_pids(d, plugin)
        return pids[0] if len(pids) == 1 and pids[0] != other_than else None
    return harness.wait_until(check, what="one runner of %s%s" % (
        plugin, "" if other_than is None else " other than pid %d" % other_than))


def run_wait(d, workflow):
    rc, run, err = d.ctl("run", workflow, "--wait")
    if not isinstance(run, dict):
        raise AssertionError("taskhubctl run %s --wait: %s %s" % (workflow, err, run))
    return run


def ended_events(run, task_id):
    return [e["detail"] for e in run["events"] if e.get("task") == task_id and e["kind"] == "end"]


class CrashIsolationTest(harness.DaemonTestCase):
    def test_crashing_runners_fail_their_attempt_and_come_back(self):
        d = isolated_daemon(self, ["fx_segv", "fx_abort", "fx_exit", "fx_good", "fx_throw"], """
[plugins.fx_segv]
healthy_after = 1

[plugins.fx_throw]
isolation = "in_process"
""")
        d.write_workflow("segv", """\
            [[task]]
            id = "boom"
            plugin = "fx_segv"
            """)
        d.write_workflow("segv_retry", """\
            [[task]]
            id = "boom"
            plugin = "fx_segv"
            retries = 1
            retry_delay = "100ms"
            """)
        for name in ("abort", "exit"):
            d.write_workflow(name, """\
                [[task]]
                id = "boom"
                plugin = "fx_%s"
                """ % name)
        d.write_workflow("steady", """\
            [[task]]
            id = "wait"
            plugin = "shell"
            command = "sleep 1.5"

            [[task]]
            id = "good"
            plugin = "fx_good"
            depends_on = ["wait"]

            [[task]]
            id = "noop"
            plugin = "noop"
            depends_on = ["wait"]
            """)
        d.write_workflow("throws", """\
            [[task]]
            id = "t"
            plugin = "fx_throw"
            """)
        d.write_workflow("throws_later", """\
            [[task]]
            id = "t"
            plugin = "fx_throw"
            throw_in_timer = true
            """)
        d.start()
        self.assertIn("process isolation: runner pid", d.log())
        segv_pid = one_runner(d, "fx_segv")
        with open("/proc/%d/comm" % segv_pid) as f:
            self.assertEqual(f.read().strip(), "th-runner-fx_se")

        steady = d.ctl_ok("run", "steady")["id"]
        run = run_wait(d, "segv")
        self.assertEqual(run["state"], "failed", run)
        boom = harness.task(run, "boom")
        death = "runner pid %d killed by signal 11 (SIGSEGV)" % segv_pid
        self.assertEqual(boom["message"], "plugin 'fx_segv': %s while the attempt ran" % death)
        self.assertEqual(boom["attempt"], 1)

        # The daemon and the other workflow never noticed.
        self.assertIsNone(d.proc.poll())
        self.assertEqual(d.wait_run_state(steady, ("succeeded", "failed"))["state"], "succeeded")
        self.assertIn("RUNNER_EXITED plugin fx_segv: %s; restarting in 1s" % death, d.log())

        # A new runner, then a task with a retry: the crash is transient, the retry runs on the
        # restarted runner and succeeds (the fixture crashes on first attempts only).
        second = one_runner(d, "fx_segv", other_than=segv_pid)
        harness.wait_until(lambda: "RUNNER_STARTED plugin fx_segv: runner pid %d" % second in d.log(),
                           what="the new runner's hello")
        run = run_wait(d, "segv_retry")
        self.assertEqual(run["state"], "succeeded", run)
        boom = harness.task(run, "boom")
        self.assertEqual(boom["attempt"], 2)
        self.assertEqual(boom["message"], "fixture: attempt 2 survived")
        self.assertEqual(ended_events(d.run_record(run["id"]), "boom")[0],
                         "failed: plugin 'fx_segv': runner pid %d killed by signal 11 (SIGSEGV) while the attempt "
                         "ran; retry 1 of 1 in 100ms" % second)
        third = one_runner(d, "fx_segv", other_than=second)

        for name, how in (("abort", "killed by signal 6 (SIGABRT)"), ("exit", "exited with code 3")):
            pid = one_runner(d, "fx_" + name)
            run = run_wait(d, name)
            self.assertEqual(run["state"], "failed", run)
            self.assertTrue(harness.task(run, "boom")["message"].startswith(
                "plugin 'fx_%s': runner pid %d %s" % (name, pid, how)), run)
            one_runner(d, "fx_" + name, other_than=pid)

        # In process, an exception is a failure with its text, and the daemon lives on.
        run = run_wait(d, "throws")
        self.assertEqual(run["state"], "failed", run)
        self.assertEqual(harness.task(run, "t")["message"],
                         "plugin fx_throw could not start the task: execute() threw: fixture: execute throws")
        run = run_wait(d, "throws_later")
        self.assertEqual(run["state"], "succeeded", run)
        self.assertIn("PLUGIN_CALLBACK_THREW plugin fx_throw threw from its timer callback: "
                      "fixture: timer callback throws", d.log())
        self.assertEqual(d.ctl_ok("status")["running_tasks"], 0)

        # Shutdown takes the runners along.
        rc, _ = d.stop()
        self.assertEqual(rc, 0, d.log())
        self.assertIn("RUNNER_STOPPED plugin fx_segv: runner pid %d exited with code 0" % third, d.log())
        harness.wait_until(lambda: not harness.processes_with_marker(os.path.join(d.dir, "plugins")),
                           timeout=5, what="no runner left")


class RunnerBehaviourTest(harness.DaemonTestCase):
    def test_hang_twice_never_outputs_and_health(self):
        d = isolated_daemon(self, ["fx_hang", "fx_never", "fx_twice", "fx_outputs", "fx_health_hangs"], """
[plugins.fx_health_hangs]
health_interval = "1s"
health_timeout = "300ms"
""")
        d.write_workflow("hang", """\
            [[task]]
            id = "h"
            plugin = "fx_hang"
            """)
        d.write_workflow("hang_timeout", """\
            [[task]]
            id = "h"
            plugin = "fx_hang"
            timeout = "1s"
            """)
        d.write_workflow("never", """\
            [policy]
            timeout = "1s"

            [[task]]
            id = "n"
            plugin = "fx_never"
            """)
        d.write_workflow("twice", """\
            [[task]]
            id = "t"
            plugin = "fx_twice"
            """)
        d.write_workflow("outputs", """\
            [[task]]
            id = "a"
            plugin = "fx_outputs"

            [[task]]
            id = "b"
            plugin = "shell"
            depends_on = ["a"]
            command = "echo ${tasks.a.outputs.greeting} > %s"

            [[task]]
            id = "c"
            plugin = "noop"
            depends_on = ["a"]
            message = "noop in a runner"
            """ % d.path("greeting"))
        d.write_workflow("waiting", """\
            [[task]]
            id = "w"
            plugin = "fx_outputs"
            timeout = "2s"
            wait = true
            """)
        d.start()
        health_pid = one_runner(d, "fx_health_hangs")

        # Hangs until cancelled: `taskhubctl cancel` ends it (a worker thread in the runner).
        rid = d.ctl_ok("run", "hang")["id"]
        d.wait_task_state(rid, "h", "running")
        t0 = time.monotonic()
        d.ctl_ok("cancel", rid)
        run = d.wait_run_state(rid, "cancelled", timeout=5)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(harness.task(run, "h")["state"], "cancelled")

        # ... and so does its timeout, through the plugin's cancel().
        run = run_wait(d, "hang_timeout")
        self.assertEqual(run["state"], "failed", run)
        self.assertEqual(harness.task(run, "h")["message"], "timed out after 1s (fixture: cancelled)")

        # Never completes by itself: the run timeout ends it.
        run = run_wait(d, "never")
        self.assertEqual(run["state"], "failed", run)
        self.assertIn("run timed out after 1s", run["message"])

        # Completes twice: the first completion counts, the second is ignored and logged.
        run = run_wait(d, "twice")
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(harness.task(run, "t")["message"], "fixture: first")
        harness.wait_until(lambda: "PLUGIN_EXTRA_COMPLETION plugin fx_twice" in d.log(),
                           what="the second completion to be logged")

        # Outputs set in the runner reach later tasks; noop works in a runner too.
        run = run_wait(d, "outputs")
        self.assertEqual(run["state"], "succeeded", run)
        a = harness.task(run, "a")
        outputs = a["outputs"] if isinstance(a["outputs"], dict) else dict(a["outputs"])
        self.assertEqual(outputs, {"greeting": "hi", "count": "1"})
        self.assertEqual(d.read("greeting").strip(), "hi")
        self.assertEqual(harness.task(run, "c")["message"], "noop in a runner")
        self.assertIn("PLUGIN_OUTPUT_REJECTED plugin fx_outputs", d.log())

        # Freeze, thaw and the timeout's cancel travel to the plugin in its runner, in order (the
        # plugin reports the calls it received when it is cancelled).
        rid = d.ctl_ok("run", "waiting")["id"]
        d.wait_task_state(rid, "w", "running")
        d.ctl_ok("pause", rid, "--freeze")
        d.wait_task_state(rid, "w", "frozen", timeout=5)
        d.ctl_ok("resume", rid)
        run = d.wait_run_state(rid, "failed", timeout=10)
        self.assertEqual(harness.task(run, "w")["message"], "timed out after 2s (calls: suspend resume )")

        # A runner whose health check hangs is killed and restarted (health checks every second
        # meanwhile); the daemon goes on.
        harness.wait_until(lambda: d.log().count("RUNNER_STARTED plugin fx_health_hangs") >= 2,
                           what="the hung runner's successor")
        kills = re.findall(r"RUNNER_EXITED plugin fx_health_hangs: runner pid (\d+) did not answer a health check "
                           r"within 300ms; killed it \(SIGKILL\); restarting in 1s", d.log())
        self.assertEqual([int(k) for k in kills], [health_pid], d.log())
        self.assertFalse(harness.pid_alive(health_pid))
        self.assertEqual(d.ctl_ok("status")["running_tasks"], 0)
        self.assertIsNone(d.proc.poll())


if __name__ == "__main__":
    harness.main()
