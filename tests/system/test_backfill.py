#!/usr/bin/env python3
"""`taskhubctl backfill`: the runs a workflow's time triggers would have fired in a past range,
with the scheduler's ids, instants already recorded left alone and listed, started as the
overlap policy admits them (at most --max-active at once), continued after a restart; --dry-run
creates nothing; argument errors; a client without rights is refused.

The workflows' cron triggers fire only in March and October, at 02:30 in Europe/Berlin, so no
scheduled firing comes while a test runs (and catchup = "none" keeps a restart from firing one)."""
import json
import os
import pwd
import socket
import unittest

import harness

WAIT_FOR_MARKER = "while [ ! -e %s ]; do sleep 0.05; done; echo $TASKHUB_RUN_ID >> %s"


def workflow_text(marker, done, overlap="skip", extra=""):
    return """\
        description = "backfill test"
        timezone = "Europe/Berlin"
        dst_fold = "both"
        %s
        [[trigger]]
        cron = "30 2 * 3,10 *"

        [policy]
        overlap = "%s"
        catchup = "none"

        [[task]]
        id = "t"
        plugin = "shell"
        command = "%s"
        """ % (extra, overlap, WAIT_FOR_MARKER % (marker, done))


def states(d, workflow):
    """run id -> state of the workflow's runs."""
    return {r["id"]: r["state"] for r in d.ctl_ok("runs", workflow, "--limit", "1000")}


def wait_states(d, workflow, predicate, what):
    def check():
        s = states(d, workflow)
        return s if predicate(s) else None
    return harness.wait_until(check, what=what)


def parents(path):
    """The directories above path and path itself, which nobody must be able to pass."""
    path = os.path.abspath(path)
    out = [path]
    while path != "/":
        path = os.path.dirname(path)
        out.append(path)
    return out


def count(s, state):
    return sum(1 for v in s.values() if v == state)


class BackfillTest(harness.DaemonTestCase):
    def start(self, overlap="skip", extra=""):
        d = self.daemon()
        self.marker = d.path("go")
        self.done = d.path("done")
        d.write_workflow("daily", workflow_text(self.marker, self.done, overlap, extra))
        d.write_workflow("manual", """\
            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.start()
        return d

    def order_done(self, d):
        with open(self.done) as f:
            return [line.strip() for line in f]

    def test_across_the_spring_gap_with_instants_already_recorded(self):
        d = self.start()
        # Dry run: the instants with their DST notes; nothing is created.
        out = d.ctl_ok("backfill", "daily", "--from", "2026-03-28", "--to", "2026-03-30T02:30", "--dry-run")
        self.assertTrue(out["dry_run"])
        self.assertEqual(out["timezone"], "Europe/Berlin")
        self.assertEqual(out["from"], "2026-03-27T23:00:00.000Z")   # midnight in Berlin
        self.assertEqual(out["to"], "2026-03-30T00:30:00.000Z")     # 02:30 CEST, included
        self.assertEqual([(i["run"], i["local"], i["dst"], i["recorded"]) for i in out["instants"]], [
            ("daily@20260328T013000Z", "2026-03-28T02:30:00+01:00", None, False),
            ("daily@20260329T010000Z", "2026-03-29T03:00:00+02:00", "gap", False),
            ("daily@20260330T003000Z", "2026-03-30T02:30:00+02:00", None, False)])
        self.assertEqual(out["instants"][1]["dst_text"], "DST gap: stands for 02:30, which the jump skipped")
        self.assertEqual((out["created"], out["recorded"]), (3, 0))
        self.assertEqual(d.ctl_ok("runs", "daily"), [], "a dry run created runs")
        text = d.ctl_ok("backfill", "daily", "--from", "2026-03-28", "--to", "2026-03-30T02:30", "--dry-run",
                        json=False)
        self.assertIn("DST gap: stands for 02:30, which the jump skipped", text)
        self.assertIn("would create 3 run(s); 0 instant(s) already recorded", text)

        # The gap's instant first, on its own: it runs (and waits for the marker).
        first = d.ctl_ok("backfill", "daily", "--from", "2026-03-29T00:00:00+01:00", "--to", "2026-03-29T23:00")
        self.assertEqual([(i["run"], i["recorded"], i["state"]) for i in first["instants"]],
                         [("daily@20260329T010000Z", False, "running")])
        # The whole range: the recorded instant is listed and left alone, the others wait queued
        # (overlap = skip: never two runs of the workflow at once).
        out = d.ctl_ok("backfill", "daily", "--from", "2026-03-28", "--to", "2026-03-30T02:30")
        self.assertFalse(out["dry_run"])
        self.assertEqual([(i["run"], i["recorded"], i["state"]) for i in out["instants"]], [
            ("daily@20260328T013000Z", False, "queued"),
            ("daily@20260329T010000Z", True, "running"),
            ("daily@20260330T003000Z", False, "queued")])
        self.assertEqual((out["created"], out["recorded"]), (2, 1))
        text = d.ctl_ok("backfill", "daily", "--from", "2026-03-28", "--to", "2026-03-30T02:30", "--dry-run",
                        json=False)
        self.assertIn("recorded (running), left alone", text)
        self.assertIn("would create 0 run(s); 3 instant(s) already recorded", text)

        s = states(d, "daily")
        self.assertEqual(s, {"daily@20260328T013000Z": "queued", "daily@20260329T010000Z": "running",
                             "daily@20260330T003000Z": "queued"})
        run = d.run_record("daily@20260328T013000Z")
        self.assertEqual(run["trigger"], "cron")
        self.assertEqual(run["scheduled"], "2026-03-28T01:30:00.000Z")
        created = [e["detail"] for e in run["events"] if e["kind"] == "run_created"]
        self.assertEqual(len(created), 1)
        self.assertTrue(created[0].startswith("cron by uid %d" % os.getuid()), created)
        self.assertIn(": backfill 1 of the range 2026-03-28T00:00:00+01:00 to 2026-03-30T02:30:00+02:00", created[0])

        # Released: one at a time, the running one first, then the oldest instants first.
        open(self.marker, "w").close()
        wait_states(d, "daily", lambda s: count(s, "succeeded") == 3, "every backfill run to succeed")
        self.assertEqual(self.order_done(d), ["daily@20260329T010000Z", "daily@20260328T013000Z",
                                              "daily@20260330T003000Z"])

    def test_autumn_fold_dry_run_lists_both_passes(self):
        d = self.start()
        out = d.ctl_ok("backfill", "daily", "--from", "2026-10-25", "--to", "2026-10-25T03:00", "--dry-run")
        self.assertEqual([(i["run"], i["local"], i["dst"]) for i in out["instants"]], [
            ("daily@20261025T003000Z", "2026-10-25T02:30:00+02:00", "fold_first"),
            ("daily@20261025T013000Z", "2026-10-25T02:30:00+01:00", "fold_second")])
        text = d.ctl_ok("backfill", "daily", "--from", "2026-10-25", "--to", "2026-10-25T03:00", "--dry-run",
                        json=False)
        self.assertIn("DST fold: 1st pass of 02:30", text)
        self.assertIn("DST fold: 2nd pass of 02:30", text)
        self.assertEqual(d.ctl_ok("runs", "daily"), [])

    def test_max_active_with_overlap_allow(self):
        d = self.start(overlap="allow")
        out = d.ctl_ok("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-05", "--max-active", "2")
        self.assertEqual(out["created"], 4)
        s = wait_states(d, "daily", lambda s: count(s, "running") == 2, "two backfill runs running")
        self.assertEqual(count(s, "queued"), 2)
        # The two oldest run; the others wait.
        self.assertEqual(sorted(k for k, v in s.items() if v == "running"),
                         ["daily@20260301T013000Z", "daily@20260302T013000Z"])
        open(self.marker, "w").close()
        wait_states(d, "daily", lambda s: count(s, "succeeded") == 4, "every backfill run to succeed")

    def test_deadlines_do_not_misfire_for_backfill_runs(self):
        # Firings decided before the backfill (here: before the workflow had a deadline) are not
        # decided again when their late runs come, whatever their instants.
        d = self.start(extra='deadline = "1s"')
        open(self.marker, "w").close()
        out = d.ctl_ok("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-02T12:00")
        self.assertEqual(out["created"], 2)
        wait_states(d, "daily", lambda s: count(s, "succeeded") == 2, "the backfill runs to succeed")
        for r in d.ctl_ok("runs", "daily"):
            self.assertIsNone(r["deadline_missed_ms"], r)
            self.assertEqual(d.ctl_ok("show", r["id"])["deadline"]["state"], "not_checked", r)
        self.assertNotIn("DEADLINE_MISSED", d.log())

    def test_max_active_above_one_needs_overlap_allow(self):
        d = self.start()
        rc, out, err = d.ctl("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-05", "--max-active", "3")
        self.assertEqual(rc, 1, out)
        self.assertIn("workflow 'daily' has overlap = skip", err)
        self.assertIn("--max-active above 1 needs overlap = allow", err)
        self.assertEqual(d.ctl_ok("runs", "daily"), [])

    def test_a_restart_continues_the_backfill(self):
        d = self.start()
        d.ctl_ok("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-03T12:00")
        wait_states(d, "daily", lambda s: count(s, "running") == 1 and count(s, "queued") == 2, "one running")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        d.start()
        # The run that was running was cancelled by the shutdown; the queued ones continue.
        s = wait_states(d, "daily", lambda s: count(s, "running") == 1, "the next backfill run to start")
        self.assertEqual(s["daily@20260301T013000Z"], "cancelled")
        self.assertEqual(s["daily@20260302T013000Z"], "running")
        self.assertEqual(s["daily@20260303T013000Z"], "queued")
        open(self.marker, "w").close()
        wait_states(d, "daily", lambda s: count(s, "succeeded") == 2, "the rest to succeed")

    def test_argument_errors(self):
        d = self.start()
        cases = [
            (("backfill", "dialy", "--from", "2026-03-01", "--to", "2026-03-02"), 1,
             "no workflow named 'dialy'"),
            (("backfill", "daily", "--from", "2026-03-05", "--to", "2026-03-01"), 1,
             "--from 2026-03-05T00:00:00+01:00 is after --to 2026-03-01T00:00:00+01:00"),
            (("backfill", "daily", "--from", "2026-03-01", "--to", "2099-01-01"), 1,
             "is in the future (now is"),
            (("backfill", "manual", "--from", "2026-03-01", "--to", "2026-03-02"), 1,
             "workflow 'manual' has no time trigger with fixed instants to backfill"),
            (("backfill", "daily", "--from", "2026-03-29T02:30", "--to", "2026-03-30"), 1,
             "--from: \"2026-03-29T02:30\" does not exist in Europe/Berlin"),
            (("backfill", "daily", "--from", "last week", "--to", "2026-03-30"), 1,
             "--from: \"last week\" is not a time"),
            (("backfill", "daily", "--from", "2026-03-01"), 2, "backfill needs --from T1 and --to T2"),
            (("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-02", "--max-active", "0"), 2,
             "--max-active needs a number from 1 to 1000, found '0'"),
            (("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-02", "--max-active", "x"), 2,
             "--max-active needs a number from 1 to 1000, found 'x'"),
        ]
        for args, code, message in cases:
            rc, out, err = d.ctl(*args)
            self.assertEqual(rc, code, "%s: %s %s" % (args, out, err))
            self.assertIn(message, err, args)
        self.assertEqual(d.ctl_ok("runs", "daily"), [])

    def test_too_many_instants_are_refused_with_their_count(self):
        d = self.daemon()
        d.write_workflow("minutely", """\
            timezone = "UTC"
            [[trigger]]
            cron = "* * * 3 *"
            [policy]
            catchup = "none"
            [[task]]
            id = "t"
            plugin = "noop"
            """)
        d.start()
        rc, out, err = d.ctl("backfill", "minutely", "--from", "2026-03-01", "--to", "2026-03-08T23:59")
        self.assertEqual(rc, 1, out)
        self.assertIn("holds 11520 firings of workflow 'minutely'; a backfill creates at most 10000 (give a "
                      "narrower range", err)
        self.assertEqual(d.ctl_ok("runs", "minutely"), [])

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run a client as another user")
    def test_nobody_may_not_backfill(self):
        if not os.access(harness.BIN["ctl"], os.X_OK) or not all(
                os.stat(p).st_mode & 0o001 for p in parents(harness.BIN["ctl"])):
            self.skipTest("user nobody cannot execute %s" % harness.BIN["ctl"])
        d = self.start()
        nobody_uid = pwd.getpwnam("nobody").pw_uid
        os.chmod(d.dir, 0o755)
        os.chmod(d.socket, 0o666)
        for extra in ((), ("--dry-run",)):
            rc, out, err = d.ctl("backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-03", *extra,
                                 preexec_fn=harness.demote_to_nobody)
            self.assertEqual(rc, 1, "backfill by nobody: %s %s" % (out, err))
            self.assertIn("uid %d may only use read-only commands" % nobody_uid, err)
        # On the wire too, however the request is dressed up.
        pid = os.fork()
        if pid == 0:
            try:
                harness.demote_to_nobody()
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(d.socket)
                req = {"proto": 1, "cmd": "backfill", "args": {"workflow": "daily", "from": "2026-03-01",
                                                               "to": "2026-03-03", "max_active": 1000}}
                s.sendall((json.dumps(req) + "\n").encode())
                reply = json.loads(s.makefile().readline())
                os._exit(0 if reply["ok"] is False and reply["error"]["code"] == "forbidden" else 1)
            except Exception:  # noqa: BLE001 - any failure is the child's exit status
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(d.ctl_ok("runs", "daily"), [], "nobody created runs")

    def test_oversized_and_malformed_requests(self):
        d = self.start()
        with d.connect() as c:
            for args, message in (
                    ({"workflow": "daily", "from": "2026-03-01" + "0" * 100, "to": "2026-03-02"},
                     "argument 'from' is 110 bytes; a time takes at most 64"),
                    ({"workflow": "daily", "from": "2026-03-01", "to": 5}, "argument 'to' must be a string"),
                    ({"workflow": "daily", "from": "2026-03-01", "to": "2026-03-02", "max_active": 5000},
                     "argument 'max_active' must be between 1 and 1000"),
                    ({"workflow": "daily", "to": "2026-03-02"}, "missing argument 'from'")):
                r = c.request({"proto": 1, "cmd": "backfill", "args": args})
                self.assertIs(r["ok"], False, r)
                self.assertEqual(r["error"]["code"], "bad_request", r)
                self.assertIn(message, r["error"]["message"])
        self.assertEqual(d.ctl_ok("runs", "daily"), [])


if __name__ == "__main__":
    harness.main()
