"""Broken workflow files are reported with file and line by `taskhubd --check`, by
`taskhubctl validate` and by the running daemon, while the good workflow beside them loads and
runs."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# name -> (file text, [(line, regex the message must match)])
BROKEN = {
    "syntax": ('description = "broken toml"\n'
               "\n"
               "[[task]]\n"
               'id = "x"\n'
               'plugin = "shell"\n'
               'command = "echo unterminated\n',
               [(6, r"TOML syntax error")]),
    "typo": ("[[task]]\n"
             'id = "t"\n'
             'plugin = "shell"\n'
             'comand = "echo hi"\n',
             [(4, r"task 't'.*'comand'.*did you mean 'command'")]),
    "badcron": ("[[trigger]]\n"
                'cron = "61 2 * * *"\n'
                "\n"
                "[[task]]\n"
                'id = "t"\n'
                'plugin = "noop"\n',
                [(2, r'cron "61 2 \* \* \*": .*\b61\b')]),
    "unknowndep": ("[[task]]\n"
                   'id = "a"\n'
                   'plugin = "noop"\n'
                   "\n"
                   "[[task]]\n"
                   'id = "b"\n'
                   'plugin = "noop"\n'
                   'depends_on = ["a", "ghost"]\n',
                   [(8, r"task 'b' depends on unknown task 'ghost'")]),
    "cycle": ("[[task]]\n"
              'id = "a"\n'
              'plugin = "noop"\n'
              'depends_on = ["c"]\n'
              "\n"
              "[[task]]\n"
              'id = "b"\n'
              'plugin = "noop"\n'
              'depends_on = ["a"]\n'
              "\n"
              "[[task]]\n"
              'id = "c"\n'
              'plugin = "noop"\n'
              'depends_on = ["b"]\n',
              # any depends_on line on the cycle names it correctly
              [((4, 9, 14), r"dependency cycle: ([abc]) -> [abc] -> [abc] -> \1")]),
    "multi": ('descripton = "typo at the top"\n'
              "[policy]\n"
              'overlap = "sometimes"\n'
              "[[task]]\n"
              'id = "t"\n'
              'plugin = "noop"\n',
              [(1, r"unknown key 'descripton'.*did you mean 'description'"),
               (3, r"overlap.*skip.*\"sometimes\"")]),
}

def first_line(expectation):
    line = expectation[0]
    return min(line) if isinstance(line, tuple) else line


PROBLEM_LINE = re.compile(r"^(/\S+\.toml):(\d+): (.+)$")


class WorkflowErrorsTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon()
        self.good = self.d.write_workflow("good", """\
            description = "the one that works"
            [[task]]
            id = "ok"
            plugin = "shell"
            command = "echo good > %s"
            """ % self.d.path("good-ran"))
        self.files = {name: self.d.write_workflow(name, text) for name, (text, _) in BROKEN.items()}

    def check_problems(self, lines):
        """Asserts that lines (the problem lines, in any order) are exactly the expected ones."""
        by_file = {}
        for line in lines:
            m = PROBLEM_LINE.match(line)
            self.assertIsNotNone(m, "not of the form <path>:<line>: ...: %r" % line)
            by_file.setdefault(m.group(1), []).append((int(m.group(2)), m.group(3)))
        self.assertEqual(sorted(by_file), sorted(self.files.values()), lines)
        for name, (_, expected) in BROKEN.items():
            got = by_file[self.files[name]]
            self.assertEqual(len(got), len(expected), "%s: %r" % (name, got))
            for (line, message), (want_line, pattern) in zip(sorted(got), sorted(expected, key=first_line)):
                wanted = want_line if isinstance(want_line, tuple) else (want_line,)
                self.assertIn(line, wanted, "%s: wrong line for %r" % (name, message))
                self.assertRegex(message, pattern, name)

    def validate(self, *files, json_output=False):
        argv = [harness.BIN["ctl"], "--config", self.d.config] + (["--json"] if json_output else [])
        return subprocess.run(argv + ["validate"] + list(files), capture_output=True, text=True,
                              timeout=harness.TIMEOUT)

    def test_validate_prints_only_results(self):
        # stdout carries the results only (one line per problem, one per good file), and with
        # --json exactly one JSON document: nothing else may be mixed in, e.g. log lines.
        p = self.validate(self.good, self.files["typo"])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        # In argument order.
        self.assertEqual(p.stdout.splitlines(), [
            "%s: ok (1 task(s))" % self.good,
            "%s:4: task 't': plugin shell rejects parameter 'comand': unknown parameter 'comand' for "
            "plugin shell (accepted: argv, command, cwd); did you mean 'command'?" % self.files["typo"]])
        p = self.validate(self.files["typo"], json_output=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        try:
            (result,) = json.loads(p.stdout)
        except ValueError:
            self.fail("`taskhubctl --json validate` printed something that is not JSON:\n" + p.stdout)
        self.assertEqual(result["file"], self.files["typo"])
        self.assertFalse(result["ok"])
        self.assertEqual([q["line"] for q in result["problems"]], [4])
        self.assertIn("did you mean 'command'", result["problems"][0]["message"])
        self.assertTrue(result["problems"][0]["text"].startswith(self.files["typo"] + ":4: "))

    def test_check_validate_and_daemon(self):
        d = self.d
        # taskhubd --check
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = p.stdout.splitlines()
        nproblems = sum(len(e) for _, e in BROKEN.values())
        self.assertEqual(out[-1], "%d problem(s) found" % nproblems, p.stdout)
        check_lines = out[:-1]
        self.check_problems(check_lines)

        # taskhubctl validate, offline: the same messages; the good file is ok. (Other output
        # on stdout is test_validate_prints_only_results's business.)
        p = self.validate(self.good, *sorted(self.files.values()))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        ok_line = "%s: ok (1 task(s))" % self.good
        lines = [l for l in p.stdout.splitlines() if PROBLEM_LINE.match(l) or l == ok_line]
        self.assertIn(ok_line, lines)
        lines.remove(ok_line)
        self.assertEqual(sorted(lines), sorted(check_lines))
        p = self.validate(self.good)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        # The daemon starts anyway, serves the good workflow and lists the broken files.
        d.start()
        listing = d.ctl_ok("list")
        self.assertEqual([w["name"] for w in listing["workflows"]], ["good"])
        self.assertEqual(sorted(e["message"] for e in listing["errors"]), sorted(check_lines))
        self.assertEqual({e["file"] for e in listing["errors"]}, set(self.files.values()))
        rc, run, err = d.ctl("run", "good", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(d.read("good-ran"), "good\n")

        # A broken workflow cannot be run; the error says why.
        rc, _, err = d.ctl("run", "typo")
        self.assertEqual(rc, 1)
        self.assertIn("no workflow named 'typo'", err)
        self.assertIn("comand", err)

        # Fixing a file and reloading brings it in.
        with open(self.files["typo"], "w") as f:
            f.write('[[task]]\nid = "t"\nplugin = "shell"\ncommand = "true"\n')
        reloaded = d.ctl_ok("reload")
        self.assertEqual(reloaded["loaded"], 2)
        self.assertEqual(reloaded["failed"], len(BROKEN) - 1)
        listing = d.ctl_ok("list")
        self.assertEqual(sorted(w["name"] for w in listing["workflows"]), ["good", "typo"])
        self.assertNotIn(self.files["typo"], {e["file"] for e in listing["errors"]})
        rc, run, err = d.ctl("run", "typo", "--wait")
        self.assertEqual(rc, 0, err)

    def test_check_passes_on_valid_directory(self):
        for path in self.files.values():
            os.remove(path)
        p = subprocess.run([harness.BIN["daemon"], "--config", self.d.config, "--check"],
                           capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"ok \(\d+ plugin\(s\), 1 workflow\(s\)\)")


if __name__ == "__main__":
    harness.main()
