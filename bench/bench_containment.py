#!/usr/bin/env python3
"""Benchmark: what a cgroup per attempt costs. The same 2,000 `true` shell tasks run by a taskhubd
with `containment = "cgroup"` and one with `containment = "process-group"`, alternating within each
repetition, and bench_trigger_lateness's shell-task lateness window once in each mode. Goals (issue
17): at most 5 % fewer tasks/s and at most 0.3 ms more p99 lateness with cgroups. The kernel's part
is measured in the same repetitions: bench/raw_spawn starting `true` with clone3, with and without
a fresh cgroup per child (mkdir, CLONE_INTO_CGROUP, rmdir). See docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import bench_shell_tasks as st  # noqa: E402

GOAL_TASKS_LOSS = 0.05
GOAL_P99_EXTRA_MS = 0.3


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


def raw_clone3(build, count, parallel, cgroup_dir=None):
    args = [str(Path(build) / "bench" / "raw_spawn"), "--count", str(count), "--parallel", str(parallel), "--clone3"]
    if cgroup_dir:
        args += ["--cgroup-dir", cgroup_dir]
    out = subprocess.run(args + ["--", "/bin/true"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["per_second"]


def lateness(build, containment, seconds):
    """bench_trigger_lateness.py in one containment mode; its JSON results."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        r = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_trigger_lateness.py")),
                            "--build-dir", str(build), "--seconds", str(seconds), "--containment", containment,
                            "--json", out.name], capture_output=True, text=True)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"bench_trigger_lateness --containment {containment} failed "
                               f"({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return json.loads(Path(out.name).read_text())


def main():
    ap = bl.argument_parser(__doc__, reps=3)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=int, default=40, help="lateness window per mode (firings)")
    args = ap.parse_args()
    build = Path(args.build_dir).resolve()
    return bl.in_work_root(build, lambda work_root: run(args, build, work_root))


def run(args, build, work_root):
    machine = bl.machine(work_root)
    print(f"== containment: {args.tasks} `true` tasks, {args.parallel} in flight, cgroup vs process-group, "
          f"{args.reps} repetitions; lateness {args.seconds} s per mode")
    for k, v in machine.items():
        print(f"   {k:15} {v}")
    bl.warn_if_busy()
    reps, problems = [], []
    mount = cgroup2_mount()
    raw_dir = os.path.join(mount, f"taskhub-bench-raw-{os.getpid()}") if mount else None
    if raw_dir:
        os.makedirs(raw_dir, exist_ok=True)
    try:
        return measure(args, build, work_root, machine, reps, problems, raw_dir)
    finally:
        if raw_dir:
            os.rmdir(raw_dir)


def measure(args, build, work_root, machine, reps, problems, raw_dir):
    for rep in range(args.reps):
        order = ["cgroup", "process-group"] if rep % 2 == 0 else ["process-group", "cgroup"]
        r = {"raw_plain": [raw_clone3(build, args.tasks, args.parallel)]}
        r["raw_cgroup"] = [raw_clone3(build, args.tasks, args.parallel, raw_dir)] if raw_dir else []
        r.update({m: st.daemon_run(build, work_root, args.tasks, args.parallel, containment=m) for m in order})
        if raw_dir:
            r["raw_cgroup"].append(raw_clone3(build, args.tasks, args.parallel, raw_dir))
        r["raw_plain"].append(raw_clone3(build, args.tasks, args.parallel))
        r["raw_ratio"] = bl.mean(r["raw_cgroup"]) / bl.mean(r["raw_plain"]) if raw_dir else float("nan")
        if r["cgroup"]["containment"] != "cgroup":
            problems.append("the daemon with containment = \"cgroup\" did not report cgroup containment")
        if r["process-group"]["containment"] != "process-group":
            problems.append("the daemon with containment = \"process-group\" reported cgroups")
        r["ratio"] = r["cgroup"]["tasks_per_s"] / r["process-group"]["tasks_per_s"]
        reps.append(r)
        print(f"   rep {rep + 1}: cgroup {r['cgroup']['tasks_per_s']:.0f}/s, process-group "
              f"{r['process-group']['tasks_per_s']:.0f}/s (ratio {r['ratio']:.3f}); raw clone3 with a cgroup "
              f"per child vs without {r['raw_ratio']:.3f}; daemon CPU "
              f"{r['cgroup']['daemon_cpu_ms_per_task']:.3f} vs {r['process-group']['daemon_cpu_ms_per_task']:.3f} "
              f"ms/task", flush=True)
    late = {m: lateness(build, m, args.seconds) for m in ("process-group", "cgroup")}
    p99 = {m: late[m]["stats_ms"]["shell"]["p99"] for m in late}
    p50 = {m: late[m]["stats_ms"]["shell"]["p50"] for m in late}
    raw99 = {m: late[m]["stats_ms"]["raw_spawn"]["p99"] for m in late}
    ratio = bl.median([r["ratio"] for r in reps])
    raw_ratio = bl.median([r["raw_ratio"] for r in reps])
    loss = 1 - ratio
    extra = p99["cgroup"] - p99["process-group"]
    print()
    bl.print_table(
        ["metric", "cgroup", "process-group", "difference", "goal", "result"],
        [
            ["tasks/s (median of reps)", f"{bl.median([r['cgroup']['tasks_per_s'] for r in reps]):.0f}",
             f"{bl.median([r['process-group']['tasks_per_s'] for r in reps]):.0f}", f"{loss * 100:+.1f} % fewer",
             f"<= {GOAL_TASKS_LOSS * 100:.0f} % fewer", "pass" if loss <= GOAL_TASKS_LOSS else "FAIL"],
            ["kernel alone: raw clone3 `true`/s, a cgroup per child vs none",
             f"{bl.median([x for r in reps for x in r['raw_cgroup']]):.0f}" if raw_dir else "-",
             f"{bl.median([x for r in reps for x in r['raw_plain']]):.0f}", f"{(1 - raw_ratio) * 100:+.1f} % fewer",
             "-", "info"],
            ["shell task lateness p50 ms", f"{p50['cgroup']:.2f}", f"{p50['process-group']:.2f}",
             f"{p50['cgroup'] - p50['process-group']:+.2f} ms", "-", "info"],
            ["shell task lateness p99 ms", f"{p99['cgroup']:.2f}", f"{p99['process-group']:.2f}",
             f"{extra:+.2f} ms", f"<= +{GOAL_P99_EXTRA_MS} ms", "pass" if extra <= GOAL_P99_EXTRA_MS else "FAIL"],
            ["raw_timer spawn p99 ms (same windows)", f"{raw99['cgroup']:.2f}", f"{raw99['process-group']:.2f}",
             f"{raw99['cgroup'] - raw99['process-group']:+.2f} ms", "-", "info"],
        ])
    print(f"   spread of per-repetition ratios: {bl.spread2([r['ratio'] for r in reps])}")
    results = {
        "benchmark": "containment",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "tasks": args.tasks,
        "parallel": args.parallel,
        "reps": reps,
        "ratio_tasks_per_s": ratio,
        "raw_ratio_cgroup_per_child": raw_ratio,
        "lateness_p99_ms": p99,
        "lateness_p50_ms": p50,
        "problems": problems,
    }
    for p in problems:
        print(f"   FAILURE: {p}")
    return bl.finish(args, results, lambda: loss > GOAL_TASKS_LOSS or extra > GOAL_P99_EXTRA_MS)


if __name__ == "__main__":
    sys.exit(main())
