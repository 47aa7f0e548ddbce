#!/usr/bin/env python3
"""Benchmark: what process isolation costs per task. A 10,000-task fan-out/fan-in of noop tasks
runs on two daemons started by this script, one with noop in process and one with
`[plugins.noop] isolation = "process"` (every attempt an execute frame to taskhub-runner and a
complete frame back); µs per task of each and their ratio. Raw baselines from the same invocation:
bench/raw_dag on the same DAG (scheduling with nothing around it) and bench/raw_ipc (a message to
another process and its answer, as many in flight as noop's max_concurrency). See
docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import datetime
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine_overhead as eo  # noqa: E402
import benchlib as bl  # noqa: E402

GOAL_RATIO = 10.0  # process isolation within 10x of in process, per task
MODES = ("in_process", "process")


def raw_ipc(build, messages, window, reps):
    out = subprocess.run([str(build / "bench" / "raw_ipc"), "--messages", str(messages), "--window", str(window),
                          "--reps", str(reps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = bl.argument_parser(__doc__, reps=5, strict_help="exit 3 when the goal is missed")
    ap.add_argument("--tasks", type=int, default=10_000, help="tasks in the fan-out (default 10000)")
    ap.add_argument("--threads", type=int, default=2, help="threads of raw_dag's pool")
    ap.add_argument("--max-concurrency", type=int, default=1000,
                    help="[plugins.noop] max_concurrency of both daemons (and raw_ipc's window)")
    args = ap.parse_args()
    if args.tasks < 3:
        ap.error("--tasks must be at least 3")
    build = Path(args.build_dir).resolve()
    if not (build / "daemon" / "taskhub-runner").exists():
        ap.error(f"{build}/daemon/taskhub-runner is missing: build the taskhub-runner target")
    return bl.in_work_root(build, lambda work_root: run(args, build, work_root))


def run(args, build, work_root):
    n = args.tasks
    machine = bl.machine(work_root)
    print(f"== plugin_dispatch: {n:,} noop tasks (fan-out/fan-in), noop in process and in a runner, "
          f"{args.reps} repetitions (medians shown)")
    for k, v in machine.items():
        print(f"   {k:15} {v}")
    bl.warn_if_busy()

    deps = eo.dag("fanout", n, 0, 0)
    workflow = eo.workflow_toml("fanout", deps)
    dag_path = work_root / "fanout.dag"
    eo.dag_file(dag_path, deps)
    eo.raw_dag(build, dag_path, args.threads, 1)  # a missing baseline fails now
    raw_ipc(build, 1000, 10, 1)

    daemons = {}
    for mode in MODES:
        plugin = {"max_concurrency": args.max_concurrency}
        if mode == "process":
            plugin["isolation"] = "process"
        cfg = {"pool": {"min_workers": 1, "max_workers": 2}, "plugins": {"noop": plugin}}
        daemons[mode] = bl.Daemon(build, work_root / mode, cfg, {"dispatch": workflow})
    reps = {m: [] for m in MODES}
    baselines = {"raw_dag_ns": [], "raw_ipc_ns": []}
    try:
        for mode, d in daemons.items():
            load_s = d.start(timeout=120)
            print(f"   taskhubd ({mode}) answered after {load_s:.1f} s", flush=True)
            if mode == "process" and "process isolation: runner pid" not in d.log_file.read_text():
                print(f"error: noop is not in a runner; see {d.log_file}", file=sys.stderr)
                return 1
        for rep in range(args.reps):
            baselines["raw_dag_ns"].append(eo.raw_dag(build, dag_path, args.threads, 5)["ns_per_task"])
            baselines["raw_ipc_ns"].append(raw_ipc(build, n, args.max_concurrency, 5)["ns_per_message"])
            line = []
            for mode in MODES:
                try:
                    r = eo.daemon_run(daemons[mode], "dispatch", n)
                except RuntimeError as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 1
                reps[mode].append(r)
                line.append(f"{mode} {r['us_per_task']:.2f} us/task")
            ratio = reps["process"][-1]["us_per_task"] / reps["in_process"][-1]["us_per_task"]
            print(f"   rep {rep + 1}: {', '.join(line)}, ratio {ratio:.2f}; raw_dag "
                  f"{baselines['raw_dag_ns'][-1]:.0f} ns/task, raw_ipc {baselines['raw_ipc_ns'][-1]:.0f} ns/message",
                  flush=True)
        cpu = {m: bl.thread_cpu(daemons[m].pid) for m in MODES}
        runner_cpu_s = children_cpu(daemons["process"].pid)
    finally:
        for d in daemons.values():
            d.stop()

    us = {m: bl.median([r["us_per_task"] for r in reps[m]]) for m in MODES}
    ratios = [p["us_per_task"] / i["us_per_task"] for p, i in zip(reps["process"], reps["in_process"])]
    ratio = bl.median(ratios)
    dag_ns = bl.median(baselines["raw_dag_ns"])
    ipc_ns = bl.median(baselines["raw_ipc_ns"])
    extra_us = us["process"] - us["in_process"]
    met = ratio <= GOAL_RATIO
    print()
    print("   TaskHub: (run ended - run started) / tasks, from the run record")
    bl.print_table(["metric", "TaskHub", "baseline", "ratio", "goal", "result"], [
        ["us/task, noop in process", f"{us['in_process']:.2f}", f"{dag_ns / 1000:.3f} raw_dag", "-", "-", "info"],
        ["us/task, noop in a runner", f"{us['process']:.2f}", f"{us['in_process']:.2f} in process",
         f"{ratio:.2f}", f"<= {GOAL_RATIO:g}x", "pass" if met else "FAIL"],
        ["us/task added by the runner", f"{extra_us:.2f}", f"{ipc_ns / 1000:.3f} raw_ipc", f"{extra_us * 1000 / ipc_ns:.0f}",
         "-", "info"],
    ])
    print()
    print(f"   spread: in process {bl.spread2([r['us_per_task'] for r in reps['in_process']])} us/task, "
          f"in a runner {bl.spread2([r['us_per_task'] for r in reps['process']])} us/task, ratio "
          f"{bl.spread2(ratios)}; raw_ipc {bl.spread(baselines['raw_ipc_ns'])} ns/message")
    print(f"   daemon CPU over its life (s, by thread): in process {fmt_cpu(cpu['in_process'])}; "
          f"in a runner {fmt_cpu(cpu['process'])}, and its runner(s) {runner_cpu_s:.1f}")

    results = {
        "benchmark": "plugin_dispatch",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "tasks": n,
        "reps": args.reps,
        "max_concurrency": args.max_concurrency,
        "us_per_task": us,
        "ratio": ratio,
        "added_us_per_task": extra_us,
        "raw_dag_ns_per_task": dag_ns,
        "raw_ipc_ns_per_message": ipc_ns,
        "runner_cpu_seconds": runner_cpu_s,
        "repetitions": reps,
        "baselines": baselines,
    }
    return bl.finish(args, results, lambda: not met)


def children_cpu(pid):
    """CPU seconds used so far by the child processes of pid's main thread (the runners)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return 0.0
    return sum(sum(bl.thread_cpu(k).values()) for k in kids)


def fmt_cpu(by_thread):
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_thread.items()))


if __name__ == "__main__":
    sys.exit(main())
