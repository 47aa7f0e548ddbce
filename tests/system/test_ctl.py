"""taskhubctl against a real taskhubd: `list` shows each workflow's earliest next firing over all
its triggers (not the first trigger's), and the command-line surface (per-command --help, usage
errors) the command table generates."""

import os
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
            "several": "2098-06-01 12:00:00Z",
            "fileonly": "-",
            "manual": "-",
        }, text)

        # Paused, the schedule has no next firing to show.
        d.ctl_ok("pause", "several")
        rc, text, err = d.ctl("list", json=False)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(columns(text)["several"], "paused", text)


if __name__ == "__main__":
    harness.unittest.main()
