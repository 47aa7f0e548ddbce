"""The slurm executor plugin (issue 19) against a real Slurm 22.05: a private one-node cluster that
this file starts itself with scripts/slurm-local (its own directory under /tmp, free ports) and
stops again, whatever happens. What must hold (docs: the plugin's contract, /work/slurm-spec.md):

- a job's verdict becomes the task's: COMPLETED, FAILED with its exit code, TIMEOUT, an array
  with one failing element, each with the exact task message; the job id is the task's handle; the
  job's output is the task's log and its `::set-output` lines are the task's outputs; the job is
  named <workflow>.<task> and carries the comment "taskhub run=R task=T attempt=N";
- cancel scancels a running job; `pause --freeze` holds a pending job and `resume` releases it;
- while slurmctld is down the plugin is unhealthy and its tasks wait; they run once it is back;
- shell and slurm tasks pass outputs to each other in one DAG;
- taskhubd killed with SIGKILL re-attaches to its running job after a restart: one job, one handle;
- a param that is shell code reaches the job as data.

Without Slurm (scripts/slurm-local up fails: not root, packages not installable, ...) the whole file
is skipped with "SLURM TESTS SKIPPED: ..." on stderr, or fails when TASKHUB_REQUIRE_SLURM=1.

The TIMEOUT case needs 60-90 s of wall time (a 1-minute limit plus Slurm's periodic time-limit
check): its run starts in setUpClass and is checked last (test_99), so the other cases run
meanwhile.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLURM_LOCAL = os.path.join(REPO, "scripts", "slurm-local")
FINAL = ("succeeded", "failed", "cancelled")
# A trivial job takes ~1 s from sbatch to COMPLETED here (slurmctld schedules on a 1 s tick); this
# is the limit for a run of such jobs on a loaded shared machine.
JOB_WAIT = 60.0
# A 1-minute time limit ends 60-90 s after the job starts (facts, section 8), plus start-up.
TIMEOUT_WAIT = 180.0
POLL = "300ms"


class ClusterUnavailable(Exception):
    pass


def _set_subreaper(on):
    harness._prctl(harness.PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def _without_subreaper(fn):
    """Runs fn with this process no longer a child subreaper. The harness makes the test process
    a subreaper and kills every process below it at each daemon's cleanup (reap_orphans); the
    Slurm daemons daemonize (their parent exits), so they must be re-parented to init, not here,
    or the first test's cleanup would kill the cluster."""
    _set_subreaper(False)
    try:
        return fn()
    finally:
        _set_subreaper(True)


def _port_free(port):
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _free_port_pair(rng):
    """Two free TCP ports below the ephemeral range (outgoing connections never take them)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = max(low, 21000)
    for _ in range(200):
        a = rng.randrange(20000, low - 1)
        if _port_free(a) and _port_free(a + 1):
            return a, a + 1
    raise ClusterUnavailable("no two free TCP ports found between 20000 and %d" % low)


# Started detached (re-parented to init): waits for the test process to end, however it ends
# (SIGKILL by ctest's timeout included), then stops the cluster if it is still up.
GUARD = r"""
import os, select, shutil, subprocess, sys, time
pid, script, parent, cluster = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
try:
    fd = os.pidfd_open(pid)
    select.select([fd], [], [])
except OSError:
    while os.path.exists("/proc/%d" % pid):
        time.sleep(1)
if os.path.exists(os.path.join(cluster, ".taskhub-slurm-local")):
    subprocess.run([script, "down"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
shutil.rmtree(parent, ignore_errors=True)
"""


class LocalCluster:
    """A one-node Slurm cluster of scripts/slurm-local in a private directory on private ports."""

    def __init__(self, name):
        self.name = name
        # munged wants every directory above its socket searchable by others: mkdtemp makes 0700.
        self.parent = tempfile.mkdtemp(prefix="th-slurm-%s-" % name, dir="/tmp")
        os.chmod(self.parent, 0o755)
        self.dir = os.path.join(self.parent, "c")
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.ctld_port = self.slurmd_port = None
        self.is_up = False

    def script_env(self):
        env = dict(os.environ, SLURM_LOCAL_DIR=self.dir, SLURM_LOCAL_CTLD_PORT=str(self.ctld_port),
                   SLURM_LOCAL_SLURMD_PORT=str(self.slurmd_port))
        env.pop("SLURM_CONF", None)
        return env

    def client_env(self):
        return dict(os.environ, SLURM_CONF=self.conf)

    def up(self):
        import random
        rng = random.Random(os.getpid() ^ int(time.time() * 1000))
        if os.geteuid() != 0:
            raise ClusterUnavailable("scripts/slurm-local needs root (slurmd runs jobs as their users); "
                                     "this test runs as uid %d" % os.geteuid())
        last = ""
        for _ in range(4):
            self.ctld_port, self.slurmd_port = _free_port_pair(rng)
            self._start_guard()
            try:
                p = _without_subreaper(lambda: subprocess.run(
                    [SLURM_LOCAL, "up"], env=self.script_env(), stdin=subprocess.DEVNULL,
                    capture_output=True, text=True, timeout=600))
            except subprocess.TimeoutExpired as e:
                raise ClusterUnavailable("scripts/slurm-local up did not finish within 600 s: %s" % e)
            last = "scripts/slurm-local up exited %d:\n%s%s" % (p.returncode, p.stdout, p.stderr)
            if p.returncode == 0:
                self.is_up = True
                return
            # A partial start is stopped before the next try (or before giving up).
            self.down(remove_parent=False)
            if "is in use" not in p.stderr:
                break
        raise ClusterUnavailable(last)

    def _start_guard(self):
        """A detached watcher that runs `down` if this process dies without doing it (e.g. SIGKILL
        from ctest's timeout). Started through sh so that it is orphaned, re-parented to init
        (not to this subreaper, whose cleanups kill what is left below it)."""
        if getattr(self, "_guarded", None) == (self.ctld_port, self.slurmd_port):
            return
        self._guarded = (self.ctld_port, self.slurmd_port)
        _without_subreaper(lambda: subprocess.run(
            ["sh", "-c", '"$0" -c "$1" "$2" "$3" "$4" "$5" </dev/null >/dev/null 2>&1 &',
             sys.executable, GUARD, str(os.getpid()), SLURM_LOCAL, self.parent, self.dir],
            env=self.script_env(), check=True, timeout=30))

    def down(self, remove_parent=True):
        if self.ctld_port is not None and os.path.exists(self.dir):
            p = subprocess.run([SLURM_LOCAL, "down"], env=self.script_env(), stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=180)
            if p.returncode != 0:
                sys.stderr.write("test_slurm: scripts/slurm-local down exited %d: %s%s\n"
                                 % (p.returncode, p.stdout, p.stderr))
        self.is_up = False
        if remove_parent:
            shutil.rmtree(self.parent, ignore_errors=True)

    # ---- clients ----

    def cmd(self, *argv, timeout=60, check=True):
        p = subprocess.run(list(argv), env=self.client_env(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("%s exited %d: %s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
        return p

    def jobs(self):
        """Every job slurmctld holds, all states (22.05's `squeue --json` ignores its filters)."""
        out = json.loads(self.cmd("squeue", "--json").stdout)
        if out.get("errors"):
            raise AssertionError("squeue --json reported errors: %r" % out["errors"])
        return out["jobs"]

    def job(self, job_id):
        """The job with this job id (an int or digits) as `squeue --json` shows it, or None."""
        for j in self.jobs():
            if j["job_id"] == int(job_id):
                return j
        return None

    def scontrol_job(self, job_id):
        return self.cmd("scontrol", "show", "job", "-o", str(job_id)).stdout

    # ---- slurmctld alone ----

    def ctld_pid(self):
        try:
            with open(os.path.join(self.dir, "run", "slurmctld.pid")) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() != "slurmctld":
                    return None
        except (OSError, ValueError):
            return None
        return pid

    def ping_up(self):
        p = self.cmd("scontrol", "ping", check=False, timeout=30)
        return p.returncode == 0 and "is UP" in p.stdout

    def stop_ctld(self):
        pid = self.ctld_pid()
        assert pid, "slurmctld of %s is not running" % self.dir
        os.kill(pid, signal.SIGTERM)
        harness.wait_until(lambda: not harness.pid_alive(pid), 30, 0.1, what="slurmctld (pid %d) to exit" % pid)

    def start_ctld(self):
        """Starts slurmctld as scripts/slurm-local does (same command line, so `down` finds it by
        its pid file); it recovers its jobs from StateSaveLocation."""
        _without_subreaper(lambda: self.cmd("slurmctld", "-f", self.conf))
        harness.wait_until(self.ping_up, 30, 0.2, what="slurmctld to answer scontrol ping")


def outputs_of(task):
    out = task.get("outputs")
    if out is None:
        return {}
    if isinstance(out, dict):
        return out
    return {k: v for k, v in out}


def events(run, kind, task_id=None):
    return [e for e in run["events"] if e["kind"] == kind and (task_id is None or e["task"] == task_id)]


# The build puts slurm.so beside the other plugins' directory, in plugins-slurm/
# (plugins/slurm/CMakeLists.txt).
SLURM_PLUGIN_DIR = os.path.join(os.path.dirname(os.path.normpath(harness.BIN["plugin_dir"])), "plugins-slurm")


def slurm_config(cluster, output_dir, extra=""):
    return '\n[plugins.slurm]\nslurm_conf = %s\noutput_dir = %s\npoll_interval = "%s"\n%s' % (
        json.dumps(cluster.conf), json.dumps(output_dir), POLL, extra)


def cancelled_by_me():
    """The message of a task cancelled by `taskhubctl cancel RUN` run by this process's user. The
    engine, not the plugin, words it: a task ended because its run was cancelled carries the cancel
    reason (daemon/engine/dispatch.cc), so the plugin's verdict "Slurm job N CANCELLED by taskhubd"
    (spec) never becomes the task message for such a cancel."""
    uid = os.getuid()
    return "cancelled by uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name)


def comment_of(run_id, task_id, attempt=1):
    return "taskhub run=%s task=%s attempt=%d" % (run_id, task_id, attempt)


def start_cluster(name):
    """Starts a cluster; when Slurm is unavailable, skips loudly (or fails when
    TASKHUB_REQUIRE_SLURM=1)."""
    cluster = LocalCluster(name)
    try:
        cluster.up()
    except ClusterUnavailable as e:
        cluster.down()
        if os.environ.get("TASKHUB_REQUIRE_SLURM") == "1":
            raise AssertionError("SLURM TESTS FAILED: TASKHUB_REQUIRE_SLURM=1 but no local Slurm cluster "
                                 "could be started: %s" % e)
        banner = "*" * 78
        msg = ("SLURM TESTS SKIPPED: no local Slurm cluster could be started (set TASKHUB_REQUIRE_SLURM=1 "
               "to make this a failure): %s" % e)
        sys.stderr.write("\n%s\n%s\n%s\n" % (banner, msg, banner))
        sys.stderr.flush()
        # scripts/test repeats it in its summary (CMake names the file).
        note = os.environ.get("TASKHUB_SLURM_SKIP_NOTE")
        if note:
            with open(note, "a") as f:
                f.write(msg + "\n")
        raise unittest.SkipTest(msg)
    return cluster


class SlurmTest(harness.DaemonTestCase):
    cluster = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        plugin = os.path.join(SLURM_PLUGIN_DIR, "slurm.so")
        if not os.path.exists(plugin):
            raise AssertionError("the build has no slurm plugin: %s is missing" % plugin)
        cls.cluster = start_cluster("main")
        cls.addClassCleanup(cls.cluster.down)
        cls.t0 = time.monotonic()
        # Case 3 (TIMEOUT) starts first and is checked last: it takes 60-90 s.
        cls.timeout_out = tempfile.mkdtemp(prefix="th-slurm-out-", dir="/tmp")
        cls.addClassCleanup(shutil.rmtree, cls.timeout_out, True)
        d = cls.timeout_daemon = harness.Daemon(
            extra_config=slurm_config(cls.cluster, os.path.join(cls.timeout_out, "out")),
            extra_plugin_dirs=(SLURM_PLUGIN_DIR,))
        cls.addClassCleanup(d.cleanup)
        d.write_workflow("limit", """
            [[task]]
            id = "slow"
            plugin = "slurm"
            partition = "debug"
            time_limit = "1m"
            command = "sleep 300"
            """)
        d.start()
        cls.timeout_run = d.ctl_ok("run", "limit")["id"]

    # ---- helpers ----

    def make(self, workflows, cluster=None, extra="", start=True):
        """A taskhubd with the slurm plugin configured for cluster (default: the class's) and
        output_dir in a new temp dir (created by the plugin); workflows: {name: TOML}."""
        cluster = cluster or self.cluster
        out_parent = tempfile.mkdtemp(prefix="th-slurm-out-", dir="/tmp")
        self.addCleanup(shutil.rmtree, out_parent, True)
        self.output_dir = os.path.join(out_parent, "out")
        d = self.daemon(start=False, extra_config=slurm_config(cluster, self.output_dir, extra),
                        extra_plugin_dirs=(SLURM_PLUGIN_DIR,))
        for name, text in workflows.items():
            d.write_workflow(name, text)
        if start:
            d.start()
        return d

    def wait_handle(self, d, rid, task_id, timeout=30):
        def handle():
            t = harness.task(d.run_record(rid), task_id)
            return t.get("handle") or None
        h = harness.wait_until(handle, timeout, what="task %s of %s to report its Slurm job id" % (task_id, rid))
        self.assertRegex(h, r"^[0-9]+$", "the handle is the job id")
        return h

    def wait_job(self, cluster, job_id, pred, what, timeout=30):
        def check():
            j = cluster.job(job_id)
            return j if j is not None and pred(j) else None
        return harness.wait_until(check, timeout, 0.2, what="Slurm job %s %s" % (job_id, what))

    def logs(self, d, rid, task_id):
        rc, out, err = d.ctl("logs", rid, task_id, json=False)
        self.assertEqual(rc, 0, err)
        return out

    def finish(self, d, rid, timeout=JOB_WAIT):
        return d.wait_run_state(rid, FINAL, timeout=timeout)

    # ---- 1. success ----

    def test_01_success_handle_outputs_log_name_and_comment(self):
        d = self.make({"hello1": """
            [[task]]
            id = "greet"
            plugin = "slurm"
            partition = "debug"
            command = "echo hello; echo '::set-output answer=42'"
            """})
        rid = d.ctl_ok("run", "hello1")["id"]
        run = self.finish(d, rid)
        self.assertEqual(run["state"], "succeeded", run)
        t = harness.task(run, "greet")
        job = t["handle"]
        self.assertRegex(job, r"^[0-9]+$")
        self.assertEqual((t["state"], t["attempt"]), ("succeeded", 1), t)
        self.assertEqual(t["message"], "Slurm job %s COMPLETED" % job)
        self.assertEqual(outputs_of(t), {"answer": "42"})
        self.assertIn("hello", self.logs(d, rid, "greet").splitlines())
        # What was submitted: name, comment, output file pattern (squeue shows it unexpanded).
        j = self.cluster.job(job)
        self.assertIsNotNone(j, "squeue --json does not show job %s" % job)
        self.assertEqual(j["job_state"], "COMPLETED")
        self.assertEqual(j["name"], "hello1.greet")
        self.assertEqual(j["comment"], comment_of(rid, "greet"))
        self.assertEqual(j["partition"], "debug")
        self.assertEqual(j["standard_output"], os.path.join(self.output_dir, "taskhub-%j.out"))
        line = self.cluster.scontrol_job(job)
        self.assertIn(" JobName=hello1.greet ", line)
        self.assertIn(" Comment=%s " % comment_of(rid, "greet"), line)
        # The submitted batch script is removed once sbatch returned.
        self.assertEqual([f for f in os.listdir(self.output_dir) if f.startswith("taskhub-submit-")], [])
        # `show` names the handle.
        self.assertIn(job, d.ctl("show", rid, json=False)[1])
        # The job's output file is removed once it is in the task's log.
        self.assertFalse(os.path.exists(os.path.join(self.output_dir, "taskhub-%s.out" % job)))

    # ---- 2. non-zero exit ----

    def test_02_nonzero_exit(self):
        d = self.make({"exit3": """
            [[task]]
            id = "bad"
            plugin = "slurm"
            partition = "debug"
            command = "echo before; exit 3"
            """})
        rid = d.ctl_ok("run", "exit3")["id"]
        run = self.finish(d, rid)
        self.assertEqual(run["state"], "failed", run)
        t = harness.task(run, "bad")
        job = t["handle"]
        self.assertEqual((t["state"], t["exit_code"]), ("failed", 3), t)
        self.assertEqual(t["message"], "Slurm job %s FAILED with exit code 3" % job)
        self.assertIn("before", self.logs(d, rid, "bad").splitlines())
        self.assertEqual(self.cluster.job(job)["job_state"], "FAILED")

    # ---- 4. array with one failing element ----

    def test_04_array_with_one_failing_element(self):
        d = self.make({"arr": """
            [[task]]
            id = "elems"
            plugin = "slurm"
            partition = "debug"
            array = "0-3"
            command = '[ "$SLURM_ARRAY_TASK_ID" = 2 ] && exit 7; echo element $SLURM_ARRAY_TASK_ID'
            """})
        rid = d.ctl_ok("run", "arr")["id"]
        run = self.finish(d, rid)
        self.assertEqual(run["state"], "failed", run)
        t = harness.task(run, "elems")
        job = t["handle"]
        self.assertRegex(job, r"^[0-9]+$")
        self.assertEqual(t["state"], "failed", t)
        self.assertEqual(t["message"],
                         "Slurm array job %s: 4 elements, 3 COMPLETED, 1 FAILED (element 2: exit code 7)" % job)
        log = self.logs(d, rid, "elems")
        lines = log.splitlines()
        headers = re.findall(r"^--- element (\d+) \(job (\d+), ([A-Z_]+)\) ---$", log, re.M)
        self.assertEqual({int(e): st for e, _, st in headers}, {0: "COMPLETED", 1: "COMPLETED", 2: "FAILED", 3: "COMPLETED"})
        headers = [(e, jid) for e, jid, _ in headers]
        self.assertEqual(sorted(int(e) for e, _ in headers), [0, 1, 2, 3], log)
        # Each header names the element's own job id, as Slurm has it.
        elements = {j["array_task_id"]: j["job_id"] for j in self.cluster.jobs()
                    if j["array_job_id"] == int(job) and j["array_task_id"] is not None}
        self.assertEqual({int(e): int(jid) for e, jid in headers}, elements)
        for e in (0, 1, 3):
            self.assertIn("element %d" % e, lines)
        self.assertNotIn("element 2", lines)
        # Each element's output follows its own header.
        for e, jid in headers:
            after = log.split("--- element %s (job %s, " % (e, jid), 1)[1].split("\n", 1)[1]
            nxt = re.search(r"^--- element ", after, re.M)
            body = after[:nxt.start()] if nxt else after
            if e != "2":
                self.assertIn("element %s" % e, body.splitlines(), log)

    # ---- 5. cancel of a running job ----

    def test_05_cancel_running_job(self):
        d = self.make({"cancelme": """
            [[task]]
            id = "long"
            plugin = "slurm"
            partition = "debug"
            command = "sleep 300"
            """})
        rid = d.ctl_ok("run", "cancelme")["id"]
        job = self.wait_handle(d, rid, "long")
        self.wait_job(self.cluster, job, lambda j: j["job_state"] == "RUNNING", "to be RUNNING")
        d.ctl_ok("cancel", rid)
        run = self.finish(d, rid, timeout=45)
        self.assertEqual(run["state"], "cancelled", run)
        t = harness.task(run, "long")
        self.assertEqual(t["state"], "cancelled", t)
        self.assertEqual(t["message"], cancelled_by_me())
        # The attempt ends when Slurm says the job ended, not before.
        j = self.cluster.job(job)
        self.assertTrue(j is None or j["job_state"] == "CANCELLED", j and j["job_state"])

    def test_05b_scancel_outside_taskhubd_fails_the_task(self):
        # Not one of the cases, but the other half of the CANCELLED row of the contract:
        # Slurm does not say who cancelled a job, so the plugin must know its own cancels.
        d = self.make({"outside": """
            [[task]]
            id = "long"
            plugin = "slurm"
            partition = "debug"
            command = "sleep 300"
            """})
        rid = d.ctl_ok("run", "outside")["id"]
        job = self.wait_handle(d, rid, "long")
        self.wait_job(self.cluster, job, lambda j: j["job_state"] == "RUNNING", "to be RUNNING")
        self.cluster.cmd("scancel", job)
        run = self.finish(d, rid, timeout=45)
        self.assertEqual(run["state"], "failed", run)
        t = harness.task(run, "long")
        self.assertEqual(t["state"], "failed", t)
        self.assertEqual(t["message"], "Slurm job %s CANCELLED outside taskhubd (scancel by its owner or an "
                                       "administrator)" % job)

    # ---- 6. pause --freeze / resume of a pending job ----

    def test_06_freeze_holds_a_pending_job_and_resume_releases_it(self):
        d = self.make({"held": """
            [[task]]
            id = "later"
            plugin = "slurm"
            partition = "debug"
            command = "echo never"
            extra_args = ["--begin=now+600"]
            """})
        rid = d.ctl_ok("run", "held")["id"]
        job = self.wait_handle(d, rid, "later")
        self.wait_job(self.cluster, job, lambda j: j["job_state"] == "PENDING" and j["state_reason"] == "BeginTime",
                      "to be PENDING (BeginTime)")
        rc, _, err = d.ctl("pause", rid, "--freeze")
        self.assertEqual(rc, 0, err)
        j = self.wait_job(self.cluster, job,
                          lambda j: j["state_reason"] in ("JobHeldAdmin", "JobHeldUser"), "to be held")
        self.assertEqual(j["job_state"], "PENDING")
        d.wait_task_state(rid, "later", "frozen", timeout=10)
        rc, _, err = d.ctl("resume", rid)
        self.assertEqual(rc, 0, err)
        j = self.wait_job(self.cluster, job, lambda j: not j["state_reason"].startswith("JobHeld"),
                          "to be released")
        self.assertEqual(j["job_state"], "PENDING")
        d.wait_task_state(rid, "later", "running", timeout=10)
        d.ctl_ok("cancel", rid)
        run = self.finish(d, rid, timeout=45)
        self.assertEqual(run["state"], "cancelled", run)
        self.assertEqual(harness.task(run, "later")["message"], cancelled_by_me())
        self.assertEqual(self.cluster.job(job)["job_state"], "CANCELLED")

    def test_06b_pause_holds_a_pending_job_and_resume_releases_it(self):
        """`pause RUN` without --freeze: the job still waiting in the queue is held (the task
        stays running: nothing of it runs yet); `resume` releases it."""
        d = self.make({"paused": """
            [[task]]
            id = "later"
            plugin = "slurm"
            partition = "debug"
            command = "echo never"
            extra_args = ["--begin=now+600"]
            """})
        rid = d.ctl_ok("run", "paused")["id"]
        job = self.wait_handle(d, rid, "later")
        self.wait_job(self.cluster, job, lambda j: j["job_state"] == "PENDING", "to be PENDING")
        rc, _, err = d.ctl("pause", rid)
        self.assertEqual(rc, 0, err)
        j = self.wait_job(self.cluster, job,
                          lambda j: j["state_reason"] in ("JobHeldAdmin", "JobHeldUser"), "to be held")
        self.assertEqual(j["job_state"], "PENDING")
        self.assertEqual(harness.task(d.ctl_ok("show", rid), "later")["state"], "running")
        rc, _, err = d.ctl("resume", rid)
        self.assertEqual(rc, 0, err)
        j = self.wait_job(self.cluster, job, lambda j: not j["state_reason"].startswith("JobHeld"),
                          "to be released")
        self.assertEqual(j["job_state"], "PENDING")
        d.ctl_ok("cancel", rid)
        self.assertEqual(self.finish(d, rid, timeout=45)["state"], "cancelled")

    # ---- 7. health: slurmctld stopped and started again ----

    def test_07_controller_down_makes_the_plugin_unhealthy_and_tasks_wait(self):
        # A cluster of its own: stopping its slurmctld disturbs no other case's jobs.
        cluster = LocalCluster("outage")
        self.addCleanup(cluster.down)
        try:
            cluster.up()
        except ClusterUnavailable as e:
            self.fail("a second local cluster could not be started: %s" % e)
        d = self.make({"outage": """
            [[task]]
            id = "after"
            plugin = "slurm"
            partition = "debug"
            command = "echo after the outage"
            """}, cluster=cluster, extra='health_interval = "1s"\n')

        def slurm_row():
            return next(p for p in d.ctl_ok("plugins")["plugins"] if p["name"] == "slurm")

        def plugin_state(state, message=None):
            row = slurm_row()
            ok = row["state"] == state and (message is None or row["message"] == message)
            return row if ok else None

        healthy_msg = "slurmctld is UP; partitions: debug UP"
        harness.wait_until(lambda: plugin_state("healthy", healthy_msg), 15, 0.2,
                           what="plugin slurm to report %r (first row seen: %r)" % (healthy_msg, slurm_row()))

        cluster.stop_ctld()
        row = harness.wait_until(lambda: plugin_state("unhealthy"), 30, 0.2, what="plugin slurm to become unhealthy")
        self.assertEqual(row["message"], "slurmctld is not reachable: Slurmctld(primary) at %s is DOWN"
                         % socket.gethostname().split(".")[0])

        rid = d.ctl_ok("run", "outage")["id"]
        t = harness.task(d.wait_task_state(rid, "after", "ready", timeout=10), "after")
        self.assertIn("waiting for plugin: plugin 'slurm' is unhealthy since", t["waiting"] or "", t)
        time.sleep(3)  # it stays waiting
        t = harness.task(d.run_record(rid), "after")
        self.assertEqual(t["state"], "ready", t)
        self.assertFalse(t.get("handle"), t)

        restarted = int(time.time())
        cluster.start_ctld()
        harness.wait_until(lambda: plugin_state("healthy"), 30, 0.2, what="plugin slurm to become healthy again")
        run = self.finish(d, rid)
        self.assertEqual(run["state"], "succeeded", run)
        t = harness.task(run, "after")
        self.assertEqual(t["message"], "Slurm job %s COMPLETED" % t["handle"])
        self.assertIn("after the outage", self.logs(d, rid, "after").splitlines())
        # Submitted once, after slurmctld came back.
        mine = [j for j in cluster.jobs() if j["comment"] == comment_of(rid, "after")]
        self.assertEqual(len(mine), 1, mine)
        self.assertGreaterEqual(mine[0]["submit_time"], restarted - 1)

    # ---- 8. a DAG of shell and slurm tasks ----

    def test_08_dag_mixing_shell_and_slurm_tasks(self):
        d = self.make({"mixed": """
            [[task]]
            id = "a"
            plugin = "shell"
            command = "echo ::set-output x=alpha42"

            [[task]]
            id = "b"
            plugin = "slurm"
            partition = "debug"
            depends_on = ["a"]
            command = "echo b got ${tasks.a.outputs.x}; echo ::set-output y=${tasks.a.outputs.x}-beta"

            [[task]]
            id = "c"
            plugin = "shell"
            depends_on = ["b"]
            command = "echo c saw ${tasks.b.outputs.y}"
            """})
        rid = d.ctl_ok("run", "mixed")["id"]
        run = self.finish(d, rid)
        self.assertEqual(run["state"], "succeeded", run)
        for tid in ("a", "b", "c"):
            self.assertEqual(harness.task(run, tid)["state"], "succeeded", run)
        b = harness.task(run, "b")
        self.assertEqual(b["plugin"], "slurm")
        self.assertEqual(b["message"], "Slurm job %s COMPLETED" % b["handle"])
        self.assertEqual(outputs_of(b), {"y": "alpha42-beta"})
        self.assertIn("b got alpha42", self.logs(d, rid, "b").splitlines())
        self.assertIn("c saw alpha42-beta", self.logs(d, rid, "c").splitlines())

    # ---- 9. kill -9 and adoption ----

    def test_09_kill9_then_restart_adopts_the_running_job(self):
        # The acceptance text names a 60 s job; 20 s proves the same: the job must still
        # run when the new taskhubd adopts it (kill + restart take 1-2 s here, checked below), and
        # a second submission or a lost attempt would show whatever the length; a longer job only
        # adds wall time.
        d = self.make({"survivor": """
            [[task]]
            id = "job"
            plugin = "slurm"
            partition = "debug"
            command = "sleep 20; echo done"
            """})
        rid = d.ctl_ok("run", "survivor")["id"]
        job = self.wait_handle(d, rid, "job")
        harness.wait_until(lambda: d.committed_handle(rid, "job"), what="the job id committed to the store")
        self.assertEqual(d.committed_handle(rid, "job"), job)
        self.wait_job(self.cluster, job, lambda j: j["job_state"] == "RUNNING", "to be RUNNING")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(harness.TIMEOUT)
        d.start()

        def adopted():
            run = d.run_record(rid)
            return run if events(run, "adopted", "job") else None
        run = harness.wait_until(adopted, 20, what="the adopted event")
        self.assertEqual(self.cluster.job(job)["job_state"], "RUNNING",
                         "the job ended before the restart: adoption of a running job is not proven")
        ev = events(run, "adopted", "job")
        self.assertEqual(len(ev), 1, run["events"])
        self.assertIn("attempt 1 re-attached to plugin slurm after taskhubd restarted (handle %s)" % job,
                      ev[0]["detail"])
        run = self.finish(d, rid, timeout=60)
        self.assertEqual(run["state"], "succeeded", run)
        t = harness.task(run, "job")
        self.assertEqual((t["state"], t["attempt"], t["handle"]), ("succeeded", 1, job), t)
        self.assertEqual(t["message"], "Slurm job %s COMPLETED" % job)
        self.assertEqual(run["lost"], 0)
        self.assertEqual(events(run, "lost"), [])
        self.assertIn("done", self.logs(d, rid, "job").splitlines())
        # Submitted once: one job with this attempt's comment, one job of this name.
        mine = [j for j in self.cluster.jobs() if j["comment"] == comment_of(rid, "job")]
        self.assertEqual([j["job_id"] for j in mine], [int(job)])
        every = self.cluster.cmd("scontrol", "show", "job", "-o").stdout.splitlines()
        named = [line for line in every if " JobName=survivor.job " in line]
        self.assertEqual(len(named), 1, named)
        self.assertTrue(named[0].startswith("JobId=%s " % job), named[0])

    # ---- 10. template safety ----

    def test_10_param_that_is_shell_code_reaches_the_job_as_data(self):
        pwned = "/tmp/pwned-%s" % uuid.uuid4().hex[:12]
        self.addCleanup(lambda: os.path.exists(pwned) and os.unlink(pwned))
        value = "$(touch %s); '\"" % pwned
        d = self.make({"inject": """
            [params]
            v = ""

            [[task]]
            id = "echo"
            plugin = "slurm"
            partition = "debug"
            command = "echo ${params.v}; printf 'env:%s\\\\n' \\"$V\\""
            env = { V = "${params.v}" }
            """})
        rid = d.ctl_ok("run", "inject", "--param", "v=" + value)["id"]
        run = self.finish(d, rid)
        self.assertEqual(run["state"], "succeeded", run)
        lines = self.logs(d, rid, "echo").splitlines()
        self.assertIn(value, lines)
        self.assertIn("env:" + value, lines)
        self.assertFalse(os.path.exists(pwned), "the param was executed: %s exists" % pwned)

    def test_11_symlink_planted_as_a_jobs_output_is_not_followed(self):
        """An attacker who can write to output_dir (here: a directory made writable to everybody,
        the misconfiguration docs/slurm.md warns of) plants a symbolic link where the next job's
        output file goes. Slurm follows it when the job writes; the plugin never does: the task's
        log gets nothing through the link, and the daemon says why."""
        out_parent = tempfile.mkdtemp(prefix="th-slurm-out-", dir="/tmp")
        self.addCleanup(shutil.rmtree, out_parent, True)
        os.chmod(out_parent, 0o755)
        out = os.path.join(out_parent, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        target = os.path.join(out_parent, "elsewhere")
        d = self.daemon(start=False, extra_config=slurm_config(self.cluster, out), extra_plugin_dirs=(SLURM_PLUGIN_DIR,))
        d.write_workflow("planted", """
            [[task]]
            id = "t"
            plugin = "slurm"
            partition = "debug"
            command = "echo job-output-$$"
            """)
        d.start()
        # The next job id: one after a job submitted now (the cases run one at a time).
        last = int(self.cluster.cmd("sbatch", "--parsable", "--output=/dev/null", "--wrap", "true").stdout.strip().split(";")[0])
        nobody = pwd.getpwnam("nobody")
        for nxt in range(last + 1, last + 4):  # a little slack for a job started meanwhile
            subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups",
                            "ln", "-s", target, os.path.join(out, "taskhub-%d.out" % nxt)], check=True)
        rid = d.ctl_ok("run", "planted")["id"]
        run = self.finish(d, rid)
        job = harness.task(run, "t")["handle"]
        self.assertTrue(os.path.islink(os.path.join(out, "taskhub-%s.out" % job)), "the job's id was not predicted")
        self.assertNotIn("job-output-", self.logs(d, rid, "t"))
        self.assertIn("taskhub-%s.out is a symbolic link, not a regular file of the job's user" % job, d.log())

    # ---- 3. TIMEOUT (started in setUpClass) ----

    def test_99_timeout(self):
        d = self.timeout_daemon
        self._daemons.append(d)  # its log is printed if this fails
        left = TIMEOUT_WAIT - (time.monotonic() - self.t0)
        run = d.wait_run_state(self.timeout_run, FINAL, timeout=max(left, 10))
        self.assertEqual(run["state"], "failed", run)
        t = harness.task(run, "slow")
        job = t["handle"]
        self.assertRegex(job, r"^[0-9]+$")
        self.assertEqual(t["state"], "failed", t)
        self.assertEqual(t["message"], "Slurm job %s TIMEOUT: it reached its time limit" % job)
        j = self.cluster.job(job)
        self.assertEqual((j["job_state"], j["time_limit"]), ("TIMEOUT", 1))


if __name__ == "__main__":
    harness.main()
