"""History and housekeeping: keep_runs / keep_days retention (runs, child runs and their logs go),
max_log_size truncation with its marker, `runs --since/--until/--state lost`, and `logs -f`."""

import os
import re
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DAY_MS = 86_400_000
# Housekeeping leaves a run alone for 5 s after it ended and passes every 2 s.
PRUNE_TIMEOUT = 20.0


def log_dir(d, run_id):
    return os.path.join(d.state_dir, "logs", run_id)


def run_ids(d, *args):
    return [r["id"] for r in d.ctl_ok("runs", "--limit", "1000", *args)]


class RetentionTest(harness.DaemonTestCase):
    def test_keep_runs_deletes_the_oldest_runs_with_child_runs_and_logs(self):
        d = self.daemon(extra_config='\n[history]\nkeep_runs = 2\n')
        d.write_workflow("chatty", """\
            [[task]]
            id = "say"
            plugin = "shell"
            command = "echo hello from $TASKHUB_RUN_ID"
            """)
        d.write_workflow("roomy", """\
            keep_runs = 4
            [[task]]
            id = "say"
            plugin = "shell"
            command = "echo roomy"
            """)
        d.write_workflow("inner", """\
            [[task]]
            id = "leaf"
            plugin = "shell"
            command = "echo leaf"
            """)
        d.write_workflow("outer", """\
            keep_runs = 1
            [[task]]
            id = "sub"
            workflow = "inner"
            """)
        d.start()
        chatty = [d.ctl_ok("run", "chatty", "--wait")["id"] for _ in range(5)]
        roomy = [d.ctl_ok("run", "roomy", "--wait")["id"] for _ in range(5)]
        outer = [d.ctl_ok("run", "outer", "--wait")["id"] for _ in range(2)]
        for i in chatty + roomy + outer:
            self.assertTrue(os.path.isdir(log_dir(d, i)), "no log directory for " + i)
        first_child = d.ctl_ok("show", outer[0])["tasks"][0]["child_run"]
        self.assertTrue(first_child.startswith(outer[0] + "/"), first_child)
        self.assertEqual(len(os.listdir(log_dir(d, outer[0]))), 1, "the child run's logs sit below its parent's")

        harness.wait_until(lambda: run_ids(d, "chatty") == chatty[:2:-1] and len(run_ids(d, "roomy")) == 4
                           and run_ids(d, "outer") == [outer[1]], PRUNE_TIMEOUT,
                           what="retention to keep the newest 2 chatty, 4 roomy and 1 outer run")
        self.assertEqual(run_ids(d, "roomy"), roomy[:0:-1], "keep_runs = 4 in the workflow file overrides [history]")
        self.assertNotIn(first_child, run_ids(d, "--all"), "the child run of a deleted run is left")
        for gone in chatty[:3] + roomy[:1] + outer[:1]:
            rc, _, err = d.ctl("show", gone)
            self.assertEqual(rc, 1, "deleted run %s still shows" % gone)
            self.assertIn("no workflow or run named", err)
            harness.wait_until(lambda: not os.path.exists(log_dir(d, gone)), what="the logs of %s to go" % gone)
        for kept in chatty[3:] + roomy[1:] + outer[1:]:
            self.assertTrue(os.path.isdir(log_dir(d, kept)), "the logs of kept run %s are gone" % kept)
            self.assertIn(d.ctl_ok("show", kept)["state"], ("succeeded",))
        self.assertEqual(d.ctl_ok("logs", chatty[4], "say", json=False), "hello from %s\n" % chatty[4])
        self.assertRegex(d.log(), r"HISTORY_PRUNED \d+ run\(s\) deleted")

    def test_keep_days_deletes_runs_created_before_the_limit(self):
        d = self.daemon(extra_config='\n[history]\nkeep_days = 7\n')
        d.write_workflow("daily", """\
            [[task]]
            id = "say"
            plugin = "shell"
            command = "echo today"
            """)
        d.write_workflow("archive", """\
            keep_days = 30
            [[task]]
            id = "say"
            plugin = "shell"
            command = "echo archived"
            """)
        d.start()
        recent = d.ctl_ok("run", "daily", "--wait")["id"]
        d.stop()
        # Old history, written as an older daemon would have left it.
        now = int(time.time() * 1000)
        old = {"daily@old-10d": ("daily", now - 10 * DAY_MS), "daily@old-8d": ("daily", now - 8 * DAY_MS),
               "daily@old-6d": ("daily", now - 6 * DAY_MS), "archive@old-10d": ("archive", now - 10 * DAY_MS)}
        db = sqlite3.connect(os.path.join(d.state_dir, "taskhub.db"))
        for run_id, (wf, created) in old.items():
            cur = db.execute("INSERT INTO runs(id, workflow, trigger, state, created_ms, started_ms, ended_ms) "
                             "VALUES(?, ?, 'manual', 'succeeded', ?, ?, ?)", (run_id, wf, created, created, created + 1000))
            key = cur.lastrowid
            db.execute("INSERT INTO tasks(key, task_id, plugin, state, attempt) VALUES(?, 'say', 'shell', 'succeeded', 1)",
                       (key << 20,))
            db.execute("INSERT INTO event_blocks(last_seq, run_key, events) VALUES((SELECT coalesce(max(last_seq), 0) + 1 "
                       "FROM event_blocks), ?, '[]')", (key,))
            os.makedirs(log_dir(d, run_id))
            with open(os.path.join(log_dir(d, run_id), "say.1.log"), "w") as f:
                f.write("old\n")
        db.commit()
        db.close()
        d.start()
        harness.wait_until(lambda: run_ids(d, "daily") == ["daily@old-6d", recent], PRUNE_TIMEOUT,
                           what="runs of daily older than 7 days to be deleted")
        self.assertEqual(run_ids(d, "archive"), ["archive@old-10d"], "keep_days = 30 in the workflow file overrides")
        for gone in ("daily@old-10d", "daily@old-8d"):
            harness.wait_until(lambda: not os.path.exists(log_dir(d, gone)), what="the logs of %s to go" % gone)
        for kept in ("daily@old-6d", "archive@old-10d", recent):
            self.assertTrue(os.path.isdir(log_dir(d, kept)), kept)
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "taskhub.db"), uri=True)
        keys = [k for (k,) in db.execute("SELECT key FROM runs")]
        orphans = db.execute("SELECT count(*) FROM tasks WHERE key >> 20 NOT IN (SELECT key FROM runs)").fetchone()[0]
        orphan_events = db.execute("SELECT count(*) FROM event_blocks WHERE run_key NOT IN (SELECT key FROM runs)").fetchone()[0]
        db.close()
        self.assertEqual(len(keys), 3)
        self.assertEqual((orphans, orphan_events), (0, 0), "tasks or events of deleted runs are left")

    def test_bad_history_values_name_the_key_and_the_file(self):
        d = self.daemon(extra_config='\n[history]\nkeep_runs = 0\nmax_log_size = "10XB"\nkeep_dayz = 3\n')
        d.write_workflow("wf", """\
            keep_days = -1
            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """)
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertNotEqual(p.returncode, 0)
        err = p.stderr + p.stdout
        self.assertIn(d.config, err)
        self.assertIn("'history.keep_runs'", err)
        self.assertIn("'history.max_log_size'", err)
        self.assertIn("unknown key 'keep_dayz' in [history]", err)
        with open(d.config, "w") as f:  # a sound taskhub.toml: now the workflow file is checked
            f.write('workflows_dir = "workflows.d"\nplugin_dirs = ["%s"]\nstate_dir = "state"\n' % harness.BIN["plugin_dir"])
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stdout, r"workflows\.d/wf\.toml:1: 'keep_days' must be")


class LogSizeTest(harness.DaemonTestCase):
    def test_max_log_size_keeps_the_newest_output_after_a_marker(self):
        d = self.daemon(extra_config='\n[history]\nmax_log_size = "4KB"\n')
        # 300 lines of 50 bytes: 15,000 bytes through a 4 KiB cap.
        d.write_workflow("loud", """\
            [[task]]
            id = "spam"
            plugin = "shell"
            command = "i=1; while [ $i -le 300 ]; do printf 'line %04d %039d\\\\n' $i 0; i=$((i+1)); done"
            """)
        d.start()
        run = d.ctl_ok("run", "loud", "--wait")
        path = os.path.join(log_dir(d, run["id"]), "spam.1.log")
        size = os.path.getsize(path)
        self.assertLessEqual(size, 4096)
        text = d.ctl_ok("logs", run["id"], "spam", json=False)
        first, rest = text.split("\n", 1)
        m = re.fullmatch(r"\[taskhub: (\d+) bytes of older output dropped \(max_log_size = 4KB\)\]", first)
        self.assertTrue(m, "no truncation marker at the start: %r" % first)
        self.assertEqual(int(m.group(1)) + len(rest), 300 * 50, "dropped + kept is not all the output")
        self.assertGreaterEqual(len(rest), 2048 - 50, "less than half the cap is kept")
        lines = rest.splitlines()
        self.assertEqual(lines[-1], "line 0300 " + "0" * 39, "the newest output is not kept")
        self.assertTrue(all(len(line) == 49 for line in lines), "a kept line is cut")
        numbers = [int(line.split()[1]) for line in lines]
        self.assertEqual(numbers, list(range(numbers[0], 301)), "kept output is not one contiguous tail")


    def test_logs_follow_through_truncations_repeats_nothing(self):
        d = self.daemon(extra_config='\n[history]\nmax_log_size = "4KB"\n')
        # 300 lines of 50 bytes in bursts of 60 (3,000 bytes), 0.3 s apart.
        d.write_workflow("bursty", """\
            [[task]]
            id = "spam"
            plugin = "shell"
            command = "sleep 0.5; i=1; while [ $i -le 300 ]; do printf 'line %04d %039d\\n' $i 0; [ $((i % 60)) = 0 ] && sleep 0.3; i=$((i+1)); done"
            """)
        d.start()
        run_id = d.ctl_ok("run", "bursty")["id"]
        d.wait_task_state(run_id, "spam", "running")
        text = d.ctl_ok("logs", run_id, "spam", "-f", json=False)
        numbers, last = [], 0
        for line in text.splitlines():
            if line.startswith("[taskhub: "):
                self.assertRegex(line, r"^\[taskhub: \d+ bytes of older output dropped \(max_log_size = 4KB\)\]$")
                last = None  # a gap may follow a marker
                continue
            n = int(line.split()[1])
            if last is not None:
                self.assertEqual(n, last + 1, "output skipped without a marker, or repeated: %r" % text)
            numbers.append(n)
            last = n
        self.assertEqual(numbers, sorted(set(numbers)), "lines repeated")
        self.assertEqual(numbers[-1], 300)


class RunsFilterTest(harness.DaemonTestCase):
    def test_since_until_and_lost(self):
        d = self.daemon()
        d.write_workflow("wf", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        ids = [d.ctl_ok("run", "wf", "--wait")["id"] for _ in range(3)]
        self.assertEqual(run_ids(d, "--since", "1h"), ids[::-1])
        self.assertEqual(run_ids(d, "--until", "1h"), [])
        self.assertEqual(run_ids(d, "--since", "2000-01-01", "--until", "2999-01-01T00:00:00Z"), ids[::-1])
        self.assertEqual(run_ids(d, "--since", "2999-01-01T00:00:00+01:00"), [])
        created = [harness.parse_iso(d.ctl_ok("show", i)["created"]) for i in ids]
        # Whole seconds: the newest run falls after a cut between the first and the last.
        if int(created[2].timestamp()) > int(created[0].timestamp()):
            cut = created[2].replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.assertIn(ids[2], run_ids(d, "--since", cut))
            self.assertNotIn(ids[2], run_ids(d, "--until", cut))
        for bad in ("yesterday", "2h30", "2026-13-45"):
            rc, _, err = d.ctl("runs", "--since", bad)
            self.assertEqual(rc, 2, "--since %s was accepted" % bad)
            self.assertIn("--since", err)

        self.assertEqual(run_ids(d, "--state", "lost"), [])
        d.stop()
        db = sqlite3.connect(os.path.join(d.state_dir, "taskhub.db"))
        db.execute("UPDATE runs SET lost = 2 WHERE id = ?", (ids[1],))
        db.commit()
        db.close()
        d.start()
        self.assertEqual(run_ids(d, "--state", "lost"), [ids[1]])
        self.assertEqual(run_ids(d, "wf", "--state", "lost", "--since", "1h"), [ids[1]])


class LogsFollowTest(harness.DaemonTestCase):
    def test_logs_follow_streams_a_running_attempt_until_it_ends(self):
        d = self.daemon()
        d.write_workflow("slow", """\
            [[task]]
            id = "tick"
            plugin = "shell"
            command = "for i in 1 2 3 4 5; do echo tick $i; sleep 0.4; done; echo done"
            """)
        d.start()
        run_id = d.ctl_ok("run", "slow")["id"]
        d.wait_task_state(run_id, "tick", "running")
        p = subprocess.Popen([harness.BIN["ctl"], "--socket", d.socket, "logs", run_id, "tick", "-f"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = p.stdout.readline()
            self.assertEqual(first, "tick 1\n")
            # It printed while the task still ran: output is followed live.
            self.assertEqual(harness.task(d.run_record(run_id), "tick")["state"], "running")
            self.assertIsNone(p.poll(), "logs -f exited while the attempt was running")
            rest, err = p.communicate(timeout=harness.TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(first + rest, "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\ndone\n")
        self.assertEqual(d.ctl_ok("show", run_id)["state"], "succeeded")
        # Of an attempt that has ended, -f prints its output and exits.
        self.assertEqual(d.ctl_ok("logs", run_id, "tick", "--follow", json=False).count("tick"), 5)
        for args, what in (((run_id, "nosuch"), "nosuch"), ((run_id, "tick", "--attempt", "3"), "attempt"),
                           (("slow@nosuchrun", "tick"), "no run")):
            rc, _, err = d.ctl("logs", *args, "-f")
            self.assertEqual(rc, 1)
            self.assertIn(what, err)


class ShowTest(harness.DaemonTestCase):
    def test_show_lists_every_attempt_of_a_task_that_ran_again(self):
        d = self.daemon()
        d.write_workflow("flaky", """\
            [[task]]
            id = "try"
            plugin = "shell"
            command = "test -e $TASKHUB_STATE_DIR/ok || { touch $TASKHUB_STATE_DIR/ok; exit 3; }"
            retries = 2
            retry_delay = "1s"
            [[task]]
            id = "once"
            plugin = "shell"
            depends_on = ["try"]
            command = "sleep 0.3"
            """)
        d.start()
        run_id = d.ctl_ok("run", "flaky", "--wait")["id"]
        text = d.ctl_ok("show", run_id, json=False)
        self.assertRegex(text, r"(?m)^try +succeeded +2 +0 +\d+ms +\S+ +\S+ +exit code 0$")  # then CPU, MEM
        self.assertRegex(text, r"(?m)^once +succeeded +1 +0 +\d{3}ms +\S+ +\S+ +exit code 0$")
        attempts = text.split("ATTEMPTS (tasks that ran more than once)\n", 1)[1].split("EVENTS", 1)[0]
        self.assertRegex(attempts, r"(?m)^  try +1 +\S+ \S+ [+-]\d\d:\d\d +\d+ms +(\S+ +\S+ +)?failed: exit code 3; retry 1 of 2 in 1s$")
        self.assertRegex(attempts, r"(?m)^  try +2 +\S+ \S+ [+-]\d\d:\d\d +\d+ms +(\S+ +\S+ +)?succeeded: exit code 0$")
        self.assertNotRegex(attempts, r"(?m)^  once ", "a task that ran once is listed under ATTEMPTS")


if __name__ == "__main__":
    harness.main()
