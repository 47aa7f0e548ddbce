"""The state database under faults: a full disk and a read-only database while taskhubd runs, and
a damaged database file at start.

Full and read-only: the state directory is a small ext4 file system of its own (a loop mount, so
this needs root and mount; without them the test fails and says so rather than pass). Checked:
the error is reported (log, `status`), new runs are refused with the reason, changes are refused,
`status`, `list`, `runs` and `show` keep answering, taskhubd recovers on its own once the disk has
room or the files are writable again, runs are accepted again, a run that was running meanwhile
and a run accepted just before the fault are recorded in full, and `PRAGMA integrity_check` is ok.

Damaged: garbage bytes, a file truncated mid-page and at a page boundary, a -wal file from
another database: taskhubd refuses to start with what is wrong and what to do, `taskhubd --check`
says the same, and the files are left byte for byte as they were. An empty file is a new database.
"""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RECOVERY_TIMEOUT = 10.0


def sh(*argv):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def integrity(path):
    con = sqlite3.connect(path, timeout=5)
    try:
        return ", ".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


def digest(path):
    """sha256 of a file, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


class StoreFaultsTest(harness.DaemonTestCase):
    # ---- a small file system of its own as the state directory ----

    def mount_state(self, d, size_mb=16):
        """Mounts a fresh ext4 file system of size_mb on d.state_dir; unmounted at cleanup, after
        the daemon is stopped."""
        if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
            self.fail("this test needs root and mkfs.ext4 (it mounts a small file system as the state directory)")
        img = os.path.join(d.dir, "state.img")
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        r = sh("mkfs.ext4", "-q", "-m", "0", "-F", img)
        self.assertEqual(r.returncode, 0, "mkfs.ext4: " + r.stderr)
        os.makedirs(d.state_dir)
        r = sh("mount", "-o", "loop", img, d.state_dir)
        self.assertEqual(r.returncode, 0, "mount -o loop (needs root and loop devices): " + r.stderr)

        def unmount():
            # The daemon first: it holds the database open.
            try:
                d.stop(timeout=10)
            except AssertionError:
                pass
            for f in os.listdir(d.state_dir):
                sh("chattr", "-i", os.path.join(d.state_dir, f))
            for _ in range(50):
                if sh("umount", d.state_dir).returncode == 0:
                    return
                time.sleep(0.1)
            sh("umount", "-l", d.state_dir)
        self.addCleanup(unmount)

    def fault_daemon(self):
        d = self.daemon()
        # A run that is running while the fault happens ("slow": its task waits for a file), and
        # quick runs that write to the store.
        d.write_workflow("slow", """\
            [[task]]
            id = "wait"
            plugin = "shell"
            command = "while [ ! -e %s ]; do sleep 0.05; done; echo finished"

            [[task]]
            id = "after"
            plugin = "shell"
            depends_on = ["wait"]
            command = "echo after"
            """ % d.path("go"))
        d.write_workflow("quick", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = "echo a"

            [[task]]
            id = "b"
            plugin = "shell"
            depends_on = ["a"]
            command = "echo b"
            """)
        self.mount_state(d)
        d.start()
        return d

    def status(self, d):
        return d.ctl_ok("status")

    def wait_problem(self, d, *words):
        """Waits until status reports a store problem; returns it."""
        def problem():
            p = self.status(d).get("store_problem")
            return p if p else None
        p = harness.wait_until(problem, harness.TIMEOUT, what="status to report the store problem")
        for w in words:
            self.assertIn(w, p)
        return p

    def check_while_down(self, d, slow_id, problem, answered_id):
        """What must hold while the store cannot write."""
        db = os.path.join(d.state_dir, "taskhub.db")
        self.assertIn(db, problem)
        # New runs are refused, with the reason.
        rc, out, err = d.ctl("run", "quick")
        self.assertEqual(rc, 1, "run was not refused: %r" % (out,))
        self.assertIn("no new runs are started while the state database cannot be written", err)
        self.assertIn(db, err)
        # Changes are refused at once, not left hanging.
        t0 = time.monotonic()
        for args in (("cancel", slow_id), ("pause", slow_id), ("pause", "quick"), ("retry", answered_id)):
            rc, out, err = d.ctl(*args)
            self.assertEqual(rc, 1, "%s was not refused: %r" % (args, out))
            self.assertIn("taskhubd accepts no changes now: cannot write the state database", err, args)
        self.assertLess(time.monotonic() - t0, 10, "refusing changes took too long")
        # Reads keep answering.
        d.ctl_ok("list")
        self.assertIn(slow_id, [r["id"] for r in d.ctl_ok("runs")])
        d.ctl_ok("show", slow_id)
        d.ctl_ok("show", "quick")
        text = d.ctl_ok("status", json=False)
        self.assertIn("STORE", text)
        self.assertIn("cannot write the state database", text)

    def check_recovered(self, d, slow_id, kept_id):
        harness.wait_until(lambda: self.status(d).get("store_problem") is None, RECOVERY_TIMEOUT,
                           what="taskhubd to recover once the database can be written")
        self.assertIn("STORE_WRITABLE", d.log())
        # Runs accepted during the outage go on once their records are committed; quick's overlap
        # is skip, so the run below waits until none of them is active.
        harness.wait_until(lambda: all(r["state"] not in ("queued", "running", "paused")
                                       for r in d.ctl_ok("runs") if r["workflow"] == "quick"),
                           RECOVERY_TIMEOUT, what="the runs of quick accepted during the outage to end")
        # Runs are accepted again.
        rc, run, err = d.ctl("run", "quick", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")
        # The run that ran through the outage is recorded in full.
        slow = d.wait_run_state(slow_id, "succeeded")
        self.assertEqual([t["state"] for t in slow["tasks"]], ["succeeded", "succeeded"])
        kinds = [e["kind"] for e in slow["events"]]
        self.assertIn("run_end", kinds[-1] if kinds else "", kinds)
        # A run accepted just before the fault was kept and finished.
        if kept_id:
            kept = d.wait_run_state(kept_id, "succeeded")
            self.assertEqual([t["state"] for t in kept["tasks"]], ["succeeded", "succeeded"])
        self.assertEqual(d.log().count("STORE_UNWRITABLE"), 1, "the problem should be logged once")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        db = os.path.join(d.state_dir, "taskhub.db")
        self.assertEqual(integrity(db), "ok")
        # Nothing was lost: the history says the same after a restart.
        d.start()
        slow_after = d.ctl_ok("show", slow_id)
        self.assertEqual(slow_after["state"], "succeeded")
        self.assertEqual([t["state"] for t in slow_after["tasks"]], ["succeeded", "succeeded"])

    def fill(self, d):
        """Fills the state file system to the last block; returns the filler file."""
        filler = os.path.join(d.state_dir, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (1 << 16, 4096, 512):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def make_writes_until_refused(self, d):
        """Writes fail once the -wal has to grow: triggers runs until the store reports it.
        Returns the id of a run accepted but not committed when the failure came, or None."""
        kept = None
        for _ in range(200):
            if self.status(d).get("store_problem"):
                break
            rc, out, err = d.ctl("run", "quick")
            if rc != 0 and "not committed yet" in err:
                # Accepted, and kept until the disk has room: its id is in the message.
                kept = err.split("run ", 1)[1].split(" ", 1)[0]
            time.sleep(0.02)
        return kept

    # ---- the tests ----

    def test_disk_full(self):
        d = self.fault_daemon()
        slow = d.ctl_ok("run", "slow")["id"]
        d.wait_task_state(slow, "wait", "running")
        filler = self.fill(d)
        kept = self.make_writes_until_refused(d)
        problem = self.wait_problem(d, "database or disk is full", "free space on the file system holding")
        self.check_while_down(d, slow, problem, slow)
        # The slow run goes on and ends while the disk is full.
        open(d.path("go"), "w").close()
        time.sleep(1.0)
        self.assertIsNotNone(self.status(d).get("store_problem"))
        os.unlink(filler)
        self.check_recovered(d, slow, kept)

    def test_stop_while_full(self):
        # Stopping while the disk is full does not wait for the disk: the kept changes are tried
        # a few more times, then reported as lost; the database stays sound.
        d = self.fault_daemon()
        slow = d.ctl_ok("run", "slow")["id"]
        d.wait_task_state(slow, "wait", "running")
        filler = self.fill(d)
        self.make_writes_until_refused(d)
        self.wait_problem(d, "database or disk is full")
        open(d.path("go"), "w").close()
        time.sleep(0.5)
        rc, took = d.stop(timeout=30)
        self.assertEqual(rc, 0)
        self.assertLess(took, 15, "stopping with a full disk took %.1f s" % took)
        self.assertIn("taskhubd is stopping and the state database still cannot be written", d.log())
        # Space first: SQLite (here Python's) maps the -shm file it creates, and a page of that
        # mapping on a full file system is a SIGBUS.
        os.unlink(filler)
        self.assertEqual(integrity(os.path.join(d.state_dir, "taskhub.db")), "ok")

    def test_read_only(self):
        d = self.fault_daemon()
        slow = d.ctl_ok("run", "slow")["id"]
        d.wait_task_state(slow, "wait", "running")
        files = [os.path.join(d.state_dir, f) for f in ("taskhub.db", "taskhub.db-wal")]
        for f in files:
            r = sh("chattr", "+i", f)
            self.assertEqual(r.returncode, 0, "chattr +i: " + r.stderr)
        # A run asked for now is accepted (the store does not know yet), then its answer says
        # that it is not committed yet and is kept.
        rc, out, err = d.ctl("run", "quick")
        self.assertEqual(rc, 1, "the first run after the fault was answered as committed: %r" % (out,))
        self.assertIn("is not committed yet (taskhubd keeps it and writes it once it can)", err)
        kept = err.split("run ", 1)[1].split(" ", 1)[0]
        problem = self.wait_problem(d, "writable", "taskhub.db")
        self.check_while_down(d, slow, problem, slow)
        open(d.path("go"), "w").close()
        time.sleep(1.0)
        for f in files:
            r = sh("chattr", "-i", f)
            self.assertEqual(r.returncode, 0, "chattr -i: " + r.stderr)
        self.check_recovered(d, slow, kept)

    def test_read_only_at_start(self):
        # A database that cannot be written at start is refused with what to do (SQLite would
        # open it read-only, and such a connection never writes again).
        d = self.fault_daemon()
        d.ctl_ok("run", "quick", "--wait")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        db = os.path.join(d.state_dir, "taskhub.db")
        r = sh("chattr", "+i", db)
        self.assertEqual(r.returncode, 0, "chattr +i: " + r.stderr)
        proc = d.start(wait=False)
        self.assertEqual(proc.wait(harness.TIMEOUT), 1)
        self.assertIn("STORE_OPEN_FAILED cannot write the state database %s: attempt to write a readonly database; "
                      "make %s and the taskhub.db* files in it writable" % (db, d.state_dir), d.log())
        sh("chattr", "-i", db)
        d.start()
        self.assertEqual(len(d.ctl_ok("runs")), 1)

    # ---- damaged database files ----

    def damaged_daemon(self, runs=3):
        """A daemon that recorded some runs and was stopped; returns it and the database path."""
        d = self.daemon()
        d.write_workflow("quick", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = "echo %s"
            """ % ("x" * 2000))
        d.start()
        for _ in range(runs):
            d.ctl_ok("run", "quick", "--wait")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        db = os.path.join(d.state_dir, "taskhub.db")
        self.assertFalse(os.path.exists(db + "-wal"), "a clean stop leaves a -wal file")
        return d, db

    def assert_refused(self, d, db, *words):
        files = [db + s for s in ("", "-wal", "-shm")]
        before = [digest(f) for f in files]
        proc = d.start(wait=False)
        try:
            rc = proc.wait(harness.TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("taskhubd started on a damaged database")
        self.assertEqual(rc, 1)
        log = d.log()
        self.assertIn("STORE_OPEN_FAILED", log)
        self.assertIn(db + " is damaged (", log)
        self.assertIn("taskhubd will not modify it", log)
        self.assertIn("Restore it from a backup, or move it aside to start with an empty history: mv %s %s.damaged"
                      % (db, db), log)
        for w in words:
            self.assertIn(w, log)
        self.assertEqual([digest(f) for f in files], before, "the damaged files were modified")
        # taskhubd --check says the same.
        r = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(db + " is damaged (", r.stdout)
        for w in words:
            self.assertIn(w, r.stdout)
        self.assertEqual([digest(f) for f in files], before, "taskhubd --check modified the files")

    def test_garbage(self):
        d, db = self.damaged_daemon()
        size = os.path.getsize(db)
        with open(db, "wb") as f:
            f.write(os.urandom(size))
        self.assert_refused(d, db, "file is not a database")

    def test_garbage_inside(self):
        d, db = self.damaged_daemon(runs=20)
        # The header is intact; pages in the middle are overwritten.
        with open(db, "r+b") as f:
            f.seek(4096 * 2)
            f.write(os.urandom(4096 * 3))
        self.assert_refused(d, db)

    def test_truncated(self):
        d, db = self.damaged_daemon(runs=20)
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            f.truncate(size - 1000)
        self.assert_refused(d, db, "it is truncated", "is not a whole number of 4096-byte pages")
        with open(db, "r+b") as f:
            f.truncate((size // 4096 - 2) * 4096)
        self.assert_refused(d, db, "it is truncated: its header says")

    def test_foreign_wal(self):
        d, db = self.damaged_daemon()
        # A -wal left by a crash of another SQLite database (the connection is still open while
        # it is copied, so its frames are not checkpointed away).
        other = os.path.join(d.dir, "other.db")
        con = sqlite3.connect(other)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("CREATE TABLE t(x)")
        con.executemany("INSERT INTO t VALUES(?)", [(os.urandom(500),) for _ in range(200)])
        con.commit()
        shutil.copyfile(other + "-wal", db + "-wal")
        con.close()
        self.assert_refused(d, db)

    def test_empty_file_is_a_new_database(self):
        d = self.daemon()
        d.write_workflow("quick", """\
            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            """)
        os.makedirs(d.state_dir)
        open(os.path.join(d.state_dir, "taskhub.db"), "w").close()
        d.start()
        rc, run, err = d.ctl("run", "quick", "--wait")
        self.assertEqual(rc, 0, err)
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(integrity(os.path.join(d.state_dir, "taskhub.db")), "ok")


if __name__ == "__main__":
    harness.main()
