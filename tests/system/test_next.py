"""`taskhubctl next`: the offline preview of a cron expression around DST changes, and the next
firings of a loaded workflow through a real taskhubd."""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import zoneinfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
UTC = datetime.timezone.utc
TZ_HINT = '(expected an IANA name like "Europe/Berlin" or "UTC")'


def ctl(*args, timeout=harness.TIMEOUT):
    """Runs taskhubctl ARGS with no daemon: (exit code, stdout, stderr)."""
    p = subprocess.run([harness.BIN["ctl"]] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def preview(cron, frm, n, *extra, tz="Europe/Berlin"):
    """The offline preview as JSON."""
    rc, out, err = ctl("--json", "next", "--cron", cron, "--tz", tz, "--from", frm, "-n", str(n), *extra)
    assert rc == 0, "next --cron %r exited %d: %s" % (cron, rc, err)
    return json.loads(out)


def local_and_note(firings):
    return [(f["local"], f["dst"]) for f in firings]


def parse_ms(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class OfflineNextTest(harness.unittest.TestCase):
    def test_spring_forward_gap_runs_once_after_the_jump(self):
        got = preview("30 2 * * *", "2026-03-29T00:00:00+01:00", 2)
        self.assertEqual(local_and_note(got), [
            ("2026-03-29T03:00:00+02:00", "gap"),
            ("2026-03-30T02:30:00+02:00", None),
        ])
        self.assertEqual(got[0]["utc"], "2026-03-29T01:00:00Z")
        self.assertEqual(got[0]["skipped_wall"], "2026-03-29T02:30:00")
        self.assertNotIn("skipped_wall", got[1])

        skipped = preview("30 2 * * *", "2026-03-29T00:00:00+01:00", 1, "--dst-gap", "skip")
        self.assertEqual(local_and_note(skipped), [("2026-03-30T02:30:00+02:00", None)])

        rc, out, err = ctl("next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin",
                           "--from", "2026-03-29T00:00:00+01:00", "-n", "2")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out.splitlines(), [
            'cron "30 2 * * *" in Europe/Berlin (dst_gap run_after, dst_fold first), after 2026-03-29T00:00:00+01:00',
            "LOCAL                      UTC                   NOTE",
            "2026-03-29T03:00:00+02:00  2026-03-29T01:00:00Z  DST gap: stands for 02:30, which the jump skipped",
            "2026-03-30T02:30:00+02:00  2026-03-30T00:30:00Z",
        ])

    def test_fall_back_fold_fixed_hour(self):
        frm = "2026-10-25T00:00:00+02:00"
        self.assertEqual(local_and_note(preview("30 2 * * *", frm, 2)), [
            ("2026-10-25T02:30:00+02:00", "fold_first"),
            ("2026-10-26T02:30:00+01:00", None),
        ])
        self.assertEqual(local_and_note(preview("30 2 * * *", frm, 1, "--dst-fold", "second")), [
            ("2026-10-25T02:30:00+01:00", "fold_second"),
        ])
        self.assertEqual(local_and_note(preview("30 2 * * *", frm, 2, "--dst-fold", "both")), [
            ("2026-10-25T02:30:00+02:00", "fold_first"),
            ("2026-10-25T02:30:00+01:00", "fold_second"),
        ])

    def test_interval_like_expression_fires_in_both_passes_of_the_fold(self):
        got = preview("*/30 * * * *", "2026-10-25T01:30:00+02:00", 5)
        self.assertEqual(local_and_note(got), [
            ("2026-10-25T02:00:00+02:00", "fold_first"),
            ("2026-10-25T02:30:00+02:00", "fold_first"),
            ("2026-10-25T02:00:00+01:00", "fold_second"),
            ("2026-10-25T02:30:00+01:00", "fold_second"),
            ("2026-10-25T03:00:00+01:00", None),
        ])
        self.assertEqual([f["utc"] for f in got], [
            "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"])

    def test_json_shape_and_strictly_after_from(self):
        got = preview("0 12 * * *", "2026-07-01T12:00:00Z", 3, tz="UTC")
        self.assertEqual(len(got), 3)
        for f in got:
            self.assertEqual(set(f), {"utc", "local", "zone", "dst"}, f)
            self.assertEqual(f["zone"], "UTC")
            self.assertIsNone(f["dst"])
            self.assertRegex(f["utc"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertRegex(f["local"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
            # local and utc name the same instant
            self.assertEqual(datetime.datetime.fromisoformat(f["local"]),
                             datetime.datetime.fromisoformat(f["utc"].replace("Z", "+00:00")))
        self.assertEqual(got[0]["utc"], "2026-07-02T12:00:00Z")
        self.assertEqual(preview("0 0 30 2 *", "2026-01-01T00:00:00Z", 5, tz="UTC"), [])

    def test_n_and_default_count(self):
        self.assertEqual(len(preview("* * * * *", "2026-01-01T00:00:00Z", 10000, tz="UTC")), 10000)
        rc, out, err = ctl("--json", "next", "--cron", "@hourly", "--tz", "UTC", "--from", "2026-01-01T00:00:00Z")
        self.assertEqual(rc, 0, err)
        self.assertEqual([f["utc"] for f in json.loads(out)],
                         ["2026-01-01T0%d:00:00Z" % h for h in range(1, 6)])

    def test_default_zone_is_the_configs_timezone(self):
        with tempfile.TemporaryDirectory(prefix="th-next-") as tmp:
            config = os.path.join(tmp, "taskhub.toml")
            with open(config, "w") as f:
                f.write('timezone = "America/New_York"\n')
            rc, out, err = ctl("--config", config, "--json", "next", "--cron", "0 12 * * *",
                               "--from", "2026-07-01T00:00:00Z", "-n", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), [{"utc": "2026-07-01T16:00:00Z", "local": "2026-07-01T12:00:00-04:00",
                                            "zone": "America/New_York", "dst": None}])

    def test_errors(self):
        def fails(args, code, first_line):
            rc, out, err = ctl("next", *args)
            self.assertEqual(rc, code, "next %s: %s" % (args, err))
            self.assertEqual(out, "")
            self.assertEqual(err.splitlines()[0], first_line)

        fails(["--cron", "61 * * * *", "--tz", "UTC"], 2, 'taskhubctl: cron "61 * * * *": minute 61 out of range 0-59')
        fails(["--cron", "* * * *", "--tz", "UTC"], 2, 'taskhubctl: cron "* * * *": expected 5 or 6 fields, found 4')
        fails(["--cron", "* * * * *", "--tz", "Europe/Berln"], 2,
              'taskhubctl: --tz: unknown time zone "Europe/Berln"; did you mean \'Europe/Berlin\'? ' + TZ_HINT)
        fails(["--cron", "* * * * *", "--tz", "Nowhere/Atlantis"], 2,
              'taskhubctl: --tz: unknown time zone "Nowhere/Atlantis" ' + TZ_HINT)
        fails(["--cron", "* * * * *", "--tz", "UTC", "--from", "2026-03-29T00:00:00"], 2,
              'taskhubctl: --from: "2026-03-29T00:00:00" is not an instant: the offset is missing '
              '(expected ISO 8601 with an offset, e.g. 2026-12-24T18:00:00+01:00 or 2026-12-24T17:00:00Z)')
        fails(["--cron", "* * * * *", "--tz", "UTC", "-n", "0"], 2,
              "taskhubctl: next: -n needs a number from 1 to 10000, found '0'")
        fails(["--cron", "* * * * *", "--tz", "UTC", "-n", "10001"], 2,
              "taskhubctl: next: -n needs a number from 1 to 10000, found '10001'")
        fails(["--cron", "* * * * *", "--dst-fold", "twice"], 2,
              "taskhubctl: next: --dst-fold: expected first, second or both, found 'twice'")
        fails([], 2, "taskhubctl: next takes WORKFLOW (through the daemon) or --cron EXPR (offline)")
        fails(["nightly", "--cron", "* * * * *"], 2, "taskhubctl: next takes WORKFLOW or --cron EXPR, not both")
        fails(["nightly", "--tz", "UTC"], 2, "taskhubctl: next: --tz goes with --cron EXPR; next WORKFLOW uses the "
              "workflow's own zone and DST settings, from now")
        fails(["--cron", "@reboot", "--tz", "UTC"], 1, 'taskhubctl: cron "@reboot" fires once each time the '
              "machine boots, when taskhubd starts; it has no instants to show")


class NextThroughDaemonTest(harness.DaemonTestCase):
    def test_next_of_a_workflow(self):
        d = self.daemon()
        d.write_workflow("nightly", """\
            timezone = "Europe/Berlin"
            [[trigger]]
            cron = "30 2 * * *"
            [[trigger]]
            cron = "15 */8 * * *"

            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.write_workflow("manual", """\
            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.start()

        before = datetime.datetime.now(UTC).replace(microsecond=0)
        data = d.ctl_ok("next", "nightly", "-n", "6")
        self.assertEqual((data["workflow"], data["timezone"], data["note"]), ("nightly", "Europe/Berlin", ""))
        firings = data["firings"]
        self.assertEqual(len(firings), 6, firings)
        for f in firings:
            self.assertEqual(set(f), {"trigger", "trigger_text", "scheduled", "due", "local"}, f)
            self.assertEqual(f["trigger_text"], ['cron "30 2 * * *"', 'cron "15 */8 * * *"'][f["trigger"]])
            scheduled = parse_ms(f["scheduled"])
            self.assertEqual(f["due"], f["scheduled"], "no jitter was asked for")
            self.assertGreater(scheduled, before)
            local = datetime.datetime.fromisoformat(f["local"])
            self.assertEqual(local, scheduled, "local %s and scheduled %s differ" % (f["local"], f["scheduled"]))
            self.assertEqual(local.utcoffset(), scheduled.astimezone(BERLIN).utcoffset(), f)
        self.assertEqual([f["scheduled"] for f in firings], sorted(f["scheduled"] for f in firings))

        # An independent reckoning with Python's zoneinfo, unless a DST change falls in the window
        # (then the rules of docs/scheduling.md apply, which the offline tests cover).
        start = before.astimezone(BERLIN)
        if start.utcoffset() == (start + datetime.timedelta(days=3)).astimezone(BERLIN).utcoffset():
            expected = []
            for day in range(4):
                date = (start + datetime.timedelta(days=day)).date()
                for trigger, (hour, minute) in [(0, (2, 30)), (1, (0, 15)), (1, (8, 15)), (1, (16, 15))]:
                    wall = datetime.datetime(date.year, date.month, date.day, hour, minute, tzinfo=BERLIN)
                    if wall > before:
                        expected.append((wall.astimezone(UTC), trigger))
            expected.sort()
            self.assertEqual([(parse_ms(f["scheduled"]), f["trigger"]) for f in firings], expected[:6])

        rc, out, err = d.ctl("next", "nightly", "-n", "2", json=False)
        self.assertEqual((rc, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0], "workflow nightly in Europe/Berlin")
        self.assertEqual(lines[1].split(), ["LOCAL", "SCHEDULED", "DUE", "TRIGGER"])  # in the daemon's zone
        self.assertEqual(len(lines), 4, out)
        for line, f in zip(lines[2:], firings):
            self.assertTrue(line.startswith(f["local"] + "  "), line)
            self.assertTrue(line.endswith("#%d %s" % (f["trigger"], f["trigger_text"])), line)

        # Without time triggers: an empty list and a note.
        data = d.ctl_ok("next", "manual")
        self.assertEqual(data["firings"], [])
        self.assertEqual(data["note"], "workflow 'manual' has no time triggers (cron, every or at)")
        rc, out, err = d.ctl("next", "manual", json=False)
        self.assertEqual((rc, out, err), (0, "workflow manual in UTC\n"
                                              "workflow 'manual' has no time triggers (cron, every or at)\n", ""))

        rc, out, err = d.ctl("next", "nightli", json=False)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err, "taskhubctl: no workflow named 'nightli'; did you mean 'nightly'?\n")

        with d.connect() as c:
            r = c.request({"proto": 1, "cmd": "next", "args": {"workflow": "nightly", "n": 0}})
            self.assertEqual(r["error"], {"code": "bad_request", "message": "argument 'n' must be between 1 and 10000"})
            r = c.request({"proto": 1, "cmd": "next", "args": {"workflow": "nope"}})
            self.assertEqual(r["error"], {"code": "not_found", "message": "no workflow named 'nope'"})
            r = c.request({"proto": 1, "cmd": "next", "args": {"workflow": "nightly"}})
            self.assertEqual(len(r["data"]["firings"]), 5, "n defaults to 5")
            r = c.request({"proto": 1, "cmd": "help"})
            self.assertIn({"name": "next", "access": "read-only",
                           "summary": "a workflow's next firings of its time triggers (args: workflow, n)"}, r["data"])

    def test_every_at_jitter_and_h_fields(self):
        d = self.daemon()
        at = (datetime.datetime.now(UTC) + datetime.timedelta(hours=20, seconds=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        d.write_workflow("mixed", """\
            timezone = "America/New_York"
            [[trigger]]
            every = "1h"
            start_at = "2026-01-01T00:00:00Z"
            jitter = "5m"
            [[trigger]]
            at = "%s"
            [[trigger]]
            cron = "H H * * *"

            [[task]]
            id = "t"
            plugin = "noop"
            """ % at)
        d.write_workflow("past", """\
            [[trigger]]
            at = "2020-01-01T00:00:00Z"

            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.write_workflow("feb30", """\
            [[trigger]]
            cron = "0 0 30 2 *"

            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.start()

        firings = d.ctl_ok("next", "mixed", "-n", "30")["firings"]
        self.assertEqual(len(firings), 30)
        every = [f for f in firings if f["trigger"] == 0]
        self.assertGreaterEqual(len(every), 20, firings)
        jitter = {parse_ms(f["due"]) - parse_ms(f["scheduled"]) for f in every}
        self.assertEqual(len(jitter), 1, "the jitter offset is stable: %r" % jitter)
        self.assertLessEqual(jitter.pop(), datetime.timedelta(minutes=5))
        for f in every:
            self.assertEqual(f["trigger_text"], "every 1h from 2026-01-01T00:00:00Z jitter 5m")
            self.assertEqual(parse_ms(f["scheduled"]).strftime("%M:%S"), "00:00", f)
            self.assertEqual(datetime.datetime.fromisoformat(f["local"]), parse_ms(f["scheduled"]))
            self.assertIn(f["local"][-6:], ("-05:00", "-04:00"), f)

        # The daily H H firing: the offline preview with --name hashes the same way.
        daily = next(f for f in firings if f["trigger"] == 2)
        self.assertEqual(daily["trigger_text"], 'cron "H H * * *"')
        scheduled = parse_ms(daily["scheduled"])
        rc, out, err = ctl("--json", "next", "--cron", "H H * * *", "--name", "mixed", "--tz", "America/New_York",
                           "--from", (scheduled - datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "-n", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)[0]["local"], daily["local"])

        # The one-off `at` is one firing, in its place among the others.
        (once,) = [f for f in firings if f["trigger"] == 1]
        self.assertEqual((once["trigger_text"], once["scheduled"], once["due"]),
                         ("at " + at, at.replace("Z", ".000Z"), at.replace("Z", ".000Z")))
        self.assertEqual([f["due"] for f in firings], sorted(f["due"] for f in firings))

        data = d.ctl_ok("next", "feb30")
        self.assertEqual(data["firings"], [])
        self.assertEqual(data["note"], "no time trigger of workflow 'feb30' fires again (cron \"0 0 30 2 *\")")
        self.assertIn('SCHED_NEVER_FIRES feb30: trigger #0 cron "0 0 30 2 *" has no firing in the next 8 years',
                      d.log())

        data = d.ctl_ok("next", "past")
        self.assertEqual(data["firings"], [])
        self.assertEqual(data["note"], "no time trigger of workflow 'past' fires again (at 2020-01-01T00:00:00Z)")


if __name__ == "__main__":
    harness.main()
