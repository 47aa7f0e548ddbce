"""Recursive workflow references are rejected when the files are loaded (issue 3): a -> a and
b -> c -> b are reported by `taskhubd --check` (exit 1), by `taskhubctl validate` and by the
running daemon's `list`, naming the cycle; a workflow that runs a workflow on a cycle does not load
either; the other workflows, nested ones included, load and run."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CYCLE_NOTE = "(a workflow cannot run itself, directly or through other workflows)"


class NestedRefsTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        d = self.d = self.daemon()
        self.files = {}
        # a -> a, at line 7 (the workflow key of task "again")
        self.files["a"] = d.write_workflow("a", """\
            [[task]]
            id = "first"
            plugin = "noop"

            [[task]]
            id = "again"
            workflow = "a"
            depends_on = ["first"]
            """)
        # b -> c -> b
        self.files["b"] = d.write_workflow("b", """\
            [[task]]
            id = "to-c"
            workflow = "c"
            """)
        self.files["c"] = d.write_workflow("c", """\
            [[task]]
            id = "x"
            plugin = "noop"

            [[task]]
            id = "to-b"
            workflow = "b"
            """)
        # Runs b, which is on a cycle: does not load, but is not on the cycle itself.
        self.files["user"] = d.write_workflow("user", """\
            [[task]]
            id = "run-b"
            workflow = "b"
            """)
        # Good ones, a nested pair among them.
        self.good = d.write_workflow("good", """\
            [[task]]
            id = "child"
            workflow = "good-child"
            """)
        d.write_workflow("good-child", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "touch %s"
            """ % d.path("good-child-ran"))

    def expected(self):
        f = self.files
        return {
            f["a"]: [(7, "task 'again': workflow reference cycle: a -> a " + CYCLE_NOTE)],
            f["b"]: [(3, "task 'to-c': workflow reference cycle: b -> c -> b " + CYCLE_NOTE)],
            f["c"]: [(7, "task 'to-b': workflow reference cycle: c -> b -> c " + CYCLE_NOTE)],
            f["user"]: [(3, None)],  # "workflow 'b' did not load ..."
        }

    def check_lines(self, lines):
        got = {}
        for line in lines:
            m = re.match(r"^(/\S+\.toml):(\d+): (.+)$", line)
            self.assertIsNotNone(m, "not a problem line: %r" % line)
            got.setdefault(m.group(1), []).append((int(m.group(2)), m.group(3)))
        expected = self.expected()
        self.assertEqual(sorted(got), sorted(expected), lines)
        for path, want in expected.items():
            self.assertEqual(len(got[path]), len(want), (path, got[path]))
            for (line, message), (want_line, want_message) in zip(sorted(got[path]), want):
                self.assertEqual(line, want_line, (path, message))
                if want_message is None:
                    self.assertIn("task 'run-b': workflow 'b' did not load", message)
                else:
                    self.assertEqual(message, want_message)

    def test_check_validate_list_and_run(self):
        d = self.d
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = p.stdout.splitlines()
        self.assertEqual(out[-1], "4 problem(s) found", p.stdout)
        self.check_lines(out[:-1])

        # taskhubctl validate (offline) of the cyclic files reports the same.
        p = subprocess.run([harness.BIN["ctl"], "--config", d.config, "validate", self.files["a"],
                            self.files["b"], self.files["c"]], capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        for name, want in (("a", "workflow reference cycle: a -> a"),
                           ("b", "workflow reference cycle: b -> c -> b"),
                           ("c", "workflow reference cycle: c -> b -> c")):
            self.assertTrue(any(l.startswith(self.files[name] + ":") and want in l for l in p.stdout.splitlines()),
                            "validate does not report %r for %s:\n%s" % (want, name, p.stdout))
        p = subprocess.run([harness.BIN["ctl"], "--config", d.config, "validate", self.good],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        # The daemon starts, lists the errors and serves the rest.
        d.start()
        listing = d.ctl_ok("list")
        self.assertEqual(sorted(w["name"] for w in listing["workflows"]), ["good", "good-child"])
        self.check_lines([e["message"] for e in listing["errors"]])
        rc, run, err = d.ctl("run", "good", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")
        self.assertTrue(os.path.exists(d.path("good-child-ran")))
        for name in ("a", "b", "c", "user"):
            rc, _, err = d.ctl("run", name)
            self.assertEqual(rc, 1, name)
            self.assertIn("no workflow named '%s'" % name, err)

        # The human listing shows the cycle too.
        rc, text, _ = d.ctl("list", json=False)
        self.assertEqual(rc, 0)
        self.assertIn("workflow reference cycle: b -> c -> b", text)

        # Breaking the cycle and reloading brings b, c and user in; a stays out.
        with open(self.files["c"], "w") as f:
            f.write('[[task]]\nid = "x"\nplugin = "noop"\n')
        d.ctl_ok("reload")
        listing = d.ctl_ok("list")
        self.assertEqual(sorted(w["name"] for w in listing["workflows"]), ["b", "c", "good", "good-child", "user"])
        self.assertEqual([e["file"] for e in listing["errors"]], [self.files["a"]])
        rc, run, err = d.ctl("run", "user", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")


if __name__ == "__main__":
    harness.main()
