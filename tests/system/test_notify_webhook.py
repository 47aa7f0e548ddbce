"""Webhook notifications (issue 16) against a local HTTP receiver on 127.0.0.1: a POST of the run's
JSON with X-TaskHub-Event and X-TaskHub-Notification-Id; a receiver that fails (500) and then
recovers gets the same notification again until it answers 2xx; one that hangs is given up on
after the timeout while runs go on; a 4xx is not retried; the URL's secrets stay out of logs and
`show`."""

import http.server
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class Receiver:
    """An HTTP server in a thread: answers each POST with the next status of `statuses` (the last
    one repeats), or hangs until released when the status is None. Records every request."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                if status is None:
                    receiver.release.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def count(self):
        with self.lock:
            return len(self.requests)


class WebhookTest(harness.DaemonTestCase):
    def receiver(self, statuses):
        r = Receiver(statuses)
        self.addCleanup(r.close)
        return r

    def workflow(self, d, url, fail=True):
        d.write_workflow("wf", """\
            [[notify]]
            on = ["failure", "success"]
            webhook = "%s"

            [[task]]
            id = "t"
            plugin = "shell"
            command = "%s"
            """ % (url, "exit 1" if fail else "true"))

    def notes(self, d, run_id):
        return d.ctl_ok("show", run_id)["notifications"]

    def wait_state(self, d, run_id, state):
        return harness.wait_until(lambda: [n for n in self.notes(d, run_id) if n["state"] == state],
                                  what="a %s notification of %s" % (state, run_id))[0]

    def test_receiver_that_fails_then_recovers_gets_the_same_notification(self):
        r = self.receiver([500, 500, 200])
        d = self.daemon(extra_config='\n[notifications]\nretry_delay = "100ms"\n')
        self.workflow(d, r.url)
        d.start()
        rc, run, _ = d.ctl("run", "wf", "--wait")
        self.assertEqual(rc, 1)
        n = self.wait_state(d, run["id"], "sent")
        self.assertEqual(n["attempts"], 3)
        self.assertEqual(n["kind"], "webhook")
        self.assertEqual(r.count(), 3)
        ids = {req[1]["X-TaskHub-Notification-Id"] for req in r.requests}
        self.assertEqual(ids, {n["id"]}, "every attempt carries the same id")
        path, headers, body = r.requests[-1]
        self.assertEqual(path, "/hook")
        self.assertEqual(headers["X-TaskHub-Event"], "failure")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertTrue(headers["User-Agent"].startswith("taskhubd/"), headers)
        doc = json.loads(body)
        self.assertEqual((doc["run_id"], doc["event"], doc["state"]), (run["id"], "failure", "failed"))
        self.assertEqual([t["id"] for t in doc["failed_tasks"]], ["t"])
        log = d.log()
        self.assertIn("NOTIFY_FAILED failure webhook: %s" % r.url, log)
        self.assertIn("HTTP 500", log)
        st = d.ctl_ok("status")["notifications"]
        self.assertEqual((st["pending"], st["failed_attempts"]), (0, 2))

    def test_receiver_that_hangs_times_out_and_runs_go_on(self):
        r = self.receiver([None])
        d = self.daemon(extra_config='\n[notifications]\ntimeout = "1s"\nretries = 1\nretry_delay = "100ms"\n')
        self.workflow(d, r.url, fail=False)
        d.start()
        runs = []
        for _ in range(5):
            rc, run, _ = d.ctl("run", "wf", "--wait")
            self.assertEqual((rc, run["state"]), (0, "succeeded"))
            runs.append(run)
        for run in runs:
            n = self.wait_state(d, run["id"], "failed")
            self.assertEqual(n["attempts"], 2)
            self.assertIn("timed out", n["last_error"])
        self.assertIn("NOTIFY_GAVE_UP success webhook:", d.log())

    def test_client_error_is_not_retried_and_secrets_stay_out_of_sight(self):
        r = self.receiver([404])
        d = self.daemon(extra_config='\n[notifications]\nretry_delay = "100ms"\n')
        self.workflow(d, r.url.replace("http://", "http://user:hunter2@") + "?token=s3cr3t")
        d.start()
        _, run, _ = d.ctl("run", "wf", "--wait")
        n = self.wait_state(d, run["id"], "failed")
        self.assertEqual(n["attempts"], 1, "a 404 is not retried")
        self.assertIn("HTTP 404", n["last_error"])
        self.assertEqual(n["target"], "webhook: " + r.url)
        self.assertEqual(r.requests[0][0], "/hook?token=s3cr3t", "the receiver gets the whole URL")
        shown = d.ctl_ok("show", run["id"], json=False) + json.dumps(d.ctl_ok("status"))
        for secret in ("hunter2", "s3cr3t"):
            self.assertNotIn(secret, d.log())
            self.assertNotIn(secret, shown)

    def test_notify_test_posts_a_sample(self):
        r = self.receiver([200])
        d = self.daemon()
        self.workflow(d, r.url)
        d.start()
        rc, out, err = d.ctl("notify", "test", "wf", json=False)
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(out.startswith("ok     webhook: " + r.url), out)
        _, headers, body = r.requests[0]
        self.assertEqual(headers["X-TaskHub-Event"], "test")
        self.assertTrue(json.loads(body)["sample"])


if __name__ == "__main__":
    harness.main()
