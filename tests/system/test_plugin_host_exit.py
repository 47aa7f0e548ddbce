"""Plugin hosts never crash on the way out (issue 17):

- a plugin whose blocking execute() never returns (its attempt timed out: the plugin completed it
  from cancel(), but the worker thread stays inside the plugin, looping or in sleep()) is neither
  destroyed nor unloaded at shutdown: the daemon exits 0 after the grace and the log names the
  plugin and the task that held the thread (PLUGIN_THREAD_HELD), in process and in a
  taskhub-runner (whose own lines reach the daemon's log and which exits 0);
- a runner that does not exit when the daemon shuts down is killed, reaped, and the log names
  the real signal (not "killed by signal 0").

Before the fixes: the daemon segfaulted after APP_STOPPED (fx_stuck_loop) or hung joining the
worker (fx_stuck_sleep); a runner likewise crashed or was killed and logged "killed by signal 0".
"""

import os
import re
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STUCK = ("fx_stuck_loop", "fx_stuck_sleep")


def fixture_daemon(test, fixtures, isolation):
    """A daemon whose second plugin directory holds copies of the fixture plugins `fixtures`,
    each with the given isolation ("in_process" or "process")."""
    d = test.daemon(start=False)
    plugin_dir = os.path.join(d.dir, "plugins")
    os.makedirs(plugin_dir)
    for name in fixtures:
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], name + ".so"), plugin_dir)
    with open(d.config) as f:
        text = f.read()
    text = text.replace("plugin_dirs = [", "plugin_dirs = [%s, " % harness._json.dumps(plugin_dir), 1)
    for name in fixtures:
        text += '\n[plugins.%s]\nisolation = "%s"\n' % (name, isolation)
    with open(d.config, "w") as f:
        f.write(text)
    return d


def runner_pid(d, plugin):
    path = os.path.join(d.dir, "plugins", plugin + ".so")

    def one():
        pids = [p for p in harness.processes_with_marker(path) if b"--describe" not in _cmdline(p)]
        return pids[0] if len(pids) == 1 else None
    return harness.wait_until(one, what="one runner of %s" % plugin)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


class ThreadHeldInPluginTest(harness.DaemonTestCase):
    def stuck_run(self, isolation):
        """Runs a workflow whose two tasks time out with a thread left inside their plugin, then
        stops the daemon; returns (daemon, run id, exit status)."""
        d = fixture_daemon(self, STUCK, isolation)
        # on_failure = "continue": each task times out on its own (fail_fast would cancel the
        # second one when the first times out a moment earlier, as under TSan).
        d.write_workflow("stuck", """\
            [policy]
            on_failure = "continue"

            [[task]]
            id = "loops"
            plugin = "fx_stuck_loop"
            timeout = "1s"

            [[task]]
            id = "sleeps"
            plugin = "fx_stuck_sleep"
            timeout = "1s"
            """)
        d.start()
        runners = [runner_pid(d, name) for name in STUCK] if isolation == "process" else []
        for pid in runners:
            self.addCleanup(_kill_quietly, pid)
        rc, run, err = d.ctl("run", "stuck", "--wait")
        self.assertIsInstance(run, dict, err)
        self.assertEqual(run["state"], "failed", run)
        for task in ("loops", "sleeps"):
            self.assertEqual(harness.task(run, task)["message"],
                             "timed out after 1s (fixture: cancelled; execute() keeps running)", run)
        rc, _ = d.stop()
        log = d.log()
        for plugin, task in zip(STUCK, ("loops", "sleeps")):
            self.assertRegex(log, r"PLUGIN_THREAD_HELD plugin %s: execute\(\) of task %s \(workflow stuck, "
                                  r"run %s, attempt 1\) has not returned after " % (plugin, task, re.escape(run["id"])))
        return d, runners, rc

    def test_in_process_the_daemon_exits_0_and_names_plugin_and_task(self):
        d, _, rc = self.stuck_run("in_process")
        self.assertEqual(rc, 0, d.log())
        log = d.log()
        self.assertIn("APP_STOPPED clean shutdown", log)
        self.assertIn("APP_EXIT 2 thread(s) left inside plugins", log)

    def test_in_a_runner_the_runner_exits_0_and_names_plugin_and_task(self):
        d, runners, rc = self.stuck_run("process")
        self.assertEqual(rc, 0, d.log())
        log = d.log()
        for plugin, pid in zip(STUCK, runners):
            self.assertIn("RUNNER_STOPPED plugin %s: runner pid %d exited with code 0" % (plugin, pid), log)
        self.assertNotIn("RUNNER_KILLED", log)
        self.assertNotIn("APP_EXIT", log)  # nothing was left inside the daemon itself


class RunnerReapedTest(harness.DaemonTestCase):
    def test_a_runner_killed_at_shutdown_is_reaped_with_its_signal(self):
        d = fixture_daemon(self, ["fx_good"], "process")
        d.start()
        pid = runner_pid(d, "fx_good")
        self.addCleanup(_kill_quietly, pid)
        os.kill(pid, signal.SIGSTOP)  # it cannot answer the shutdown request
        rc, _ = d.stop()
        self.assertEqual(rc, 0, d.log())
        log = d.log()
        self.assertIn("RUNNER_KILLED plugin fx_good: runner pid %d did not exit within 2s of shutdown; killed it"
                      % pid, log)
        self.assertIn("RUNNER_STOPPED plugin fx_good: runner pid %d killed by signal 9 (SIGKILL)" % pid, log)
        self.assertNotIn("signal 0", log)


if __name__ == "__main__":
    harness.main()
