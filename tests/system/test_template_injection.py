"""Templates can never become code: as user nobody, drop files whose names are shell code into a
world-writable drop box watched by a workflow whose shell tasks paste ${params.file} bare, inside
'...' and inside "...", and as an admin trigger a run with a param that is shell code, which a task
also republishes as an output for a downstream task. Nothing is executed (no "pwned" file appears
anywhere), every task receives exactly the value, and the daemon keeps serving. Unsafe template
contexts are refused when the file is loaded, and an `argv` task gets each value as one argument."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Names nobody drops: each would run `id` as root if pasted into shell text raw (quoted or not).
HOSTILE_NAMES = [
    b"a;id>pwned;.csv",
    b"x$(id>pwned).csv",
    b"q';id>pwned;'.csv",
    b"b`id>pwned`.csv",
    b'd"$(id>pwned)".csv',
    b"n\nid>pwned\n.csv",
    b"-n;id>pwned|.csv",
    b" spaced \t name &id>pwned&.csv",
    b"e\\';id>pwned;#.csv",
    b"\xff\xfe invalid utf-8;id>pwned.csv",
]

# printf '%s\0' VALUE >> FILE records each value exactly, newlines included.
DROP_WORKFLOW = """
[[trigger]]
watch = "{drop}"
pattern = "*"

[policy]
overlap = "queue_all"

[[task]]
id = "bare"
plugin = "shell"
cwd = "{work}"
command = "printf '%s\\\\0' ${{params.file_name}} >> bare.out; cat ${{params.file}} >> bare.content"

[[task]]
id = "single"
plugin = "shell"
cwd = "{work}"
command = "printf '%s\\\\0' '${{params.file_name}}' >> single.out; cat '${{params.file}}' >> single.content"

[[task]]
id = "double"
plugin = "shell"
cwd = "{work}"
command = "printf '%s\\\\0' \\"${{params.file_name}}\\" >> double.out; cat \\"${{params.file}}\\" >> double.content"

[[task]]
id = "argv"
plugin = "shell"
cwd = "{work}"
argv = ["/bin/sh", "-c", "printf '%s\\\\0' \\"$1\\" >> argv.out", "sh", "${{params.file_name}}"]
"""

ADMIN_WORKFLOW = """
[params]
date = ""

[[task]]
id = "produce"
plugin = "shell"
cwd = "{work}"
command = "printf '%s\\\\0' ${{params.date}} >> produce.out; echo ::set-output v=${{params.date}}"

[[task]]
id = "consume"
plugin = "shell"
depends_on = ["produce"]
cwd = "{work}"
command = "printf '%s\\\\0' \\"${{tasks.produce.outputs.v}}\\" ${{tasks.produce.outputs.v}} >> consume.out"
"""


def pwned_files(*roots):
    found = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if "pwned" in f and not f.endswith(".csv")]
    return found


@unittest.skipUnless(os.geteuid() == 0, "needs root to drop files as user nobody")
class TemplateInjectionTest(harness.DaemonTestCase):
    def records(self, d, name):
        try:
            with open(os.path.join(d.work, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return data.split(b"\0")[:-1]

    def assert_nothing_ran(self, d):
        self.assertEqual(pwned_files(d.dir), [])
        for where in (os.getcwd(), "/", "/tmp"):
            self.assertFalse(os.path.exists(os.path.join(where, "pwned")), where)
        self.assertTrue(d.ctl_ok("status"), "the daemon still answers")

    def test_dropped_file_names_reach_tasks_as_data(self):
        d = self.daemon(start=False)
        os.chmod(d.dir, 0o711)
        os.chmod(d.work, 0o777)
        drop = d.path("drop")
        os.makedirs(drop)
        os.chmod(drop, 0o1777)
        d.write_workflow("box", DROP_WORKFLOW.format(drop=drop, work=d.work))
        d.start()

        # As nobody (a forked child that drops to nobody, so no program needs to be executable for
        # it): write each file beside the box, then rename it in, as a careful uploader would.
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                harness.demote_to_nobody()
                for name in HOSTILE_NAMES:
                    tmp = os.path.join(os.fsencode(d.work), b"upload.tmp")
                    with open(tmp, "wb") as f:
                        f.write(b"content of " + name + b"\n")
                    os.rename(tmp, os.path.join(os.fsencode(drop), name))
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(status, 0, "nobody could not drop the files")

        def all_done():
            runs = [r for r in d.ctl_ok("runs", "box", "--limit", "100") if r["state"] in ("succeeded", "failed")]
            return runs if len(runs) >= len(HOSTILE_NAMES) else None
        runs = harness.wait_until(all_done, timeout=60, what="one finished run per dropped file")
        self.assertEqual([r["state"] for r in runs], ["succeeded"] * len(HOSTILE_NAMES), d.log())

        # taskhubctl shows a run's params with control characters escaped: the name with a newline
        # cannot forge lines (or terminal escapes) in what an operator reads.
        newline_run = next(r for r in runs if "\n" in r["params"].get("file_name", ""))
        shown = subprocess.run([harness.BIN["ctl"], "--socket", d.socket, "show", newline_run["id"]],
                               capture_output=True, timeout=30).stdout
        self.assertIn(b"n\\x0aid>pwned\\x0a.csv", shown)
        self.assertNotIn(b"n\nid>pwned", shown)

        expected = sorted(HOSTILE_NAMES)
        for task in ("bare", "single", "double", "argv"):
            self.assertEqual(sorted(self.records(d, task + ".out")), expected, task)
        for task in ("bare", "single", "double"):
            with open(os.path.join(d.work, task + ".content"), "rb") as f:
                lines = sorted(f.read().split(b"content of ")[1:])
            self.assertEqual(lines, sorted(n + b"\n" for n in expected), task)
        self.assert_nothing_ran(d)

    def test_admin_param_and_task_output_reach_tasks_as_data(self):
        d = self.daemon(start=False)
        d.write_workflow("adm", ADMIN_WORKFLOW.format(work=d.work))
        d.start()
        values = ["x;id>pwned;#", "x'\"$(id>pwned)`id>pwned`|id>pwned&&id>pwned \\", ""]
        for v in values:
            rid = d.ctl_ok("run", "adm", "--param", "date=" + v)["id"]
            rec = d.wait_run_state(rid, ("succeeded", "failed"))
            self.assertEqual(rec["state"], "succeeded", d.log())
        self.assertEqual(self.records(d, "produce.out"), [v.encode() for v in values])
        self.assertEqual(self.records(d, "consume.out"), [v.encode() for v in values for _ in range(2)])
        self.assert_nothing_ran(d)

    def test_a_workflow_loaded_while_running_gets_the_same_escaping_and_refusals(self):
        # Files added later are loaded on the loader thread (not the start-up path): the shell
        # params and the refusals must reach that load too.
        d = self.daemon(start=False)
        d.start()
        d.write_workflow("adm", ADMIN_WORKFLOW.format(work=d.work))
        d.write_workflow("sub", '[params]\nx = ""\n[[task]]\nid = "t"\nplugin = "shell"\n'
                                'command = "echo $(cat ${params.x})"\n')
        d.ctl("reload", json=False)
        harness.wait_until(lambda: any(w["name"] == "adm" for w in d.ctl_ok("list")["workflows"]) or None,
                           timeout=10, what="adm loaded")
        value = "x;id>pwned;#'$(id>pwned)"
        rid = d.ctl_ok("run", "adm", "--param", "date=" + value)["id"]
        self.assertEqual(d.wait_run_state(rid, ("succeeded", "failed"))["state"], "succeeded", d.log())
        self.assertEqual(self.records(d, "produce.out"), [value.encode()])
        self.assertEqual(self.records(d, "consume.out"), [value.encode()] * 2)
        harness.wait_until(lambda: "is inside a command substitution $(...)" in d.log() or None, timeout=10,
                           what="the refusal of sub.toml in the log")
        self.assert_nothing_ran(d)

    def test_an_isolated_shell_plugin_gets_the_same_escaping_and_refusals(self):
        # The runner forwards shell_params in its description of the plugin.
        d = self.daemon(start=False, extra_config='isolation = "process"\n')
        d.write_workflow("adm", ADMIN_WORKFLOW.format(work=d.work))
        d.start()
        self.assertIn("RUNNER_", d.log())
        value = "x;id>pwned;#'$(id>pwned)"
        rid = d.ctl_ok("run", "adm", "--param", "date=" + value)["id"]
        self.assertEqual(d.wait_run_state(rid, ("succeeded", "failed"))["state"], "succeeded", d.log())
        self.assertEqual(self.records(d, "consume.out"), [value.encode()] * 2)
        d.write_workflow("sub", '[params]\nx = ""\n[[task]]\nid = "t"\nplugin = "shell"\n'
                                'command = "echo `cat ${params.x}`"\n')
        d.ctl("reload", json=False)
        harness.wait_until(lambda: "is inside a command substitution `...`" in d.log() or None, timeout=10,
                           what="the refusal of sub.toml in the log")
        self.assert_nothing_ran(d)

    def test_a_nul_byte_fails_the_attempt_instead_of_being_cut_short(self):
        d = self.daemon(start=False)
        d.write_workflow("adm", ADMIN_WORKFLOW.format(work=d.work))
        d.start()
        with d.connect() as c:
            r = c.request({"proto": 1, "cmd": "run", "args": {"workflow": "adm", "params": {"date": "a\u0000;id>pwned"}}})
        self.assertTrue(r.get("ok"), r)
        rid = r["data"]["id"] if "data" in r else r["id"]
        rec = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(rec["state"], "failed")
        produce = harness.task(rec, "produce")
        self.assertEqual(produce["state"], "failed")
        self.assertIn("holds a NUL byte, which cannot be passed to a shell; the task was not started",
                      produce["message"])
        self.assertEqual(self.records(d, "produce.out"), [])
        self.assert_nothing_ran(d)

    def test_unsafe_contexts_are_refused_when_loaded(self):
        d = self.daemon(start=False)
        d.write_workflow("sub", '[params]\nx = ""\n[[task]]\nid = "t"\nplugin = "shell"\n'
                                'command = "echo $(cat ${params.x})"\n')
        d.write_workflow("here", '[params]\nx = ""\n[[task]]\nid = "t"\nplugin = "shell"\n'
                                 'command = """cat <<EOF\n${params.x}\nEOF"""\n')
        d.write_workflow("both", '[[task]]\nid = "t"\nplugin = "shell"\ncommand = "true"\nargv = ["true"]\n')
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"],
                           capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("sub.toml:6: task 't': 'command': ${params.x} is inside a command substitution $(...), "
                      "where a value cannot be made safe", out)
        self.assertIn('or use "$TASKHUB_PARAM_x" from the environment', out)
        self.assertIn("here.toml:6: task 't': 'command': ${params.x} is inside a here-document (<<)", out)
        self.assertIn("both.toml:5: task 't': plugin shell rejects parameter 'argv': 'command' and 'argv' "
                      "cannot both be set", out)


if __name__ == "__main__":
    harness.main()
