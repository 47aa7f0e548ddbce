"""A 6-field cron workflow fires on schedule, with deterministic run ids."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class CronScheduleTest(harness.DaemonTestCase):
    def test_every_two_seconds(self):
        d = self.daemon()
        d.write_workflow("tick", """\
            description = "fires every two seconds"
            [[trigger]]
            cron = "*/2 * * * * *"

            [[task]]
            id = "beat"
            plugin = "shell"
            command = "echo \\"$TASKHUB_RUN_ID\\" >> %s"
            """ % d.path("beats"))
        d.start()

        listing = d.ctl_ok("list")
        (wf,) = [w for w in listing["workflows"] if w["name"] == "tick"]
        self.assertEqual(wf["triggers"][0]["cron"], "*/2 * * * * *")
        nxt = harness.parse_iso(wf["triggers"][0]["next"])
        self.assertEqual(nxt.second % 2, 0, "next firing %s is not on an even second" % nxt)
        self.assertEqual(listing["errors"], [])

        def two_succeeded():
            runs = d.ctl_ok("runs", "tick")
            done = [r for r in runs if r["state"] == "succeeded"]
            return runs if len(done) >= 2 else None
        runs = harness.wait_until(two_succeeded, timeout=20, what="two succeeded cron runs")

        for r in runs:
            self.assertEqual(r["trigger"], "cron", r)
            self.assertEqual(r["workflow"], "tick")
            m = re.fullmatch(r"tick@(\d{8}T\d{6}Z)", r["id"])
            self.assertIsNotNone(m, "run id %r is not <workflow>@<YYYYMMDDTHHMMSSZ>" % r["id"])
            self.assertIn(r["state"], ("succeeded", "running"), r)
            scheduled = harness.parse_iso(r["scheduled"])
            self.assertEqual(scheduled.microsecond, 0)
            self.assertEqual(m.group(1), scheduled.strftime("%Y%m%dT%H%M%SZ"), "id and scheduled instant differ")
            self.assertEqual(scheduled.second % 2, 0, "fired off the */2 grid: %s" % r["id"])
            created = harness.parse_iso(r["created"])
            # Not early, and not absurdly late (the box may be loaded).
            self.assertGreaterEqual(created, scheduled, r)
            self.assertLess((created - scheduled).total_seconds(), 5, r)

        # Newest first; consecutive firings exactly one period apart (none missed, none twice).
        times = [harness.parse_iso(r["scheduled"]) for r in runs]
        self.assertEqual(times, sorted(times, reverse=True), "runs are not newest first")
        self.assertEqual(len(set(times)), len(times), "a firing was recorded twice")
        for newer, older in zip(times, times[1:]):
            self.assertEqual((newer - older).total_seconds(), 2.0, [r["id"] for r in runs])

        # The tasks really ran, each once, with the run id in the environment.
        done = [r["id"] for r in runs if r["state"] == "succeeded"]
        beats = d.read("beats").split()
        for rid in done:
            self.assertEqual(beats.count(rid), 1, "task output %r lacks run %s" % (beats, rid))
            run = d.ctl_ok("show", rid)
            self.assertEqual(harness.task(run, "beat")["state"], "succeeded")
            self.assertEqual(harness.task(run, "beat")["exit_code"], 0)


if __name__ == "__main__":
    harness.main()
