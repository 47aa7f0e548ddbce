"""The control socket answers malformed input with a one-line JSON error and keeps serving."""

import json
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STATUS = {"proto": 1, "cmd": "status"}


class ProtocolRobustnessTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.write_workflow("w", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        rc, _ = cls.d.stop()
        cls.d.cleanup()
        assert rc == 0, "taskhubd exited %s after the protocol tests" % rc

    def setUp(self):
        super().setUp()
        self._daemons.append(self.d)  # its log is printed when a test fails

    def assertError(self, reply, code, message_part=None):
        self.assertIs(reply.get("ok"), False, reply)
        self.assertEqual(reply.get("proto"), 1, reply)
        self.assertIsInstance(reply.get("error"), dict, reply)
        self.assertEqual(reply["error"].get("code"), code, reply)
        self.assertIsInstance(reply["error"].get("message"), str, reply)
        self.assertTrue(reply["error"]["message"], reply)
        if message_part:
            self.assertIn(message_part, reply["error"]["message"])

    def assertStatusWorks(self, conn):
        reply = conn.request(STATUS)
        self.assertIs(reply["ok"], True, reply)
        self.assertEqual(reply["data"]["proto"], 1)

    BAD = [
        (b"this is not json\n", "bad_request", "not valid JSON"),
        (b"{\"proto\": 1, \"cmd\": \n", "bad_request", "not valid JSON"),
        (b"[1, 2, 3]\n", "bad_request", "JSON object"),
        (b"\"status\"\n", "bad_request", "JSON object"),
        (b"{\"cmd\": \"status\"}\n", "unsupported_proto", "proto"),
        (b"{\"proto\": 2, \"cmd\": \"status\"}\n", "unsupported_proto", "proto"),
        (b"{\"proto\": \"1\", \"cmd\": \"status\"}\n", "unsupported_proto", "proto"),
        (b"{\"proto\": 1}\n", "bad_request", "cmd"),
        (b"{\"proto\": 1, \"cmd\": 42}\n", "bad_request", "cmd"),
        (b"{\"proto\": 1, \"cmd\": \"frobnicate\"}\n", "unknown_command", "frobnicate"),
        (b"{\"proto\": 1, \"cmd\": \"status\", \"args\": [1]}\n", "bad_request", "args"),
        (b"{\"proto\": 1, \"cmd\": \"show\", \"args\": {\"name\": 5}}\n", "bad_request", "'name'"),
        (b"{\"proto\": 1, \"cmd\": \"show\", \"args\": {}}\n", "bad_request", "'name'"),
        (b"{\"proto\": 1, \"cmd\": \"runs\", \"args\": {\"limit\": \"ten\"}}\n", "bad_request", "'limit'"),
        (b"{\"proto\": 1, \"cmd\": \"runs\", \"args\": {\"limit\": -1}}\n", "bad_request", "'limit'"),
        (b"{\"proto\": 1, \"cmd\": \"runs\", \"args\": {\"workflow\": [\"w\"]}}\n", "bad_request", "'workflow'"),
        (b"{\"proto\": 1, \"cmd\": \"run\", \"args\": {\"workflow\": \"w\", \"wait\": \"yes\"}}\n",
         "bad_request", "'wait'"),
        (b"{\"proto\": 1, \"cmd\": \"run\", \"args\": {\"workflow\": \"nope\"}}\n", "not_found", "nope"),
        (b"{\"proto\": 1, \"cmd\": \"logs\", \"args\": {\"run\": \"../../etc\", \"task\": \"x\"}}\n",
         "not_found", None),
        (b"{\"proto\": 1, \"cmd\": \"show\", \"args\": {\"name\": \"nothing-here\"}}\n", "not_found", None),
    ]

    def test_each_bad_request_gets_an_error_and_the_connection_stays_usable(self):
        with self.d.connect() as conn:
            for raw, code, part in self.BAD:
                with self.subTest(request=raw):
                    conn.send_raw(raw)
                    line = conn.recv_line()
                    self.assertTrue(line, "no reply to %r" % raw)
                    reply = json.loads(line)
                    self.assertError(reply, code, part)
                    self.assertNotIn(b"\n", line)
                    self.assertStatusWorks(conn)
            self.assertEqual(conn.pending(), b"", "more than one reply line per request")

    def test_pipelined_requests_are_answered_in_order_with_ids(self):
        with self.d.connect() as conn:
            conn.send_raw(b"garbage\n"
                          b"{\"proto\": 1, \"id\": 7, \"cmd\": \"nope\"}\n"
                          b"\n"
                          b"{\"proto\": 1, \"id\": \"x\", \"cmd\": \"status\"}\r\n"
                          b"{\"proto\": 1, \"id\": [1], \"cmd\": \"help\"}\n")
            r1 = conn.recv()
            r2 = conn.recv()
            r3 = conn.recv()
            r4 = conn.recv()
            self.assertError(r1, "bad_request")
            self.assertError(r2, "unknown_command")
            self.assertEqual(r2["id"], 7)
            self.assertIs(r3["ok"], True)
            self.assertEqual(r3["id"], "x")
            self.assertEqual(r4["id"], [1])
            access = {c["name"]: c["access"] for c in r4["data"]}
            for name in ("status", "list", "show", "runs", "logs", "wait"):
                self.assertEqual(access.get(name), "read-only", name)
            for name in ("run", "cancel", "reload"):
                self.assertEqual(access.get(name), "mutating", name)
            self.assertEqual(conn.pending(), b"")

    def test_half_line_then_disconnect(self):
        conn = self.d.connect()
        conn.send_raw(b"{\"proto\": 1, \"cmd\": \"sta")
        # While that client dawdles, others are served.
        rc, status, err = self.d.ctl("status")
        self.assertEqual(rc, 0, err)
        conn.close()
        for _ in range(20):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(self.d.socket)
            c.sendall(b"{\"proto\": 1, \"cmd\": \"list\", \"args\": {\"na")
            c.close()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(self.d.socket)
        c.close()
        rc, status, err = self.d.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIsNone(self.d.proc.poll(), "taskhubd died")
        with self.d.connect() as conn:
            self.assertStatusWorks(conn)

    def test_client_that_disconnects_before_the_answer(self):
        # `run --wait` answered to a client that is gone must not hurt the daemon.
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(self.d.socket)
        c.sendall(b"{\"proto\": 1, \"cmd\": \"run\", \"args\": {\"workflow\": \"w\", \"wait\": true}}\n")
        c.close()
        runs = harness.wait_until(lambda: self.d.ctl_ok("runs", "w"), what="the run to be created")
        harness.wait_until(lambda: self.d.ctl_ok("show", runs[0]["id"])["state"] == "succeeded",
                           what="the run to finish")
        with self.d.connect() as conn:
            self.assertStatusWorks(conn)

    def test_oversized_line_is_refused_and_closed(self):
        conn = self.d.connect()
        payload = b"{\"proto\": 1, \"cmd\": \"status\", \"pad\": \"" + b"x" * (1 << 20) + b"\"}\n"
        self.assertGreater(len(payload), 1 << 20)
        send_error = []

        def send():
            try:
                conn.sock.sendall(payload)
            except OSError as e:  # the daemon may close before everything is sent
                send_error.append(e)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        line = conn.recv_line()
        self.assertTrue(line, "no reply to an oversized line")
        reply = json.loads(line)
        self.assertError(reply, "too_large", "1 MiB")
        # Then the daemon closes the connection.
        self.assertEqual(conn.recv_line(), b"", "connection still open after an oversized line")
        sender.join(harness.TIMEOUT)
        conn.close()
        with self.d.connect() as fresh:
            self.assertStatusWorks(fresh)
        rc, _, err = self.d.ctl("status")
        self.assertEqual(rc, 0, err)

    def test_line_just_under_the_limit_is_served(self):
        with self.d.connect() as conn:
            head = b"{\"proto\": 1, \"cmd\": \"status\", \"pad\": \""
            tail = b"\"}"
            pad = (1 << 20) - len(head) - len(tail) - 1
            conn.send_raw(head + b"y" * pad + tail + b"\n")
            reply = conn.recv()
            self.assertIs(reply["ok"], True, reply)
            self.assertStatusWorks(conn)


if __name__ == "__main__":
    harness.main()
