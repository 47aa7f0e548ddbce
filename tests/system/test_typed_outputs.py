"""Typed (JSON) outputs with a real daemon: a shell task publishes a JSON array through the
taskhub-output-json helper and an object through a `::set-output-json` line; downstream tasks read
`[0]`, `.length` and object fields in their commands and in `when` conditions. Attacks: values
holding shell code land as data (nothing runs), a value over the 1 MiB limit and malformed JSON
fail the publishing task with a message naming the output and the rule, the helper refuses
over-limit input with nothing on stdout, and a path into an existing value that does not hold
(index out of range) fails the reading task with the reference and the value's size."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HELPER = os.environ.get("TASKHUB_OUTPUT_JSON", "")

# Three file names, two of them shell code if pasted raw.
FILES = ["a b.csv", "$(id>pwned).csv", "q';id>pwned;'.csv"]

PIPELINE = r"""
[policy]
on_failure = "continue"

[[task]]
id = "list"
plugin = "shell"
cwd = "{work}"
command = '''printf '%s\n' 'a b.csv' '$(id>pwned).csv' "q';id>pwned;'.csv" | {helper} files && echo '::set-output-json cfg={{"db": {{"host": "db1", "port": 5432}}, "tags": []}}' '''

[[task]]
id = "use"
plugin = "shell"
depends_on = ["list"]
cwd = "{work}"
command = '''printf '%s\0' ${{tasks.list.outputs.files[0]}} "${{tasks.list.outputs.files[1]}}" '${{tasks.list.outputs.files[2]}}' ${{tasks.list.outputs.files.length}} ${{tasks.list.outputs.cfg.db.host}} ${{tasks.list.outputs.cfg.db.port}} ${{tasks.list.outputs.files}} > use.out'''

[[task]]
id = "some_files"
plugin = "shell"
depends_on = ["list"]
when = "tasks.list.outputs.files.length > 2 && tasks.list.outputs.cfg.db.port == 5432"
command = "true"

[[task]]
id = "some_tags"
plugin = "shell"
depends_on = ["list"]
when = "tasks.list.outputs.cfg.tags.length > 0"
command = "true"

[[task]]
id = "too_far"
plugin = "shell"
depends_on = ["list"]
command = "echo ${{tasks.list.outputs.files[12]}}"

[[task]]
id = "too_far_when"
plugin = "shell"
depends_on = ["list"]
when = "tasks.list.outputs.cfg.db.user == 'x'"
command = "true"
"""

ATTACKS = r"""
[policy]
on_failure = "continue"

[[task]]
id = "over"
plugin = "shell"
command = '''{{ printf '::set-output-json big=["'; head -c 1100000 /dev/zero | tr '\0' x; printf '"]\n'; }}'''

[[task]]
id = "malformed"
plugin = "shell"
command = '''echo '::set-output-json cfg={{"a": 1,}}' '''

[[task]]
id = "helper_over"
plugin = "shell"
cwd = "{work}"
command = '''head -c 1100000 /dev/zero | tr '\0' x | {helper} big > helper.out 2> helper.err'''

[[task]]
id = "helper_bad_utf8"
plugin = "shell"
cwd = "{work}"
command = '''printf 'ok\n\377\n' | {helper} names 2> utf8.err'''
"""


class TypedOutputsTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.assertTrue(HELPER and os.access(HELPER, os.X_OK), "TASKHUB_OUTPUT_JSON must name the built helper")

    def run_workflow(self, name, text):
        """A daemon with the workflow, and its run ended: (daemon, run, {task id: task})."""
        d = self.daemon()
        d.write_workflow(name, text.format(work=d.work, helper=HELPER))
        d.start()
        _, run, err = d.ctl("run", name, "--wait")
        self.assertIsInstance(run, dict, err)
        return d, run, {t["id"]: t for t in run["tasks"]}

    def test_a_pipeline_reads_elements_lengths_and_fields(self):
        d, run, tasks = self.run_workflow("pipeline", PIPELINE)

        # --json shows typed outputs as the JSON values they are.
        self.assertEqual(tasks["list"]["state"], "succeeded", tasks["list"])
        self.assertEqual(tasks["list"]["outputs"], {"files": FILES, "cfg": {"db": {"host": "db1", "port": 5432},
                                                                            "tags": []}})

        # Elements, a length and fields reach the command as data, in every quoting.
        self.assertEqual(tasks["use"]["state"], "succeeded", tasks["use"])
        got = d.read("use.out").split("\0")[:-1]
        self.assertEqual(got, FILES + ["3", "db1", "5432", '["a b.csv","$(id>pwned).csv","q\';id>pwned;\'.csv"]'])
        self.assertFalse(os.path.exists(d.path("pwned")), "a file name ran as shell code")

        # Conditions on lengths and fields.
        self.assertEqual(tasks["some_files"]["state"], "succeeded", tasks["some_files"])
        self.assertEqual(tasks["some_tags"]["state"], "skipped", tasks["some_tags"])
        self.assertIn("when condition is false", tasks["some_tags"]["message"])

        # A path that does not hold fails the task that reads it, saying why.
        self.assertEqual(tasks["too_far"]["state"], "failed", tasks["too_far"])
        self.assertEqual(tasks["too_far"]["message"],
                         "${tasks.list.outputs.files[12]}: index out of range (array of 3); the task was not started")
        self.assertEqual(tasks["too_far_when"]["state"], "failed", tasks["too_far_when"])
        self.assertEqual(tasks["too_far_when"]["message"],
                         "when condition tasks.list.outputs.cfg.db.user == 'x': ${tasks.list.outputs.cfg.db.user}: "
                         "no key 'user' (an object with keys host, port)")
        self.assertEqual(run["state"], "failed", run)

        # The text view shows typed outputs as compact JSON, and the store keeps them: a restarted
        # daemon shows the same values.
        text = d.ctl_ok("show", run["id"], json=False)
        self.assertIn('list.cfg = {"db":{"host":"db1","port":5432},"tags":[]}', text)
        self.assertIn('list.files = ["a b.csv","$(id>pwned).csv","q\';id>pwned;\'.csv"]', text)
        d.stop()
        d.start()
        again = harness.task(d.ctl_ok("show", run["id"]), "list")
        self.assertEqual(again["outputs"], tasks["list"]["outputs"])

    def test_over_the_limit_and_malformed_values_fail_precisely(self):
        d, run, tasks = self.run_workflow("attacks", ATTACKS)

        self.assertEqual(tasks["over"]["state"], "failed", tasks["over"])
        self.assertEqual(tasks["over"]["message"],
                         "output 'big' is 1100004 bytes of JSON, over the limit of 1 MiB (1048576 bytes) for one "
                         "JSON value")
        self.assertEqual(tasks["over"]["outputs"], {})

        self.assertEqual(tasks["malformed"]["state"], "failed", tasks["malformed"])
        self.assertRegex(tasks["malformed"]["message"], r"^output 'cfg' is not valid JSON: .* at byte \d+ of 9$")

        # The helper refuses with a precise message and prints nothing for the task to publish.
        self.assertEqual(tasks["helper_over"]["state"], "failed", tasks["helper_over"])
        self.assertEqual(tasks["helper_over"]["exit_code"], 1)
        self.assertEqual(d.read("helper.out"), "")
        self.assertEqual(d.read("helper.err"),
                         "taskhub-output-json: the value is more than 1048576 bytes of JSON, over the limit of 1 MiB "
                         "(1048576 bytes) for one JSON value\n")
        self.assertEqual(tasks["helper_bad_utf8"]["state"], "failed", tasks["helper_bad_utf8"])
        self.assertIn("taskhub-output-json: invalid UTF-8 on line 2 at byte 1", d.read("utf8.err"))
        self.assertEqual(tasks["helper_bad_utf8"]["outputs"], {})

        # The daemon keeps serving.
        d.ctl_ok("status")


if __name__ == "__main__":
    unittest.main()
