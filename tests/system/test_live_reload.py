"""Live reload: taskhubd watches its workflows directory. New, changed, broken, fixed and deleted
files take effect on their own; runs in flight keep the definition they started with; editors'
temporary files and partial writes are never loaded; SIGHUP and `taskhubctl reload` give the same
result as the watch; as root, a workflow file others may write is refused."""

import os
import re
import signal
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def gated(gate, description):
    """A workflow whose one task waits until the file `gate` exists (overlap = allow)."""
    return """\
        description = "%s"
        [policy]
        overlap = "allow"

        [[task]]
        id = "wait"
        plugin = "shell"
        command = "while [ ! -e %s ]; do sleep 0.05; done"
        """ % (description, gate)


NOOP = """\
    description = "%s"
    [[task]]
    id = "t"
    plugin = "noop"
    """


class LiveReloadTest(harness.DaemonTestCase):
    def drop(self, d, name, text, mode=0o644):
        """Writes name.toml next to the directory and renames it in (an atomic replace)."""
        tmp = os.path.join(d.dir, name + ".toml.new")
        with open(tmp, "w") as f:
            f.write(textwrap.dedent(text))
        os.chmod(tmp, mode)
        os.rename(tmp, os.path.join(d.workflows_dir, name + ".toml"))

    def version(self, d, name):
        rc, out, _ = d.ctl("show", name)
        return out["version"] if rc == 0 and isinstance(out, dict) and out.get("name") == name else None

    def wait_version_change(self, d, name, old):
        return harness.wait_until(lambda: (self.version(d, name) or old) != old and self.version(d, name),
                                  what="a new version of %s" % name)

    def errors(self, d):
        return d.ctl_ok("list")["errors"]

    def state(self, d):
        """What is loaded: name -> version, and every problem shown."""
        out = d.ctl_ok("list")
        return ({w["name"]: w["version"] for w in out["workflows"]},
                sorted(e["message"] for e in out["errors"]))

    def test_add_change_break_fix(self):
        d = self.daemon()
        gate = d.path("gate")
        d.write_workflow("a", gated(gate, "first"))
        d.start()
        v1 = self.version(d, "a")
        self.assertTrue(v1)

        # add
        self.drop(d, "b", NOOP % "new")
        harness.wait_until(lambda: self.version(d, "b"), what="b to be loaded")
        self.assertRegex(d.log(), r"CONFIG_WORKFLOW_ADDED \S+/b\.toml: workflow b version [0-9a-f]{16}")

        # change: the run in flight keeps v1, a new run gets v2
        r1 = d.ctl_ok("run", "a")["id"]
        d.wait_run_state(r1, "running")
        self.drop(d, "a", gated(gate, "second"))
        v2 = self.wait_version_change(d, "a", v1)
        self.assertIn("CONFIG_WORKFLOW_CHANGED %s/a.toml: workflow a version %s replaces %s"
                      % (d.workflows_dir, v2, v1), d.log())
        r2 = d.ctl_ok("run", "a")["id"]
        open(gate, "w").close()
        self.assertEqual(d.wait_run_state(r1, "succeeded")["version"], v1)
        self.assertEqual(d.wait_run_state(r2, "succeeded")["version"], v2)

        # break: the last good version keeps running; the error names file:line everywhere
        path = os.path.join(d.workflows_dir, "a.toml")
        with open(path, "w") as f:
            f.write('description = "broken"\n[[task]]\nid = "t"\nplugin = "noop"\nbad = \n')
        want = "%s:5: " % path
        errors = harness.wait_until(lambda: [e for e in self.errors(d) if e["message"].startswith(want)],
                                    what="the error of a.toml in `list`")
        self.assertEqual(errors[0]["file"], path)
        self.assertEqual(d.ctl_ok("status")["workflow_errors"], 1)
        self.assertEqual(self.version(d, "a"), v2)
        self.assertIn("CONFIG_WORKFLOW_INVALID " + want, d.log())
        self.assertIn("CONFIG_KEEPING_LAST_GOOD %s: keeping the last good version %s of workflow a" % (path, v2),
                      d.log())
        r3 = d.ctl_ok("run", "a", "--wait")
        self.assertEqual((r3["state"], r3["version"]), ("succeeded", v2))

        # fix
        self.drop(d, "a", NOOP % "third")
        v3 = self.wait_version_change(d, "a", v2)
        self.assertEqual(self.errors(d), [])
        self.assertEqual(d.ctl_ok("status")["workflow_errors"], 0)
        self.assertEqual(d.ctl_ok("run", "a", "--wait")["version"], v3)

    def test_deleted_file_retires_the_workflow_and_its_run_finishes(self):
        d = self.daemon()
        gate = d.path("gate")
        d.write_workflow("tick", gated(gate, "ticks") + '[[trigger]]\nevery = "1s"\n')
        d.start()
        first = harness.wait_until(lambda: d.ctl_ok("runs", "tick"), what="a scheduled run of tick")
        rid = first[-1]["id"]
        d.wait_run_state(rid, "running")
        os.unlink(os.path.join(d.workflows_dir, "tick.toml"))
        harness.wait_until(lambda: "CONFIG_WORKFLOW_RETIRED" in d.log(), what="tick to be retired")
        self.assertIsNone(self.version(d, "tick"))
        rc, _, err = d.ctl("run", "tick", json=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("no workflow named 'tick' (it was retired: its file %s/tick.toml was removed at"
                      % d.workflows_dir, err)
        # No new firings: the count stays put across several would-be firings.
        count = len(d.ctl_ok("runs", "tick", "--limit", "1000"))
        time.sleep(2.5)
        self.assertEqual(len(d.ctl_ok("runs", "tick", "--limit", "1000")), count)
        # The runs in flight finish with the definition they started with.
        open(gate, "w").close()
        self.assertEqual(d.wait_run_state(rid, "succeeded")["workflow"], "tick")

    def test_temporary_files_and_partial_writes_are_never_loaded(self):
        d = self.daemon()
        d.start()
        for name in (".w.toml.swp", "w.toml~", "4913", "#w.toml#", "w.toml.tmp", "w.toml.part", ".w.toml"):
            with open(os.path.join(d.workflows_dir, name), "w") as f:
                f.write("this = is not [ TOML\n")
        # A slow writer: the file is syntactically broken until the last write, then closed.
        text = textwrap.dedent(NOOP % "slow") + '[[task]]\nid = "u"\nplugin = "noop"\ndepends_on = ["t"]\n'
        path = os.path.join(d.workflows_dir, "w.toml")
        with open(path, "w") as f:
            for i in range(0, len(text), 7):
                f.write(text[i:i + 7])
                f.flush()
                time.sleep(0.02)
            self.assertEqual(self.errors(d), [])
            self.assertIsNone(self.version(d, "w"))
        harness.wait_until(lambda: self.version(d, "w"), what="w to be loaded after close")
        self.assertEqual([t["id"] for t in d.ctl_ok("show", "w")["tasks"]], ["t", "u"])
        self.assertEqual(self.errors(d), [])
        self.assertNotIn("CONFIG_WORKFLOW_INVALID", d.log())
        self.assertEqual(len(re.findall(r"CONFIG_WORKFLOW_ADDED \S+/w\.toml", d.log())), 1)

    def test_sighup_and_reload_give_what_the_watch_gave(self):
        d = self.daemon()
        d.write_workflow("child", NOOP % "child")
        d.write_workflow("parent", '[[task]]\nid = "sub"\nworkflow = "child"\n')
        d.write_workflow("gone", NOOP % "gone")
        d.start()
        self.drop(d, "fresh", NOOP % "fresh")
        self.drop(d, "child", "[params]\nmode = 'x'\n" + textwrap.dedent(NOOP % "child 2"))
        self.drop(d, "parent", '[[task]]\nid = "sub"\nworkflow = "child"\nparams = { nope = "1" }\n')
        self.drop(d, "broken", "[[task]]\nid = \n")
        os.unlink(os.path.join(d.workflows_dir, "gone.toml"))

        def settled():
            loaded, errors = self.state(d)
            return (loaded, errors) if ("fresh" in loaded and "gone" not in loaded and len(errors) == 2) else None
        watched = harness.wait_until(settled, what="the watch to apply every change")
        self.assertIn("parent", watched[0])  # its last good version keeps running
        self.assertTrue(any("'params.nope'" in e for e in watched[1]), watched[1])

        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "APP_RELOAD SIGHUP" in d.log(), what="the SIGHUP reload")
        self.assertEqual(self.state(d), watched)
        out = d.ctl_ok("reload")
        self.assertEqual((out["loaded"], out["failed"]), (2, 2))
        self.assertEqual(self.state(d), watched)

    def test_directory_moved_away_and_back(self):
        d = self.daemon()
        d.write_workflow("a", NOOP % "a")
        d.start()
        v = self.version(d, "a")
        away = os.path.join(d.dir, "away")
        os.rename(d.workflows_dir, away)
        harness.wait_until(lambda: any("cannot read workflows directory" in e["message"] for e in self.errors(d)),
                           what="the missing directory to be reported")
        self.assertEqual(self.version(d, "a"), v)  # still running
        with open(os.path.join(away, "b.toml"), "w") as f:
            f.write(textwrap.dedent(NOOP % "b"))
        os.rename(away, d.workflows_dir)
        harness.wait_until(lambda: self.version(d, "b"), what="b once the directory is back")
        self.assertEqual(self.errors(d), [])
        self.assertIn("CONFIG_WATCH_DIR_BACK", d.log())

    @unittest.skipUnless(os.geteuid() == 0, "the ownership rule applies when taskhubd runs as root")
    def test_as_root_a_group_writable_file_is_refused(self):
        d = self.daemon()
        d.start()
        self.drop(d, "g", NOOP % "g", mode=0o664)
        path = os.path.join(d.workflows_dir, "g.toml")
        errors = harness.wait_until(lambda: self.errors(d), what="g.toml to be refused")
        self.assertEqual(errors[0]["message"],
                         "%s: file refused: %s is writable by group (mode 0664): make it 0644 (chmod go-w %s); "
                         "what taskhubd trusts may be written only by its owner" % (path, path, path))
        self.assertIsNone(self.version(d, "g"))
        os.chmod(path, 0o644)  # IN_ATTRIB: loaded without being written again
        harness.wait_until(lambda: self.version(d, "g"), what="g to load after chmod")
        self.assertEqual(self.errors(d), [])


if __name__ == "__main__":
    harness.main()
