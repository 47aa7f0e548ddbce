"""File-drop triggers: a complete file fires one run per version (atomic rename, slow writer,
touch without change), bursts lose nothing, files dropped while the daemon is stopped fire under
the catch-up rules, an inotify overflow (test hook) loses nothing, `after` moves or deletes only
on success, a missing directory is watched once it appears, and a paused workflow's drops follow
catch-up at resume."""

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Each run appends "<file_name> <file_size> <bytes read by the task> <TASKHUB_PARAM_file>" to the
# ledger.
LEDGER_TASK = """
[[task]]
id = "t"
plugin = "shell"
command = 'echo "${params.file_name} ${params.file_size} $(wc -c < "$TASKHUB_PARAM_file") $TASKHUB_PARAM_file" >> {ledger}'
"""


NOOP_TASK = """
[[task]]
id = "t"
plugin = "noop"
"""


def write(path, data=b"x"):
    with open(path, "wb") as f:
        f.write(data)


class FileDropTest(harness.DaemonTestCase):
    def watching(self, workflow, policy, task=NOOP_TASK, start=True):
        """A daemon whose workflow watches WORK/in (created) with [policy] lines policy."""
        d = self.daemon(start=False)
        inbox = d.path("in")
        os.makedirs(inbox)
        d.write_workflow(workflow, '[[trigger]]\nwatch = "%s"\n[policy]\n%s\n' % (inbox, policy)
                         + task.replace("{ledger}", d.path("ledger")))
        if start:
            d.start()
        return d, inbox

    def runs(self, d, wf):
        return d.ctl_ok("runs", wf, "--limit", "5000")

    def wait_runs(self, d, wf, n, states=("succeeded", "failed", "skipped"), timeout=30):
        def enough():
            rs = [r for r in self.runs(d, wf) if r["state"] in states]
            return rs if len(rs) >= n else None
        return harness.wait_until(enough, timeout=timeout, what="%d finished runs of %s" % (n, wf))

    def ledger(self, d):
        try:
            return d.read("ledger").splitlines()
        except FileNotFoundError:
            return []

    def test_rename_slow_writer_touch_and_new_version(self):
        d = self.daemon()
        inbox = d.path("in")
        os.makedirs(inbox)
        os.makedirs(d.path("staging"))
        d.write_workflow("drop", """\
            [[trigger]]
            watch = "%s"
            pattern = "*.csv"
            [policy]
            overlap = "allow"
            """ % inbox + LEDGER_TASK.replace("{ledger}", d.path("ledger")))
        d.start()
        show = d.ctl_ok("show", "drop")
        self.assertEqual(show["triggers"][0]["kind"], "file")
        self.assertEqual(show["triggers"][0]["state"], "watching")
        self.assertIsNone(show["triggers"][0]["next"])
        nxt = d.ctl_ok("next", "drop")
        self.assertEqual(nxt["firings"], [])
        self.assertEqual(nxt["note"], "workflow 'drop' has no time triggers (cron, every or at); it fires on "
                                      "file drops: watch %s pattern *.csv" % inbox)

        # Atomic rename: exactly one run, with the file's params.
        write(d.path("staging", "a.csv"), b"1,2,3\n")
        os.rename(d.path("staging", "a.csv"), os.path.join(inbox, "a.csv"))
        runs = self.wait_runs(d, "drop", 1)
        self.assertEqual(len(runs), 1)
        run = runs[0]
        self.assertEqual(run["trigger"], "file")
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["params"]["file"], os.path.join(inbox, "a.csv"))
        self.assertEqual(run["params"]["file_name"], "a.csv")
        self.assertEqual(run["params"]["file_size"], "6")
        self.assertEqual(self.ledger(d), ["a.csv 6 6 " + os.path.join(inbox, "a.csv")])

        # Not the pattern, hidden and temporary files: nothing.
        for name in ("b.txt", ".hidden.csv", "c.csv.part", "d.csv.tmp", "e.csv~"):
            write(os.path.join(inbox, name))

        # A slow writer: many writes, then close; one run, after the close, on the whole content.
        with open(os.path.join(inbox, "slow.csv"), "wb") as f:
            for _ in range(40):
                f.write(b"y" * 100)
                f.flush()
                time.sleep(0.02)
            self.assertEqual(len(self.runs(d, "drop")), 1, "fired before the writer closed the file")
        runs = self.wait_runs(d, "drop", 2)
        self.assertEqual(self.ledger(d)[1], "slow.csv 4000 4000 " + os.path.join(inbox, "slow.csv"))

        # Opening for writing and closing without a change, and setting the same mtime: nothing.
        st = os.stat(os.path.join(inbox, "a.csv"))
        os.close(os.open(os.path.join(inbox, "a.csv"), os.O_WRONLY | os.O_APPEND))
        os.utime(os.path.join(inbox, "a.csv"), ns=(st.st_atime_ns, st.st_mtime_ns))
        time.sleep(1.0)
        self.assertEqual(len(self.runs(d, "drop")), 2)

        # A new version fires again.
        with open(os.path.join(inbox, "a.csv"), "ab") as f:
            f.write(b"4,5,6\n")
        self.wait_runs(d, "drop", 3)
        time.sleep(0.5)
        names = sorted(r["params"]["file_name"] for r in self.runs(d, "drop"))
        self.assertEqual(names, ["a.csv", "a.csv", "slow.csv"])
        self.assertEqual(len({r["id"] for r in self.runs(d, "drop")}), 3)

    def test_burst_of_2000_files_fires_each_exactly_once(self):
        d, inbox = self.watching("burst", 'overlap = "queue_all"', LEDGER_TASK)
        names = ["f%04d" % i for i in range(2000)]
        for n in names:
            write(os.path.join(inbox, n), n.encode())
        harness.wait_until(lambda: len(self.ledger(d)) >= 2000 or None, timeout=60,
                           what="2000 ledger lines")
        time.sleep(0.5)
        lines = self.ledger(d)
        self.assertEqual(len(lines), 2000)
        self.assertEqual(sorted(line.split()[0] for line in lines), names)
        self.assertTrue(all(line.split()[1] == "5" == line.split()[2] for line in lines))

    def test_files_dropped_while_stopped_follow_catchup_and_after(self):
        d = self.daemon()
        dirs = {k: d.path(k) for k in ("all", "latest", "none", "done", "deleted")}
        for p in dirs.values():
            os.makedirs(p)
        # all: every file runs; a failing run leaves its file, a succeeding one moves it.
        d.write_workflow("c_all", """\
            [[trigger]]
            watch = "%s"
            after = "move:%s"
            [policy]
            catchup = "all"
            overlap = "allow"
            [[task]]
            id = "t"
            plugin = "shell"
            command = 'test "${params.file_name}" != bad'
            """ % (dirs["all"], dirs["done"]))
        d.write_workflow("c_latest", """\
            [[trigger]]
            watch = "%s"
            after = "delete"
            [policy]
            catchup = "latest"
            overlap = "allow"
            [[task]]
            id = "t"
            plugin = "noop"
            """ % dirs["latest"])
        d.write_workflow("c_none", """\
            [[trigger]]
            watch = "%s"
            [policy]
            catchup = "none"
            [[task]]
            id = "t"
            plugin = "noop"
            """ % dirs["none"])
        d.start()
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        for i, name in enumerate(("one", "bad", "three")):
            for k in ("all", "latest", "none"):
                write(os.path.join(dirs[k], name))
                os.utime(os.path.join(dirs[k], name), (time.time() - 10 + i, time.time() - 10 + i))
        d.start()
        runs = self.wait_runs(d, "c_all", 3)
        by_name = {r["params"]["file_name"]: r for r in runs}
        self.assertEqual(sorted(by_name), ["bad", "one", "three"])
        self.assertEqual(by_name["bad"]["state"], "failed")
        harness.wait_until(lambda: sorted(os.listdir(dirs["done"])) == ["one", "three"] or None,
                           what="the succeeded files to be moved")
        self.assertEqual(os.listdir(dirs["all"]), ["bad"])
        events = d.ctl_ok("show", by_name["one"]["id"])["events"]
        self.assertTrue(any(e["kind"] == "file_after" and "moved" in e["detail"] for e in events), events)

        latest = self.wait_runs(d, "c_latest", 1)
        self.assertEqual([r["params"]["file_name"] for r in latest], ["three"])
        harness.wait_until(lambda: sorted(os.listdir(dirs["latest"])) == ["bad", "one"] or None,
                           what="the latest file to be deleted")
        time.sleep(1.5)
        self.assertEqual(self.runs(d, "c_none"), [])
        self.assertEqual(len(self.runs(d, "c_latest")), 1)

        # Another restart fires nothing again: every version is recorded.
        d.stop()
        d.start()
        time.sleep(1.5)
        self.assertEqual(len(self.runs(d, "c_all")), 3)
        self.assertEqual(len(self.runs(d, "c_latest")), 1)
        self.assertEqual(self.runs(d, "c_none"), [])

    def test_overflow_loses_nothing(self):
        d, inbox = self.watching("ov", 'overlap = "allow"', start=False)
        os.environ["TASKHUB_TEST_INOTIFY_OVERFLOW_AFTER"] = "20"
        try:
            d.start()
        finally:
            del os.environ["TASKHUB_TEST_INOTIFY_OVERFLOW_AFTER"]
        names = ["g%03d" % i for i in range(300)]
        for n in names:
            write(os.path.join(inbox, n))
            time.sleep(0.001)
        runs = self.wait_runs(d, "ov", 300)
        time.sleep(1.5)
        runs = self.runs(d, "ov")
        self.assertEqual(sorted(r["params"]["file_name"] for r in runs), names)
        self.assertIn("FILE_WATCH_OVERFLOW", d.log())

    def test_missing_directory_is_watched_when_it_appears(self):
        d = self.daemon()
        inbox = d.path("later", "in")
        d.write_workflow("late", """\
            [[trigger]]
            watch = "%s"
            after = "move:%s"
            [[task]]
            id = "t"
            plugin = "noop"
            """ % (inbox, d.path("nowhere")))
        d.start()
        state = d.ctl_ok("show", "late")["triggers"][0]["state"]
        self.assertTrue(state.startswith("waiting: %s does not exist" % inbox), state)
        self.assertIn("FILE_WATCH_MISSING", d.log())
        os.makedirs(inbox)
        harness.wait_until(lambda: d.ctl_ok("show", "late")["triggers"][0]["state"] == "watching" or None,
                           what="the directory to be watched")
        write(os.path.join(inbox, "x"))
        runs = self.wait_runs(d, "late", 1)
        # The move target does not exist: the file stays, and the run's events say why.
        self.assertEqual(runs[0]["state"], "succeeded")
        harness.wait_until(lambda: any(e["kind"] == "file_after_failed"
                                       for e in d.ctl_ok("show", runs[0]["id"])["events"]) or None,
                           what="file_after_failed event")
        self.assertTrue(os.path.exists(os.path.join(inbox, "x")))

        # Removed and created again: reported, then watched again.
        shutil.rmtree(d.path("later"))
        harness.wait_until(lambda: d.ctl_ok("show", "late")["triggers"][0]["state"].startswith("waiting") or None,
                           what="the removal to be reported")
        os.makedirs(inbox)
        harness.wait_until(lambda: d.ctl_ok("show", "late")["triggers"][0]["state"] == "watching" or None,
                           what="the directory to be watched again")
        write(os.path.join(inbox, "y"))
        self.wait_runs(d, "late", 2)

    def test_directory_removed_between_looking_and_watching_is_watched_again(self):
        """A tree removed while the daemon moves its watch up to the nearest existing directory:
        the directory it was about to watch is gone before inotify_add_watch (held back by 400 ms
        with TASKHUB_TEST_DELAY at the failpoint file_watch_add). It looks again and watches the
        directory above, so the tree created again is noticed."""
        if os.environ.get("TASKHUB_FAILPOINTS") != "1":
            self.skipTest("this build has no failpoints (configure with -DTASKHUB_FAILPOINTS=ON, as scripts/test does)")
        d = self.daemon(start=False)
        inbox = d.path("later", "in")
        os.makedirs(inbox)
        d.write_workflow("late", '[[trigger]]\nwatch = "%s"\n' % inbox + NOOP_TASK)
        d.start(extra_env={"TASKHUB_TEST_DELAY": "file_watch_add:400"})
        state = lambda: d.ctl_ok("show", "late")["triggers"][0]["state"]  # noqa: E731
        harness.wait_until(lambda: state() == "watching" or None, what="the directory to be watched")
        os.rmdir(inbox)  # the daemon moves its watch to "later", and waits 400 ms before adding it
        time.sleep(0.15)
        os.rmdir(d.path("later"))  # gone before the watch is added
        harness.wait_until(lambda: state().startswith("waiting: %s does not exist (watching %s)"
                                                      % (inbox, d.path())) or None,
                           what="the watch moved up to the work directory")
        os.makedirs(inbox)
        harness.wait_until(lambda: state() == "watching" or None, what="the directory to be watched again")
        write(os.path.join(inbox, "x"))
        self.wait_runs(d, "late", 1)

    def test_paused_workflow_records_drops_and_resume_catches_up(self):
        d, inbox = self.watching("p", 'overlap = "allow"\ncatchup = "all"')
        d.ctl_ok("pause", "p")
        write(os.path.join(inbox, "a"))
        write(os.path.join(inbox, "b"))
        skipped = self.wait_runs(d, "p", 2)
        self.assertTrue(all(r["state"] == "skipped" and "paused" in r["message"] for r in skipped), skipped)
        d.ctl_ok("resume", "p")
        done = harness.wait_until(
            lambda: (lambda rs: rs if len(rs) == 2 and all(r["state"] == "succeeded" for r in rs) else None)(
                self.runs(d, "p")), what="both drops to run after resume")
        self.assertEqual(sorted(r["params"]["file_name"] for r in done), ["a", "b"])

    def test_default_policy_runs_every_file(self):
        """Without [policy], a watch trigger loses no file: catchup = all for files dropped while
        taskhubd was down or present when the trigger is added, queue_all for files dropped
        while a run is active (docs/workflow-format.md, "[policy]")."""
        d = self.daemon(start=False)
        inbox, present = d.path("in"), d.path("present")
        os.makedirs(inbox)
        os.makedirs(present)
        task = """
            [[task]]
            id = "t"
            plugin = "shell"
            command = 'sleep 0.2; echo "${params.file_name}" >> %s'
            """
        d.write_workflow("box", '[[trigger]]\nwatch = "%s"\n' % inbox + task % d.path("ledger"))
        d.start()
        self.assertEqual(d.stop()[0], 0)
        down = ["down%02d" % i for i in range(20)]
        for i, name in enumerate(down):
            write(os.path.join(inbox, name))
            os.utime(os.path.join(inbox, name), (time.time() - 30 + i, time.time() - 30 + i))
        d.start()
        runs = self.wait_runs(d, "box", 20, timeout=60)
        self.assertEqual(sorted(r["params"]["file_name"] for r in runs), down)
        self.assertEqual({r["state"] for r in runs}, {"succeeded"}, runs)
        self.assertIn("FILE_WATCH_CATCHUP box: 20 file(s) in %s not seen before; running 20, passing over 0 "
                      "(catchup = all" % inbox, d.log())

        # Dropped while a run is active: each waits its turn.
        during = ["during%d" % i for i in range(5)]
        for name in during:
            write(os.path.join(inbox, name))
            time.sleep(0.02)
        runs = self.wait_runs(d, "box", 25, timeout=60)
        self.assertEqual(sorted(r["params"]["file_name"] for r in runs), sorted(down + during))
        self.assertEqual({r["state"] for r in runs}, {"succeeded"}, runs)
        queued = [e for r in runs if r["params"]["file_name"] in during
                  for e in d.ctl_ok("show", r["id"])["events"] if e["kind"] == "run_queued"]
        self.assertTrue(queued and all("(overlap = queue_all)" in e["detail"] for e in queued), queued)

        # Present when a watch trigger is added: all run.
        names = ["here%d" % i for i in range(5)]
        for name in names:
            write(os.path.join(present, name))
        d.write_workflow("added", '[[trigger]]\nwatch = "%s"\n' % present + task % d.path("ledger2"))
        runs = self.wait_runs(d, "added", 5, timeout=60)
        self.assertEqual(sorted(r["params"]["file_name"] for r in runs), names)
        self.assertEqual({r["state"] for r in runs}, {"succeeded"}, runs)
        self.assertEqual(sorted(d.read("ledger2").split()), names)
        self.assertEqual(sorted(d.read("ledger").split()), sorted(down + during))

        # show says which overlap file drops follow, next to the time triggers' one.
        shown = d.ctl_ok("show", "box")
        self.assertEqual((shown["overlap"], shown["file_overlap"]), ("skip", "queue_all"))
        self.assertIn("policy       overlap=skip (file drops: queue_all) on_failure=",
                      d.ctl_ok("show", "box", json=False))


if __name__ == "__main__":
    harness.main()
