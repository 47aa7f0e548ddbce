"""taskhubctl against a real taskhubd: `list` shows each workflow's earliest next firing over all
its triggers (not the first trigger's), and the command-line surface (per-command --help, usage
errors) the command table generates."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def columns(listing_text):
    """The rows of `list`'s table as {WORKFLOW: NEXT}. Cells are separated by two or more
    spaces; TRIGGERS may itself contain single spaces and ", "."""
    lines = listing_text.splitlines()
    head = lines[0]
    starts = [head.index(h) for h in ("WORKFLOW", "TRIGGERS", "NEXT", "LAST RUN")]
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        rows[line[:starts[1]].strip()] = line[starts[2]:starts[3]].strip()
    return rows


class ListNextTest(harness.DaemonTestCase):
    def test_next_is_the_earliest_firing_over_all_triggers(self):
        d = self.daemon()
        inbox = d.path("in")
        os.makedirs(inbox)
        # The first trigger has no next firing (a watch), the second fires last, the third first:
        # NEXT is the third's.
        d.write_workflow("several", """\
            [[trigger]]
            watch = "%s"
            [[trigger]]
            at = "2099-01-01T00:00:00Z"
            [[trigger]]
            at = "2098-06-01T12:00:00Z"
            [[trigger]]
            at = "2098-09-01T00:00:00Z"

            [[task]]
            id = "noop"
            plugin = "shell"
            command = "true"
            """ % inbox)
        d.write_workflow("fileonly", """\
            [[trigger]]
            watch = "%s"

            [[task]]
            id = "noop"
            plugin = "shell"
            command = "true"
            """ % inbox)
        d.write_workflow("manual", """\
            [[task]]
            id = "noop"
            plugin = "shell"
            command = "true"
            """)
        d.start()

        listing = {w["name"]: w for w in d.ctl_ok("list")["workflows"]}
        self.assertEqual([t["next"] for t in listing["several"]["triggers"]],
                         [None, "2099-01-01T00:00:00.000Z", "2098-06-01T12:00:00.000Z",
                          "2098-09-01T00:00:00.000Z"])

        rc, text, err = d.ctl("list", json=False)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(columns(text), {
            "several": "2098-06-01 12:00:00 +00:00",  # the daemon's zone (UTC here), with its offset
            "fileonly": "-",
            "manual": "-",
        }, text)

        # Paused, the schedule has no next firing to show.
        d.ctl_ok("pause", "several")
        rc, text, err = d.ctl("list", json=False)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(columns(text)["several"], "paused", text)


def ctl(*args):
    """Runs taskhubctl ARGS with no daemon: (exit code, stdout, stderr)."""
    p = subprocess.run([harness.BIN["ctl"]] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=harness.TIMEOUT)
    return p.returncode, p.stdout, p.stderr


class CommandLineTest(harness.unittest.TestCase):
    COMMANDS = ["status", "metrics", "list", "show", "reload", "plugins", "plugin show", "run", "watch", "runs", "pause",
                "resume", "cancel", "retry", "logs", "wait", "validate", "next", "plugin check", "notify test", "backfill",
                "completion", "help"]

    def test_usage_lists_every_command(self):
        rc, out, err = ctl("--help")
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.startswith("usage: taskhubctl [OPTIONS] COMMAND [ARGS]\n"))
        # A command's line starts with two spaces and its name; an option's with "  -".
        lines = [line for line in out.splitlines() if re.match(r"  [a-z]", line)]
        self.assertEqual(len(lines), len(self.COMMANDS), out)
        for c in self.COMMANDS:
            self.assertTrue(any(re.match("  %s( |$)" % re.escape(c), line) for line in lines), (c, out))

    def test_help_of_one_command(self):
        rc, out, err = ctl("logs", "--help")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out.splitlines(), [
            "usage: taskhubctl [OPTIONS] logs RUN TASK [--attempt N] [--follow]",
            "",
            "a task's output (latest attempt by default)",
            "",
            "options:",
            "  --attempt N    attempt N",
            "  -f, --follow   then its further output as it comes, until the attempt ends",
            "",
            "OPTIONS: the global options (--socket, --config, --json, ...), see 'taskhubctl --help'",
        ])
        rc, out, err = ctl("status", "-h")
        self.assertEqual((rc, err), (0, ""))
        self.assertNotIn("options:", out)
        self.assertIn("daemon state and counters", out)

    def test_usage_errors_exit_2_with_one_line_and_a_hint(self):
        for args, first, hint in [
            ((), "taskhubctl: missing command", "see 'taskhubctl --help'"),
            (("frob",), "taskhubctl: unknown command 'frob'", "see 'taskhubctl --help'"),
            (("status", "--bogus"), "taskhubctl: status: unknown option '--bogus'", "see 'taskhubctl status --help'"),
            (("logs", "r@1"), "taskhubctl: logs takes two arguments: RUN TASK", "see 'taskhubctl logs --help'"),
            (("cancel", "r@1", "--task", ""), "taskhubctl: cancel: --task needs a task id, found an empty one",
             "see 'taskhubctl cancel --help'"),
            (("runs", "--since", "yesterday"), "taskhubctl: runs: --since needs an ISO 8601 time (2026-11-22T10:00:00Z, "
                                               "2026-11-22) or a duration back from now (2h, 7d): ",
             "see 'taskhubctl runs --help'"),
            (("runs", "--limit", "0"), "taskhubctl: runs: --limit needs a number from 1 to 100000, found '0'",
             "see 'taskhubctl runs --help'"),
        ]:
            rc, out, err = ctl(*args)
            self.assertEqual((rc, out), (2, ""), args)
            lines = err.splitlines()
            self.assertEqual(len(lines), 2, (args, err))
            self.assertTrue(lines[0].startswith(first), (args, err))
            self.assertEqual(lines[1], hint, args)


if __name__ == "__main__":
    harness.unittest.main()
