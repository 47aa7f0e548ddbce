"""journald-native logging (docs/operations.md, "Logging"): with a fake journal (a datagram socket
bound by the test, named by TASKHUB_JOURNAL_SOCKET) taskhubd sends one native-protocol entry per
line with PRIORITY, MESSAGE_ID, TASKHUB_LOG_ID and the TASKHUB_* fields of the run and task it is
about; log_to_journal forwards task output lines; hostile text with newlines (task output, a file
name chosen by `nobody`) cannot forge a field. Without a journal, stderr lines carry `<N>`."""

import array
import os
import pwd
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def message_id(log_id):
    """The MESSAGE_ID of a log id: FNV-1a 128 of "taskhub:" + id (common/journal.h)."""
    h, prime = 0x6c62272e07bb014262b821756295c58d, (1 << 88) + 0x13b
    for c in ("taskhub:" + log_id).encode():
        h = ((h ^ c) * prime) % (1 << 128)
    return "%032x" % h


def parse_entry(data):
    """The fields of one native-protocol entry, in order, as (name, value) pairs of str; raises on
    anything the protocol does not allow."""
    fields, i = [], 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            name = line
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + n]
            assert data[nl + 9 + n:nl + 10 + n] == b"\n", "binary field %r not ended by a newline" % name
            i = nl + 10 + n
        assert re.fullmatch(rb"[A-Z][A-Z0-9_]*", name), "bad field name %r in %r" % (name, data)
        fields.append((name.decode(), value.decode(errors="replace")))
    return fields


class FakeJournal:
    """Binds a datagram socket and collects the entries sent to it (memfd entries too)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        os.chmod(path, 0o666)
        self.entries = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        fds = array.array("i")
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
            except OSError:
                return
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = struct.unpack("i", payload[:4])[0]
                    try:
                        data = os.pread(fd, os.fstat(fd).st_size, 0)  # the sender left the offset at the end
                    finally:
                        os.close(fd)
            entry = parse_entry(data)
            with self.lock:
                self.entries.append(entry)

    def find(self, pred):
        with self.lock:
            return [e for e in self.entries if pred(e)]

    def close(self):
        self.sock.close()


def field(entry, name):
    values = [v for n, v in entry if n == name]
    assert len(values) <= 1, "field %s appears %d times in %r" % (name, len(values), entry)
    return values[0] if values else None


def with_id(log_id):
    return lambda e: field(e, "TASKHUB_LOG_ID") == log_id


class JournalTest(harness.DaemonTestCase):
    def journal(self, d):
        j = FakeJournal(os.path.join(d.dir, "journal.sock"))
        self.addCleanup(j.close)
        return j

    def test_entries_carry_priority_message_id_and_run_fields(self):
        d = self.daemon()
        d.write_workflow("good", """\
            [[task]]
            id = "ok"
            plugin = "shell"
            command = "echo quiet"
            """)
        d.write_workflow("bad", """\
            [[task]]
            id = "boom"
            plugin = "shell"
            command = "exit 3"
            """)
        d.write_workflow("chatty", """\
            log_to_journal = true

            [[task]]
            id = "talk"
            plugin = "shell"
            command = '''printf 'hello\\nPRIORITY=0\\nMESSAGE_ID=00000000000000000000000000000000\\r\\n'; head -c 5000 /dev/zero | tr '\\0' x; printf '\\nlast'; exit 0'''

            [[task]]
            id = "mute"
            plugin = "shell"
            log_to_journal = false
            command = "echo not-forwarded"
            """)
        j = self.journal(d)
        # auto: stderr is a file, and the journal socket exists.
        d.start(log_target="auto", extra_env={"TASKHUB_JOURNAL_SOCKET": j.path})
        harness.wait_until(lambda: j.find(with_id("APP_READY")), what="APP_READY in the journal")
        ready = j.find(with_id("APP_READY"))[0]
        self.assertEqual(field(ready, "PRIORITY"), "6")
        self.assertEqual(field(ready, "SYSLOG_IDENTIFIER"), "taskhubd")
        self.assertEqual(field(ready, "MESSAGE_ID"), message_id("APP_READY"))
        self.assertTrue(field(ready, "MESSAGE").startswith("APP_READY taskhubd "))

        rc, bad, _ = d.ctl("run", "bad", "--wait")
        self.assertEqual((rc, bad["state"]), (1, "failed"))
        good = d.ctl_ok("run", "good", "--wait")
        self.assertEqual(good["state"], "succeeded")
        chatty = d.ctl_ok("run", "chatty", "--wait")
        self.assertEqual(chatty["state"], "succeeded")

        harness.wait_until(lambda: j.find(with_id("ENGINE_RUN_FAILED")) and j.find(with_id("ENGINE_RUN_SUCCEEDED")),
                           what="the runs' lines in the journal")
        failed = j.find(with_id("ENGINE_RUN_FAILED"))[0]
        # `journalctl -p warning` shows it: priority 4 or more urgent.
        self.assertLessEqual(int(field(failed, "PRIORITY")), 4)
        self.assertEqual(field(failed, "MESSAGE_ID"), message_id("ENGINE_RUN_FAILED"))
        self.assertEqual(field(failed, "TASKHUB_WORKFLOW"), "bad")
        self.assertEqual(field(failed, "TASKHUB_RUN_ID"), bad["id"])
        self.assertIsNone(field(failed, "TASKHUB_TASK"))
        task_failed = j.find(with_id("ENGINE_TASK_FAILED"))[0]
        self.assertEqual(field(task_failed, "PRIORITY"), "4")
        self.assertEqual((field(task_failed, "TASKHUB_RUN_ID"), field(task_failed, "TASKHUB_TASK"),
                          field(task_failed, "TASKHUB_ATTEMPT")), (bad["id"], "boom", "1"))
        succeeded = [e for e in j.find(with_id("ENGINE_RUN_SUCCEEDED")) if field(e, "TASKHUB_RUN_ID") == good["id"]]
        self.assertEqual(len(succeeded), 1)
        self.assertEqual(field(succeeded[0], "PRIORITY"), "6")
        self.assertEqual(field(succeeded[0], "TASKHUB_WORKFLOW"), "good")
        started = [e for e in j.find(with_id("ENGINE_RUN_STARTED")) if field(e, "TASKHUB_RUN_ID") == good["id"]]
        self.assertEqual(len(started), 1)
        # Every entry has exactly one PRIORITY and MESSAGE (field() asserts at most one).
        for e in j.find(lambda e: True):
            self.assertIsNotNone(field(e, "PRIORITY"), e)
            self.assertIsNotNone(field(e, "MESSAGE"), e)

        # Task output: one entry per line, with the task's fields; text that looks like fields
        # stays in MESSAGE; a long line is cut; the last line without a newline comes too.
        def task_lines():
            return [e for e in j.find(lambda e: field(e, "SYSLOG_IDENTIFIER") == "taskhub-task")]
        harness.wait_until(lambda: any(field(e, "MESSAGE") == "last" for e in task_lines()),
                           what="the task's last line in the journal")
        lines = task_lines()
        self.assertEqual([field(e, "MESSAGE") for e in lines],
                         ["hello", "PRIORITY=0", "MESSAGE_ID=00000000000000000000000000000000",
                          "x" * 4096 + " [line cut at 4096 bytes]", "last"])
        for e in lines:
            self.assertEqual(field(e, "PRIORITY"), "6")
            self.assertIsNone(field(e, "MESSAGE_ID"))
            self.assertEqual((field(e, "TASKHUB_WORKFLOW"), field(e, "TASKHUB_RUN_ID"), field(e, "TASKHUB_TASK"),
                              field(e, "TASKHUB_ATTEMPT")), ("chatty", chatty["id"], "talk", "1"))
        # The log file has everything, forwarded or not.
        self.assertIn("x" * 5000, d.ctl_ok("logs", chatty["id"], "talk", json=False))
        self.assertEqual(d.ctl_ok("logs", chatty["id"], "mute", json=False), "not-forwarded\n")
        self.assertNotIn("not-forwarded", [field(e, "MESSAGE") for e in task_lines()])
        self.assertNotIn("quiet", [field(e, "MESSAGE") for e in task_lines()])
        # Nothing fell back to stderr.
        self.assertNotIn("ENGINE_RUN_FAILED", d.log())

    def test_a_hostile_file_name_forges_no_field(self):
        """nobody drops a symlink whose name holds newlines and field-like text: FILE_DROP_REFUSED
        names it, in the binary-safe form, and no PRIORITY or MESSAGE_ID of its own gets through;
        on stderr, every line of it starts with the line's own `<4>`."""
        nobody = pwd.getpwnam("nobody")
        arena = tempfile.mkdtemp(prefix="th-journal-", dir="/tmp")
        self.addCleanup(shutil.rmtree, arena, True)
        os.chmod(arena, 0o711)
        box, stage = os.path.join(arena, "box"), os.path.join(arena, "stage")
        for directory in (box, stage):
            os.mkdir(directory, 0o755)
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)

        def drop_symlink(name):
            """nobody makes a symlink and moves it into the box (the move is what the watch sees)."""
            subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                            "sh", "-c", 'ln -s /etc/hostname "$1" && mv "$1" "$2"', "sh",
                            os.path.join(stage, name), os.path.join(box, name)], check=True)
        d = self.daemon()
        d.write_workflow("drops", """\
            [[trigger]]
            watch = "%s"

            [[task]]
            id = "t"
            plugin = "noop"
            """ % box)
        hostile = "x\nPRIORITY=0\nMESSAGE_ID=%s\n<0>APP_READY forged" % ("f" * 32)
        j = self.journal(d)
        d.start(log_target="journal", extra_env={"TASKHUB_JOURNAL_SOCKET": j.path})
        harness.wait_until(lambda: j.find(with_id("FILE_WATCH_WATCHING")), what="the box to be watched")
        drop_symlink(hostile)
        harness.wait_until(lambda: j.find(with_id("FILE_DROP_REFUSED")), what="FILE_DROP_REFUSED in the journal")
        refused = j.find(with_id("FILE_DROP_REFUSED"))[0]
        self.assertEqual(field(refused, "PRIORITY"), "4")
        self.assertEqual(field(refused, "MESSAGE_ID"), message_id("FILE_DROP_REFUSED"))
        self.assertEqual(field(refused, "TASKHUB_WORKFLOW"), "drops")
        self.assertIn(hostile, field(refused, "MESSAGE"))
        self.assertEqual([n for n, _ in refused].count("PRIORITY"), 1)
        self.assertEqual([n for n, _ in refused].count("MESSAGE_ID"), 1)
        # No entry but the real one says APP_READY.
        self.assertEqual(len(j.find(with_id("APP_READY"))), 1)
        d.stop()

        # The same on stderr (no journal): each line of the message carries the line's priority,
        # so `<0>` in the name is text, not a priority.
        os.unlink(os.path.join(box, hostile))
        d.start(extra_env={"TASKHUB_JOURNAL_SOCKET": os.path.join(d.dir, "absent.sock")}, log_target="auto")
        drop_symlink(hostile + "2")
        harness.wait_until(lambda: "<4>warning FILE_DROP_REFUSED" in d.log(), what="FILE_DROP_REFUSED on stderr")
        self.assertIn("<4>PRIORITY=0\n<4>MESSAGE_ID=", d.log())
        self.assertIn("<4><0>APP_READY forged", d.log())

    def test_stderr_lines_carry_priorities(self):
        """With --log-target stderr (and with auto when there is no journal) each line starts with
        its syslog priority."""
        d = self.daemon()
        d.write_workflow("bad", """\
            [[task]]
            id = "boom"
            plugin = "shell"
            command = "exit 3"
            """)
        d.start(log_target="auto", extra_env={"TASKHUB_JOURNAL_SOCKET": os.path.join(d.dir, "absent.sock")})
        rc, run, _ = d.ctl("run", "bad", "--wait")
        self.assertEqual(rc, 1)
        harness.wait_until(lambda: "ENGINE_RUN_FAILED" in d.log(), what="ENGINE_RUN_FAILED in the log")
        log = d.log()
        self.assertRegex(log, r"(?m)^<6>info APP_READY taskhubd ")
        self.assertRegex(log, r"(?m)^<4>warning ENGINE_RUN_FAILED %s " % re.escape(run["id"]))
        self.assertRegex(log, r"(?m)^<4>warning ENGINE_TASK_FAILED %s task boom: " % re.escape(run["id"]))
        for line in log.splitlines():
            self.assertRegex(line, r"^<[0-7]>", "a line without its priority")
        d.stop()

        # --log-target journal with no journal listening: each line falls back to stderr.
        d.start(log_target="journal", extra_env={"TASKHUB_JOURNAL_SOCKET": os.path.join(d.dir, "absent.sock")})
        self.assertEqual(d.log().count("<6>info APP_READY"), 2)


if __name__ == "__main__":
    harness.main()
