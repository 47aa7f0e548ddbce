"""`taskhubctl metrics` in a real daemon, parsed with python3-prometheus-client's OpenMetrics
parser (a real parser: it refuses bad escaping, bucket order, +Inf != count, units that do not
match names) and checked against the runs the test makes: counts per final state, last success
and failure times equal to the runs' end, run and attempt duration histograms, retries, the
running/waiting gauges during a run, plugin health per plugin, trigger lateness, the series of a
removed workflow dropped on reload, and last success/failure seeded from history after a restart.

Workflow names allow only letters, digits, '_', '-' and '.' (config/workflow.cc), so no
workflow can put a quote, backslash or newline into a label value; a name with '.' and '-' is
used here, and the escaping of hostile values is tested in tests/unit/metrics."""

import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client lives in the system interpreter's dist-packages; an
    # interpreter of its own (pyenv, a venv) that CMake found first does not see it.
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

HOSTILE_BUT_LEGAL = "ok.daily-1"


class Scrape:
    """One parsed exposition: sample values by name and labels."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def get(self, name, **labels):
        """The value of the one sample with this name and exactly these labels, or None."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def value(self, name, **labels):
        v = self.get(name, **labels)
        if v is None:
            raise AssertionError("no sample %s%r in:\n%s" % (name, labels, self.text))
        return v

    def with_label(self, key, value):
        return [s for s in self.samples if s.labels.get(key) == value]


def scrape(d):
    text = d.ctl_ok("metrics", json=False)
    assert text.endswith("# EOF\n"), text[-200:]
    return Scrape(text)


def executable_by_others(path):
    """True when user nobody can run the file: it and every directory above it are o+x."""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def ended_s(run):
    return harness.parse_iso(run["ended"]).timestamp()


class MetricsTest(harness.DaemonTestCase):
    def make_daemon(self):
        d = self.daemon(start=False)
        # A plugin that is always unhealthy, beside shell (healthy).
        plugins = os.path.join(d.dir, "plugins")
        os.makedirs(plugins)
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], "fx_health_fails.so"), plugins)
        with open(d.config) as f:
            text = f.read()
        text = text.replace("plugin_dirs = [", "plugin_dirs = [%s, " % harness._json.dumps(plugins), 1)
        text += '\n[plugins.fx_health_fails]\nhealth_interval = "100ms"\nunhealthy_after = 2\n'
        with open(d.config, "w") as f:
            f.write(text)
        d.write_workflow(HOSTILE_BUT_LEGAL, """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """)
        d.write_workflow("broken", """\
            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 3"
            """)
        d.write_workflow("flaky", """\
            [[task]]
            id = "once"
            plugin = "shell"
            retries = 2
            retry_delay = "100ms"
            command = "if [ -e %s ]; then exit 0; fi; touch %s; exit 1"
            """ % (d.path("flaky-ran"), d.path("flaky-ran")))
        # Two independent tasks, one at a time: while `a` runs, `b` is ready and waits.
        d.write_workflow("slow", """\
            max_parallel_tasks = 1

            [[task]]
            id = "a"
            plugin = "shell"
            command = "while [ ! -e %s ]; do sleep 0.05; done"

            [[task]]
            id = "b"
            plugin = "shell"
            command = "while [ ! -e %s ]; do sleep 0.05; done"
            """ % (d.path("release"), d.path("release")))
        return d

    def test_values_follow_the_runs_made(self):
        d = self.make_daemon()
        d.start()
        status = d.ctl_ok("status")

        first = scrape(d)
        self.assertEqual(first.families["taskhub_runs_started"].type, "counter")
        self.assertEqual(first.families["taskhub_run_duration_seconds"].type, "histogram")
        self.assertEqual(first.families["taskhub_run_duration_seconds"].unit, "seconds")
        self.assertEqual(first.value("taskhub_runs_started_total", workflow=HOSTILE_BUT_LEGAL), 0,
                         "loaded workflows have their counters from the start")
        self.assertEqual(first.value("taskhub_build_info", version=status["version"], abi="1.7"), 1)
        self.assertEqual(first.value("taskhub_workflows_loaded"), 4)
        self.assertEqual(first.value("taskhub_store_write_problem"), 0)
        started = first.value("taskhub_start_time_seconds")
        self.assertLessEqual(abs(started - harness.parse_iso(status["started"]).timestamp()), 5)
        self.assertIsNone(first.get("taskhub_last_success_timestamp_seconds", workflow=HOSTILE_BUT_LEGAL),
                          "no success yet: no series")

        ok_runs = []
        for _ in range(2):
            rc, run, err = d.ctl("run", HOSTILE_BUT_LEGAL, "--wait")
            self.assertEqual(rc, 0, err)
            ok_runs.append(run)
        rc, failed, err = d.ctl("run", "broken", "--wait")
        self.assertEqual(rc, 1, err)
        rc, flaky, err = d.ctl("run", "flaky", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(harness.task(flaky, "once")["attempt"], 2)

        # While `slow` runs: one task running, one waiting for max_parallel_tasks, one run active.
        slow = d.ctl_ok("run", "slow")
        d.wait_task_state(slow["id"], "a", "running")

        def gauges_during_run():
            s = scrape(d)
            got = (s.value("taskhub_tasks_running"), s.value("taskhub_tasks_waiting"), s.value("taskhub_runs_active"))
            return s if got == (1, 1, 1) else None
        during = harness.wait_until(gauges_during_run, what="running 1, waiting 1, active 1")
        self.assertEqual(during.value("taskhub_runs_queued"), 0)
        self.assertEqual(during.value("taskhub_runs_started_total", workflow="slow"), 1)
        open(d.path("release"), "w").close()
        slow = d.wait_run_state(slow["id"], "succeeded")

        # Plugin health: shell healthy, the fixture unhealthy after two failed checks.
        def fixture_unhealthy():
            s = scrape(d)
            return s if s.value("taskhub_plugin_healthy", plugin="fx_health_fails") == 0 else None
        s = harness.wait_until(fixture_unhealthy, what="fx_health_fails to be unhealthy in metrics")
        self.assertEqual(s.value("taskhub_plugin_healthy", plugin="shell"), 1)
        self.assertEqual(s.value("taskhub_plugin_state", plugin="fx_health_fails", state="unhealthy"), 1)
        self.assertEqual(s.value("taskhub_plugin_state", plugin="fx_health_fails", state="healthy"), 0)
        self.assertEqual(s.value("taskhub_plugin_state", plugin="shell", state="healthy"), 1)

        # Counts per final state.
        w = HOSTILE_BUT_LEGAL
        self.assertEqual(s.value("taskhub_runs_started_total", workflow=w), 2)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow=w, state="succeeded"), 2)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow=w, state="failed"), 0)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="broken", state="failed"), 1)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="broken", state="succeeded"), 0)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="flaky", state="succeeded"), 1)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="slow", state="succeeded"), 1)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="slow", state="cancelled"), 0)
        self.assertEqual(s.value("taskhub_tasks_running"), 0)
        self.assertEqual(s.value("taskhub_tasks_waiting"), 0)
        self.assertEqual(s.value("taskhub_runs_active"), 0)

        # Last success and failure: the end of the latest such run, to the millisecond.
        self.assertAlmostEqual(s.value("taskhub_last_success_timestamp_seconds", workflow=w),
                               ended_s(ok_runs[1]), delta=0.0011)
        self.assertAlmostEqual(s.value("taskhub_last_failure_timestamp_seconds", workflow="broken"),
                               ended_s(failed), delta=0.0011)
        self.assertIsNone(s.get("taskhub_last_failure_timestamp_seconds", workflow=w))
        self.assertIsNone(s.get("taskhub_last_success_timestamp_seconds", workflow="broken"))

        # Histograms: one observation per run that started and per attempt.
        self.assertEqual(s.value("taskhub_run_duration_seconds_count", workflow=w), 2)
        self.assertEqual(s.value("taskhub_run_duration_seconds_bucket", workflow=w, le="+Inf"), 2)
        self.assertEqual(s.value("taskhub_run_duration_seconds_count", workflow="slow"), 1)
        self.assertGreater(s.value("taskhub_run_duration_seconds_sum", workflow="slow"), 0)
        self.assertEqual(s.value("taskhub_task_attempt_duration_seconds_count", workflow="flaky", plugin="shell"), 2)
        self.assertEqual(s.value("taskhub_task_attempt_duration_seconds_count", workflow="slow", plugin="shell"), 2)
        self.assertEqual(s.value("taskhub_task_attempt_duration_seconds_count", workflow="broken", plugin="shell"), 1)
        self.assertEqual(s.value("taskhub_task_retries_total", workflow="flaky"), 1)
        self.assertEqual(s.value("taskhub_task_retries_total", workflow="broken"), 0)
        self.assertEqual(s.value("taskhub_task_attempts_lost_total", workflow="flaky"), 0)
        # Manual runs have no scheduled instant: no lateness observed.
        self.assertEqual([x for x in s.samples if x.name.startswith("taskhub_trigger_lateness")], [])
        # No run id ever becomes a label value.
        for run in ok_runs + [failed, flaky, slow]:
            self.assertNotIn(run["id"], s.text)

        # After a restart the counters start again, the last success and failure come from history.
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        d.start()
        again = scrape(d)
        self.assertEqual(again.value("taskhub_runs_started_total", workflow=w), 0)
        self.assertAlmostEqual(again.value("taskhub_last_success_timestamp_seconds", workflow=w),
                               ended_s(ok_runs[1]), delta=0.0011)
        self.assertAlmostEqual(again.value("taskhub_last_failure_timestamp_seconds", workflow="broken"),
                               ended_s(failed), delta=0.0011)
        self.assertAlmostEqual(again.value("taskhub_last_success_timestamp_seconds", workflow="slow"),
                               ended_s(slow), delta=0.0011)

    def test_lateness_and_removed_workflow(self):
        d = self.daemon(start=False)
        d.write_workflow("ticker", """\
            [[trigger]]
            every = "1s"

            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """)
        d.write_workflow("gone", """\
            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """)
        d.start()
        rc, _, err = d.ctl("run", "gone", "--wait")
        self.assertEqual(rc, 0, err)

        def two_firings():
            s = scrape(d)
            n = s.get("taskhub_trigger_lateness_seconds_count", trigger="every")
            return s if n is not None and n >= 2 else None
        s = harness.wait_until(two_firings, what="two `every` firings observed in trigger lateness")
        self.assertGreaterEqual(s.value("taskhub_trigger_lateness_seconds_sum", trigger="every"), 0)
        self.assertEqual(s.families["taskhub_trigger_lateness_seconds"].type, "histogram")
        self.assertGreaterEqual(s.value("taskhub_runs_started_total", workflow="ticker"), 2)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="gone", state="succeeded"), 1)
        self.assertIsNotNone(s.get("taskhub_last_success_timestamp_seconds", workflow="gone"))

        # Removing the file drops every series of the workflow: cardinality follows what is loaded.
        os.unlink(os.path.join(d.workflows_dir, "gone.toml"))
        d.ctl_ok("reload")

        def gone_dropped():
            s = scrape(d)
            return s if not s.with_label("workflow", "gone") else None
        s = harness.wait_until(gone_dropped, what="the series of the removed workflow to go")
        self.assertEqual(s.value("taskhub_workflows_loaded"), 1)
        self.assertIsNotNone(s.get("taskhub_runs_started_total", workflow="ticker"))

    def test_lost_attempt_after_kill9(self):
        """Recovery reports what it finds to the metrics: the observer is added before recover()."""
        d = self.daemon(start=False)
        marker = harness.new_marker()
        d.write_workflow("long", """\
            [[task]]
            id = "wait"
            plugin = "shell"
            retries = 1
            command = "if [ -e %s ]; then exit 0; fi; touch %s; sleep 600 # %s"
            env = { SYSTEST_MARKER = "%s" }
            """ % (d.path("second"), d.path("second"), marker, marker))
        d.start()
        run = d.ctl_ok("run", "long")
        d.wait_task_state(run["id"], "wait", "running")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(harness.TIMEOUT)
        d.start()
        run = d.wait_run_state(run["id"], "succeeded")
        self.assertEqual(run["lost"], 1)
        s = scrape(d)
        self.assertEqual(s.value("taskhub_task_attempts_lost_total", workflow="long"), 1)
        self.assertEqual(s.value("taskhub_runs_finished_total", workflow="long", state="succeeded"), 1)
        self.assertEqual(s.value("taskhub_runs_started_total", workflow="long"), 0,
                         "the run started before the restart; recovery continues it")
        self.assertEqual(harness.processes_with_marker(marker), [])

    def test_json_answer_and_read_access(self):
        d = self.daemon()
        d.start()
        answer = d.ctl_ok("metrics")
        self.assertTrue(answer["content_type"].startswith("application/openmetrics-text"))
        self.assertTrue(answer["text"].endswith("# EOF\n"))
        # Anyone who may connect may read the metrics, like `status` (the socket is 0660: make
        # it reachable for nobody, as the access-control tests do).
        if os.geteuid() == 0 and executable_by_others(harness.BIN["ctl"]):
            os.chmod(d.socket, 0o666)
            os.chmod(d.dir, 0o755)
            rc, text, err = d.ctl("metrics", json=False, preexec_fn=harness.demote_to_nobody)
            self.assertEqual(rc, 0, err)
            Scrape(text)


if __name__ == "__main__":
    harness.main()
