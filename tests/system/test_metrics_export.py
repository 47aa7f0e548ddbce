"""[metrics] textfile and listen: the metrics leave the daemon for Prometheus.

- The textfile is replaced atomically: a reader polling it never sees a partial file (every read
  parses with prometheus_client's text-format parser), and inotify shows the target only ever
  renamed over (IN_MOVED_TO), never written in place (no IN_MODIFY, no IN_CLOSE_WRITE); mode 0644,
  no temporary file left, promtool's linter accepts it, and it is written once more at shutdown.
- HTTP /metrics: GET and HEAD, the text format by default and OpenMetrics when the Accept header
  asks for it (each parsed by prometheus_client's parser of that format), 404 and 405.
- A hostile client (user nobody) holding hundreds of connections open mid-request, flooding new
  ones and sending a 1 MiB header does not stop scrapes from working.
- A port in use: METRICS_LISTEN_FAILED, `status` says why, and the daemon runs on; a textfile
  directory that is missing: METRICS_TEXTFILE_FAILED once, shown in status, and the file appears
  (METRICS_TEXTFILE_RECOVERED) once the directory exists.
"""

import ctypes
import http.client
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

try:
    import prometheus_client  # noqa: F401
except ImportError:
    # Debian's python3-prometheus-client (scripts/install-deps) lives in the system's
    # dist-packages, which a python3 other than Debian's (pyenv, venv) does not search.
    sys.path.append("/usr/lib/python3/dist-packages")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families  # noqa: E402

PROMTOOL = os.environ.get("TASKHUB_PROMTOOL") or "/var/cache/taskhub-deps/prometheus/usr/bin/promtool"
# The attacker's interpreter must be one that nobody can run (not one under root's home).
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

OM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
             "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.x sends

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
_libc = ctypes.CDLL(None, use_errno=True)

WORKFLOWS = {
    "ok": """\
        [[task]]
        id = "t"
        plugin = "shell"
        command = "true"
        """,
    "bad": """\
        [[task]]
        id = "t"
        plugin = "shell"
        command = "exit 3"
        """,
}

# Opens connections as user nobody and holds them: HOLD connections stopped mid-request, one
# 1 MiB header, then (FLOOD) new connections as fast as it can until stdin closes.
ATTACKER = r"""
import socket, sys, threading
port, hold = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(hold):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
    held.append(s)
try:
    big = socket.create_connection(("127.0.0.1", port))
    big.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20))
    held.append(big)
except OSError:
    pass  # the daemon answered 431 and closed while we were still sending
stop = threading.Event()
opened = [0]
def flood():
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(s)
            opened[0] += 1
            if len(held) > 600:
                held.pop(0).close()
        except OSError:
            pass
t = threading.Thread(target=flood)
t.start()
print("ready", flush=True)
sys.stdin.read()
stop.set()
t.join()
print("flooded %d" % opened[0], flush=True)
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def samples(text, parser=text_string_to_metric_families):
    """{(sample name, sorted label items): value} of a whole exposition."""
    out = {}
    for fam in parser(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(port, path="/metrics", method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=harness.TIMEOUT)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


class Inotify:
    def __init__(self, path, mask):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert _libc.inotify_add_watch(self.fd, path.encode(), mask) >= 0, os.strerror(ctypes.get_errno())

    def events(self):
        """[(mask, name)] of the events so far."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                _, mask, _, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
                out.append((mask, name))
                i += 16 + n

    def close(self):
        os.close(self.fd)


class MetricsExportTest(harness.DaemonTestCase):
    def make(self, listen=True, textfile_dir="prom"):
        self.port = free_port()
        d = self.daemon(start=False)
        self.prom_dir = os.path.join(d.dir, textfile_dir)
        self.textfile = os.path.join(self.prom_dir, "taskhub.prom")
        with open(d.config, "a") as f:
            f.write('\n[metrics]\ntextfile = "%s"\ntextfile_interval = "1s"\n' % self.textfile)
            if listen:
                f.write('listen = "127.0.0.1:%d"\n' % self.port)
        for name, text in WORKFLOWS.items():
            d.write_workflow(name, text)
        return d

    def run_both(self, d):
        d.ctl_ok("run", "ok", "--wait")
        rc, _, _ = d.ctl("run", "bad", "--wait")
        self.assertEqual(rc, 1)

    def test_textfile_is_replaced_atomically_and_parses(self):
        d = self.make(listen=False)
        os.mkdir(self.prom_dir)
        watch = Inotify(self.prom_dir, IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
        self.addCleanup(watch.close)
        d.start()
        harness.wait_until(lambda: os.path.exists(self.textfile), what="the textfile to appear")

        # A reader polls the file while the daemon rewrites it every second.
        reads, problems, stop = [0], [], threading.Event()

        def reader():
            while not stop.is_set():
                with open(self.textfile) as f:
                    text = f.read()
                reads[0] += 1
                try:
                    got = samples(text)
                    if ("taskhub_build_info", ()) not in {(k[0], ()) for k in got} or not text.endswith("\n"):
                        problems.append("incomplete: %r" % text[-200:])
                except Exception as e:  # noqa: BLE001 - any parse failure is the finding
                    problems.append("%s: %r" % (e, text[-200:]))
        t = threading.Thread(target=reader)
        t.start()
        try:
            self.run_both(d)

            def counted():
                with open(self.textfile) as f:
                    got = samples(f.read())
                return (got.get(("taskhub_runs_finished_total", (("state", "succeeded"), ("workflow", "ok")))) == 1
                        and got.get(("taskhub_runs_finished_total", (("state", "failed"), ("workflow", "bad")))) == 1)
            harness.wait_until(counted, what="the textfile to count the two runs")
            time.sleep(2.5)  # a few more rewrites under the reader
        finally:
            stop.set()
            t.join()
        self.assertEqual(problems, [], "a reader saw a partial or unparsable textfile")
        self.assertGreater(reads[0], 10)

        events = watch.events()
        on_target = [m for m, name in events if name == "taskhub.prom"]
        self.assertGreaterEqual(sum(1 for m in on_target if m & IN_MOVED_TO), 3, events)
        self.assertFalse([m for m in on_target if m & (IN_MODIFY | IN_CLOSE_WRITE)],
                         "the textfile was written in place, not replaced: %r" % events)
        self.assertTrue([m for m, name in events if name.startswith("taskhub.prom.tmp.") and m & IN_MODIFY],
                        "the watch saw no write of the temporary file: %r" % events)

        self.assertEqual(stat.S_IMODE(os.stat(self.textfile).st_mode), 0o644)
        with open(self.textfile) as f:
            text = f.read()
        self.assertNotIn("# EOF", text)
        self.assertNotIn("_created", text)
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual(lint.returncode, 0, "promtool check metrics: %s%s" % (lint.stdout, lint.stderr))

        st = d.ctl_ok("status")["metrics"]
        self.assertIsNone(st["listen"])
        self.assertEqual(st["textfile"]["path"], self.textfile)
        self.assertIsNone(st["textfile"]["error"])
        self.assertIso(st["textfile"]["last_write"], "textfile last_write")
        out = d.ctl_ok("status", json=False)
        self.assertIn("metrics file    %s, written " % self.textfile, out)

        # At shutdown the file is written once more, and no temporary file stays behind.
        watch.events()
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assertTrue([m for m, name in watch.events() if name == "taskhub.prom" and m & IN_MOVED_TO],
                        "no write at shutdown")
        self.assertEqual(os.listdir(self.prom_dir), ["taskhub.prom"])
        with open(self.textfile) as f:
            last = samples(f.read())
        self.assertEqual(last[("taskhub_runs_active", ())], 0)

    def test_http_metrics(self):
        d = self.make()
        os.mkdir(self.prom_dir)
        d.start()
        self.run_both(d)
        time.sleep(1.1)  # past the one-second render cache

        status, headers, body = get(self.port)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(headers["Connection"], "close")
        got = samples(body)
        self.assertEqual(got[("taskhub_runs_finished_total", (("state", "succeeded"), ("workflow", "ok")))], 1)
        self.assertEqual(got[("taskhub_runs_finished_total", (("state", "failed"), ("workflow", "bad")))], 1)
        self.assertNotIn("# EOF", body)

        status, headers, body = get(self.port, headers={"Accept": OM_ACCEPT})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/openmetrics-text; version=1.0.0; charset=utf-8")
        self.assertTrue(body.endswith("# EOF\n"))
        om = samples(body, om_families)
        self.assertEqual(om[("taskhub_runs_finished_total", (("state", "succeeded"), ("workflow", "ok")))], 1)

        status, headers, body = get(self.port, method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(body, "")
        self.assertGreater(int(headers["Content-Length"]), 100)

        self.assertEqual(get(self.port, "/")[0], 404)
        self.assertEqual(get(self.port, "/metrics/../etc/passwd")[0], 404)
        status, headers, _ = get(self.port, method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET, HEAD")

        st = d.ctl_ok("status")["metrics"]["listen"]
        self.assertEqual(st, {"address": "127.0.0.1:%d" % self.port, "serving": True, "error": None, "scrapes": 3})
        self.assertIn("metrics http    127.0.0.1:%d, serving /metrics, 3 scrape(s)" % self.port,
                      d.ctl_ok("status", json=False))
        self.assertIn("METRICS_LISTENING", d.log())

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run the attacker as user nobody")
    def test_hostile_client_does_not_stop_scrapes(self):
        d = self.make()
        os.mkdir(self.prom_dir)
        d.start()
        attacker = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
             PYTHON, "-c", ATTACKER, str(self.port), "300"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def finish():
            if attacker.poll() is None:
                attacker.kill()
            attacker.wait()
            attacker.stdout.close()
            if not attacker.stdin.closed:
                attacker.stdin.close()
        self.addCleanup(finish)
        self.assertEqual(attacker.stdout.readline().strip(), "ready")
        # While the attacker holds its connections and floods new ones, scrapes keep working.
        for _ in range(10):
            status, _, body = get(self.port)
            self.assertEqual(status, 200)
            self.assertIn(("taskhub_build_info", ()), {(k[0], ()) for k in samples(body)})
        d.ctl_ok("run", "ok", "--wait")
        attacker.stdin.close()
        flooded = attacker.stdout.readline().strip()
        self.assertTrue(flooded.startswith("flooded "), flooded)
        self.assertGreater(int(flooded.split()[1]), 16, "the flood never outran the connection cap")
        self.assertTrue(d.ctl_ok("status")["metrics"]["listen"]["serving"])

    def test_port_in_use_and_missing_textfile_dir(self):
        d = self.make(textfile_dir="not-yet")
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", self.port))
        squatter.listen(1)
        self.addCleanup(squatter.close)
        d.start()
        st = harness.wait_until(lambda: (lambda m: m if m["textfile"]["error"] else None)(d.ctl_ok("status")["metrics"]),
                                what="the textfile failure in status")
        self.assertFalse(st["listen"]["serving"])
        self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use" % self.port, st["listen"]["error"])
        self.assertIn("cannot create %s.tmp." % self.textfile, st["textfile"]["error"])
        self.assertIn("No such file or directory", st["textfile"]["error"])
        self.assertIsNone(st["textfile"]["last_write"])
        self.assertIso(st["textfile"]["error_since"], "textfile error_since")
        out = d.ctl_ok("status", json=False)
        self.assertIn("NOT SERVING: cannot listen on 127.0.0.1:%d" % self.port, out)
        self.assertIn("FAILING since", out)
        # The daemon runs on.
        d.ctl_ok("run", "ok", "--wait")
        time.sleep(2.5)  # more failed writes: still one log line
        log = d.log()
        self.assertEqual(log.count("METRICS_LISTEN_FAILED"), 1, log)
        self.assertEqual(log.count("METRICS_TEXTFILE_FAILED"), 1, log)
        # The directory appears: the next write succeeds.
        os.mkdir(self.prom_dir)
        harness.wait_until(lambda: os.path.exists(self.textfile), what="the textfile once its directory exists")
        harness.wait_until(lambda: "METRICS_TEXTFILE_RECOVERED" in d.log(), what="METRICS_TEXTFILE_RECOVERED")
        st = harness.wait_until(lambda: (lambda m: m if m["textfile"]["last_write"] else None)(
            d.ctl_ok("status")["metrics"]), what="a textfile write in status")
        self.assertIsNone(st["textfile"]["error"])


if __name__ == "__main__":
    harness.main()
