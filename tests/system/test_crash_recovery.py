"""Crash recovery (issue 7): taskhubd killed with SIGKILL at random and at chosen moments.

Every shell task here appends "RUN TASK ATTEMPT PID start" to a ledger file when it starts (and
"... end" when it ends; O_APPEND lines are atomic), so the ledger says what really ran, to be
held against what the store says afterwards:

- the kill -9 loop: scheduled (`every`, 6-field cron), manual and nested runs with short and long
  tasks, some `at_most_once`, some with `retries`; taskhubd is killed at random moments at least
  25 times and restarted on the same state directory, then the schedules are paused and the
  runs drain. It prints its counts and requires: no `at_most_once` task executed twice, no
  attempt executed twice, no execution the store does not record (so no completed task re-run),
  no scheduled firing recorded twice, every acknowledged `taskhubctl run` kept, nothing left
  non-final, no task process surviving a restart or left at the end, `PRAGMA integrity_check` ok;
- targeted kills at the failpoints of daemon/common/failpoint.h (builds with TASKHUB_FAILPOINTS=ON,
  which scripts/test makes; CMake then sets TASKHUB_FAILPOINTS=1 for this test, and a failpoint
  that is never hit fails the test; without it those cases are skipped):
  `task_starting_committed` (an attempt committed as starting, its plugin never called) and
  `store_commit` (the store writer killed in the middle of a commit);
- a long task running when the daemon is killed: its process group is killed at the restart, the
  attempt is lost and retried, its completed upstream task is not re-run, a nested child run
  resumes with its parent;
- a queued run stays queued, a paused run stays paused (its frozen attempt lost, retried after
  resume), a run whose workflow file is gone or changed fails saying why;
- a recorded pid that now names another process (start time differs) is never killed.

TASKHUB_CRASH_SEED=N repeats the loop's random moments.
"""

import collections
import os
import random
import signal
import sqlite3
import subprocess
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Set by CMake for builds with TASKHUB_FAILPOINTS=ON: the failpoints must then work.
FAILPOINTS = os.environ.get("TASKHUB_FAILPOINTS") == "1"

KILLS = 25
FINAL_RUN_STATES = {"succeeded", "failed", "cancelled", "skipped"}
FINAL_TASK_STATES = {"succeeded", "failed", "cancelled", "skipped"}
SCHEDULED_TRIGGERS = {"cron", "every", "at"}


# ---- workflows ----

def ledger_command(ledger, body):
    """A shell command that records its start and end in the ledger around body."""
    line = '"$TASKHUB_RUN_ID $TASKHUB_TASK_ID $TASKHUB_ATTEMPT $$ %s"'
    return "echo %s >> %s; %s; echo %s >> %s" % (line % "start", ledger, body, line % "end", ledger)


def shell_task(ledger, marker, tid, body, depends=(), retries=0, at_most_once=False):
    text = "\n[[task]]\nid = \"%s\"\nplugin = \"shell\"\ncommand = '%s'\nenv = { SYSTEST_MARKER = \"%s\" }\n" % (
        tid, ledger_command(ledger, body), marker)
    if depends:
        text += "depends_on = [%s]\n" % ", ".join('"%s"' % x for x in depends)
    if retries:
        text += "retries = %d\n" % retries
    if at_most_once:
        text += "at_most_once = true\n"
    return text


def workflow_task(tid, workflow, depends=(), retries=0):
    text = "\n[[task]]\nid = \"%s\"\nworkflow = \"%s\"\n" % (tid, workflow)
    if depends:
        text += "depends_on = [%s]\n" % ", ".join('"%s"' % x for x in depends)
    if retries:
        text += "retries = %d\n" % retries
    return text


# Attempt 1 sleeps for a long time, later attempts end at once: a retry after a crash finishes.
LONG_FIRST_ATTEMPT = 'if [ "$TASKHUB_ATTEMPT" = 1 ]; then sleep 60; fi'


# ---- the ledger ----

Line = collections.namedtuple("Line", "run task attempt pid phase")


def read_ledger(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for raw in text.splitlines():
        parts = raw.split(" ")
        if len(parts) != 5 or parts[4] not in ("start", "end"):
            raise AssertionError("malformed ledger line %r in %s" % (raw, path))
        out.append(Line(parts[0], parts[1], int(parts[2]), int(parts[3]), parts[4]))
    return out


def starts(ledger, run=None, task=None):
    return [x for x in ledger if x.phase == "start" and (run is None or x.run == run)
            and (task is None or x.task == task)]


def wait_started(path, run, task):
    """The ledger's first start line of the task, once the process has written it."""
    return harness.wait_until(lambda: starts(read_ledger(path), run, task), what="%s %s in the ledger" % (run, task))[0]


# ---- processes ----

def proc_start_ticks(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None when pid does not
    name a live process (zombies count as gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def task_processes(marker):
    """{(pid, start ticks): "RUN TASK ATTEMPT"} for the live processes carrying marker."""
    out = {}
    for pid in harness.processes_with_marker(marker):
        ticks = proc_start_ticks(pid)
        if ticks is None:
            continue
        env = proc_environ(pid)
        out[(pid, ticks)] = "%s %s %s" % (env.get("TASKHUB_RUN_ID"), env.get("TASKHUB_TASK_ID"),
                                          env.get("TASKHUB_ATTEMPT"))
    return out


def still_alive(processes):
    """The entries of task_processes() whose process (same pid, same start time) still runs."""
    return {k: v for k, v in processes.items() if proc_start_ticks(k[0]) == k[1]}


# ---- the store ----

def db_path(d):
    return os.path.join(d.state_dir, "taskhub.db")


def integrity(d):
    """PRAGMA integrity_check of the state database (the daemon must not be running)."""
    con = sqlite3.connect(db_path(d), timeout=5)
    try:
        return ", ".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


def all_runs(d):
    return d.ctl_ok("runs", "--all", "--limit", "100000")


def shown(d, run_id):
    """`show --json RUN`: the run with its tasks and its own events."""
    return d.ctl_ok("show", run_id)


def events(run, kind, task_id=None):
    return [e for e in run["events"] if e["kind"] == kind and (task_id is None or e["task"] == task_id)]


class CrashRecoveryTest(harness.DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.decoys = []

    def tearDown(self):
        for p in self.decoys:
            if p.poll() is None:
                p.kill()
                p.wait()

    def kill9(self, d):
        """SIGKILL, as a crash; waits until the daemon is gone."""
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(harness.TIMEOUT)
        self.assertEqual(d.proc.returncode, -signal.SIGKILL)

    def wait_final(self, d, run_id, timeout=harness.TIMEOUT):
        return d.wait_run_state(run_id, tuple(FINAL_RUN_STATES), timeout)

    def lost_listing(self, d):
        rc, out, err = d.ctl("runs", "--state", "lost", "--all", "--limit", "100000")
        self.assertEqual(rc, 0, "taskhubctl runs --state lost: %s" % err)
        return {r["id"] for r in out}

    def require_failpoints(self):
        if not FAILPOINTS:
            self.skipTest("this build has no failpoints (configure with -DTASKHUB_FAILPOINTS=ON, as scripts/test does)")

    def crash_at(self, d, failpoint, action=None, timeout=15.0, env=None):
        """Starts taskhubd with TASKHUB_FAILPOINT=failpoint, calls action() once it answers (it may
        die before, or during the call) and waits until the failpoint has killed it. A failpoint
        that is not hit fails the test: the build was asked for failpoints."""
        self.require_failpoints()
        name = failpoint.split("@")[0]
        log_before = len(d.log())
        d.start(wait=False, extra_env=dict(env or {}, TASKHUB_FAILPOINT=failpoint))
        result = action() if action and self._wait_answering(d) else None
        deadline = time.monotonic() + timeout
        while d.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(harness.POLL)
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
            self.fail("TASKHUB_FAILPOINT=%s: taskhubd was not killed within %.0fs. This build was configured "
                      "with TASKHUB_FAILPOINTS=ON, so the failpoint %r must be compiled in and passed "
                      "(daemon/common/failpoint.h)" % (failpoint, timeout, name))
        log = d.log()[log_before:]
        self.assertEqual(d.proc.returncode, -signal.SIGKILL,
                         "taskhubd exited with %s, not SIGKILL at the failpoint; log:\n%s" % (d.proc.returncode, log))
        self.assertIn("FAILPOINT %s hit" % name, log, "taskhubd died of SIGKILL without saying it hit the failpoint")
        return result

    # ---- the kill -9 loop ----

    def test_kill9_loop(self):
        """25 random SIGKILLs among scheduled, manual and nested runs; then the ledger, the store
        and /proc must agree (see the module docstring), and the counts are printed."""
        t_begin = time.monotonic()
        seed = int(os.environ.get("TASKHUB_CRASH_SEED") or time.time_ns() % 1000000007)
        rng = random.Random(seed)
        d = self.daemon()
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:  # 26 starts of debug logging would bury a failure's log
            f.write(text.replace('log_level = "debug"', 'log_level = "info"'))
        marker = harness.new_marker()
        ledger = d.path("ledger")

        def shell(*a, **kw):
            return shell_task(ledger, marker, *a, **kw)
        # (workflow, task) pairs marked at_most_once.
        at_most_once = {("tick", "once"), ("cron6", "amo"), ("leaf", "l3"), ("manual", "m2")}
        d.write_workflow("tick", """\
            [[trigger]]
            every = "1s"

            [policy]
            overlap = "allow"
            max_active_runs = 4
            """ + shell("a", "sleep 0.1") + shell("b", "sleep 0.5", depends=["a"], retries=2)
            + shell("once", "sleep 0.3", at_most_once=True))
        d.write_workflow("cron6", """\
            [[trigger]]
            cron = "*/2 * * * * *"

            [policy]
            overlap = "allow"
            max_active_runs = 3
            """ + shell("prep", "sleep 0.2") + shell("long", "sleep 2", depends=["prep"], retries=1)
            + shell("amo", "sleep 1.5", at_most_once=True) + workflow_task("sub", "leaf", depends=["prep"]))
        d.write_workflow("leaf", shell("l1", "sleep 0.1") + shell("l2", "sleep 1", depends=["l1"], retries=1)
                         + shell("l3", "sleep 0.5", at_most_once=True))
        d.write_workflow("manual", """\
            [policy]
            overlap = "allow"
            """ + shell("m1", "sleep 3", retries=1) + shell("m2", "sleep 0.1", at_most_once=True)
            + shell("m3", "sleep 0.2", depends=["m1"]))

        acknowledged = []   # run ids `taskhubctl run` answered with
        survivors = {}      # task processes of a killed daemon still running after the next start
        kills = 0
        before_kill = {}
        d.start()
        for _ in range(KILLS):
            ready = time.monotonic()
            delay = rng.uniform(0.3, 2.5)
            for at in sorted(rng.uniform(0, delay) for _ in range(rng.choice((0, 1, 1, 2)))):
                time.sleep(max(0.0, ready + at - time.monotonic()))
                rc, out, err = d.ctl("run", "manual")
                self.assertEqual(rc, 0, "taskhubctl run manual: %s" % err)
                acknowledged.append(out["id"])
            time.sleep(max(0.0, ready + delay - time.monotonic()))
            # Recovery ends before the daemon answers, so the task processes of the previous
            # daemon are gone by now (at least 0.3 s later).
            survivors.update(still_alive(before_kill))
            self.kill9(d)
            kills += 1
            time.sleep(0.05)  # a task the dying daemon was spawning has exec'd
            before_kill = task_processes(marker)
            d.start()
        time.sleep(0.3)
        survivors.update(still_alive(before_kill))

        # Drain: no new firings, then wait for every run to end.
        for wf in ("tick", "cron6"):
            d.ctl_ok("pause", wf)

        def drained():
            st = d.ctl_ok("status")
            return st["active_runs"] == 0 and st["queued_runs"] == 0
        harness.wait_until(drained, timeout=45, what="every run to end after the schedules were paused")

        runs = all_runs(d)
        listed = collections.Counter(r["id"] for r in runs)
        duplicates = sorted(rid for rid, n in listed.items() if n > 1)
        detail = {rid: shown(d, rid) for rid in listed}
        lost_listed = self.lost_listing(d)
        left_running = task_processes(marker)
        rc, _ = d.stop()
        self.assertEqual(rc, 0, "taskhubd exit status after SIGTERM")
        left_running.update(task_processes(marker))
        integrity_result = integrity(d)

        # What the store says.
        tasks = {}  # (run, task) -> task object
        for rid, run in detail.items():
            for t in run["tasks"]:
                tasks[(rid, t["id"])] = t
        non_final_runs = sorted(rid for rid, r in detail.items() if r["state"] not in FINAL_RUN_STATES)
        non_final_tasks = sorted("%s %s (%s)" % (k[0], k[1], t["state"]) for k, t in tasks.items()
                                 if t["state"] not in FINAL_TASK_STATES)
        lost_events = {rid: len(events(r, "lost")) for rid, r in detail.items()}
        lost_total = sum(lost_events.values())
        # A run's lost count includes its child runs' (`runs --state lost` finds the top-level run).
        lost_in_tree = dict(lost_events)
        for rid in sorted(detail, key=lambda x: -detail[x]["depth"]):
            if detail[rid]["parent_run"] in lost_in_tree:
                lost_in_tree[detail[rid]["parent_run"]] += lost_in_tree[rid]
        lost_runs = {rid for rid, n in lost_in_tree.items() if n}
        lost_counter_mismatch = sorted("%s: lost %r, %d lost event(s) in its tree" % (rid, r["lost"], lost_in_tree[rid])
                                       for rid, r in detail.items() if "lost" in r and r["lost"] != lost_in_tree[rid])
        amo_not_lost_message = sorted(
            "%s %s: %s" % (k[0], k[1], t["message"]) for k, t in tasks.items()
            if (detail[k[0]]["workflow"], k[1]) in at_most_once and events(detail[k[0]], "lost", k[1])
            and not (t["state"] == "failed" and t["message"].startswith("lost:")))
        # Every run that started and ended says so once: recovery ends runs like any end.
        run_end_count = sorted("%s (%s): %d run_end events" % (rid, r["state"], len(events(r, "run_end")))
                               for rid, r in detail.items() if events(r, "run_start")
                               and r["state"] in FINAL_RUN_STATES and len(events(r, "run_end")) != 1)
        amo_lost = sum(1 for k, t in tasks.items() if (detail[k[0]]["workflow"], k[1]) in at_most_once
                       and t["message"].startswith("lost:"))
        scheduled = collections.defaultdict(list)
        for rid, r in detail.items():
            if r["trigger"] in SCHEDULED_TRIGGERS:
                scheduled[(r["workflow"], r["scheduled"])].append(rid)
        scheduled_twice = sorted("%s@%s: %s" % (k[0], k[1], v) for k, v in scheduled.items() if len(v) > 1)
        kinds = collections.Counter("child" if r["parent_run"] else r["trigger"] for r in detail.values())
        acknowledged_missing = sorted(set(acknowledged) - set(detail))

        # What the ledger says.
        lines = read_ledger(ledger)
        started = [x for x in lines if x.phase == "start"]
        per_attempt = collections.Counter((x.run, x.task, x.attempt) for x in started)
        per_task = collections.Counter((x.run, x.task) for x in started)
        attempts_twice = sorted("%s %s attempt %d: %d times" % (k + (n,)) for k, n in per_attempt.items() if n > 1)
        unrecorded_runs = sorted({x.run for x in started} - set(detail))
        amo_twice = sorted("%s %s: %d executions" % (k[0], k[1], n) for k, n in per_task.items()
                           if k[0] in detail and (detail[k[0]]["workflow"], k[1]) in at_most_once and n > 1)
        # An execution whose attempt the store does not record (its task ended with a lower
        # attempt), and in particular a task re-run after its success was recorded.
        unrecorded_executions, completed_rerun = [], []
        for x in started:
            t = tasks.get((x.run, x.task))
            if t is None or x.attempt > t["attempt"]:
                what = "%s %s attempt %d (store: %s)" % (x.run, x.task, x.attempt,
                                                        "%s attempt %d" % (t["state"], t["attempt"]) if t else "no such task")
                unrecorded_executions.append(what)
                if t is not None and t["state"] == "succeeded":
                    completed_rerun.append(what)
        ledger_scheduled = {x.run for x in started if x.run in detail and detail[x.run]["trigger"] in SCHEDULED_TRIGGERS}

        took = time.monotonic() - t_begin
        counts = collections.OrderedDict([
            ("seed", seed),
            ("kills", kills),
            ("runs", len(detail)),
            ("runs scheduled", sum(kinds[k] for k in SCHEDULED_TRIGGERS)),
            ("runs manual", kinds["manual"]),
            ("runs child", kinds["child"]),
            ("manual runs acknowledged", len(acknowledged)),
            ("acknowledged runs missing", len(acknowledged_missing)),
            ("attempts recovered as lost", lost_total),
            ("runs with lost attempts", len(lost_runs)),
            ("runs --state lost", len(lost_listed)),
            ("ledger lines", len(lines)),
            ("executions (ledger starts)", len(started)),
            ("scheduled runs in the ledger", len(ledger_scheduled)),
            ("at_most_once tasks failed as lost", amo_lost),
            ("at_most_once tasks executed more than once", len(amo_twice)),
            ("attempts executed more than once", len(attempts_twice)),
            ("executions of runs not in the store", len(unrecorded_runs)),
            ("executions the store does not record", len(unrecorded_executions)),
            ("completed tasks re-run", len(completed_rerun)),
            ("scheduled firings recorded twice", len(scheduled_twice) + len(duplicates)),
            ("runs left non-final", len(non_final_runs)),
            ("ended runs without one run_end", len(run_end_count)),
            ("tasks left non-final", len(non_final_tasks)),
            ("task processes surviving a restart", len(survivors)),
            ("task processes left running", len(left_running)),
            ("integrity_check", integrity_result),
            ("seconds", round(took, 1)),
        ])
        sys.stdout.write("\ncrash_recovery kill -9 loop: %s\n" % ", ".join("%s %s" % kv for kv in counts.items()))
        sys.stdout.flush()

        problems = []

        def require(ok, what, items=()):
            if not ok:
                problems.append("%s: %s" % (what, "; ".join(str(i) for i in list(items)[:10])))
        require(not amo_twice, "at_most_once tasks executed more than once", amo_twice)
        require(not attempts_twice, "attempts executed more than once", attempts_twice)
        require(not unrecorded_runs, "the ledger has executions of runs the store does not have", unrecorded_runs)
        require(not unrecorded_executions, "executions the store does not record", unrecorded_executions)
        require(not completed_rerun, "completed tasks re-run", completed_rerun)
        require(not scheduled_twice and not duplicates, "scheduled firings recorded twice",
                scheduled_twice + duplicates)
        require(not acknowledged_missing, "acknowledged `taskhubctl run`s missing", acknowledged_missing)
        require(not non_final_runs, "runs left non-final", non_final_runs)
        require(not non_final_tasks, "tasks left non-final", non_final_tasks)
        require(not run_end_count, "ended runs without exactly one run_end event", run_end_count)
        require(not survivors, "task processes of a killed daemon still running after the restart",
                ["pid %d: %s" % (k[0], v) for k, v in survivors.items()])
        require(not left_running, "task processes left running", ["pid %d: %s" % (k[0], v) for k, v in left_running.items()])
        require(integrity_result == "ok", "PRAGMA integrity_check", [integrity_result])
        require(lost_total > 0, "no attempt was recovered as lost in %d kills (did the loop run tasks?)" % kills)
        require(not lost_counter_mismatch, "run 'lost' counters that disagree with their lost events",
                lost_counter_mismatch)
        require(lost_listed == lost_runs, "`runs --state lost` differs from the runs with lost events (theirs or their child runs')",
                ["listed only: %s" % sorted(lost_listed - lost_runs), "not listed: %s" % sorted(lost_runs - lost_listed)])
        require(not amo_not_lost_message, "lost at_most_once tasks not failed with 'lost: ...'", amo_not_lost_message)
        require(took < 150, "the loop took %.0fs" % took)
        if problems:
            self.fail("kill -9 loop (TASKHUB_CRASH_SEED=%d):\n  %s" % (seed, "\n  ".join(problems)))

    # ---- targeted kills ----

    def durable_plugin_dir(self):
        """A plugin directory holding fx_durable (TH_CAP_DURABLE_START: its attempts wait for a
        durable start), which appends each attempt it runs to $FX_DURABLE_LEDGER."""
        plugins = tempfile.mkdtemp(prefix="taskhub-fx-durable-")
        self.addCleanup(shutil.rmtree, plugins, True)
        shutil.copy(os.path.join(harness.BIN["fixture_dir"], "fx_durable.so"), plugins)
        ledger = os.path.join(plugins, "executed")
        old = os.environ.get("FX_DURABLE_LEDGER")
        os.environ["FX_DURABLE_LEDGER"] = ledger
        self.addCleanup(lambda: os.environ.pop("FX_DURABLE_LEDGER") if old is None
                        else os.environ.__setitem__("FX_DURABLE_LEDGER", old))
        return plugins, ledger

    def test_kill_after_starting_committed(self):
        """Killed after an attempt that must not repeat unseen (a plugin that declares
        TH_CAP_DURABLE_START, a task with at_most_once = true) is committed as starting, before its
        plugin is called: the attempt never ran; recovery records it lost and retries it, or fails
        the task as lost."""
        plugins, fx_ledger = self.durable_plugin_dir()
        d = self.daemon(start=False, extra_plugin_dirs=(plugins,))
        marker = harness.new_marker()
        ledger = d.path("ledger")
        d.write_workflow("retry1", '[[task]]\nid = "r"\nplugin = "fx_durable"\nretries = 1\n')
        d.write_workflow("noretry", '[[task]]\nid = "n"\nplugin = "fx_durable"\n')
        d.write_workflow("amo", shell_task(ledger, marker, "a", "true", retries=2, at_most_once=True))

        def trigger(wf):
            rc, out, _ = d.ctl("run", wf)  # the daemon may die before it answers
            return out["id"] if rc == 0 else None

        def executed(rid, tid):
            if tid == "a":
                return [x.attempt for x in starts(read_ledger(ledger), rid, tid)]
            try:
                with open(fx_ledger) as f:
                    lines = [line.split() for line in f.read().splitlines()]
            except FileNotFoundError:
                return []
            return [int(a) for r, t, a in lines if r == rid and t == tid]

        for wf, tid in (("retry1", "r"), ("noretry", "n"), ("amo", "a")):
            rid = self.crash_at(d, "task_starting_committed", lambda: trigger(wf))
            d.start()
            listed = d.ctl_ok("runs", wf)
            self.assertEqual(len(listed), 1, "runs of %s after the restart: %r" % (wf, listed))
            if rid is not None:
                self.assertEqual(listed[0]["id"], rid)
            rid = listed[0]["id"]
            run = shown(d, self.wait_final(d, rid)["id"])
            t = harness.task(run, tid)
            lost = events(run, "lost", tid)
            recovered = events(run, "recovered")
            sys.stdout.write("\n%s: task %s %s attempt %d %r; lost events %r; recovered events %r\n"
                             % (rid, tid, t["state"], t["attempt"], t["message"],
                                [e["detail"] for e in lost], [e["detail"] for e in recovered]))
            self.assertEqual(len(lost), 1, "%s: lost events of task %s: %r" % (rid, tid, run["events"]))
            self.assertTrue(lost[0]["detail"], "the lost event does not say why")
            self.assertEqual(len(recovered), 1, "%s: recovered events: %r" % (rid, run["events"]))
            self.assertTrue(recovered[0]["detail"], "the recovered event does not say what recovery did")
            self.assertIn(rid, self.lost_listing(d), "runs --state lost does not list %s" % rid)
            if "lost" in run:
                self.assertEqual(run["lost"], 1, "%s: the run's lost counter" % rid)
            if wf == "retry1":
                self.assertEqual((run["state"], t["state"], t["attempt"]), ("succeeded", "succeeded", 2), t)
                self.assertEqual(executed(rid, tid), [2], "attempt 1 never reached its plugin")
            else:
                self.assertEqual((run["state"], t["state"], t["attempt"]), ("failed", "failed", 1), t)
                self.assertEqual(executed(rid, tid), [], "a lost attempt that never started was executed")
                self.assertIn("lost", t["message"])
                if wf == "amo":
                    self.assertTrue(t["message"].startswith("lost:"), t["message"])
            self.assertEqual(d.stop()[0], 0)
            self.assertEqual(integrity(d), "ok")

    def test_at_most_once_waits_for_its_start_on_disk(self):
        """Killed while the commit that holds an at_most_once attempt's starting record is being
        written (every commit held back by 3 s, TASKHUB_TEST_DELAY=store_commit:3000): its plugin
        was not called, so after the restart the task runs once, as attempt 1, with nothing lost.
        Its upstream task's end was in the same commit: that attempt ended unseen and runs again."""
        self.require_failpoints()
        d = self.daemon(start=False)
        marker = harness.new_marker()
        ledger = d.path("ledger")
        d.write_workflow("amo", shell_task(ledger, marker, "a", "sleep 1", retries=1)
                         + shell_task(ledger, marker, "b", "true", depends=["a"], at_most_once=True))
        d.start(extra_env={"TASKHUB_TEST_DELAY": "store_commit:3000"})
        rid = d.ctl_ok("run", "amo", timeout=30)["id"]
        harness.wait_until(lambda: [x for x in read_ledger(ledger) if x.task == "a" and x.phase == "end"],
                           timeout=30, what="a's end in the ledger")
        time.sleep(0.5)  # a's end and b's starting record are written; their commit takes 3 s
        self.kill9(d)
        self.assertEqual(starts(read_ledger(ledger), rid, "b"), [], "b ran before its start was committed")
        d.start()
        run = shown(d, self.wait_final(d, rid)["id"])
        b = harness.task(run, "b")
        self.assertEqual((run["state"], b["state"], b["attempt"]), ("succeeded", "succeeded", 1), run)
        lines = read_ledger(ledger)
        self.assertEqual([x.attempt for x in starts(lines, rid, "b")], [1])
        self.assertEqual([x.attempt for x in starts(lines, rid, "a")], [1, 2], "a's unseen end: a runs again")
        self.assertEqual(events(run, "lost", "b"), [], "an attempt that never started was recorded as lost")
        self.assertEqual(len(events(run, "lost", "a")), 1, run["events"])
        self.assertEqual(d.stop()[0], 0)
        self.assertEqual(integrity(d), "ok")

    def check_unrecorded_start(self, containment):
        """Killed right after an ordinary attempt's process was started, in the same turn of the
        event loop, so that its start is not yet on disk: the restart finds the attempt by its
        cgroup or by its processes' environment, kills it, records it as lost and runs the task
        again as the next attempt."""
        d = self.daemon(start=False, extra_config='\n[daemon]\ncontainment = "%s"\n' % containment)
        d.start()
        mode = (d.ctl_ok("status").get("containment") or {}).get("mode")
        self.assertEqual(d.stop()[0], 0)
        if mode != containment:
            self.skipTest("containment %s is not available here (%s)" % (containment, mode))
        marker = harness.new_marker()
        ledger = d.path("ledger")
        # Attempt 1 fails at once; attempt 2 starts from its retry timer, a turn of its own long
        # after everything before it was committed, and runs for a minute; attempt 3 succeeds.
        body = 'case $TASKHUB_ATTEMPT in 1) exit 3;; 2) sleep 60;; esac'
        d.write_workflow("uncommitted", shell_task(ledger, marker, "b", body, retries=2)
                         + 'retry_delay = "1s"\n')

        def trigger():
            rc, out, _ = d.ctl("run", "uncommitted")
            return out["id"] if rc == 0 else None

        # Attempt 1 waits for the commit that records the run (nothing runs for a run a crash
        # could forget), so the first pass is attempt 2's.
        rid = self.crash_at(d, "task_started_uncommitted", trigger)
        self.assertIsNotNone(rid, "the run was not acknowledged before the kill")
        b2 = [x for x in starts(read_ledger(ledger), rid, "b") if x.attempt == 2] or \
            [harness.wait_until(lambda: [x for x in starts(read_ledger(ledger), rid, "b") if x.attempt == 2],
                                what="attempt 2 in the ledger")[0]]
        self.assertEqual(b2[0].attempt, 2)
        old = task_processes(marker)
        self.assertTrue(old, "attempt 2's process died with the daemon")
        decoy = None
        if containment == "process-group":
            # The attack: a local user's process that claims a later attempt of b through the
            # environment alone. It must neither be killed nor move b's attempts or lost count.
            decoy = subprocess.Popen(["sleep", "60"], user="nobody", start_new_session=True,
                                     env={"TASKHUB_STATE_DIR": proc_environ(next(iter(old))[0])["TASKHUB_STATE_DIR"],
                                          "TASKHUB_RUN_ID": rid,
                                          "TASKHUB_TASK_ID": "b", "TASKHUB_ATTEMPT": "50"})
            self.decoys.append(decoy)
        d.start()
        time.sleep(0.2)
        self.assertEqual(still_alive(old), {}, "attempt 2's process still runs after the restart")
        if decoy is not None:
            self.assertIsNone(decoy.poll(), "recovery killed another user's process that only claimed an attempt")
        run = shown(d, self.wait_final(d, rid)["id"])
        b = harness.task(run, "b")
        lost = events(run, "lost", "b")
        sys.stdout.write("\n%s (%s): b %s attempt %d; lost: %r\n" % (rid, containment, b["state"], b["attempt"],
                                                                   [e["detail"] for e in lost]))
        self.assertEqual((run["state"], b["state"], b["attempt"]), ("succeeded", "succeeded", 3), run)
        self.assertEqual([x.attempt for x in starts(read_ledger(ledger), rid, "b")], [1, 2, 3])
        self.assertEqual(len(lost), 1, run["events"])
        self.assertIn("attempt 2 was lost", lost[0]["detail"])
        self.assertIn("before its start was committed", lost[0]["detail"])
        self.assertIn(rid, self.lost_listing(d))
        if "lost" in run:
            self.assertEqual(run["lost"], 1, "the run's lost counter")
        self.assertEqual(task_processes(marker), {})
        self.assertEqual(d.stop()[0], 0)
        self.assertEqual(integrity(d), "ok")

    def test_unrecorded_start_found_by_cgroup(self):
        self.check_unrecorded_start("cgroup")

    def test_unrecorded_start_found_by_environment(self):
        self.check_unrecorded_start("process-group")

    def test_kill_during_store_commit(self):
        """Killed while the store writer commits: the database is intact, every run a client was
        told about (and a pause it was told about) is still there, and runs go on."""
        d = self.daemon()
        marker = harness.new_marker()
        ledger = d.path("ledger")
        d.write_workflow("quick", """\
            [policy]
            overlap = "allow"
            """ + shell_task(ledger, marker, "s", "true")
            + "\n[[task]]\nid = \"n\"\nplugin = \"noop\"\ndepends_on = [\"s\"]\n")
        d.write_workflow("sched", """\
            [[trigger]]
            every = "1h"

            [[task]]
            id = "n"
            plugin = "noop"
            """)
        acknowledged = []
        paused = False      # whether `sched` is paused, as the daemon last acknowledged
        per_kill = []
        for at in (1, 6, 25, 60):
            unsure = False  # a pause or resume was sent and not answered: either state is right
            before = len(acknowledged)

            def drive():
                nonlocal paused, unsure
                deadline = time.monotonic() + 12
                while d.proc.poll() is None and time.monotonic() < deadline:
                    rc, _, _ = d.ctl("resume" if paused else "pause", "sched", timeout=5)
                    if rc != 0:
                        unsure = True
                        return
                    paused = not paused
                    rc, out, _ = d.ctl("run", "quick", timeout=5)
                    if rc == 0:
                        acknowledged.append(out["id"])
            self.crash_at(d, "store_commit@%d" % at, drive)
            per_kill.append("@%d: %d" % (at, len(acknowledged) - before))
            self.assertEqual(integrity(d), "ok", "after a kill in store_commit@%d" % at)
            d.start()
            known = {r["id"] for r in d.ctl_ok("runs", "quick", "--limit", "100000")}
            self.assertEqual(sorted(set(acknowledged) - known), [],
                             "runs acknowledged before the kill at store_commit@%d are gone" % at)
            if not unsure:
                self.assertEqual(self._paused(d, "sched"), paused,
                                 "an acknowledged %s was lost (store_commit@%d)" % ("pause" if paused else "resume", at))
            paused = self._paused(d, "sched")
            for rid in known:
                self.wait_final(d, rid)
            self.assertEqual(d.ctl_ok("run", "quick", "--wait")["state"], "succeeded", "no new run after the kill")
            self.assertEqual(d.stop()[0], 0)
            self.assertEqual(integrity(d), "ok")
        sys.stdout.write("\nstore_commit: runs acknowledged before each kill %s; all kept, integrity ok\n"
                         % ", ".join(per_kill))
        self.assertGreater(len(acknowledged), 0, "no run was acknowledged before any of the kills")

    @staticmethod
    def _wait_answering(d):
        """Waits until the daemon answers (True) or dies (False)."""
        deadline = time.monotonic() + harness.TIMEOUT
        while d.proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(d.socket) and d.ctl("status", timeout=5)[0] == 0:
                return True
            time.sleep(harness.POLL)
        return False

    @staticmethod
    def _paused(d, workflow):
        for w in d.ctl_ok("list")["workflows"]:
            if w["name"] == workflow:
                return w["paused"] is not None
        raise AssertionError("workflow %s not listed" % workflow)

    def test_long_task_killed_and_nested_run_resumed(self):
        """A task running when the daemon dies: its process group is killed at the restart, the
        attempt is lost and retried; its upstream task is not re-run; a child run resumes."""
        d = self.daemon()
        marker = harness.new_marker()
        ledger = d.path("ledger")
        d.write_workflow("chain", shell_task(ledger, marker, "up", "true")
                         + shell_task(ledger, marker, "long", LONG_FIRST_ATTEMPT, depends=["up"], retries=1)
                         + workflow_task("sub", "kid", depends=["up"]))
        d.write_workflow("kid", shell_task(ledger, marker, "k1", "true")
                         + shell_task(ledger, marker, "k2", LONG_FIRST_ATTEMPT, depends=["k1"], retries=1))
        d.start()
        rid = d.ctl_ok("run", "chain")["id"]
        child = rid + "/sub.1"
        d.wait_task_state(rid, "long", "running")
        harness.wait_until(lambda: d.ctl("show", child)[0] == 0, what="child run %s" % child)
        d.wait_task_state(child, "k2", "running")
        time.sleep(0.5)  # the attempts' pids are committed
        long_pid = wait_started(ledger, rid, "long").pid
        k2_pid = wait_started(ledger, child, "k2").pid
        old = task_processes(marker)
        self.assertTrue(old, "no task process before the kill")
        self.kill9(d)
        self.assertTrue(proc_start_ticks(long_pid) and proc_start_ticks(k2_pid),
                        "the task processes died with the daemon (they should outlive it)")

        d.start()
        # Recovery killed them before the daemon answered; SIGKILL takes effect within moments.
        time.sleep(0.2)
        self.assertEqual(still_alive(old), {}, "task processes of the killed daemon still run after the restart")
        run = shown(d, self.wait_final(d, rid)["id"])
        kid = shown(d, child)
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(kid["state"], "succeeded", kid)
        lines = read_ledger(ledger)
        self.assertEqual([x.attempt for x in starts(lines, rid, "up")], [1], "a completed task was re-run")
        self.assertEqual([x.attempt for x in starts(lines, rid, "long")], [1, 2])
        self.assertEqual([x.attempt for x in starts(lines, child, "k1")], [1], "a completed child task was re-run")
        self.assertEqual([x.attempt for x in starts(lines, child, "k2")], [1, 2])
        self.assertEqual(harness.task(run, "long")["attempt"], 2)
        self.assertEqual(harness.task(kid, "k2")["attempt"], 2)
        sub = harness.task(run, "sub")
        self.assertEqual((sub["state"], sub["attempt"], sub["child_run"]), ("succeeded", 1, child),
                         "the parent's workflow task did not resume its child run")
        self.assertNotEqual(d.ctl("show", rid + "/sub.2")[0], 0, "a second child run was started")
        for r, tid in ((run, "long"), (kid, "k2")):
            lost = events(r, "lost", tid)
            self.assertEqual(len(lost), 1, "%s: lost events of %s: %r" % (r["id"], tid, r["events"]))
            self.assertTrue(lost[0]["detail"])
            self.assertEqual(len(events(r, "recovered")), 1, r["events"])
            sys.stdout.write("\n%s %s lost: %r; recovered: %r\n" % (r["id"], tid, lost[0]["detail"],
                                                                    events(r, "recovered")[0]["detail"]))
        self.assertTrue({rid, child} <= self.lost_listing(d), "runs --state lost misses %s or %s" % (rid, child))
        self.assertEqual(task_processes(marker), {})
        self.assertEqual(d.stop()[0], 0)
        self.assertEqual(integrity(d), "ok")

    def test_queued_paused_gone_and_changed_runs(self):
        """A queued run stays queued and starts in its turn; a paused run stays paused, its frozen
        attempt lost and retried only after resume; a run whose workflow file is gone or changed
        cannot continue and fails saying why, its process killed and its attempt lost all the same."""
        d = self.daemon()
        marker = harness.new_marker()
        ledger = d.path("ledger")

        def first_long(name, later):
            # The first execution of the workflow's task sleeps for long, the later ones do `later`.
            return "if mkdir %s 2>/dev/null; then sleep 60; else %s; fi" % (d.path("first-" + name), later)
        d.write_workflow("q", '[policy]\noverlap = "queue_all"\n'
                         + shell_task(ledger, marker, "w", first_long("q", "sleep 1.5"), retries=1))
        d.write_workflow("p", shell_task(ledger, marker, "f", first_long("p", "true"), retries=1))
        d.write_workflow("gone", shell_task(ledger, marker, "g", "sleep 60", retries=1))
        d.write_workflow("changed", shell_task(ledger, marker, "c", "sleep 60", retries=1))
        d.start()
        q1 = d.ctl_ok("run", "q")["id"]
        q2 = d.ctl_ok("run", "q")["id"]
        p1 = d.ctl_ok("run", "p")["id"]
        gone = d.ctl_ok("run", "gone")["id"]
        changed = d.ctl_ok("run", "changed")["id"]
        for rid, tid in ((q1, "w"), (p1, "f"), (gone, "g"), (changed, "c")):
            d.wait_task_state(rid, tid, "running")
        self.assertEqual(shown(d, q2)["state"], "queued")
        d.ctl_ok("pause", p1, "--freeze")
        d.wait_task_state(p1, "f", "frozen")
        for rid, tid in ((q1, "w"), (p1, "f"), (gone, "g"), (changed, "c")):
            wait_started(ledger, rid, tid)
        time.sleep(0.5)  # the attempts' pids are committed
        old = task_processes(marker)
        self.kill9(d)
        os.unlink(os.path.join(d.workflows_dir, "gone.toml"))
        d.write_workflow("changed", 'description = "edited while taskhubd was down"\n'
                         + shell_task(ledger, marker, "c", "sleep 60", retries=1))

        d.start()
        time.sleep(0.2)
        self.assertEqual(still_alive(old), {}, "task processes of the killed daemon still run after the restart")
        self.assertEqual(shown(d, q2)["state"], "queued", "a queued run did not stay queued behind its predecessor")
        run = shown(d, p1)
        self.assertEqual(run["state"], "paused", "a paused run did not stay paused")
        self.assertEqual(len(events(run, "lost", "f")), 1, run["events"])
        time.sleep(0.5)
        self.assertEqual([x.attempt for x in starts(read_ledger(ledger), p1, "f")], [1],
                         "a paused run started a task before it was resumed")
        d.ctl_ok("resume", p1)

        r1, r2 = shown(d, self.wait_final(d, q1)["id"]), shown(d, self.wait_final(d, q2)["id"])
        self.assertEqual((r1["state"], harness.task(r1, "w")["attempt"]), ("succeeded", 2))
        self.assertEqual((r2["state"], harness.task(r2, "w")["attempt"]), ("succeeded", 1))
        self.assertEqual(len(events(r1, "lost", "w")), 1, r1["events"])
        self.assertEqual(events(r2, "lost"), [], "the queued run had nothing running to lose")
        self.assertGreaterEqual(harness.parse_iso(r2["started"]), harness.parse_iso(r1["ended"]),
                                "the queued run did not wait for its predecessor")
        run = shown(d, self.wait_final(d, p1)["id"])
        self.assertEqual((run["state"], harness.task(run, "f")["attempt"]), ("succeeded", 2))
        self.assertEqual([x.attempt for x in starts(read_ledger(ledger), p1, "f")], [1, 2])
        for rid, tid, why in ((gone, "g", "is no longer loaded"), (changed, "c", "has changed")):
            run = shown(d, self.wait_final(d, rid)["id"])
            t = harness.task(run, tid)
            self.assertEqual(run["state"], "failed", run)
            self.assertIn(why, run["message"])
            self.assertEqual((t["state"], t["attempt"]), ("failed", 1), t)
            self.assertTrue(t["message"].startswith("lost:"), t["message"])
            self.assertEqual(len(events(run, "recovered")), 1, run["events"])
            self.assertEqual(len(events(run, "run_end")), 1, "%s: run_end events: %r" % (rid, run["events"]))
            self.assertEqual(len(events(run, "lost", tid)), 1,
                             "%s: the lost attempt of a run that cannot continue has no lost event: %r" % (rid, run["events"]))
            self.assertEqual([x.attempt for x in starts(read_ledger(ledger), rid, tid)], [1])
        self.assertTrue({q1, p1, gone, changed} <= self.lost_listing(d))
        self.assertNotIn(q2, self.lost_listing(d))
        self.assertEqual(task_processes(marker), {})
        self.assertEqual(d.stop()[0], 0)
        self.assertEqual(integrity(d), "ok")

    def test_reused_pid_is_not_killed(self):
        """The recorded pid now names another process (its start time differs): recovery leaves it
        alone and still records the attempt as lost."""
        d = self.daemon()
        marker = harness.new_marker()
        ledger = d.path("ledger")
        d.write_workflow("victim", shell_task(ledger, marker, "v", "sleep 60"))
        d.start()
        rid = d.ctl_ok("run", "victim")["id"]
        d.wait_task_state(rid, "v", "running")
        real_pid = wait_started(ledger, rid, "v").pid
        time.sleep(0.5)  # the attempt's pid is committed
        self.kill9(d)

        con = sqlite3.connect(db_path(d), timeout=5)
        try:
            columns = {r[1] for r in con.execute("PRAGMA table_info(tasks)")}
            self.assertTrue({"pid", "pgid", "proc_start"} <= columns,
                            "the tasks table has no pid, pgid and proc_start columns: %s" % sorted(columns))
            row = con.execute("SELECT t.key, t.state, t.pid, t.pgid, t.proc_start FROM tasks t JOIN runs r "
                              "ON t.key / 1048576 = r.key WHERE r.id = ? AND t.task_id = 'v'", (rid,)).fetchone()
            self.assertIsNotNone(row, "no task row for %s v" % rid)
            key, state, pid, pgid, proc_start = row
            self.assertEqual(state, "running")
            self.assertEqual((pid, pgid, proc_start), (real_pid, real_pid, proc_start_ticks(real_pid)),
                             "the store's process identity of the attempt (pid, pgid, proc_start)")
            # The real task goes away; a process of our own takes its place in the record, with a
            # start time that is not its own -- as if its pid had been reused.
            os.killpg(real_pid, signal.SIGKILL)
            harness.reap_orphans()
            decoy = subprocess.Popen(["sleep", "60"], start_new_session=True)
            self.decoys.append(decoy)
            ticks = proc_start_ticks(decoy.pid)
            con.execute("UPDATE tasks SET pid = ?, pgid = ?, proc_start = ? WHERE key = ?",
                        (decoy.pid, decoy.pid, ticks + 1, key))
            con.commit()
        finally:
            con.close()

        d.start()
        time.sleep(0.3)
        self.assertEqual(proc_start_ticks(decoy.pid), ticks, "recovery killed a process whose start time did not match")
        self.assertIsNone(decoy.poll())
        run = shown(d, self.wait_final(d, rid)["id"])
        t = harness.task(run, "v")
        self.assertEqual((run["state"], t["state"], t["attempt"]), ("failed", "failed", 1), t)
        self.assertIn("lost", t["message"])
        self.assertEqual(len(events(run, "lost", "v")), 1, run["events"])
        self.assertEqual(proc_start_ticks(decoy.pid), ticks)


if __name__ == "__main__":
    harness.main()
