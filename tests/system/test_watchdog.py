"""The service manager's watchdog and status (docs/operations.md, "Watchdog and status"): with a
fake NOTIFY_SOCKET (a datagram socket bound by the test) and WATCHDOG_USEC, taskhubd sends READY=1,
then WATCHDOG=1 every WATCHDOG_USEC/2 from its event loop and a STATUS= line with its running and
waiting tasks and the next firing; WATCHDOG_PID of another process means no pings; a wedged event
loop (a failpoint that hangs it) stops the pings."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class FakeNotify:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # (monotonic time, text)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def texts(self):
        with self.lock:
            return [t for _, t in self.messages]

    def count(self, text):
        return self.texts().count(text)

    def close(self):
        self.sock.close()


class WatchdogTest(harness.DaemonTestCase):
    def notify(self, d):
        n = FakeNotify(os.path.join(d.dir, "notify.sock"))
        self.addCleanup(n.close)
        return n

    def workflows(self, d):
        d.write_workflow("nightly", """\
            [[trigger]]
            cron = "30 2 * * *"

            [[task]]
            id = "n"
            plugin = "noop"
            """)
        d.write_workflow("slow", """\
            [[task]]
            id = "s"
            plugin = "shell"
            command = "sleep 30"
            """)

    def test_pings_and_status(self):
        d = self.daemon()
        self.workflows(d)
        n = self.notify(d)
        d.start(extra_env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000"})
        harness.wait_until(lambda: n.count("WATCHDOG=1") >= 5, what="five WATCHDOG=1")
        texts = n.texts()
        self.assertIn("READY=1", texts)
        status = [t for t in texts if t.startswith("STATUS=")]
        self.assertTrue(status, texts)
        self.assertRegex(status[0], r"^STATUS=0 running, 0 waiting; next: nightly at \d{4}-\d\d-\d\dT02:30:00Z$")
        # Sent when it changes, not with every ping.
        self.assertLess(len(status), n.count("WATCHDOG=1"))
        run = d.ctl_ok("run", "slow")
        harness.wait_until(lambda: any(t.startswith("STATUS=1 running, 0 waiting") for t in n.texts()),
                           timeout=30, what="a STATUS= with the running task")
        d.ctl_ok("cancel", run["id"])
        d.stop()
        self.assertIn("STOPPING=1", n.texts())

    def test_no_pings_for_another_pid(self):
        d = self.daemon()
        self.workflows(d)
        n = self.notify(d)
        d.start(extra_env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
        harness.wait_until(lambda: any(t.startswith("STATUS=") for t in n.texts()), what="a STATUS= line")
        time.sleep(1.0)  # five intervals: a ping would have come
        self.assertIn("READY=1", n.texts())
        self.assertEqual(n.count("WATCHDOG=1"), 0, n.texts())

    def test_a_wedged_loop_stops_the_pings(self):
        d = self.daemon()
        self.workflows(d)
        n = self.notify(d)
        d.start(extra_env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000",
                           "TASKHUB_FAILPOINT": "task_starting_committed:hang"})
        harness.wait_until(lambda: n.count("WATCHDOG=1") >= 3, what="pings before the wedge")
        # The loop may hang before it answers: taskhubctl is given up on then.
        ctl = subprocess.Popen([harness.BIN["ctl"], "--socket", d.socket, "run", "slow"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(ctl.wait)
        self.addCleanup(ctl.kill)
        harness.wait_until(lambda: "FAILPOINT task_starting_committed hit 1: hanging" in d.log(),
                           what="the loop to hang")
        time.sleep(0.5)  # a ping in flight when it hung has arrived by now
        before = n.count("WATCHDOG=1")
        time.sleep(1.5)  # seven intervals
        self.assertEqual(n.count("WATCHDOG=1"), before, "pings went on while the loop hung")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()


if __name__ == "__main__":
    harness.main()
