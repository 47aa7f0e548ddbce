"""Run history and task logs survive a daemon restart; SIGTERM on an idle daemon exits 0."""

import os
import signal
import json
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class RestartHistoryTest(harness.DaemonTestCase):
    def test_history_survives_restart(self):
        d = self.daemon()
        d.write_workflow("hist", """\
            [[task]]
            id = "talk"
            plugin = "shell"
            command = "echo \\"to stdout $TASKHUB_RUN_ID\\"; echo to stderr >&2; echo again"
            """)
        d.write_workflow("other", """\
            [[task]]
            id = "fail"
            plugin = "shell"
            command = "echo failing >&2; exit 7"
            """)
        d.start()
        ids = []
        for wf in ("hist", "other", "hist"):
            rc, run, err = d.ctl("run", wf, "--wait")
            self.assertEqual(rc, 0 if wf == "hist" else 1, err)
            ids.append(run["id"])
        before = d.ctl_ok("runs")
        self.assertEqual([r["id"] for r in before], ids[::-1], "runs are not newest first")
        details_before = {i: d.ctl_ok("show", i) for i in ids}

        rc, took = d.stop()
        self.assertEqual(rc, 0, "taskhubd exit status after SIGTERM")
        self.assertLess(took, 5, "an idle taskhubd took %.1fs to stop" % took)
        self.assertFalse(os.path.exists(d.socket), "the socket file is left behind")

        d.start()
        after = d.ctl_ok("runs")
        self.assertEqual([r["id"] for r in after], ids[::-1])
        self.assertEqual([r["state"] for r in after], ["succeeded", "failed", "succeeded"])
        self.assertEqual(after, before, "run records changed across the restart")
        for i in ids:
            shown = d.ctl_ok("show", i)
            self.assertEqual({k: v for k, v in shown.items() if k != "events"},
                             {k: v for k, v in details_before[i].items() if k != "events"})
            self.assertEqual(shown["events"], details_before[i]["events"])
        self.assertEqual([r["id"] for r in d.ctl_ok("runs", "hist")], [ids[2], ids[0]])
        self.assertEqual([r["id"] for r in d.ctl_ok("runs", "--state", "failed")], [ids[1]])
        self.assertEqual([r["id"] for r in d.ctl_ok("runs", "--limit", "1")], [ids[2]])

        for i in (ids[0], ids[2]):
            text = d.ctl_ok("logs", i, "talk", json=False)
            self.assertEqual(text, "to stdout %s\nto stderr\nagain\n" % i)
            log = d.ctl_ok("logs", i, "talk")
            self.assertEqual(log["content"], text)
            self.assertEqual(log["attempt"], 1)
            self.assertIs(log["truncated"], False)
        self.assertEqual(d.ctl_ok("logs", ids[1], "fail", json=False), "failing\n")
        rc, _, err = d.ctl("logs", ids[0], "nosuchtask")
        self.assertEqual(rc, 1)
        self.assertIn("nosuchtask", err)

        # Work continues after the restart; the new run is listed first.
        rc, run, err = d.ctl("run", "hist", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertNotIn(run["id"], ids)
        self.assertEqual(d.ctl_ok("runs")[0]["id"], run["id"])
        self.assertEqual(d.ctl_ok("status")["runs_started"], 1)

        rc, _ = d.stop()
        self.assertEqual(rc, 0)

    def test_second_daemon_on_the_same_state_dir_refuses_and_harms_nothing(self):
        d = self.daemon()
        d.write_workflow("w", """\
            [policy]
            overlap = "allow"

            [[task]]
            id = "n"
            plugin = "noop"
            sleep_ms = 1500
            """)
        d.start()
        running = d.ctl_ok("run", "w")
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config], capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, "a second taskhubd started on a state directory in use")
        self.assertIn("is in use by another taskhubd (pid %d)" % d.proc.pid, p.stdout + p.stderr)
        # The first daemon still owns its socket, its run finishes normally and it can still write.
        self.assertEqual(d.ctl_ok("status")["pid"], d.proc.pid)
        self.assertEqual(d.ctl_ok("wait", running["id"])["state"], "succeeded")
        self.assertEqual(d.ctl_ok("run", "w", "--wait")["state"], "succeeded")

    def test_second_daemon_on_the_same_socket_refuses(self):
        d = self.daemon()
        d.write_workflow("w", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        d.start()
        other = self.daemon()
        other.write_workflow("w", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        with open(other.config) as f:
            text = f.read().replace('socket = "taskhub.sock"', 'socket = %s' % json.dumps(d.socket))
        with open(other.config, "w") as f:
            f.write(text)
        p = subprocess.run([harness.BIN["daemon"], "--config", other.config], capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, "a second taskhubd started on a socket in use")
        self.assertIn("already listening", p.stdout + p.stderr)
        self.assertEqual(d.ctl_ok("status")["pid"], d.proc.pid, "the first daemon lost its socket")

    def test_restart_after_crash(self):
        # SIGKILL leaves the socket file and an unfinished run behind; the next start reuses the
        # socket path and recovers the run: its running attempt is lost and, without retries,
        # fails, so the run fails (test_crash_recovery.py covers retries and at_most_once).
        d = self.daemon()
        marker = harness.new_marker()
        d.write_workflow("crashy", """\
            [[task]]
            id = "slow"
            plugin = "shell"
            command = "sleep 600 # %s"
            env = { SYSTEST_MARKER = "%s" }

            [[task]]
            id = "next"
            plugin = "noop"
            depends_on = ["slow"]
            """ % (marker, marker))
        d.start()
        rid = d.ctl_ok("run", "crashy")["id"]
        d.wait_task_state(rid, "slow", "running")
        rc, _ = d.stop(signal.SIGKILL)
        self.assertEqual(rc, -signal.SIGKILL)
        self.assertTrue(os.path.exists(d.socket))
        harness.reap_orphans()  # the crashed daemon's task, re-parented to this process

        d.start()
        run = d.ctl_ok("show", rid)
        self.assertEqual(run["state"], "failed")
        self.assertIn("lost", run["message"])
        tasks = {t["id"]: t for t in run["tasks"]}
        self.assertEqual(tasks["slow"]["state"], "failed")
        self.assertTrue(tasks["slow"]["message"].startswith("lost: "), tasks["slow"]["message"])
        self.assertIn(tasks["next"]["state"], ("skipped", "cancelled"))
        self.assertIn("recovered", [e["kind"] for e in run["events"]])
        self.assertIsNotNone(run["ended"])
        self.assertEqual(d.ctl_ok("status")["active_runs"], 0)
        rc, again, err = d.ctl("run", "crashy")
        self.assertEqual(rc, 0, err)
        self.assertEqual(again["state"], "running", "the interrupted run still blocks new runs")
        d.ctl_ok("cancel", again["id"])
        d.wait_run_state(again["id"], "cancelled")


if __name__ == "__main__":
    harness.main()
