"""taskhubctl's manners (issue 21), against a real daemon: --version, help, one-line usage errors,
--json error objects, colour only on a terminal, times in the daemon's zone (--utc), columns by
display width, and the pager. A pseudo-terminal (Python's pty) stands in for a terminal."""

import datetime
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import unicodedata
import zoneinfo

import harness

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ESC = "\x1b"


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        return re.search(r"project\(TaskHub VERSION (\S+)", f.read()).group(1)


def abi_version():
    with open(os.path.join(SOURCE, "plugin_api", "include", "taskhub", "plugin_api.h")) as f:
        text = f.read()
    major = re.search(r"#define TH_ABI_VERSION_MAJOR (\d+)", text).group(1)
    minor = re.search(r"#define TH_ABI_VERSION_MINOR (\d+)", text).group(1)
    return "%s.%s" % (major, minor)


def env_with(**kw):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PAGER", "TASKHUB_PAGER", "LESS")}
    env["TERM"] = "xterm-256color"
    for k, v in kw.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def ctl_piped(*args, env=None):
    p = subprocess.run([harness.BIN["ctl"]] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=harness.TIMEOUT, env=env or env_with())
    return p.returncode, p.stdout, p.stderr


def ctl_on_pty(*args, env=None, rows=24, cols=200, timeout=harness.TIMEOUT):
    """Runs taskhubctl ARGS with stdin and stdout on a pseudo-terminal of rows x cols (stderr piped).
    Returns (exit code, what the terminal got with \\r\\n as \\n, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen([harness.BIN["ctl"]] + list(args), stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                         env=env or env_with(), start_new_session=True)
    os.close(slave)
    out = b""
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    try:
        while True:
            left = (deadline - datetime.datetime.now()).total_seconds()
            if left <= 0:
                os.killpg(p.pid, signal.SIGKILL)
                raise AssertionError("taskhubctl %s did not end on the terminal: %r" % (args, out))
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        rc = p.wait(timeout=timeout)
        err = p.stderr.read().decode()
    finally:
        os.close(master)
        p.stderr.close()
    return rc, out.decode(errors="replace").replace("\r\n", "\n"), err


def width(text):
    """Display columns of text, as a terminal shows it."""
    w = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


class VersionHelpUsageTest(harness.DaemonTestCase):
    def test_version_with_and_without_a_daemon(self):
        version = project_version()
        rc, out, err = ctl_piped("--socket", "/nonexistent/taskhub.sock", "--version")
        self.assertEqual((rc, out, err), (0, "taskhubctl %s\n" % version, ""))
        rc, out, err = ctl_piped("--socket", "/nonexistent/taskhub.sock", "--json", "--version")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(json.loads(out), {"taskhubctl": version, "taskhubd": None, "plugin_abi": None,
                                           "proto": None})

        d = self.daemon()
        d.start()
        rc, out, err = ctl_piped("--socket", d.socket, "--version")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "taskhubctl %s\ntaskhubd %s\nplugin ABI %s\n" % (version, version, abi_version()))
        rc, out, err = ctl_piped("--socket", d.socket, "--version", "--json")
        self.assertEqual(json.loads(out), {"taskhubctl": version, "taskhubd": version, "plugin_abi": abi_version(),
                                           "proto": 1})
        status = d.ctl_ok("status")
        self.assertEqual((status["abi"], status["timezone"]), (abi_version(), "UTC"))

    def test_help_command_and_command_help(self):
        for words in (["run"], ["plugin", "show"], ["logs"], ["help"], ["notify", "test"]):
            rc, via_help, err = ctl_piped("help", *words)
            self.assertEqual((rc, err), (0, ""), words)
            rc, via_option, err = ctl_piped(*words, "--help")
            self.assertEqual((rc, err), (0, ""), words)
            self.assertEqual(via_help, via_option, words)
            self.assertTrue(via_help.startswith("usage: taskhubctl [OPTIONS] %s" % " ".join(words)), via_help)
            self.assertNotIn("\ncommands (through the daemon):", via_help)  # that command only
        rc, overview, err = ctl_piped("help")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(overview, ctl_piped("--help")[1])
        self.assertIn("\ncommands (through the daemon):", overview)
        # A group: each of its commands.
        rc, group, err = ctl_piped("help", "plugin")
        self.assertEqual(rc, 0)
        self.assertIn("plugin show NAME", group)
        self.assertIn("plugin check PATH.so", group)
        # Unknown commands are usage errors, through help and --help alike.
        for args, first in ((("help", "frob"), "taskhubctl: help: unknown command 'frob'"),
                            (("help", "plugin", "frob"), "taskhubctl: help: unknown command 'plugin frob'"),
                            (("frob", "--help"), "taskhubctl: unknown command 'frob'")):
            rc, out, err = ctl_piped(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertEqual(err.splitlines(), [first, "see 'taskhubctl --help'"], args)

    def test_usage_error_is_one_line_and_a_hint(self):
        rc, out, err = ctl_piped("run", "--bogus")
        self.assertEqual((rc, out), (2, ""))
        self.assertEqual(err, "taskhubctl: run: unknown option '--bogus'\nsee 'taskhubctl run --help'\n")
        rc, out, err = ctl_piped("--bogus", "run")
        self.assertEqual(err, "taskhubctl: unknown option '--bogus'\nsee 'taskhubctl --help'\n")
        # Usage errors found by a command's handler carry its hint too.
        rc, out, err = ctl_piped("run", "w", "--wait", "--follow")
        self.assertEqual((rc, out), (2, ""))
        self.assertEqual(err, "taskhubctl: run takes --wait or --follow, not both\nsee 'taskhubctl run --help'\n")
        rc, out, err = ctl_piped("plugin", "show", "x", "--limit", "0")
        self.assertEqual(err.splitlines()[1], "see 'taskhubctl plugin show --help'")
        # The hint names the command, or the group of two-word commands, that was typed.
        for args, hint in ((("plugin", "frob"), "plugin"), (("completion", "tcsh"), "completion"),
                           (("completion",), "completion"), (("completion", "--candidates", "x"), "completion")):
            rc, out, err = ctl_piped(*args)
            self.assertEqual((rc, out, err.splitlines()[1:]), (2, "", [f"see 'taskhubctl {hint} --help'"]), args)
        # No path prints the usage text on an error.
        for args in ((), ("frob",), ("status", "x"), ("validate",), ("next",), ("pause", "wf", "--freeze"),
                     ("backfill", "wf"), ("run", "w", "--param", "x")):
            rc, out, err = ctl_piped(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertEqual(len(err.splitlines()), 2, (args, err))
            self.assertNotIn("usage:", err, args)


class JsonErrorTest(harness.DaemonTestCase):
    def assertJsonError(self, args, rc_expected, code, message_part):
        rc, out, err = ctl_piped("--json", *args)
        self.assertEqual((rc, err), (rc_expected, ""), (args, out))
        obj = json.loads(out)
        self.assertEqual(list(obj), ["error"], out)
        self.assertEqual(obj["error"]["code"], code, out)
        self.assertIn(message_part, obj["error"]["message"], out)
        return obj["error"]

    def test_every_error_is_one_object_on_stdout_with_the_exit_code(self):
        e = self.assertJsonError(("run", "--bogus"), 2, "usage", "run: unknown option '--bogus'")
        self.assertEqual(e["hint"], "see 'taskhubctl run --help'")
        self.assertJsonError(("help", "frob"), 2, "usage", "unknown command 'frob'")
        self.assertJsonError(("--socket", "/nonexistent/taskhub.sock", "status"), 3, "unreachable", "cannot connect")
        # An offline command whose config cannot be read: the problem is in the one object, not on stderr.
        self.assertJsonError(("--config", "/nonexistent/taskhub.toml", "validate", "/nonexistent/w.toml"), 2, "usage",
                             "/nonexistent/taskhub.toml: cannot open file")

        d = self.daemon(start=False)
        d.write_workflow("w", """\
            [params]
            db = "x"

            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        s = ("--socket", d.socket)
        self.assertJsonError(s + ("show", "nope"), 1, "not_found", "nope")
        self.assertJsonError(s + ("run", "w", "--param", "colour=red"), 1, "bad_request", "colour")
        run = d.ctl_ok("run", "w", "--wait")
        self.assertJsonError(s + ("resume", run["id"]), 1, "conflict", run["id"])
        self.assertJsonError(s + ("logs", run["id"], "nope"), 1, "not_found", "nope")
        # The same failures without --json: one line on stderr, nothing on stdout.
        rc, out, err = ctl_piped(*s, "show", "nope")
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith("taskhubctl: "), err)

    def test_error_objects_are_utf8_json_even_from_a_garbage_socket(self):
        # A socket that is not taskhubd: its answer (not UTF-8, 1 MB long) is quoted in the error
        # only in part, as valid JSON; a daemon error whose message carries bytes that are not
        # UTF-8 is valid JSON too.
        answers = {
            "garbage": b"\xff\xfe not json \x1b[31m" + b"x" * 1_000_000 + b"\n",
            "refusal": b'{"ok":false,"error":{"code":"not_found","message":"no run \xff\xfe"}}\n',
        }
        for name, answer in answers.items():
            where = tempfile.mkdtemp(prefix="th-garbage-", dir="/tmp")
            self.addCleanup(shutil.rmtree, where, True)
            path = os.path.join(where, name + ".sock")
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(4)
            self.addCleanup(server.close)

            def serve(server=server, answer=answer):
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            p = subprocess.run([harness.BIN["ctl"], "--json", "--socket", path, "status"], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=harness.TIMEOUT, env=env_with())
            t.join(harness.TIMEOUT)
            obj = json.loads(p.stdout.decode("utf-8"))  # strict: fails on bytes that are not UTF-8
            e = obj["error"]
            if name == "garbage":
                self.assertEqual((p.returncode, e["code"]), (3, "bad_response"), e)
                self.assertIn("unreadable response from taskhubd: \ufffd\ufffd not json \x1b[31mxxx", e["message"])
                self.assertLess(len(e["message"]), 400, "the whole answer is quoted")
            else:
                self.assertEqual((p.returncode, e["code"], e["message"]), (1, "not_found", "no run \ufffd\ufffd"), e)


def run_two(d):
    """Runs workflows ok (succeeds) and bad (fails); returns their run ids."""
    ok = d.ctl("run", "ok", "--wait")[1]["id"]
    bad = d.ctl("run", "bad", "--wait")[1]["id"]
    return ok, bad


def two_workflows(d):
    d.write_workflow("ok", """\
        [[task]]
        id = "a"
        plugin = "shell"
        command = "true"
        """)
    d.write_workflow("bad", """\
        [[task]]
        id = "a"
        plugin = "shell"
        command = "exit 3"
        """)


class ColourTest(harness.DaemonTestCase):
    def test_states_coloured_only_on_a_terminal(self):
        d = self.daemon(start=False)
        two_workflows(d)
        d.start()
        ok, bad = run_two(d)
        s = ("--socket", d.socket)
        rc, out, err = ctl_on_pty(*s, "runs")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn(ESC + "[32msucceeded" + ESC + "[0m", out)
        self.assertIn(ESC + "[31mfailed" + ESC + "[0m", out)
        # Colour does not shift the columns: STARTED begins where its header does on every row.
        lines = [l for l in out.splitlines() if l.strip()]
        plain = [re.sub(ESC + r"\[[0-9;]*m", "", l) for l in lines]
        col = plain[0].index("STARTED")
        for l in plain[1:]:
            self.assertRegex(l[col:], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+00:00", plain)
        rc, out, err = ctl_on_pty(*s, "show", bad, "--no-pager")
        self.assertIn("state     " + ESC + "[31mfailed", out)
        rc, out, err = ctl_on_pty(*s, "plugins")
        self.assertIn(ESC + "[32mhealthy" + ESC + "[0m", out)

        for why, args, env in (("piped", None, None),
                               ("NO_COLOR", (), env_with(NO_COLOR="1")),
                               ("--no-color", ("--no-color",), None),
                               ("TERM=dumb", (), env_with(TERM="dumb")),
                               ("--json", ("--json",), None)):
            if args is None:
                rc, out, err = ctl_piped(*s, "runs")
            else:
                rc, out, err = ctl_on_pty(*s, *args, "runs", env=env)
            self.assertEqual(rc, 0, why)
            self.assertIn("succeeded", out, why)
            self.assertNotIn(ESC, out, why)
        # NO_COLOR set but empty counts as unset (no-color.org).
        rc, out, err = ctl_on_pty(*s, "runs", env=env_with(NO_COLOR=""))
        self.assertIn(ESC + "[32m", out)


class TimeZoneTest(harness.DaemonTestCase):
    def berlin_daemon(self):
        d = self.daemon(start=False)
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace('timezone = "UTC"', 'timezone = "Europe/Berlin"'))
        two_workflows(d)
        d.write_workflow("nightly", """\
            timezone = "UTC"

            [[trigger]]
            cron = "30 2 * * *"

            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        return d

    @staticmethod
    def shown(iso, zone):
        t = harness.parse_iso(iso).astimezone(zoneinfo.ZoneInfo(zone))
        off = t.utcoffset().total_seconds()
        sign = "-" if off < 0 else "+"
        off = abs(int(off))
        return t.strftime("%Y-%m-%d %H:%M:%S") + " %s%02d:%02d" % (sign, off // 3600, (off // 60) % 60)

    def test_times_in_the_daemons_zone_with_the_offset_or_utc(self):
        d = self.berlin_daemon()
        self.assertEqual(d.ctl_ok("status")["timezone"], "Europe/Berlin")
        ok, bad = run_two(d)
        run = d.ctl_ok("show", ok)
        self.assertIso(run["started"])  # --json: the daemon's ISO 8601 instants, unchanged
        berlin = self.shown(run["started"], "Europe/Berlin")
        utc = self.shown(run["started"], "UTC")
        self.assertTrue(berlin.endswith((" +01:00", " +02:00")), berlin)

        rc, text, err = d.ctl("show", ok, json=False)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("started   %s\n" % berlin, text)
        self.assertRegex(text, r"\n  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d %s  \(run\) " % re.escape(berlin[20:]))
        rc, text, err = d.ctl("--utc", "show", ok, json=False)
        self.assertIn("started   %s\n" % utc, text)
        self.assertTrue(utc.endswith(" +00:00"))

        rc, text, err = d.ctl("runs", json=False)
        self.assertIn(berlin, text)
        rc, text, err = d.ctl("runs", "--utc", json=False)
        self.assertIn(utc, text)
        self.assertNotIn(berlin, text)

        # A workflow's next firing (list, next): in the daemon's zone too.
        nxt = d.ctl_ok("next", "nightly", "-n", "1")["firings"][0]["scheduled"]
        rc, text, err = d.ctl("next", "nightly", "-n", "1", json=False)
        self.assertIn(self.shown(nxt, "Europe/Berlin"), text)
        self.assertIn("SCHEDULED", text)
        rc, text, err = d.ctl("list", json=False)
        self.assertIn(self.shown(nxt, "Europe/Berlin"), text)
        # Plugin health: since.
        plugin = d.ctl_ok("plugin", "show", "shell")
        rc, text, err = d.ctl("plugin", "show", "shell", json=False)
        self.assertIn("since " + self.shown(plugin["since"], "Europe/Berlin"), text)

    def test_events_in_aligned_columns(self):
        d = self.berlin_daemon()
        ok, bad = run_two(d)
        rc, text, err = d.ctl("show", bad, json=False)
        events = text[text.index("\nEVENTS\n") + len("\nEVENTS\n"):].splitlines()
        head = events[0]
        self.assertRegex(head, r"^  TIME +TASK +EVENT +DETAIL$")
        for col in ("TASK", "EVENT"):
            at = head.index(col)
            for line in events[1:]:
                self.assertNotEqual(line[at], " ", (col, line))
                self.assertEqual(line[at - 2:at], "  ", (col, line))


class WidthTest(harness.DaemonTestCase):
    def test_utf8_and_hostile_names_align_by_display_width(self):
        d = self.daemon(start=False)
        # A watched directory's name comes from a workflow file and the file system: wide
        # characters, a combining mark, an escape sequence and a bidi override.
        name = "\u65e5\u672c-cafe\u0301-x\x1b[2Jy-evil\u202etxt"
        os.makedirs(d.path(name))
        d.write_workflow("drop", """\
            [[trigger]]
            watch = %s
            pattern = "*.csv"

            [[task]]
            id = "a"
            plugin = "shell"
            command = "true"
            """ % json.dumps(d.path(name)))  # JSON's escapes are TOML's
        two_workflows(d)
        d.start()
        rc, text, err = d.ctl("list", json=False)
        self.assertEqual((rc, err), (0, ""))
        self.assertNotIn(ESC, text)        # no raw escape from a name reaches the terminal
        self.assertNotIn("\u202e", text)   # nor a bidi override
        self.assertIn("\u65e5\u672c-cafe\u0301-x\\x1b[2Jy-evil\\u{202e}txt pattern *.csv", text)
        lines = text.split("\n\n")[0].splitlines()
        head = lines[0]
        next_col = width(head[:head.index("NEXT")])
        self.assertEqual(len(lines), 4, text)
        for line in lines[1:]:
            cut = re.search(r"  (-|\d{4}-)", line).start() + 2
            self.assertEqual(width(line[:cut]), next_col, (line, text))


PAGER_SCRIPT = """#!/bin/sh
echo "ran LESS=${LESS-unset}" > "%s"
echo PAGED
exec cat
"""


class PagerTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        d = self.d = self.daemon(start=False)
        two_workflows(d)
        d.write_workflow("chatty", """\
            [[task]]
            id = "talk"
            plugin = "shell"
            command = "seq 1 30000"
            """)
        d.start()
        self.ok, self.bad = run_two(d)
        self.chatty = d.ctl_ok("run", "chatty", "--wait")["id"]
        self.marker = d.path("pager-ran")
        self.pager = d.path("pager.sh")
        with open(self.pager, "w") as f:
            f.write(PAGER_SCRIPT % self.marker)
        os.chmod(self.pager, 0o755)
        self.s = ("--socket", d.socket)

    def ran(self):
        if not os.path.exists(self.marker):
            return None
        with open(self.marker) as f:
            text = f.read().strip()
        os.unlink(self.marker)
        return text

    def test_long_show_is_paged_on_a_terminal(self):
        rc, out, err = ctl_on_pty(*self.s, "show", self.ok, rows=10, env=env_with(PAGER=self.pager))
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(self.ran(), "ran LESS=FRSXMK")
        self.assertTrue(out.startswith("PAGED\n"), out)
        self.assertIn("EVENTS", out)
        # LESS set by the user is kept; TASKHUB_PAGER before PAGER.
        rc, out, err = ctl_on_pty(*self.s, "show", self.ok, rows=10,
                                  env=env_with(TASKHUB_PAGER=self.pager, PAGER="/nonexistent", LESS="X"))
        self.assertEqual(self.ran(), "ran LESS=X")
        # help is paged as well.
        rc, out, err = ctl_on_pty("help", rows=10, env=env_with(PAGER=self.pager))
        self.assertEqual(self.ran(), "ran LESS=FRSXMK")
        self.assertIn("commands (through the daemon):", out)

    def test_secure_pager_under_sudo(self):
        # Run through sudo by another user (SUDO_UID not the effective uid): the pager is less with
        # LESSSECURE=1, whatever PAGER says (its !command would run as root), as systemctl does.
        bindir = self.d.path("securebin")
        os.mkdir(bindir)
        less = os.path.join(bindir, "less")
        with open(less, "w") as f:
            f.write('#!/bin/sh\necho "ran LESS=${LESS-unset} LESSSECURE=${LESSSECURE-unset}" > "%s"\nexec cat\n'
                    % self.marker)
        os.chmod(less, 0o755)
        path = bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin")
        uid = str(os.geteuid() + 1)
        rc, out, err = ctl_on_pty("help", rows=10, env=env_with(PAGER=self.pager, SUDO_UID=uid, PATH=path))
        self.assertEqual((rc, self.ran()), (0, "ran LESS=FRSXMK LESSSECURE=1"), out)
        self.assertNotIn("PAGED", out)
        # TASKHUB_PAGERSECURE=0 lets the user's pager run; empty PAGER still means no pager.
        ctl_on_pty("help", rows=10, env=env_with(PAGER=self.pager, SUDO_UID=uid, PATH=path, TASKHUB_PAGERSECURE="0"))
        self.assertEqual(self.ran(), "ran LESS=FRSXMK")
        rc, out, err = ctl_on_pty("help", rows=10, env=env_with(PAGER="", SUDO_UID=uid, PATH=path))
        self.assertEqual((rc, self.ran()), (0, None))
        self.assertIn("commands (through the daemon):", out)

    def test_not_paged_when_piped_short_disabled_or_following(self):
        env = env_with(PAGER=self.pager)
        rc, out, err = ctl_piped(*self.s, "show", self.ok, env=env)
        self.assertEqual(rc, 0)
        self.assertIsNone(self.ran(), "piped")
        rc, out, err = ctl_on_pty(*self.s, "--no-pager", "show", self.ok, rows=10, env=env)
        self.assertIsNone(self.ran(), "--no-pager")
        self.assertIn("EVENTS", out)
        rc, out, err = ctl_on_pty(*self.s, "show", self.ok, rows=200, env=env)
        self.assertIsNone(self.ran(), "shorter than the terminal")
        rc, out, err = ctl_on_pty(*self.s, "--json", "show", self.ok, rows=10, env=env)
        self.assertIsNone(self.ran(), "--json")
        for value in ("", "cat"):
            rc, out, err = ctl_on_pty(*self.s, "show", self.ok, rows=10, env=env_with(PAGER=value))
            self.assertEqual(rc, 0)
            self.assertIn("EVENTS", out, value)
        rc, out, err = ctl_on_pty(*self.s, "show", self.ok, rows=10, env=env_with(TASKHUB_PAGER="", PAGER=self.pager))
        self.assertIsNone(self.ran(), "TASKHUB_PAGER empty")
        rc, out, err = ctl_on_pty(*self.s, "logs", self.chatty, "talk", "-f", rows=10, env=env)
        self.assertEqual(rc, 0)
        self.assertIsNone(self.ran(), "logs -f")
        self.assertIn("30000\n", out)

    def test_logs_paged_and_quitting_early_or_a_missing_pager_is_quiet(self):
        rc, out, err = ctl_on_pty(*self.s, "logs", self.chatty, "talk", rows=10, env=env_with(PAGER=self.pager))
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(self.ran(), "ran LESS=FRSXMK")
        self.assertIn("30000\n", out)
        # A pager that reads one line and quits: taskhubctl ends quietly with the command's status.
        rc, out, err = ctl_on_pty(*self.s, "logs", self.chatty, "talk", rows=10, env=env_with(PAGER="head -n 1"))
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "1\n")
        # A pager that cannot start: the output is printed directly.
        rc, out, err = ctl_on_pty(*self.s, "show", self.bad, rows=10, env=env_with(PAGER="/nonexistent/pager -x"))
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("EVENTS", out)
        self.assertTrue(out.startswith("run "), out)


if __name__ == "__main__":
    harness.main()
