"""Remote attempts survive a restart (ABI 1.6, TH_CAP_ADOPT): taskhubd killed with SIGKILL while
an attempt of a plugin that can adopt runs, then started again on the same state directory.

The plugin is the fixture fx_adopt, whose "remote jobs" are files in $FX_ADOPT_DIR: it appends
"submit Jn RUN TASK ATTEMPT" to the ledger there for each job it starts and "adopt Jn ..." for
each it re-attaches to, and a job ends when the test writes Jn.exit (see tests/fixtures/fx_adopt.c).
What must hold:

- the attempt is re-attached, not lost and not run again: one submit, one adopt; the task ends
  with the job's result as attempt 1; the run's lost counter stays 0; `show` has an `adopted`
  event and the task's handle; the attempt's log holds what the plugin delivered after adoption;
- a job that ended while taskhubd was down ends the attempt at once with its result;
- a handle whose job the plugin no longer knows: the attempt is lost with the plugin's reason and
  the task runs again as attempt 2 (a new job), or fails when it has no retries left;
- a job that disappears while taskhubd follows it (TH_OUTCOME_LOST) is lost the same way;
- cancel of an adopted attempt reaches the plugin.
"""

import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def events(run, kind, task_id=None):
    return [e for e in run["events"] if e["kind"] == kind and (task_id is None or e["task"] == task_id)]


class AdoptionTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.plugins = tempfile.mkdtemp(prefix="taskhub-fx-adopt-plugins-")
        self.addCleanup(shutil.rmtree, self.plugins, True)
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], "fx_adopt.so"), self.plugins)
        self.jobs = tempfile.mkdtemp(prefix="taskhub-fx-adopt-jobs-")
        self.addCleanup(shutil.rmtree, self.jobs, True)

    def start(self, d):
        d.start(extra_env={"FX_ADOPT_DIR": self.jobs})

    def make(self, workflow):
        d = self.daemon(start=False, extra_plugin_dirs=(self.plugins,))
        d.write_workflow("remote", workflow)
        self.start(d)
        return d

    def ledger(self):
        try:
            with open(os.path.join(self.jobs, "ledger")) as f:
                return [line.split() for line in f.read().splitlines()]
        except FileNotFoundError:
            return []

    def finish_job(self, handle, code):
        with open(os.path.join(self.jobs, handle + ".exit"), "w") as f:
            f.write("%d\n" % code)

    def submit_and_crash(self, d, task_id="job"):
        """Starts a run, waits until its job's handle is on disk, and kills taskhubd with SIGKILL."""
        rid = d.ctl_ok("run", "remote")["id"]
        handle = harness.wait_until(lambda: d.committed_handle(rid, task_id), what="the job's handle on disk")
        self.assertEqual(d.ctl_ok("show", rid)["tasks"][0]["handle"], handle)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(harness.TIMEOUT)
        return rid, handle

    def test_running_job_is_adopted_not_run_again(self):
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\nretries = 2\ntimeout = "5m"\n')
        rid, handle = self.submit_and_crash(d)
        self.start(d)
        harness.wait_until(lambda: [x for x in self.ledger() if x[0] == "adopt"], what="the adoption")
        run = d.ctl_ok("show", rid)
        self.assertEqual(run["state"], "running")
        t = run["tasks"][0]
        self.assertEqual((t["state"], t["attempt"], t["handle"]), ("running", 1, handle))
        adopted = events(run, "adopted", "job")
        self.assertEqual(len(adopted), 1, run["events"])
        self.assertIn("attempt 1 re-attached to plugin fx_adopt after taskhubd restarted (handle %s)" % handle,
                      adopted[0]["detail"])
        self.assertIn("handle %s" % handle, d.ctl("show", rid, json=False)[1])
        recovered = events(run, "recovered")
        self.assertIn("job: re-attached to plugin fx_adopt", recovered[-1]["detail"])
        self.finish_job(handle, 0)
        final = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(final["state"], "succeeded", final)
        run = d.ctl_ok("show", rid)
        t = run["tasks"][0]
        self.assertEqual((t["state"], t["attempt"]), ("succeeded", 1))
        self.assertEqual(run["lost"], 0)
        self.assertEqual(events(run, "lost"), [])
        self.assertEqual(self.ledger(), [["submit", handle, rid, "job", "1"], ["adopt", handle, rid, "job", "1"]])
        log = d.ctl("logs", rid, "job", json=False)[1]
        self.assertIn("job %s adopted" % handle, log)
        self.assertIn("job finished", log)
        self.assertIn("re-attached to their plugins", d.log())

    def test_job_that_ended_while_down_ends_the_attempt_with_its_result(self):
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\n')
        rid, handle = self.submit_and_crash(d)
        self.finish_job(handle, 7)
        self.start(d)
        final = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(final["state"], "failed")
        t = d.ctl_ok("show", rid)["tasks"][0]
        self.assertEqual((t["state"], t["attempt"], t["exit_code"]), ("failed", 1, 7))
        self.assertEqual(t["message"], "job %s finished with exit code 7" % handle)
        self.assertEqual([x[0] for x in self.ledger()], ["submit", "adopt"])

    def test_unknown_job_is_lost_with_the_plugins_reason_and_run_again(self):
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\nretries = 1\n')
        rid, handle = self.submit_and_crash(d)
        os.unlink(os.path.join(self.jobs, handle + ".job"))  # the cluster forgot it
        self.start(d)
        second = harness.wait_until(lambda: [x for x in self.ledger() if x[0] == "submit" and x[4] == "2"],
                                    what="attempt 2's job")[0][1]
        self.finish_job(second, 0)
        final = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(final["state"], "succeeded")
        run = d.ctl_ok("show", rid)
        t = run["tasks"][0]
        self.assertEqual((t["state"], t["attempt"], t["handle"]), ("succeeded", 2, second))
        lost = events(run, "lost", "job")
        self.assertEqual(len(lost), 1, run["events"])
        self.assertIn("attempt 1 was lost: plugin fx_adopt could not adopt it: job %s is unknown" % handle,
                      lost[0]["detail"])
        self.assertIn("retry 1 of 1", lost[0]["detail"])
        self.assertEqual(run["lost"], 1)
        self.assertIn(rid, {r["id"] for r in d.ctl_ok("runs", "--state", "lost", "--all")})

    def test_job_lost_while_followed_fails_without_retries(self):
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\n')
        rid = d.ctl_ok("run", "remote")["id"]
        handle = harness.wait_until(lambda: [x for x in self.ledger() if x[0] == "submit"], what="the job")[0][1]
        os.unlink(os.path.join(self.jobs, handle + ".job"))
        final = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(final["state"], "failed")
        run = d.ctl_ok("show", rid)
        t = run["tasks"][0]
        self.assertEqual(t["message"], "lost: job %s is no longer known; no retries left (retries = 0)" % handle)
        self.assertEqual(run["lost"], 1)
        self.assertEqual(len(events(run, "lost", "job")), 1)

    def test_adopted_attempt_can_be_cancelled(self):
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\n')
        rid, handle = self.submit_and_crash(d)
        self.start(d)
        harness.wait_until(lambda: [x for x in self.ledger() if x[0] == "adopt"], what="the adoption")
        d.ctl_ok("cancel", rid)
        final = d.wait_run_state(rid, ("cancelled", "failed", "succeeded"))
        self.assertEqual(final["state"], "cancelled")
        self.assertTrue(os.path.exists(os.path.join(self.jobs, handle + ".cancelled")))

    def test_graceful_stop_leaves_remote_jobs_running(self):
        """SIGTERM: a run whose only active attempt runs elsewhere is not drained nor cancelled
        (that would throw the job away): taskhubd exits at once, the job goes on, and the next
        start re-attaches to it. A run with a local attempt is drained and cancelled as before."""
        d = self.daemon(start=False, extra_plugin_dirs=(self.plugins,), shutdown_grace="2s")
        d.write_workflow("remote", '[[task]]\nid = "job"\nplugin = "fx_adopt"\n')
        d.write_workflow("local", '[[task]]\nid = "l"\nplugin = "shell"\ncommand = "sleep 60"\n')
        self.start(d)
        rid = d.ctl_ok("run", "remote")["id"]
        handle = harness.wait_until(lambda: d.committed_handle(rid, "job"), what="the job's handle on disk")
        lid = d.ctl_ok("run", "local")["id"]
        d.wait_task_state(lid, "l", "running")
        started = time.monotonic()
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - started, 15)
        log = d.log()
        self.assertIn("1 run(s) left to their remote attempts", log)
        self.assertFalse(os.path.exists(os.path.join(self.jobs, handle + ".cancelled")), "the job was cancelled")
        self.start(d)
        self.assertEqual(d.wait_run_state(lid, ("cancelled", "failed", "succeeded"))["state"], "cancelled")
        harness.wait_until(lambda: [x for x in self.ledger() if x[0] == "adopt"], what="the adoption")
        run = d.ctl_ok("show", rid)
        self.assertEqual(len(events(run, "detached")), 1, run["events"])
        self.finish_job(handle, 0)
        self.assertEqual(d.wait_run_state(rid, ("succeeded", "failed"))["state"], "succeeded")
        self.assertEqual([x[0] for x in self.ledger()], ["submit", "adopt"])
        self.assertEqual(d.ctl_ok("show", rid)["lost"], 0)

    def test_pause_holds_remote_work_and_resume_releases_it(self):
        """`pause RUN` (without --freeze) asks a plugin that can hold (TH_CAP_HOLD) to keep its
        running attempt's work from starting; `resume` releases it. A plugin that cannot is left
        alone, as before."""
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\n')
        rid = d.ctl_ok("run", "remote")["id"]
        handle = harness.wait_until(lambda: d.committed_handle(rid, "job"), what="the job's handle on disk")
        d.ctl_ok("pause", rid)
        harness.wait_until(lambda: ["hold", handle] in self.ledger(), what="the hold")
        run = d.ctl_ok("show", rid)
        self.assertEqual(run["state"], "paused")
        held = events(run, "held", "job")
        self.assertEqual(len(held), 1, run["events"])
        self.assertIn("plugin 'fx_adopt' asked to hold", held[0]["detail"])
        d.ctl_ok("resume", rid)
        harness.wait_until(lambda: ["release", handle] in self.ledger(), what="the release")
        self.assertEqual(len(events(d.ctl_ok("show", rid), "released", "job")), 1)
        self.finish_job(handle, 0)
        self.assertEqual(d.wait_run_state(rid, ("succeeded", "failed"))["state"], "succeeded")

    def test_at_most_once_job_is_adopted_and_never_repeated(self):
        d = self.make('[[task]]\nid = "job"\nplugin = "fx_adopt"\nat_most_once = true\n')
        rid, handle = self.submit_and_crash(d)
        self.start(d)
        harness.wait_until(lambda: [x for x in self.ledger() if x[0] == "adopt"], what="the adoption")
        self.finish_job(handle, 0)
        self.assertEqual(d.wait_run_state(rid, ("succeeded", "failed"))["state"], "succeeded")
        self.assertEqual([x[0] for x in self.ledger()], ["submit", "adopt"])


if __name__ == "__main__":
    harness.main()
