"""Hostile workflow files are refused, not obeyed: a TOML depth bomb (arrays 10,000 deep, inline
tables 50,000 deep: 20-100 KB that used to overflow toml11's stack), a file over
max_workflow_file_size and one over max_workflow_tasks. Dropped into workflows_dir, each is
refused with an error in `taskhubctl list` naming the file, the line and the limit while the
daemon keeps serving; `taskhubd --check` and `taskhubctl validate` exit 1 with the message
rather than crashing; a bomb in taskhub.toml is refused the same way."""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

GOOD = """\
[[task]]
id = "ok"
plugin = "shell"
command = "echo served > %s"
"""

ARRAYS = 'description = "bomb"\na = ' + "[" * 10_000 + "1" + "]" * 10_000 + '\n[[task]]\nid = "t"\nplugin = "noop"\n'
TABLES = 'description = "bomb"\na = ' + "{b = " * 50_000 + "1" + "}" * 50_000 + '\n[[task]]\nid = "t"\nplugin = "noop"\n'
DEPTH_MESSAGE = "TOML nesting deeper than 64 levels"


def tasks(n):
    return "".join('[[task]]\nid = "t%d"\nplugin = "noop"\n' % i for i in range(n))


class HostileFilesTest(harness.DaemonTestCase):
    def drop(self, d, name, text):
        """Writes name.toml beside workflows_dir and moves it in, as an attacker or a generator would."""
        tmp = os.path.join(d.dir, name + ".toml.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        path = os.path.join(d.workflows_dir, name + ".toml")
        os.rename(tmp, path)
        return path

    def errors_of(self, d, path):
        return [e["message"] for e in d.ctl_ok("list")["errors"] if e["file"] == path]

    def assert_serves(self, d):
        """The daemon is alive, answers and runs the good workflow."""
        self.assertIsNone(d.proc.poll(), "taskhubd died:\n" + d.log())
        rc, run, err = d.ctl("run", "good", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(d.read("served"), "served\n")
        os.remove(d.path("served"))

    def offline(self, d, *files):
        """(taskhubd --check, taskhubctl validate FILES): both must exit 1, not die of a signal."""
        check = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"],
                               capture_output=True, text=True, timeout=harness.TIMEOUT)
        validate = subprocess.run([harness.BIN["ctl"], "--config", d.config, "validate"] + list(files),
                                  capture_output=True, text=True, timeout=harness.TIMEOUT)
        for p in (check, validate):
            self.assertEqual(p.returncode, 1, "exit %s (a negative status is a signal)\n%s%s"
                             % (p.returncode, p.stdout, p.stderr))
        return check.stdout, validate.stdout

    def test_depth_bombs_are_refused_and_the_daemon_keeps_serving(self):
        d = self.daemon()
        d.write_workflow("good", GOOD % d.path("served"))
        d.start()
        arrays = self.drop(d, "arrays", ARRAYS)
        tables = self.drop(d, "tables", TABLES)
        harness.wait_until(lambda: self.errors_of(d, arrays) and self.errors_of(d, tables),
                           what="both bombs listed as errors")
        for path in (arrays, tables):
            (message,) = self.errors_of(d, path)
            self.assertTrue(message.startswith(path + ":2: " + DEPTH_MESSAGE), message)
            self.assertIn("at most 64 levels", message)
        self.assertEqual([w["name"] for w in d.ctl_ok("list")["workflows"]], ["good"])
        self.assert_serves(d)

        # A full reload (SIGHUP, `taskhubctl reload`) refuses them the same way.
        reloaded = d.ctl_ok("reload")
        self.assertEqual((reloaded["loaded"], reloaded["failed"]), (1, 2))
        d.proc.send_signal(signal.SIGHUP)
        self.assert_serves(d)

        # A bomb replacing a good file keeps the good file's last version running.
        self.drop(d, "good", ARRAYS)
        harness.wait_until(lambda: self.errors_of(d, os.path.join(d.workflows_dir, "good.toml")),
                           what="the replaced good file listed as an error")
        self.assert_serves(d)

        check, validate = self.offline(d, arrays, tables)
        for out in (check, validate):
            for path in (arrays, tables):
                self.assertIn(path + ":2: " + DEPTH_MESSAGE, out)

    def test_size_and_task_limits(self):
        d = self.daemon()
        with open(d.config) as f:  # top-level keys go before the config's tables
            text = f.read()
        with open(d.config, "w") as f:
            f.write('max_workflow_file_size = "64KB"\nmax_workflow_tasks = 100\n' + text)
        d.write_workflow("good", GOOD % d.path("served"))
        at_limits = d.write_workflow("hundred", tasks(100))
        d.start()
        self.assertEqual(self.errors_of(d, at_limits), [])
        many = self.drop(d, "many", tasks(101))
        big = self.drop(d, "big", '[[task]]\nid = "t"\nplugin = "noop"\n# %s\n' % ("x" * 65536))
        harness.wait_until(lambda: self.errors_of(d, many) and self.errors_of(d, big),
                           what="both files listed as errors")
        self.assertEqual(self.errors_of(d, many), [
            many + ":1: workflow has 101 tasks; at most 100 are allowed (taskhub.toml max_workflow_tasks): "
            "split it into nested workflows, or raise the limit (up to 1048576)"])
        self.assertEqual(self.errors_of(d, big), [
            big + ": file refused: it is %d bytes; workflow files may be at most 65536 bytes (taskhub.toml "
            "max_workflow_file_size): split it into several workflows, or raise the limit" % os.path.getsize(big)])
        self.assertEqual(sorted(w["name"] for w in d.ctl_ok("list")["workflows"]), ["good", "hundred"])
        self.assert_serves(d)
        check, validate = self.offline(d, many, big)
        for out in (check, validate):
            self.assertIn("at most 100 are allowed", out)
            self.assertIn("at most 65536 bytes", out)

    def test_status_answers_while_a_100000_task_file_loads(self):
        # Reading, parsing and checking the file take seconds (4.5 s on the loop before files
        # were loaded on a thread of their own); `status` must answer meanwhile. The issue asks
        # for 100 ms; the bound asserted is looser, for a noisy 2-core machine, and still far
        # below the stall it guards against. The slowest answer is printed for the record.
        bound = float(os.environ.get("TASKHUB_STATUS_BOUND", "0.5"))
        d = self.daemon()
        d.write_workflow("good", GOOD % d.path("served"))
        d.start()
        text = "".join('[[task]]\nid = "t%06d"\nplugin = "%s"\n%s' % (
            i, "shell" if i % 2 else "noop",
            'command = "echo %d"\n' % i if i % 2 else "") for i in range(100_000))
        with harness.Connection(d.socket) as c:
            t0 = time.monotonic()
            self.drop(d, "huge", text)
            latencies = []
            while True:
                t = time.monotonic()
                r = c.request({"proto": 1, "cmd": "status"})
                latencies.append(time.monotonic() - t)
                self.assertTrue(r["ok"], r)
                if r["data"]["workflows"] == 2:
                    break
                self.assertLess(time.monotonic() - t0, 60, "the 100,000-task file did not load within 60 s")
                time.sleep(0.02)
        loaded = time.monotonic() - t0
        sys.stderr.write("status while loading 100,000 tasks: %d answers, slowest %.1f ms, median %.1f ms; "
                         "loaded in %.1f s\n" % (len(latencies), max(latencies) * 1000,
                                                  sorted(latencies)[len(latencies) // 2] * 1000, loaded))
        self.assertGreater(len(latencies), 5, "the file loaded too fast to measure anything")
        self.assertLess(max(latencies), bound, latencies)
        self.assert_serves(d)

    def test_bomb_in_the_daemon_config_is_refused(self):
        d = self.daemon()
        with open(d.config, "a") as f:
            f.write("[plugins.noop]\nx = " + "[" * 10_000 + "]" * 10_000 + "\n")
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(d.config + ":", p.stderr)
        self.assertIn(DEPTH_MESSAGE, p.stderr)
        proc = d.start(wait=False)
        self.assertEqual(proc.wait(harness.TIMEOUT), 1, d.log())
        self.assertIn(DEPTH_MESSAGE, d.log())


if __name__ == "__main__":
    harness.main()
