"""run_as: shell tasks run as the workflow's or their own account (or taskhub.toml's
default_run_as), with that account's ids, groups and environment, and cannot get root back; an
isolated plugin's runner runs as [plugins.NAME] user; `taskhubd --check` and `taskhubctl validate`
report unknown accounts as errors and a watched directory others can write (with tasks running as
root) as a warning. Uses only accounts of Debian's base system (root, nobody, nogroup); needs
root, like the daemon it tests."""

import grp
import json
import os
import pwd
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Prints the account as the task sees it, one "name=value" per line.
REPORT = ("echo uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ,); echo home=$HOME user=$USER "
          "logname=$LOGNAME shell=$SHELL; echo cwd=$(pwd)")

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup")


def report(d, run_id, task_id):
    """The task's REPORT output as a dict."""
    out = {}
    for line in d.ctl_ok("logs", run_id, task_id, json=False).splitlines():
        for word in line.split(" "):
            if "=" in word:
                k, v = word.split("=", 1)
                out[k] = v
    return out


def with_top_level(d, lines):
    """Adds top-level keys to the daemon's taskhub.toml (before its first table)."""
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text.replace("\n[pool]", "\n%s\n\n[pool]" % lines, 1))


@unittest.skipUnless(os.geteuid() == 0, "run_as needs taskhubd to run as root")
class RunAsTest(harness.DaemonTestCase):
    def test_tasks_run_as_nobody_with_its_ids_groups_and_environment(self):
        d = self.daemon(start=False)
        d.write_workflow("drop", """\
            run_as = "nobody"

            [[task]]
            id = "as-workflow"
            plugin = "shell"
            command = "%s"

            [[task]]
            id = "with-group"
            plugin = "shell"
            run_as = "nobody:nogroup"
            command = "%s"

            [[task]]
            id = "back-to-root"
            plugin = "shell"
            run_as = "root"
            command = "%s"
            """ % (REPORT, REPORT, REPORT))
        d.start()
        rc, run, err = d.ctl("run", "drop", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")

        nobody = report(d, run["id"], "as-workflow")
        self.assertEqual(nobody["uid"], str(NOBODY.pw_uid))
        self.assertEqual(nobody["gid"], str(NOBODY.pw_gid))
        # Only nobody's own groups: root's supplementary groups are gone.
        expected_groups = sorted({NOBODY.pw_gid} | {g.gr_gid for g in grp.getgrall() if "nobody" in g.gr_mem})
        self.assertEqual(sorted(int(g) for g in nobody["groups"].split(",")), expected_groups)
        self.assertEqual(nobody["home"], NOBODY.pw_dir)
        self.assertEqual(nobody["user"], "nobody")
        self.assertEqual(nobody["logname"], "nobody")
        self.assertEqual(nobody["shell"], NOBODY.pw_shell)
        # nobody's home (/nonexistent) does not exist: the task starts in /.
        expected_cwd = NOBODY.pw_dir if os.path.isdir(NOBODY.pw_dir) else "/"
        self.assertEqual(nobody["cwd"], expected_cwd)

        grouped = report(d, run["id"], "with-group")
        self.assertEqual(grouped["uid"], str(NOBODY.pw_uid))
        self.assertEqual(grouped["gid"], str(NOGROUP.gr_gid))

        root = report(d, run["id"], "back-to-root")
        self.assertEqual(root["uid"], "0")
        self.assertEqual(root["user"], "root")
        self.assertEqual(root["home"], pwd.getpwnam("root").pw_dir)

        # `show WORKFLOW` names each task's account.
        shown = d.ctl_ok("show", "drop")
        self.assertEqual({t["id"]: t["run_as"] for t in shown["tasks"]},
                         {"as-workflow": "nobody", "with-group": "nobody:nogroup", "back-to-root": "root"})
        rc, text, err = d.ctl("show", "drop", json=False)
        self.assertEqual(rc, 0, err)
        self.assertIn("RUN AS", text)
        self.assertIn("nobody:nogroup", text)

    def test_a_run_as_task_cannot_regain_root(self):
        d = self.daemon(start=False)
        # nobody may reach work/ but not write there, nor the root-only file in it.
        os.chmod(d.dir, 0o711)
        os.chmod(d.work, 0o755)
        secret = d.path("root-only")
        with open(secret, "w") as f:
            f.write("root's\n")
        os.chmod(secret, 0o644)
        d.write_workflow("escalate", """\
            [[task]]
            id = "try"
            plugin = "shell"
            run_as = "nobody"
            command = '''
            echo pwned >> %s && echo WROTE-SECRET
            echo planted > %s && echo WROTE-DIR
            perl -MPOSIX -e 'print(POSIX::setuid(0) ? "GOT-ROOT\\n" : "setuid(0) refused\\n")'
            perl -MPOSIX -e 'print(POSIX::setgid(0) ? "GOT-GID0\\n" : "setgid(0) refused\\n")'
            command -v sudo >/dev/null && sudo -n id
            echo uid=$(id -u) groups=$(id -G | tr ' ' ,)
            exit 0
            '''
            """ % (secret, d.path("planted")))
        d.start()
        rc, run, err = d.ctl("run", "escalate", "--wait")
        self.assertEqual(rc, 0, err)
        log = d.ctl_ok("logs", run["id"], "try", json=False)
        self.assertNotIn("WROTE", log)
        self.assertNotIn("GOT-", log)
        self.assertIn("setuid(0) refused", log)
        self.assertIn("setgid(0) refused", log)
        self.assertIn("uid=%d " % NOBODY.pw_uid, log)
        self.assertNotIn("0", log.split("groups=", 1)[1].split()[0].split(","))
        with open(secret) as f:
            self.assertEqual(f.read(), "root's\n")
        self.assertFalse(os.path.exists(d.path("planted")))

    def test_default_run_as_applies_and_a_task_can_go_back_to_root(self):
        d = self.daemon(start=False)
        with_top_level(d, 'default_run_as = "nobody"')
        d.write_workflow("defaulted", """\
            [[task]]
            id = "default"
            plugin = "shell"
            command = "%s"

            [[task]]
            id = "root"
            plugin = "shell"
            run_as = "root"
            command = "%s"

            [[task]]
            id = "nop"
            plugin = "noop"
            """ % (REPORT, REPORT))
        d.start()
        rc, run, err = d.ctl("run", "defaulted", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(report(d, run["id"], "default")["uid"], str(NOBODY.pw_uid))
        self.assertEqual(report(d, run["id"], "root")["uid"], "0")
        shown = d.ctl_ok("show", "defaulted")
        self.assertEqual({t["id"]: t["run_as"] for t in shown["tasks"]},
                         {"default": "nobody", "root": "root", "nop": ""})

        # --check says which plugins default_run_as reaches.
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn('default_run_as = "nobody" applies to the tasks of plugin(s): shell', p.stdout)
        self.assertIn("noop: plugin noop does not declare TH_CAP_RUN_AS", p.stdout)

    def test_isolated_plugin_runner_runs_as_its_user(self):
        d = self.daemon(start=False)
        with open(d.config, "a") as f:
            f.write('\n[plugins.noop]\nisolation = "process"\nuser = "nobody:nogroup"\n')
        d.write_workflow("iso", """\
            [[task]]
            id = "n"
            plugin = "noop"
            """)
        d.start()
        rc, run, err = d.ctl("run", "iso", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run["state"], "succeeded")
        runners = [p for p in _children(d.proc.pid) if b"--fd" in _cmdline(p) and b"noop" in _cmdline(p)]
        self.assertEqual(len(runners), 1, "expected one runner of noop")
        for pid in runners:
            ids = _status_ids(pid)
            self.assertEqual(ids["Uid"], [NOBODY.pw_uid] * 4, pid)
            self.assertEqual(ids["Gid"], [NOGROUP.gr_gid] * 4, pid)
            self.assertNotIn(0, ids["Groups"], pid)

        # run_as on a task of an isolated plugin is refused when the file is loaded.
        path = d.write_workflow("iso-run-as", """\
            [[task]]
            id = "n"
            plugin = "noop"
            run_as = "nobody"
            """)
        rc, out, err = validate(d, path)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:4: task 'n': 'run_as' cannot be honoured: plugin noop runs in its own taskhub-runner "
                      "process" % path, out)

    def test_check_and_validate_report_unknown_accounts_and_warn_about_writable_boxes(self):
        d = self.daemon(start=False)
        box = d.path("box")
        os.makedirs(box)
        os.chmod(box, 0o777)
        boxed = d.write_workflow("boxed", """\
            [[trigger]]
            watch = "%s"

            [[task]]
            id = "as-root"
            plugin = "shell"
            command = "wc -c < \\"$TASKHUB_PARAM_file\\""
            """ % box)
        rc, out, err = validate(d, boxed)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("%s:2: warning: watch %s: %s has mode 0777 and is world-writable, so users other than root "
                      "choose the files that task(s) as-root handle as root" % (boxed, box, box), out)
        rc, out, err = validate(d, boxed, "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)[0]["warnings"]), 1)

        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("%s:2: warning: watch %s" % (boxed, box), p.stdout)

        # The same box with the task dropped to nobody: no warning.
        d.write_workflow("boxed", """\
            run_as = "nobody"

            [[trigger]]
            watch = "%s"

            [[task]]
            id = "as-nobody"
            plugin = "shell"
            command = "wc -c < \\"$TASKHUB_PARAM_file\\""
            """ % box)
        rc, out, err = validate(d, boxed)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("warning", out)

        bad = d.write_workflow("bad", """\
            [[task]]
            id = "a"
            plugin = "shell"
            run_as = "no-such-user-th"
            command = "true"
            """)
        rc, out, err = validate(d, bad)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:4: task 'a': 'run_as': no user 'no-such-user-th' in the password database" % bad, out)
        p = subprocess.run([harness.BIN["daemon"], "--config", d.config, "--check"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("%s:4: task 'a': 'run_as': no user 'no-such-user-th'" % bad, p.stdout)


def validate(d, path, *options):
    """`taskhubctl --config D/taskhub.toml [options] validate path`: (exit code, stdout, stderr)."""
    p = subprocess.run([harness.BIN["ctl"], "--config", d.config] + list(options) + ["validate", path],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def _children(ppid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry, "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2:].split()[1]) == ppid:
                out.append(int(entry))
    return out


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _status_ids(pid):
    """Uid, Gid (real, effective, saved, fs) and Groups of a process, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = [int(v) for v in value.split()]
    return out


if __name__ == "__main__":
    harness.main()
