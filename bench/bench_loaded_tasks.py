#!/usr/bin/env python3
"""Benchmark: memory per loaded task. Writes three workflow files of --tasks tasks each (half
`shell` tasks with a command and sometimes a cwd, a timeout or retries, half `noop` tasks, some
with a param; every task after the first few depends on one or two earlier ones), starts taskhubd
on an empty workflows directory, reads its VmRSS once it has settled (A), drops the three files
in, waits until `taskhubctl list` shows them loaded, lets it settle again and reads VmRSS (B).
Prints the bytes per loaded task, (B - A) / (3 * tasks), against the goal of issue 18, and as the
baseline measured in the same run the size of the files per task (bytes of TOML per task).

What stays resident counts, freed heap that the allocator keeps included: it is what a user
pays for a large workflow. See docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

GOAL_BYTES_PER_TASK = 600
FILES = 3
SETTLE_S = 2.0      # VmRSS must stay put this long to count as settled
LOAD_TIMEOUT_S = 300

COMMANDS = [
    "echo extracting part {i}",
    "/usr/local/bin/etl --stage {stage} --part {i} --out /srv/data/out/{i}.csv",
    "gzip -9 /srv/data/raw/batch-{i}.log",
    "test -s /srv/data/in/{i}.json && cp /srv/data/in/{i}.json /srv/archive/",
    "python3 /opt/jobs/report.py --region {region} --day {i}",
]
REGIONS = ["eu", "us", "apac", "latam"]
STAGES = ["extract", "transform", "load", "check"]


def task_id(f, i):
    """Ids of varied shape and length, like real workflows: "extract_00012", "t12", ..."""
    kind = i % 4
    if kind == 0:
        return f"{STAGES[i % 3]}_{i:05d}"
    if kind == 1:
        return f"t{i}"
    if kind == 2:
        return f"{REGIONS[i % 4]}-{STAGES[(i // 4) % 4]}-{i}"
    return f"step{f}_{i}"


def workflow_text(f, n):
    """Workflow file number f with n tasks: half shell, half noop; task i > 2 depends on one or
    two earlier tasks."""
    rnd = random.Random(1000 + f)
    ids = [task_id(f, i) for i in range(n)]
    out = [f'description = "generated for bench_loaded_tasks, file {f}"\n']
    for i in range(n):
        out.append(f'[[task]]\nid = "{ids[i]}"\n')
        if i % 2 == 0:
            cmd = COMMANDS[rnd.randrange(len(COMMANDS))].format(i=i, stage=STAGES[i % 4], region=REGIONS[i % 4])
            out.append(f'plugin = "shell"\ncommand = "{cmd}"\n')
            r = rnd.random()
            if r < 0.25:
                out.append('cwd = "/srv/data"\n')
            elif r < 0.4:
                out.append('timeout = "10m"\n')
            elif r < 0.5:
                out.append("retries = 2\n")
        else:
            out.append('plugin = "noop"\n')
            if rnd.random() < 0.3:
                out.append(f"sleep_ms = {rnd.randrange(1, 50)}\n")
        if i > 2:
            deps = {rnd.randrange(max(0, i - 50), i)}
            if rnd.random() < 0.5:
                deps.add(rnd.randrange(0, i))
            out.append("depends_on = [" + ", ".join(f'"{ids[d]}"' for d in sorted(deps)) + "]\n")
    return "".join(out)


def settled_rss(pid, limit_s=60):
    """VmRSS in KiB once it has not changed by more than 64 KiB for SETTLE_S (or after limit_s)."""
    deadline = time.monotonic() + limit_s
    last = bl.proc_status(pid)["VmRSS"]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = bl.proc_status(pid)["VmRSS"]
        if abs(now - last) > 64:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE_S:
            return now
    return bl.proc_status(pid)["VmRSS"]


def loaded_names(daemon):
    r = daemon.ctl("list", "--json", check=False)
    if r.returncode != 0:
        return set()
    return {w["name"] for w in json.loads(r.stdout)["workflows"]}


def one_rep(build, work, rep, texts):
    """One daemon: returns (A KiB, B KiB, seconds from the drop to `list` showing every file)."""
    d = bl.Daemon(build, work / f"d{rep}", {"timezone": "UTC"}, {})
    d.start(timeout=60)
    try:
        a = settled_rss(d.pid)
        staging = d.dir / "staging"
        staging.mkdir()
        for name, text in texts.items():
            (staging / f"{name}.toml").write_text(text)
        t0 = time.monotonic()
        for name in texts:
            os.rename(staging / f"{name}.toml", d.dir / "workflows.d" / f"{name}.toml")
        while loaded_names(d) != set(texts):
            if time.monotonic() - t0 > LOAD_TIMEOUT_S:
                raise RuntimeError(f"the files did not load within {LOAD_TIMEOUT_S} s; see {d.log_file}")
            time.sleep(0.1)
        load_s = time.monotonic() - t0
        b = settled_rss(d.pid)
        status = bl.proc_status(d.pid)
        return a, b, load_s, status
    finally:
        d.stop()


def main():
    ap = bl.argument_parser(__doc__, reps=3, reps_help="daemon starts, each loading the three files (default 3)")
    ap.add_argument("--tasks", type=int, default=100_000, help="tasks per workflow file (default 100000)")
    args = ap.parse_args()
    build = Path(args.build_dir).resolve()
    n = args.tasks
    total = FILES * n

    print(f"== loaded_tasks: memory per loaded task, {FILES} workflow files of {n} tasks each")
    texts = {f"big{f}": workflow_text(f, n) for f in range(FILES)}
    toml_bytes = sum(len(t.encode()) for t in texts.values())

    def run(work_root):
        for k, v in bl.machine(str(work_root)).items():
            print(f"   {k:15} {v}")
        bl.warn_if_busy()
        return [one_rep(build, work_root, rep, texts) for rep in range(args.reps)]

    reps = bl.in_work_root(build, run)
    per_task = [(b - a) * 1024 / total for a, b, _, _ in reps]
    loads = [s for _, _, s, _ in reps]
    toml_per_task = toml_bytes / total
    med = bl.median(per_task)
    print()
    bl.print_table(
        ["measure", "taskhubd", "TOML per task", "ratio", "goal"],
        [[f"bytes per loaded task (median of {args.reps}, spread {bl.spread(per_task)})", f"{med:.0f}",
          f"{toml_per_task:.0f}", f"{med / toml_per_task:.2f}", f"<= {GOAL_BYTES_PER_TASK}"],
         [f"load of the three files (s, median, spread {min(loads):.1f}-{max(loads):.1f})",
          f"{bl.median(loads):.1f}", "", "", "info"]])
    a, b, _, status = reps[-1]
    print(f"   VmRSS settled before the drop (A): {a / 1024:.1f} MiB, after the load (B): {b / 1024:.1f} MiB; "
          f"VmHWM {status['VmHWM'] / 1024:.1f} MiB (last rep)")
    print("   load: from the renames into the workflows directory to `taskhubctl list` showing all three files")
    results = {"machine": bl.machine("/"), "tasks_per_file": n, "files": FILES, "toml_bytes": toml_bytes,
               "bytes_per_task": per_task, "load_s": loads,
               "rss_kib": [{"before": a, "after": b, "hwm": s["VmHWM"]} for a, b, _, s in reps],
               "goal_bytes_per_task": GOAL_BYTES_PER_TASK, "problems": []}
    missed = med > GOAL_BYTES_PER_TASK
    if missed:
        print(f"   MISSED: {med:.0f} bytes per task > {GOAL_BYTES_PER_TASK}")
    return bl.finish(args, results, lambda: missed)


if __name__ == "__main__":
    sys.exit(main())
