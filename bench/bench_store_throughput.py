#!/usr/bin/env python3
"""Benchmark: task completions per second the store commits. bench/store_bench writes runs of
tasks through the real Store and its writer thread (group commit) as the engine writes them: run
created with its task list (no task rows); per task ready, starting, running and succeeded upserts
with their events; run ended. Also the CPU time of the writer thread per completion.
Two ways: bulk (every write handed over at once: the most group commit can gather) and inflight
N (N tasks at a time, each waiting until its "starting" record is durable before it runs and
completes, as the engine calls a plugin only then; the next task takes its place). Measured until
everything is committed, with synchronous=FULL (what taskhubd uses; goal: at least 10,000 task
completions/s with 10 tasks in flight) and synchronous=NORMAL for comparison. Raw baselines from the same
invocation: bench/raw_fsync (one 4 KiB write + fdatasync in the same directory: what every FULL
commit waits for at least) and bare SQLite writing the same rows (a task row and an event row per
completion, 1,000 completions per transaction). See docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

GOAL_PER_S = 10_000  # task completions per second with synchronous=FULL
SYNCS = ("full", "normal")


def tool(build, *args):
    out = subprocess.run([str(build / "bench" / args[0]), *map(str, args[1:])], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def main():
    ap = bl.argument_parser(__doc__, reps=5, strict_help="exit 3 when the goal is missed")
    ap.add_argument("--runs", type=int, default=2_000, help="runs written per repetition (default 2000)")
    ap.add_argument("--tasks", type=int, default=10, help="tasks per run (default 10)")
    ap.add_argument("--inflight", type=int, nargs="*", default=[10, 100],
                    help="tasks in flight, each waiting for its starting record (default 10 100); the goal "
                         "applies to the smallest")
    args = ap.parse_args()
    build = Path(args.build_dir).resolve()
    for t in ("store_bench", "raw_fsync"):
        if not (build / "bench" / t).exists():
            ap.error(f"{build}/bench/{t} is missing: build the {t} target")
    return bl.in_work_root(build, lambda work_root: run(args, build, work_root))


def run(args, build, work_root):
    n = args.runs * args.tasks
    machine = bl.machine(work_root)
    print(f"== store_throughput: {args.runs:,} runs of {args.tasks} tasks ({n:,} task completions) through the "
          f"store's writer thread, synchronous=FULL and NORMAL, {args.reps} repetitions (medians shown)")
    for k, v in machine.items():
        print(f"   {k:15} {v}")
    bl.warn_if_busy()

    # bulk: every write handed over at once (the most group commit can do); inflight N: N tasks
    # at a time, each waiting for its "starting" record before it completes (the engine's way).
    modes = ["bulk"] + [f"inflight {w}" for w in args.inflight]
    keys = [(m, s) for m in modes for s in SYNCS]
    reps = {f"{m}, {s}": [] for m, s in keys}
    raw = {"fsync_ms": [], "sqlite_full_per_s": [], "sqlite_normal_per_s": []}
    for rep in range(args.reps):
        raw["fsync_ms"].append(tool(build, "raw_fsync", work_root, 500)["ms_per_fsync"])
        for sync in SYNCS:
            s = tool(build, "store_bench", "raw_sqlite", work_root / f"raw-{sync}-{rep}", n, 1000, sync)
            raw[f"sqlite_{sync}_per_s"].append(s["completions"] / s["seconds"])
            shutil.rmtree(work_root / f"raw-{sync}-{rep}", ignore_errors=True)
        line = []
        for mode, sync in keys:
            d = work_root / f"{sync}-{rep}"
            if mode == "bulk":
                r = tool(build, "store_bench", "throughput", d, args.runs, args.tasks, sync)
            else:
                r = tool(build, "store_bench", "inflight", d, args.runs, args.tasks, sync, mode.split()[1])
            shutil.rmtree(d, ignore_errors=True)
            r["per_s"] = r["completions"] / r["seconds"]
            reps[f"{mode}, {sync}"].append(r)
            line.append(f"{mode} {sync} {r['per_s']:,.0f}/s ({r['commits']} commits)")
        print(f"   rep {rep + 1}: {'; '.join(line)}; raw fsync {raw['fsync_ms'][-1]:.3f} ms, bare SQLite "
              f"{raw['sqlite_full_per_s'][-1]:,.0f}/s (FULL)", flush=True)

    per_s = {k: bl.median([r["per_s"] for r in v]) for k, v in reps.items()}
    # The writer thread's CPU per completion (absent from a store_bench that does not measure it).
    writer_us = {k: bl.median([r.get("writer_cpu_us_per_completion", float("nan")) for r in v])
                 for k, v in reps.items()}
    commits = {k: bl.median([r["commits"] for r in v]) for k, v in reps.items()}
    fsync_ms = bl.median(raw["fsync_ms"])
    sqlite_per_s = {s: bl.median(raw[f"sqlite_{s}_per_s"]) for s in SYNCS}
    goal_key = f"inflight {min(args.inflight)}, full" if args.inflight else "bulk, full"
    met = per_s[goal_key] >= GOAL_PER_S
    print()
    print("   TaskHub: task completions (ready/starting/running/succeeded upserts and their events) / seconds "
          "until committed")
    rows = []
    for k in reps:
        sync = k.split(", ")[1]
        goal = k == goal_key
        rows.append([f"completions/s, {k}", f"{per_s[k]:,.0f}", f"{sqlite_per_s[sync]:,.0f} bare SQLite",
                     f"{per_s[k] / sqlite_per_s[sync]:.2f}", f">= {GOAL_PER_S:,}" if goal else "-",
                     ("pass" if met else "FAIL") if goal else "info"])
        secs = bl.median([r["seconds"] for r in reps[k]])
        cps = commits[k] / secs
        rows.append([f"  commits/s ({n / max(commits[k], 1):,.1f} completions each)", f"{cps:,.0f}",
                     f"{1000 / fsync_ms:,.0f} fsyncs/s raw", f"{cps * fsync_ms / 1000:.2f}", "-", "info"])
        rows.append(["  writer thread CPU us/completion", f"{writer_us[k]:.2f}", "-", "-", "-", "info"])
    rows.append(["one write + fdatasync, ms", "-", f"{fsync_ms:.3f} raw_fsync", "-", "-", "info"])
    bl.print_table(["metric", "TaskHub", "baseline", "ratio", "goal", "result"], rows)
    print()
    print(f"   spread: " + "; ".join(f"{k} {bl.spread([r['per_s'] for r in v])}/s" for k, v in reps.items())
          + f"; raw fsync {bl.spread2(raw['fsync_ms'])} ms")

    results = {
        "benchmark": "store_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "runs": args.runs,
        "tasks_per_run": args.tasks,
        "reps": args.reps,
        "completions_per_s": per_s,
        "writer_cpu_us_per_completion": writer_us,
        "commits": commits,
        "raw_fsync_ms": fsync_ms,
        "bare_sqlite_completions_per_s": sqlite_per_s,
        "repetitions": reps,
        "baselines": raw,
    }
    return bl.finish(args, results, lambda: not met)


if __name__ == "__main__":
    sys.exit(main())
