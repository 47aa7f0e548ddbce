"""Missed firings across a daemon restart follow the catch-up rules; interval and one-off
triggers fire on their grid; no scheduled instant is ever recorded twice."""

import datetime
import os
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def iso_z(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


TASK = """
[[task]]
id = "t"
plugin = "noop"
"""


class CatchupTest(harness.DaemonTestCase):
    def scheduled(self, d, wf):
        runs = d.ctl_ok("runs", wf, "--limit", "1000")
        return sorted(harness.parse_iso(r["scheduled"]) for r in runs), runs

    def wait_runs(self, d, wf, n, timeout=20):
        return harness.wait_until(lambda: len(d.ctl_ok("runs", wf, "--limit", "1000")) >= n or None,
                                  timeout=timeout, what="%d runs of %s" % (n, wf))

    def stop_for(self, d, seconds):
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        stopped = datetime.datetime.now(datetime.timezone.utc)
        time.sleep(seconds)
        return stopped

    def test_catchup_modes_across_a_restart(self):
        d = self.daemon()
        for mode in ("latest", "all", "none"):
            d.write_workflow("c_" + mode, """\
                [[trigger]]
                cron = "* * * * * *"
                [policy]
                catchup = "%s"
                overlap = "allow"
                """ % mode + TASK)
        d.start()
        for mode in ("latest", "all", "none"):
            self.wait_runs(d, "c_" + mode, 2)
        before = {m: self.scheduled(d, "c_" + m)[0] for m in ("latest", "all", "none")}
        stopped = self.stop_for(d, 4.5)
        d.start()
        restarted = datetime.datetime.now(datetime.timezone.utc)
        for mode in ("latest", "all", "none"):
            self.wait_runs(d, "c_" + mode, len(before[mode]) + 2)

        # Nothing recorded twice, nothing early, each on the one-second grid.
        for mode in ("latest", "all", "none"):
            times, runs = self.scheduled(d, "c_" + mode)
            self.assertEqual(len(set(times)), len(times), "an instant was recorded twice: %s" % times)
            self.assertTrue(all(r["trigger"] == "cron" for r in runs), runs)

        def catchups(mode):
            """The scheduled instants of the runs created as catch-up, with their detail."""
            out = []
            for r in d.ctl_ok("runs", "c_" + mode, "--limit", "1000"):
                created = [e for e in d.ctl_ok("show", r["id"])["events"] if e["kind"] == "run_created"]
                self.assertEqual(len(created), 1, created)
                if "catch-up" in created[0]["detail"]:
                    out.append((harness.parse_iso(r["scheduled"]), created[0]["detail"]))
            return sorted(out)

        # all: every missed second fired, so the instants are contiguous across the downtime.
        times, _ = self.scheduled(d, "c_all")
        self.assertGreaterEqual(len(catchups("all")), 3, "catchup = all ran %s" % catchups("all"))
        for a, b in zip(times, times[1:]):
            self.assertEqual((b - a).total_seconds(), 1.0, "a firing is missing between %s and %s" % (a, b))
        # latest: one firing for the whole downtime, the most recent missed one.
        latest = catchups("latest")
        self.assertEqual(len(latest), 1, "catchup = latest ran %s" % latest)
        self.assertGreater(latest[0][0], stopped + datetime.timedelta(seconds=3))
        self.assertLessEqual(latest[0][0], restarted)
        self.assertRegex(latest[0][1], r"^cron: catch-up of the latest of [4-9] missed firing\(s\) "
                                       r"\(taskhubd was not running\)$")
        # none: nothing for the downtime: a hole of at least 4 s in the grid.
        self.assertEqual(catchups("none"), [])
        times, _ = self.scheduled(d, "c_none")
        self.assertGreaterEqual(max((b - a).total_seconds() for a, b in zip(times, times[1:])), 4.0, times)
        self.assertIn("SCHED_CATCHUP c_latest", d.log())
        self.assertIn("SCHED_MISSED c_none", d.log())

    def test_every_and_at_triggers(self):
        d = self.daemon(start=False)
        at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=4)
        d.write_workflow("every2", """\
            [[trigger]]
            every = "2s"
            [policy]
            overlap = "allow"
            """ + TASK)
        d.write_workflow("once", """\
            [[trigger]]
            at = "%s"
            """ % iso_z(at) + TASK)
        d.start()
        listing = {w["name"]: w for w in d.ctl_ok("list")["workflows"]}
        self.assertEqual(listing["once"]["triggers"][0]["next"], at.strftime("%Y-%m-%dT%H:%M:%S.000Z"))

        self.wait_runs(d, "every2", 3)
        self.wait_runs(d, "once", 1)
        times, runs = self.scheduled(d, "every2")
        self.assertTrue(all(r["trigger"] == "every" for r in runs), runs)
        for a, b in zip(times, times[1:]):
            self.assertEqual((b - a).total_seconds(), 2.0, times)
        once_times, once_runs = self.scheduled(d, "once")
        self.assertEqual(once_times, [at])
        self.assertEqual(once_runs[0]["trigger"], "at")
        self.assertEqual(once_runs[0]["id"], "once@" + at.strftime("%Y%m%dT%H%M%SZ"))

        # After a restart the one-off does not fire again, and the interval continues.
        d.stop()
        d.start()
        self.wait_runs(d, "every2", len(times) + 2)
        time.sleep(1)
        self.assertEqual(self.scheduled(d, "once")[0], [at])
        times, _ = self.scheduled(d, "every2")
        self.assertEqual(len(set(times)), len(times), times)

    def test_pause_and_resume_a_workflow(self):
        d = self.daemon(start=False)
        d.write_workflow("p", """\
            [[trigger]]
            cron = "* * * * * *"
            [policy]
            overlap = "allow"
            """ + TASK)
        d.start()
        self.wait_runs(d, "p", 1)
        text = d.ctl_ok("pause", "p", json=False)
        self.assertIn("paused workflow p: its firings are recorded as skipped", text)
        (w,) = [w for w in d.ctl_ok("list")["workflows"] if w["name"] == "p"]
        self.assertIsNotNone(w["paused"])
        self.assertEqual(w["paused"]["by"], "uid %d (%s)" % (os.getuid(), __import__("pwd").getpwuid(os.getuid()).pw_name))
        self.assertIn("paused", d.ctl_ok("list", json=False))

        # Errors: twice, unknown (with a suggestion), --freeze on a workflow, resume when not paused.
        rc, out, err = d.ctl("pause", "p")
        self.assertNotEqual(rc, 0)
        self.assertIn("workflow 'p' is already paused", err + str(out))
        rc, out, err = d.ctl("pause", "q")
        self.assertNotEqual(rc, 0)
        self.assertIn("no workflow named 'q'; did you mean 'p'?", err + str(out))
        rc, out, err = d.ctl("pause", "p", "--freeze", json=False)
        self.assertEqual(rc, 2)
        self.assertIn("--freeze applies to runs", err)

        def skipped_paused():
            runs = d.ctl_ok("runs", "p", "--limit", "1000")
            return [r for r in runs if r["state"] == "skipped" and
                    r["message"].startswith("skipped: the workflow is paused (paused by uid")]
        harness.wait_until(lambda: len(skipped_paused()) >= 2 or None, timeout=10, what="paused firings")

        # The pause survives a restart.
        d.stop()
        d.start()
        (w,) = [w for w in d.ctl_ok("list")["workflows"] if w["name"] == "p"]
        self.assertIsNotNone(w["paused"], "the pause was lost across a restart")
        time.sleep(1.5)
        before = {r["id"] for r in skipped_paused()}
        self.assertGreaterEqual(len(before), 3)

        # Resume: catchup = latest turns the latest paused firing into the run, under its own id.
        text = d.ctl_ok("resume", "p", json=False)
        self.assertIn("resumed workflow p", text)
        latest = max(before)
        run = d.wait_run_state(latest, ("succeeded",))
        self.assertEqual(run["trigger"], "cron")
        events = d.ctl_ok("show", latest)["events"]
        kinds = [e["kind"] for e in events]
        self.assertIn("run_skipped", kinds)      # the record of the paused firing stays in the log
        self.assertIn("run_created", kinds)
        self.assertTrue(any("catch-up of the latest of" in e["detail"] and "(the workflow was paused)" in e["detail"]
                            for e in events if e["kind"] == "run_created"), events)
        others = before - {latest}
        for rid in others:
            self.assertEqual(d.run_record(rid)["state"], "skipped", rid)
        self.assertIsNone([w for w in d.ctl_ok("list")["workflows"] if w["name"] == "p"][0]["paused"])
        rc, out, err = d.ctl("resume", "p")
        self.assertNotEqual(rc, 0)
        self.assertIn("workflow 'p' is not paused", err + str(out))
        # Firings on time again.
        n = len(d.ctl_ok("runs", "p", "--limit", "1000"))
        self.wait_runs(d, "p", n + 2)

    def test_trigger_errors_name_the_key(self):
        d = self.daemon(start=False)
        d.write_workflow("bad_every", '[[trigger]]\nevery = "1500ms"\n' + TASK)
        d.write_workflow("bad_both", '[[trigger]]\ncron = "* * * * *"\nevery = "1m"\n' + TASK)
        d.write_workflow("bad_at", '[[trigger]]\nat = "2026-12-24 18:00"\n' + TASK)
        d.write_workflow("bad_jitter", '[[trigger]]\nevery = "1m"\njitter = "1m"\n' + TASK)
        d.write_workflow("bad_start", '[[trigger]]\ncron = "* * * * *"\nstart_at = "2026-01-01T00:00:00Z"\n' + TASK)
        d.write_workflow("bad_catchup", '[policy]\ncatchup = "some"\n' + TASK)
        d.write_workflow("bad_max", '[policy]\nmax_active_runs = 2\n' + TASK)
        d.start()
        errors = {os.path.basename(e["file"]): e["message"] for e in d.ctl_ok("list")["errors"]}
        self.assertIn("bad_every.toml:2: 'every' must be whole seconds, at least 1s, found \"1500ms\"",
                      errors["bad_every.toml"])
        self.assertIn("has both 'cron' and 'every'", errors["bad_both.toml"])
        self.assertIn("'at': \"2026-12-24 18:00\" is not an instant: the offset is missing",
                      errors["bad_at.toml"])
        self.assertIn("'jitter' (1m) must be shorter than the interval 'every' (1m)", errors["bad_jitter.toml"])
        self.assertIn("'start_at' only applies to 'every' triggers", errors["bad_start.toml"])
        self.assertIn("bad_catchup.toml:2: 'policy.catchup' must be none | latest | all, found \"some\"",
                      errors["bad_catchup.toml"])
        self.assertIn("'policy.max_active_runs' only applies with overlap = \"allow\"", errors["bad_max.toml"])

    def test_a_jittered_firing_survives_a_restart_and_an_edit_before_it_is_due(self):
        """A firing held back by jitter (scheduled <= now < due) fires at its due instant when
        taskhubd restarts, or its file is edited, between the two instants; `next` lists it."""
        # cron every 20 s with jitter 19s: the workflow name "pending" hashes to a stable offset
        # of 17 s (config/workflow.cc: FNV-1a of "pending#0" modulo 20), so each firing waits
        # 17 s between its scheduled and due instants: time to restart in between.
        period, offset = 20, 17
        wf = """\
            [[trigger]]
            cron = "*/20 * * * * *"
            jitter = "19s"
            """ + TASK
        d = self.daemon(start=False)
        d.write_workflow("pending", wf)
        d.start()

        def inside_a_window():
            """Waits until 1-4 s after a scheduled instant; returns the instant."""
            while True:
                now = time.time()
                into = now % period
                if 1 <= into <= 4:
                    return datetime.datetime.fromtimestamp(int(now - into), datetime.timezone.utc)
                time.sleep(0.2)

        def check_pending(instant, when):
            firing = d.ctl_ok("next", "pending", "-n", "1")["firings"][0]
            self.assertLess(time.time(), instant.timestamp() + offset - 1,
                            "too slow: the firing of %s was due before `next` answered" % instant)
            self.assertEqual((harness.parse_iso(firing["scheduled"]), harness.parse_iso(firing["due"])),
                             (instant, instant + datetime.timedelta(seconds=offset)),
                             "after %s, `next` does not list the pending firing of %s" % (when, instant))

        def wait_for_run_of(instant, when):
            run_id = "pending@" + instant.strftime("%Y%m%dT%H%M%SZ")
            harness.wait_until(lambda: run_id in {r["id"] for r in d.ctl_ok("runs", "pending", "--limit", "1000")},
                               timeout=offset + 10, what="the firing of %s after %s" % (instant, when))
            run = d.wait_run_state(run_id, ("succeeded",))
            self.assertEqual(run["trigger"], "cron")
            created = [e for e in d.ctl_ok("show", run_id)["events"] if e["kind"] == "run_created"]
            self.assertEqual(len(created), 1, created)
            self.assertNotIn("catch-up", created[0]["detail"], "fired on time, not as a catch-up")

        instant = inside_a_window()
        self.assertEqual(d.stop()[0], 0)
        d.start()
        check_pending(instant, "a restart")
        wait_for_run_of(instant, "a restart")

        instant = inside_a_window()
        d.write_workflow("pending", 'description = "edited"\n' + textwrap.dedent(wf))
        harness.wait_until(lambda: [w for w in d.ctl_ok("list")["workflows"] if w["name"] == "pending"][0]
                           ["description"] == "edited" or None, timeout=5, what="the edit to apply")
        check_pending(instant, "an edit")
        wait_for_run_of(instant, "an edit")

        times, _ = self.scheduled(d, "pending")
        self.assertEqual(len(set(times)), len(times), "an instant was recorded twice: %s" % times)
        self.assertNotIn("SCHED_MISSED", d.log())


if __name__ == "__main__":
    harness.main()
