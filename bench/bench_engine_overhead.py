#!/usr/bin/env python3
"""Benchmark: the engine's overhead per task on large DAGs of noop tasks (a wide fan-out/fan-in,
a seeded random DAG, a chain), against bench/raw_dag (the same DAG on a plain thread pool with
atomic dependency counters) measured in the same invocation (goals: fan-out <= 4 us, random DAG
<= 5 us per task; the ratio is reported). Also per shape the CPU time of the
store's writer thread (`taskhubd-store`) per task (goal for the fan-out: <= 3 us), and for the
chains (--chain-tasks, plain and with at_most_once = true on every task, whose starts wait for a
durable record) the time per step against one 4 KiB write + fdatasync (bench/raw_fsync, in the
state directory's file system) measured in the same invocation (goal <= 1.3x). See
docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import datetime
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

# Issue 18's goals per task: fan-out <= 4 us, random DAG <= 5 us. The ratio to the raw pool (a
# thread pool with atomic counters, no store, no plugin ABI) is reported, not judged: no engine that
# records every task durably comes within 5x of it (issue 3 set that goal; it was never met).
GOAL_US_PER_TASK = {"fanout": 4.0, "random": 5.0}
GOAL_WRITER_US = 3.0      # the store's writer thread, CPU per task, fan-out
GOAL_FSYNC_RATIO = 1.3    # chain: time per step / one write + fdatasync
SHAPES = ("fanout", "random", "chain", "chain_amo")
LABELS = {"fanout": "fan-out/fan-in", "random": "random DAG", "chain": "chain",
          "chain_amo": "chain, at_most_once"}
CHAINS = ("chain", "chain_amo")  # judged per step against raw_fsync


def dag(shape, n, deps, seed):
    """The dependencies of each task, as lists of indices of earlier tasks."""
    if shape in CHAINS:
        return [[]] + [[i - 1] for i in range(1, n)]
    if shape == "fanout":
        # One root, n - 2 parallel tasks after it, one sink after all of them.
        return [[]] + [[0] for _ in range(n - 2)] + [list(range(1, n - 1))]
    if shape == "random":
        # Each task depends on `deps` distinct earlier tasks chosen uniformly (fewer for the
        # first few): reproducible from the seed, and a valid DAG by construction.
        rng = random.Random(seed)
        return [sorted(rng.sample(range(i), min(deps, i))) for i in range(n)]
    raise ValueError(shape)


def longest_path(deps):
    """Tasks on the longest dependency path (the chain's n, the fan-out's 3)."""
    depth = []
    for d in deps:
        depth.append(1 + max((depth[x] for x in d), default=0))
    return max(depth)


def workflow_toml(shape, deps):
    lines = [f'description = "benchmark: engine overhead, {len(deps)} noop tasks, {LABELS[shape]}"', ""]
    for i, d in enumerate(deps):
        lines += ["[[task]]", f'id = "t{i}"', 'plugin = "noop"']
        if shape == "chain_amo":
            lines.append("at_most_once = true")
        if len(d) > 8:
            # One element per line: toml11 3.7.1 takes time quadratic in the length of a line
            # (the fan-in's 99,998 dependencies on one line take minutes to parse).
            lines.append("depends_on = [\n" + "".join(f'  "t{x}",\n' for x in d) + "]")
        elif d:
            lines.append("depends_on = [" + ", ".join(f'"t{x}"' for x in d) + "]")
        lines.append("")
    return "\n".join(lines)


def dag_file(path, deps):
    """The input of bench/raw_dag: the task count, then one line of dependencies per task."""
    with open(path, "w") as f:
        f.write(f"{len(deps)}\n")
        for d in deps:
            f.write(" ".join(map(str, d)) + "\n")


def raw_dag(build, path, threads, reps):
    out = subprocess.run([str(build / "bench" / "raw_dag"), "--threads", str(threads), "--reps", str(reps),
                          str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def raw_fsync(build, directory, count=300):
    """Milliseconds of one 4 KiB write + fdatasync in directory (bench/raw_fsync)."""
    out = subprocess.run([str(build / "bench" / "raw_fsync"), str(directory), str(count)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["ms_per_fsync"]


def iso_s(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def daemon_run(d, name, n):
    """One run of workflow `name` through `taskhubctl run --wait --json`; checks that every task
    succeeded and returns the run's timings."""
    cpu0 = bl.thread_cpu(d.pid)
    t0 = time.monotonic()
    out = d.ctl("run", name, "--wait", "--json", check=False)
    wall = time.monotonic() - t0
    # The store's writer thread has committed everything by the time `run --wait` answers.
    store_cpu = bl.thread_cpu(d.pid).get("taskhubd-store", 0) - cpu0.get("taskhubd-store", 0)
    if not out.stdout.strip():
        raise RuntimeError(f"`taskhubctl run {name} --wait --json` failed ({out.returncode}): "
                           f"{out.stderr.strip()}; see {d.log_file}")
    run = json.loads(out.stdout)
    states = {}
    for t in run["tasks"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
    if run["state"] != "succeeded" or states.get("succeeded", 0) != n:
        raise RuntimeError(f"run {run['id']} ended {run['state']} with task states {states}: "
                           f"{run['message']}; see {d.log_file}")
    seconds = iso_s(run["ended"]) - iso_s(run["started"])
    # `run --wait` answers once the run's end is committed. Its wall time, less that of `wait`
    # for the same run (the same reply, from data already committed) and less the run's time
    # before it started, is the time from start to the commit of its end: what ended - started
    # would be if the engine waited for the store.
    t0 = time.monotonic()
    shown = d.ctl("wait", run["id"], "--json", check=False)
    show_wall = time.monotonic() - t0
    if not shown.stdout.strip():
        raise RuntimeError(f"`taskhubctl wait {run['id']} --json` failed ({shown.returncode}): "
                           f"{shown.stderr.strip()}; see {d.log_file}")
    durable = wall - show_wall - (iso_s(run["started"]) - iso_s(run["created"]))
    return {
        "run_id": run["id"],
        "us_per_task": seconds / n * 1e6,
        "run_seconds": seconds,
        # From the run's creation: includes inserting the n pending task rows before it starts.
        "created_us_per_task": (iso_s(run["ended"]) - iso_s(run["created"])) / n * 1e6,
        "wall_seconds": wall,
        "show_wall_seconds": show_wall,
        "durable_us_per_task": durable / n * 1e6,
        # CPU time of the store's writer thread for the whole run (its creation included).
        "store_cpu_us_per_task": store_cpu / n * 1e6,
        "reply_bytes": len(out.stdout),
    }


def main():
    ap = bl.argument_parser(__doc__, reps=3)
    ap.add_argument("--tasks", type=int, default=100_000, help="tasks per DAG (default 100000)")
    ap.add_argument("--chain-tasks", type=int, default=2_000,
                    help="tasks of the chains, whose steps wait for commits (default 2000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random DAG")
    ap.add_argument("--deps", type=int, default=3, help="dependencies per task in the random DAG")
    ap.add_argument("--threads", type=int, default=2, help="threads of the baseline's pool")
    ap.add_argument("--max-concurrency", type=int, default=1000,
                    help="[plugins.noop] max_concurrency of the daemon under test (0: unlimited); "
                         "see docs/benchmarks.md for why it is set")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated subset of " + ",".join(SHAPES))
    ap.add_argument("--load-timeout", type=float, default=600,
                    help="seconds taskhubd may take to load the workflows and answer")
    args = ap.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape '{s}' (expected {', '.join(SHAPES)})")
    if args.tasks < 3 or args.chain_tasks < 3:
        ap.error("--tasks and --chain-tasks must be at least 3")

    build = Path(args.build_dir).resolve()
    # The state directory on the disk of the build tree, as /var/lib/taskhub would be on a real
    # install's disk (not tmpfs, where fdatasync costs nothing).
    return bl.in_work_root(build, lambda work_root: run(args, build, work_root, shapes))


def run(args, build, work_root, shapes):
    sizes = {s: args.chain_tasks if s in CHAINS else args.tasks for s in shapes}
    machine = bl.machine(work_root)
    machine["fdatasync_ms"] = round(bl.fdatasync_latency(work_root) * 1000, 2)
    print(f"== engine_overhead: {args.tasks:,} noop tasks per DAG, {args.chain_tasks:,} per chain "
          f"({', '.join(LABELS[s] for s in shapes)}), {args.reps} repetitions (medians shown)")
    for k, v in machine.items():
        print(f"   {k:15} {v}")
    bl.warn_if_busy()

    workflows, dags, info = {}, {}, {}
    for s in shapes:
        deps = dag(s, sizes[s], args.deps, args.seed)
        workflows[f"overhead-{s}"] = workflow_toml(s, deps)
        dags[s] = work_root / f"{s}.dag"
        dag_file(dags[s], deps)
        info[s] = {"edges": sum(len(d) for d in deps), "longest_path": longest_path(deps),
                   "toml_bytes": len(workflows[f"overhead-{s}"])}
        print(f"   {s:8} {info[s]['edges']:,} dependencies, longest path {info[s]['longest_path']:,} "
              f"tasks, workflow file {info[s]['toml_bytes'] / 1e6:.1f} MB")

    # Once before the daemon starts: a missing or broken baseline fails now, not after the load.
    for s in shapes:
        raw_dag(build, dags[s], args.threads, 1)

    cfg = {"pool": {"min_workers": 1, "max_workers": 2},
           "plugins": {"noop": {"max_concurrency": args.max_concurrency}}}
    reps = {s: [] for s in shapes}
    with bl.Daemon(build, work_root / "daemon", cfg, workflows) as d:
        print(f"   starting taskhubd with {len(shapes)} workflow(s) of up to {max(sizes.values()):,} tasks "
              f"(timeout {args.load_timeout:.0f} s) ...", flush=True)
        try:
            load_s = d.start(timeout=args.load_timeout)
        except RuntimeError as e:
            print(f"error: taskhubd did not load the {max(sizes.values()):,}-task workflows within "
                  f"{args.load_timeout:.0f} s: {e}", file=sys.stderr)
            return 1
        listed = json.loads(d.ctl("list", "--json").stdout)
        if listed["errors"]:
            print("error: taskhubd rejected the benchmark workflows:", file=sys.stderr)
            for e in listed["errors"]:
                print(f"   {e['file']}: {e['message'][:300]}", file=sys.stderr)
            return 1
        print(f"   taskhubd answered after {load_s:.1f} s (loading and checking the workflows)", flush=True)
        for rep in range(args.reps):
            for s in shapes:
                # The baseline just before and just after the daemon's run, as in shell_tasks.
                before = raw_dag(build, dags[s], args.threads, 5)
                fsync_before = raw_fsync(build, work_root) if s in CHAINS else None
                try:
                    r = daemon_run(d, f"overhead-{s}", sizes[s])
                except RuntimeError as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 1
                after = raw_dag(build, dags[s], args.threads, 5)
                r["baseline_ns"] = [before["ns_per_task"], after["ns_per_task"]]
                r["ratio"] = r["us_per_task"] * 1000 / bl.mean(r["baseline_ns"])
                fsync_note = ""
                if s in CHAINS:
                    r["raw_fsync_ms"] = [fsync_before, raw_fsync(build, work_root)]
                    r["fsync_ratio"] = r["us_per_task"] / 1000 / bl.mean(r["raw_fsync_ms"])
                    fsync_note = (f"; raw write + fdatasync {'/'.join(f'{x * 1000:.0f}' for x in r['raw_fsync_ms'])} "
                                  f"us, step/fsync {r['fsync_ratio']:.2f}")
                reps[s].append(r)
                print(f"   rep {rep + 1} {s:9} taskhubd {r['us_per_task']:.2f} us/task "
                      f"({r['run_seconds']:.2f} s; to the commit of its end ~{r['durable_us_per_task']:.2f}; "
                      f"store writer CPU {r['store_cpu_us_per_task']:.2f}; "
                      f"from creation {r['created_us_per_task']:.2f} us/task), "
                      f"raw pool {'/'.join(f'{x:.0f}' for x in r['baseline_ns'])} ns/task, "
                      f"ratio {r['ratio']:.0f}{fsync_note}", flush=True)
        st = bl.proc_status(d.pid)
        with open(f"/proc/{d.pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    rows, summary, met = [], {}, True
    for s in shapes:
        us = bl.median([r["us_per_task"] for r in reps[s]])
        base_ns = bl.median([x for r in reps[s] for x in r["baseline_ns"]])
        ratio = bl.median([r["ratio"] for r in reps[s]])
        goal_us = GOAL_US_PER_TASK.get(s)
        ok = goal_us is None or us <= goal_us
        met = met and ok
        writer_us = bl.median([r["store_cpu_us_per_task"] for r in reps[s]])
        summary[s] = {"tasks": sizes[s], "us_per_task": us, "baseline_ns_per_task": base_ns, "ratio": ratio,
                      "store_cpu_us_per_task": writer_us,
                      "created_us_per_task": bl.median([r["created_us_per_task"] for r in reps[s]]),
                      "wall_seconds": bl.median([r["wall_seconds"] for r in reps[s]]), **info[s]}
        rows.append([f"us/task, {LABELS[s]}", f"{us:.2f}",
                     f"{base_ns / 1000:.3f} raw pool, {args.threads} threads", f"{ratio:.0f}",
                     f"<= {goal_us:g} us" if goal_us is not None else "-",
                     ("pass" if ok else "FAIL") if goal_us is not None else "info"])
        # The writer thread's CPU per task: judged for the fan-out, shown for the others.
        writer_ok = writer_us <= GOAL_WRITER_US
        if s == "fanout":
            met = met and writer_ok
        rows.append([f"  store writer CPU us/task", f"{writer_us:.2f}", "-", "-",
                     f"<= {GOAL_WRITER_US:g} us" if s == "fanout" else "-",
                     ("pass" if writer_ok else "FAIL") if s == "fanout" else "info"])
        if s in CHAINS:
            fsync_ms = bl.median([x for r in reps[s] for x in r["raw_fsync_ms"]])
            fsync_ratio = bl.median([r["fsync_ratio"] for r in reps[s]])
            summary[s].update({"raw_fsync_ms": fsync_ms, "fsync_ratio": fsync_ratio})
            # The plain chain is judged; the at_most_once chain (a durable start per step) is
            # reported, and shows "pass" only when it meets the same goal.
            fsync_ok = fsync_ratio <= GOAL_FSYNC_RATIO
            if s == "chain":
                met = met and fsync_ok
            rows.append([f"  us/step vs one write + fdatasync", f"{us:.1f}", f"{fsync_ms * 1000:.0f} raw_fsync",
                         f"{fsync_ratio:.2f}", f"<= {GOAL_FSYNC_RATIO:g}x",
                         "pass" if fsync_ok else ("FAIL" if s == "chain" else "info (missed)")])
    print()
    print("   TaskHub: (run ended - run started) / tasks, from the run record; ratios are medians of "
          "per-repetition ratios")
    bl.print_table(["metric", "TaskHub", "baseline", "ratio", "goal", "result"], rows)
    print()
    for s in shapes:
        print(f"   {s:9} spread: taskhubd {bl.spread2([r['us_per_task'] for r in reps[s]])} us/task, "
              f"store writer CPU {bl.spread2([r['store_cpu_us_per_task'] for r in reps[s]])} us/task, "
              f"raw pool {bl.spread([x for r in reps[s] for x in r['baseline_ns']])} ns/task; "
              f"from the run's creation {summary[s]['created_us_per_task']:.2f} us/task; "
              f"`run --wait --json` wall {summary[s]['wall_seconds']:.2f} s "
              f"({reps[s][0]['reply_bytes'] / 1e6:.1f} MB reply)")
    print(f"   taskhubd: {load_s:.1f} s from start to answering with the workflows loaded; "
          f"CPU {cpu_s:.1f} s over its life; VmHWM {st['VmHWM'] / 1024:.0f} MB; "
          f"[plugins.noop] max_concurrency = {args.max_concurrency}")

    results = {
        "benchmark": "engine_overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "tasks": args.tasks,
        "chain_tasks": args.chain_tasks,
        "reps": args.reps,
        "seed": args.seed,
        "deps": args.deps,
        "baseline_threads": args.threads,
        "max_concurrency": args.max_concurrency,
        "daemon_start_seconds": load_s,
        "daemon_cpu_seconds": cpu_s,
        "daemon_vmhwm_kb": st["VmHWM"],
        "shapes": summary,
        "repetitions": reps,
    }
    return bl.finish(args, results, lambda: not met)


if __name__ == "__main__":
    sys.exit(main())
