"""`taskhubctl plugin check PATH.so`: the offline harness reports every step of loading and running
a plugin, with taskhubd's own refusal reasons, and exits 0 only when every step passed (1 when one
failed, 2 on a usage error). Driven against the fixture plugins of tests/fixtures."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STEPS = ["negotiation", "create", "validate", "execute", "health"]


def fixture(name):
    path = os.path.join(harness.BIN["fixture_dir"], name + ".so")
    if not os.path.exists(path):
        raise RuntimeError("fixture %s not found (set TASKHUB_FIXTURE_DIR)" % path)
    return path


def check(*args, json_output=False, env=None):
    """Runs taskhubctl [--json] plugin check ARGS; returns (exit status, stdout, stderr), stdout parsed
    when json_output."""
    argv = [harness.BIN["ctl"]] + (["--json"] if json_output else []) + ["plugin", "check"] + list(args)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=harness.TIMEOUT,
                       env=env)
    out = p.stdout
    if json_output and p.returncode in (0, 1):
        out = json.loads(out)
    return p.returncode, out, p.stderr


def statuses(report):
    return {s["step"]: s["status"] for s in report["steps"]}


def detail(report, step):
    return next(s["detail"] for s in report["steps"] if s["step"] == step)


class PluginCheckTest(unittest.TestCase):
    def test_good_plugin_passes_every_step(self):
        rc, text, err = check(fixture("fx_good"))
        self.assertEqual(rc, 0, text + err)
        self.assertIn("every step passed", text)
        for step in STEPS:
            self.assertRegex(text, r"(?m)^  %s +ok +" % step)

        rc, report, err = check(fixture("fx_good"), "--params", '{"any": 1}', json_output=True)
        self.assertEqual(rc, 0, err)
        self.assertTrue(report["passed"])
        self.assertEqual(statuses(report), dict.fromkeys(STEPS, "passed"))
        self.assertEqual(report["plugin"]["name"], "fx_good")
        self.assertEqual((report["plugin"]["abi_major"], report["plugin"]["abi_minor"]), (1, 7))
        self.assertEqual(report["plugin"]["capabilities"], [])
        self.assertEqual(report["plugin"]["thread_safety"], "safe")
        self.assertEqual(detail(report, "validate"), 'accepts {"any":1}')
        x = report["execute"]
        self.assertEqual((x["outcome"], x["exit_code"], x["message"]), ("succeeded", 0, "fixture: done"))
        self.assertFalse(x["timed_out"])
        self.assertIn("TH_CAP_HEALTH_CHECK not declared", detail(report, "health"))

    def test_refused_plugin_prints_the_daemons_reason(self):
        rc, text, err = check(fixture("fx_bad_magic"))
        self.assertEqual(rc, 1, text + err)
        self.assertIn("negotiation  FAILED   refused: wrong magic 0x54484230, expected 0x54484231 (TH_ABI_MAGIC)",
                      text)
        self.assertIn("1 step(s) failed: negotiation", text)

        rc, report, _ = check(fixture("fx_bad_magic"), json_output=True)
        self.assertEqual(rc, 1)
        self.assertFalse(report["passed"])
        self.assertEqual(statuses(report), {"negotiation": "failed", "create": "skipped", "validate": "skipped",
                                            "execute": "skipped", "health": "skipped"})
        # The five fields every ABI version keeps are still shown; nothing else of the table is.
        self.assertEqual(report["plugin"]["magic"], 0x54484230)
        self.assertNotIn("name", report["plugin"])
        self.assertIsNone(report["execute"])

        rc, report, _ = check(fixture("fx_no_entry"), json_output=True)
        self.assertEqual(rc, 1)
        self.assertEqual(detail(report, "negotiation"),
                         "refused: no entry symbol 'th_plugin_entry' (not a TaskHub plugin, or the symbol is "
                         "not exported)")
        self.assertIsNone(report["plugin"])

        rc, report, _ = check(fixture("fx_needs_newer_host"), json_output=True)
        self.assertEqual(rc, 1)
        self.assertEqual(detail(report, "negotiation"),
                         "refused: requires host ABI 1.99 or newer, this taskhubd provides 1.7; upgrade taskhubd")

        # In a private directory: as root, a file directly in /tmp is refused before it is loaded.
        with tempfile.TemporaryDirectory() as tmp, \
                tempfile.NamedTemporaryFile(suffix=".so", dir=tmp) as junk:
            junk.write(b"not an ELF file")
            junk.flush()
            rc, report, _ = check(junk.name, json_output=True)
        self.assertEqual(rc, 1)
        self.assertTrue(detail(report, "negotiation").startswith("refused: cannot load shared library: "),
                        report)

    @unittest.skipUnless(os.geteuid() == 0, "taskhubd applies the ownership rule only when it runs as root")
    def test_as_root_the_ownership_rule_applies(self):
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "fx_good.so")
            shutil.copy(fixture("fx_good"), copy)
            os.chmod(copy, 0o666)
            rc, report, _ = check(copy, json_output=True)
            self.assertEqual(rc, 1)
            self.assertEqual(detail(report, "negotiation"),
                             "refused: %s is writable by group and others (mode 0666): make it 0644 (chmod go-w %s); "
                             "what taskhubd trusts may be written only by its owner" % (copy, copy))
            # No code of the refused file ran: its table was not even read.
            self.assertIsNone(report["plugin"])
            os.chmod(copy, 0o755)
            rc, report, _ = check(copy, json_output=True)
            self.assertEqual(rc, 0, report)

    def test_failing_create_is_reported_after_a_passed_negotiation(self):
        rc, text, err = check(fixture("fx_create_fails"))
        self.assertEqual(rc, 1, text + err)
        self.assertIn("create       FAILED   create() failed: fixture: create always fails", text)
        rc, report, _ = check(fixture("fx_create_fails"), json_output=True)
        self.assertEqual(statuses(report), {"negotiation": "passed", "create": "failed", "validate": "skipped",
                                            "execute": "skipped", "health": "skipped"})
        self.assertEqual(report["plugin"]["name"], "fx_create_fails")

    def test_outputs_and_the_daemons_log_are_reported(self):
        rc, report, err = check(fixture("fx_outputs"), json_output=True)
        self.assertEqual(rc, 0, err)
        x = report["execute"]
        self.assertEqual(x["message"], "statuses 0 0 0 1 1")
        self.assertEqual(x["outputs"], {"greeting": "hi", "count": "1"})
        self.assertEqual(report["plugin"]["capabilities"], ["cancel", "suspend"])
        self.assertEqual(report["plugin"]["thread_safety"], "serial")
        rejected = [line for line in report["daemon_log"] if "PLUGIN_OUTPUT_REJECTED" in line]
        self.assertEqual(len(rejected), 2, report["daemon_log"])

    def test_an_attempt_over_the_timeout_is_cancelled(self):
        # fx_outputs with {"wait": true} runs until cancel(), which completes it as cancelled.
        rc, report, err = check(fixture("fx_outputs"), "--params", '{"wait": true}', "--timeout", "300ms",
                                json_output=True)
        self.assertEqual(rc, 1, err)
        x = report["execute"]
        self.assertTrue(x["timed_out"])
        self.assertEqual(x["outcome"], "cancelled")
        self.assertEqual(x["message"], "calls: ")
        self.assertGreaterEqual(x["duration_ms"], 300)
        self.assertLess(x["duration_ms"], 5000)
        self.assertFalse(report["abandoned"])
        self.assertEqual(statuses(report)["execute"], "failed")
        self.assertEqual(statuses(report)["health"], "passed")
        self.assertTrue(detail(report, "execute").startswith("did not complete within 300ms: cancelled"),
                        detail(report, "execute"))

    def test_an_attempt_that_never_ends_is_abandoned(self):
        # No TH_CAP_CANCEL, no completion: the check gives up after the timeout twice over and exits
        # without destroying the instance under the running attempt.
        t0 = time.monotonic()
        rc, report, err = check(fixture("fx_no_cancel"), "--timeout", "200ms", json_output=True)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(rc, 1, err)
        self.assertTrue(report["abandoned"])
        self.assertEqual(detail(report, "execute"),
                         "did not complete within 200ms, and not within 200ms of cancel() either (the plugin "
                         "does not declare TH_CAP_CANCEL, so it was not asked to stop)")
        self.assertIsNone(report["execute"]["outcome"])
        self.assertTrue(report["execute"]["timed_out"])
        self.assertTrue(any("PLUGIN_CANNOT_CANCEL" in line for line in report["daemon_log"]), report["daemon_log"])
        self.assertEqual(statuses(report)["health"], "passed")

        rc, text, err = check(fixture("fx_no_cancel"), "--timeout", "100ms")
        self.assertEqual(rc, 1, err)
        self.assertTrue(text.endswith("1 step(s) failed: execute\n"
                                      "the attempt is still running: the plugin instance was not destroyed\n"), text)

    def test_a_crash_names_the_step(self):
        # The plugin runs inside taskhubctl: a crash ends it, after a line saying where. The attempt's
        # temporary log file is not left behind.
        with tempfile.TemporaryDirectory() as tmp:
            for name, sig, what in (("fx_segv", signal.SIGSEGV, "SIGSEGV"), ("fx_abort", signal.SIGABRT, "SIGABRT")):
                rc, out, err = check(fixture(name), env=dict(os.environ, TMPDIR=tmp))
                self.assertEqual(rc, -sig, err)
                self.assertEqual(out, "")
                self.assertIn("taskhubctl: plugin check: the plugin crashed with %s during execute() or a callback "
                              "of its attempt" % what, err)
            self.assertEqual(os.listdir(tmp), [])

    def test_usage_errors_exit_2(self):
        good = fixture("fx_good")
        for args, message in [
            ((), "plugin check takes one argument: PATH.so"),
            ((good, good), "plugin check takes one argument: PATH.so"),
            ((good, "--params", "[1]"), "--params needs a JSON object"),
            ((good, "--params", "{bad"), "--params needs a JSON object"),
            ((good, "--config-json", "3"), "--config-json needs a JSON object"),
            ((good, "--timeout", "soon"), "--timeout needs a duration"),
            ((good, "--timeout", "0s"), "--timeout needs a duration of at least 1ms"),
            ((good, "--tz", "UTC"), "plugin check does not take --tz"),
            ((good, "--limit", "3"), "plugin check does not take --limit (its options: --params, --config-json, "
                                     "--timeout)"),
        ]:
            rc, out, err = check(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn(message, err, args)
            self.assertEqual(out, "", args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
