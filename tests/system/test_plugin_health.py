"""Plugins in a real daemon. Refused plugin files are listed with precise reasons and stop nothing.
Health checks gate dispatch: an unhealthy plugin's ready tasks wait (on_unhealthy =
hold, their timeouts running) or fail at once (fail); they start when it recovers, none lost.
`taskhubctl plugins` and `plugin show` report states, messages and transitions; a check that
hangs blocks nothing; as root, plugin files that anyone but root may write are refused."""

import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

def unittest_skip_unless_root():
    return unittest.skipUnless(os.geteuid() == 0, "the ownership rule applies only when taskhubd runs as root")


FIXTURES = ("fx_health_switch", "fx_health_fails", "fx_health_hangs", "fx_health_flaps")


def plugin_row(listing, name):
    for p in listing["plugins"]:
        if p["name"] == name:
            return p
    raise AssertionError("no plugin %s in %r" % (name, [p["name"] for p in listing["plugins"]]))


class PluginHealthTest(harness.DaemonTestCase):
    def make_daemon(self, extra=""):
        # A private plugin directory (0755, owned by whoever runs the test) with the fixtures.
        d = self.daemon(start=False)
        plugins = os.path.join(d.dir, "plugins")
        os.makedirs(plugins)
        for name in FIXTURES:
            shutil.copy(os.path.join(harness.BIN["fixture_dir"], name + ".so"), plugins)
        self.health_file = os.path.join(d.dir, "health")
        with open(d.config) as f:
            text = f.read()
        text = text.replace('plugin_dirs = [', 'plugin_dirs = [%s, ' % harness._json.dumps(plugins), 1)
        text += """
[plugins.fx_health_switch]
health_interval = "100ms"
health_timeout = "1s"
unhealthy_after = 2
healthy_after = 2
health_file = "%s"

[plugins.fx_health_fails]
health_interval = "100ms"
unhealthy_after = 2
on_unhealthy = "fail"

[plugins.fx_health_hangs]
health_interval = "100ms"
health_timeout = "200ms"
unhealthy_after = 2

[plugins.fx_health_flaps]
health_interval = "100ms"
unhealthy_after = 2
""" % self.health_file + extra
        with open(d.config, "w") as f:
            f.write(text)
        return d

    def set_health(self, text):
        tmp = self.health_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.health_file)

    def wait_state(self, d, name, state):
        def check():
            row = plugin_row(d.ctl_ok("plugins"), name)
            return row if row["state"] == state else None
        return harness.wait_until(check, what="plugin %s to become %s" % (name, state))

    def test_states_messages_and_listing(self):
        d = self.make_daemon()
        d.start()
        fails = self.wait_state(d, "fx_health_fails", "unhealthy")
        self.assertEqual(fails["message"], "fixture: disk /data is full")
        self.assertEqual(fails["isolation"], "in_process")
        self.assertEqual(fails["abi"], "%d.%d" % (1, 7))
        self.assertIn("health_check", fails["capabilities"])
        self.assertEqual(fails["health"]["on_unhealthy"], "fail")
        self.assertGreaterEqual(fails["failures"], 2)

        # A check that never returns: timed out, then reported as still running; nothing else
        # waits for it.
        hangs = self.wait_state(d, "fx_health_hangs", "unhealthy")
        self.assertTrue("timed out after 200ms" in hangs["message"] or "has not returned" in hangs["message"],
                        hangs["message"])
        t0 = time.monotonic()
        d.ctl_ok("status")
        self.assertLess(time.monotonic() - t0, 2.0)

        # Flapping never reaches unhealthy_after = 2 failures in a row.
        def flapped():
            row = plugin_row(d.ctl_ok("plugins"), "fx_health_flaps")
            return row if row["checks"] >= 8 else None
        flaps = harness.wait_until(flapped, what="fx_health_flaps to be checked 8 times")
        self.assertEqual(flaps["state"], "healthy", flaps)
        history = d.ctl_ok("plugin", "show", "fx_health_flaps")["history"]
        self.assertEqual(history, [], history)

        # Plugins without TH_CAP_HEALTH_CHECK are healthy and say why.
        shell = plugin_row(d.ctl_ok("plugins"), "shell")
        self.assertEqual(shell["state"], "healthy")

        # The text forms.
        rc, text, err = d.ctl("plugins", json=False)
        self.assertEqual(rc, 0, err)
        header = text.splitlines()[0].split()
        self.assertEqual(header, ["PLUGIN", "VERSION", "ABI", "ISOLATION", "STATE", "RUNNING", "SINCE", "MESSAGE"])
        line = [l for l in text.splitlines() if l.startswith("fx_health_fails ")][0]
        self.assertIn("unhealthy", line)
        self.assertIn("fixture: disk /data is full", line)
        rc, text, err = d.ctl("plugin", "show", "fx_health_fails", json=False)
        self.assertEqual(rc, 0, err)
        self.assertIn("healthy -> unhealthy", text)
        self.assertIn("2 failed health check(s) in a row: fixture: disk /data is full", text)
        status = d.ctl_ok("status")
        self.assertGreaterEqual(status["plugins_unhealthy"], 2)

        rc, _, err = d.ctl("plugin", "show", "fx_health_fail")
        self.assertEqual(rc, 1)
        self.assertIn("no plugin named 'fx_health_fail' is loaded (did you mean 'fx_health_fails'?)", err)

        # Every transition is in the log.
        self.assertIn("PLUGIN_HEALTH plugin fx_health_fails: healthy -> unhealthy", d.log())
        # A daemon whose plugin's check hangs still stops cleanly.
        d.stop()
        self.assertIn("APP_STOPPED", d.log())

    def test_hold_until_recovery_with_no_task_lost(self):
        d = self.make_daemon()
        d.write_workflow("held", """\
            [[task]]
            id = "other"
            plugin = "shell"
            command = "true"
            %s
            """ % "\n".join("""
            [[task]]
            id = "t%d"
            plugin = "fx_health_switch"
            """ % i for i in range(20)))
        self.set_health("unhealthy maintenance window\n")
        d.start()
        self.wait_state(d, "fx_health_switch", "unhealthy")
        rid = d.ctl_ok("run", "held")["id"]
        # Tasks of other plugins go on; those of the unhealthy plugin wait and say why.
        run = d.wait_task_state(rid, "other", "succeeded")
        t0 = harness.task(run, "t0")
        self.assertEqual(t0["state"], "ready", t0)
        self.assertIn("waiting for plugin: plugin 'fx_health_switch' is unhealthy since", t0["waiting"])
        self.assertIn("maintenance window", t0["waiting"])
        rc, text, err = d.ctl("show", rid, json=False)
        self.assertEqual(rc, 0, err)
        self.assertIn("waiting for plugin", text)
        time.sleep(0.5)
        self.assertEqual(d.ctl_ok("show", rid)["state"], "running")

        # Degraded does not count as recovered until healthy_after passes; then all 20 run once.
        os.unlink(self.health_file)
        final = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertEqual(final["state"], "succeeded", final)
        for i in range(20):
            t = harness.task(final, "t%d" % i)
            self.assertEqual((t["state"], t["attempt"]), ("succeeded", 1), t)

        history = d.ctl_ok("plugin", "show", "fx_health_switch")["history"]
        self.assertEqual([(h["from"], h["to"]) for h in history],
                         [("healthy", "unhealthy"), ("unhealthy", "healthy")], history)
        self.assertIn("maintenance window", history[0]["message"])
        self.assertIn("2 passed health check(s) in a row", history[1]["message"])
        events = [e for e in d.ctl_ok("show", rid)["events"] if e.get("task") == "t0"]
        self.assertIn("waiting", [e["kind"] for e in events], events)

        # Transitions outlive a restart.
        d.stop()
        d.start()
        again = d.ctl_ok("plugin", "show", "fx_health_switch")["history"]
        self.assertEqual(again[:2], history)

    def test_degraded_still_dispatches(self):
        d = self.make_daemon()
        d.write_workflow("one", """\
            [[task]]
            id = "t"
            plugin = "fx_health_switch"
            """)
        d.start()
        self.set_health("degraded slow disk\n")
        row = self.wait_state(d, "fx_health_switch", "degraded")
        self.assertEqual(row["message"], "slow disk")
        rid = d.ctl_ok("run", "one")["id"]
        self.assertEqual(d.wait_run_state(rid, ("succeeded", "failed"))["state"], "succeeded")

    def test_hold_timeout_and_fail_policy(self):
        d = self.make_daemon()
        d.write_workflow("slow", """\
            [[task]]
            id = "t"
            plugin = "fx_health_switch"
            timeout = "1s"
            """)
        d.write_workflow("broken", """\
            [[task]]
            id = "t"
            plugin = "fx_health_fails"

            [[task]]
            id = "after"
            plugin = "shell"
            command = "true"
            depends_on = ["t"]
            """)
        self.set_health("unhealthy database unreachable\n")
        d.start()
        self.wait_state(d, "fx_health_switch", "unhealthy")
        self.wait_state(d, "fx_health_fails", "unhealthy")

        # hold: the task's timeout runs while it waits.
        t0 = time.monotonic()
        rid = d.ctl_ok("run", "slow")["id"]
        final = d.wait_run_state(rid, ("succeeded", "failed"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        t = harness.task(final, "t")
        self.assertEqual(t["state"], "failed", t)
        self.assertIn("timed out after 1s waiting for plugin 'fx_health_switch' is unhealthy since", t["message"])
        self.assertIn("database unreachable", t["message"])

        # fail: at once, with the plugin's message; downstream follows the trigger rules.
        rid = d.ctl_ok("run", "broken")["id"]
        final = d.wait_run_state(rid, ("succeeded", "failed"), timeout=5)
        t = harness.task(final, "t")
        self.assertEqual(t["state"], "failed", t)
        self.assertIn("plugin 'fx_health_fails' is unhealthy since", t["message"])
        self.assertIn("fixture: disk /data is full (on_unhealthy = fail)", t["message"])
        self.assertEqual(harness.task(final, "after")["state"], "skipped")

    def test_bad_health_settings_are_refused_with_the_key(self):
        d = self.make_daemon(extra='\n[plugins.noop]\non_unhealthy = "wait"\nhealth_interval = "soon"\n')
        proc = d.start(wait=False)
        proc.wait(timeout=harness.TIMEOUT)
        self.assertNotEqual(proc.returncode, 0)
        log = d.log()
        self.assertIn("'plugins.noop.on_unhealthy' must be \"hold\" or \"fail\", found \"wait\"", log)
        self.assertIn("plugins.noop.health_interval", log)

    def test_every_refused_fixture_is_listed_with_its_reason(self):
        d = self.make_daemon()
        refused = {
            "fx_no_entry": "no entry symbol 'th_plugin_entry' (not a TaskHub plugin, or the symbol is not exported)",
            "fx_bad_magic": "expected 0x54484231 (TH_ABI_MAGIC)",
            "fx_abi_major2": "ABI major version 2, this taskhubd supports 1; rebuild the plugin against the "
                             "TaskHub 1.x SDK",
            "fx_needs_newer_host": "requires host ABI 1.99 or newer, this taskhubd provides 1.7; upgrade taskhubd",
            "fx_create_fails": "create() failed: fixture: create always fails",
        }
        plugins_dir = os.path.join(d.dir, "plugins")
        for name in list(refused) + ["fx_newer_minor"]:
            shutil.copy(os.path.join(harness.BIN["fixture_dir"], name + ".so"), plugins_dir)
        # A second file declaring a name already loaded.
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], "fx_health_flaps.so"),
                    os.path.join(plugins_dir, "zz_flaps_again.so"))
        refused["zz_flaps_again"] = "duplicate plugin name 'fx_health_flaps', already loaded from " + \
            os.path.join(plugins_dir, "fx_health_flaps.so")
        d.start()
        listing = d.ctl_ok("plugins")
        got = {os.path.basename(r["file"])[:-3]: r["reason"] for r in listing["refused"]}
        self.assertEqual(sorted(got), sorted(refused))
        for name, reason in refused.items():
            self.assertIn(reason, got[name])
            self.assertIn("PLUGIN_REFUSED %s: " % os.path.join(plugins_dir, name + ".so"), d.log())
        # A plugin built for a newer minor version is accepted; the others all load and run.
        names = [p["name"] for p in listing["plugins"]]
        for name in ("fx_newer_minor", "fx_health_switch", "fx_health_flaps", "noop", "shell"):
            self.assertIn(name, names)
        self.assertEqual(d.ctl_ok("status")["plugins_refused"], len(refused))

    def test_workflow_of_a_refused_plugin_is_not_runnable_and_says_why(self):
        d = self.make_daemon()
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], "fx_create_fails.so"), os.path.join(d.dir, "plugins"))
        d.write_workflow("uses", """\
            [[task]]
            id = "t"
            plugin = "fx_create_fails"
            """)
        d.start()
        why = "create() failed: fixture: create always fails"
        refused = d.ctl_ok("plugins")["refused"]
        self.assertEqual([r["reason"] for r in refused], [why], refused)
        errors = d.ctl_ok("list")["errors"]
        self.assertTrue(any("plugin 'fx_create_fails' is not available" in e["message"] and why in e["message"]
                            for e in errors), errors)
        for args in (("show", "uses"), ("run", "uses")):
            rc, _, err = d.ctl(*args)
            self.assertNotEqual(rc, 0)
            self.assertIn("its file failed to load", err)
            self.assertIn(why, err)
        rc, out, _ = d.ctl("status")
        self.assertEqual(out["plugins_refused"], 1)

    @unittest_skip_unless_root()
    def test_root_refuses_plugins_others_may_write(self):
        d = self.make_daemon()
        writable = os.path.join(d.dir, "plugins", "fx_health_flaps.so")
        os.chmod(writable, 0o775)
        d.write_workflow("uses", """\
            [[task]]
            id = "t"
            plugin = "fx_health_flaps"
            """)
        d.start()
        listing = d.ctl_ok("plugins")
        self.assertNotIn("fx_health_flaps", [p["name"] for p in listing["plugins"]])
        reasons = [r["reason"] for r in listing["refused"] if r["file"] == writable]
        self.assertEqual(len(reasons), 1, listing["refused"])
        self.assertIn("is writable by group (mode 0775)", reasons[0])
        self.assertIn("chmod go-w", reasons[0])
        # The workflow that uses it is reported as not runnable, with the reason.
        errors = d.ctl_ok("list")["errors"]
        self.assertTrue(any("fx_health_flaps" in e["message"] for e in errors), errors)
        # Everything else keeps working.
        self.assertEqual(plugin_row(listing, "fx_health_switch")["state"], "healthy")


if __name__ == "__main__":
    harness.main()
