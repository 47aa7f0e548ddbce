#!/usr/bin/env python3
"""Benchmark: fan-out (`foreach`, issue 20) against the same work written as static tasks, in the
same invocation.

- noop: a fan-out of --tasks noop instances (root -> convert[0..n-1] -> sink) against a static
  workflow of --tasks noop tasks of the same shape (root -> t0..tn-1 -> sink). Goals: time per task
  <= 1.2x the static workflow's, memory per task <= the static workflow's. Memory per task: the
  daemon's peak RSS (VmHWM) after the run less the RSS of a daemon with one trivial workflow,
  divided by the tasks; the static workflow's includes its loaded definition, which is what
  writing the work as static tasks costs.
- shell: a fan-out of --shell-tasks `true` instances, tasks/s against bench/raw_spawn (the same
  commands, the same number in flight) and against a static workflow of as many `true` tasks,
  measured in the same invocation (as bench_shell_tasks does; its goal 0.90 of raw applies).

Each daemon gets only its own workflow, so that one run's memory does not count for the other.
Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import bench_shell_tasks as st  # noqa: E402

GOAL_TIME_RATIO = 1.2  # fan-out time per task / static time per task
GOAL_MEM_RATIO = 1.0   # fan-out memory per task / static memory per task
GOAL_SHELL_RATIO = st.GOAL_RATIO


def static_toml(n, plugin, command=None):
    body = f'command = "{command}"\n' if command else ""
    lines = ["[[task]]", 'id = "root"', f'plugin = "{plugin}"', body]
    for i in range(n):
        lines += ["[[task]]", f'id = "t{i}"', f'plugin = "{plugin}"', 'depends_on = ["root"]', body]
    # One dependency per line: toml11 takes time quadratic in the length of a line.
    lines += ["[[task]]", 'id = "sink"', f'plugin = "{plugin}"', body,
              "depends_on = [\n" + "".join(f'  "t{i}",\n' for i in range(n)) + "]", ""]
    return "\n".join(lines)


def fanout_toml(n, plugin, command=None):
    body = f'command = "{command}"\n' if command else ""
    return "\n".join([
        "[[task]]", 'id = "root"', f'plugin = "{plugin}"', body,
        "[[task]]", 'id = "convert"', f'plugin = "{plugin}"', 'depends_on = ["root"]', body,
        "foreach = [\n" + "".join(f"  {i},\n" for i in range(n)) + "]",
        "[[task]]", 'id = "sink"', f'plugin = "{plugin}"', 'depends_on = ["convert"]', body, ""])


def iso_s(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def one_run(build, work_root, name, toml, n, cfg, timeout):
    """Starts a daemon with only this workflow, runs it once; returns seconds of the run, the
    daemon's RSS after loading (KB) and its VmHWM after the run (KB)."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work_root))
    with bl.Daemon(build, work, cfg, {name: toml}) as d:
        d.start(timeout=timeout)
        listed = json.loads(d.ctl("list", "--json").stdout)
        if listed["errors"]:
            raise RuntimeError(f"taskhubd rejected {name}: {listed['errors'][0]['message'][:300]}")
        rss0 = bl.proc_status(d.pid)["VmRSS"]
        out = d.ctl("run", name, "--wait", "--json", check=False)
        if not out.stdout.strip():
            raise RuntimeError(f"`taskhubctl run {name} --wait` failed ({out.returncode}): {out.stderr.strip()}; "
                               f"see {d.log_file}")
        run = json.loads(out.stdout)
        if run["state"] != "succeeded":
            raise RuntimeError(f"run {run['id']} ended {run['state']}: {run['message']}; see {d.log_file}")
        ok = sum(1 for t in run["tasks"] if t["state"] == "succeeded" and t["id"] not in ("root", "sink", "convert"))
        if ok != n:
            raise RuntimeError(f"run {run['id']}: {ok} of {n} tasks succeeded; see {d.log_file}")
        hwm = bl.proc_status(d.pid)["VmHWM"]
        return iso_s(run["ended"]) - iso_s(run["started"]), rss0, hwm


def main():
    ap = bl.argument_parser(__doc__, reps=3)
    ap.add_argument("--tasks", type=int, default=100_000, help="noop instances / tasks (default 100000)")
    ap.add_argument("--shell-tasks", type=int, default=10_000, help="shell instances / tasks (default 10000)")
    ap.add_argument("--parallel", type=int, default=2, help="shell max_concurrency and raw_spawn's in flight")
    ap.add_argument("--load-timeout", type=float, default=600)
    args = ap.parse_args()
    build = Path(args.build_dir).resolve()
    return bl.in_work_root(build, lambda work_root: run(args, build, work_root))


def run(args, build, work_root):
    n, ns = args.tasks, args.shell_tasks
    machine = bl.machine(work_root)
    print(f"== fanout: {n:,} noop instances vs {n:,} static noop tasks; {ns:,} shell instances vs static "
          f"and raw_spawn ({args.parallel} in flight); {args.reps} repetitions (medians shown)")
    for k, v in machine.items():
        print(f"   {k:15} {v}")
    bl.warn_if_busy()
    cfg = {"pool": {"min_workers": 1, "max_workers": 2}, "max_foreach_items": max(n, ns),
           "max_workflow_tasks": n + 2,
           "plugins": {"noop": {"max_concurrency": 1000}, "shell": {"max_concurrency": args.parallel}}}
    trivial = {"idle": static_toml(1, "noop")}
    base_work = Path(tempfile.mkdtemp(prefix="base-", dir=work_root))
    with bl.Daemon(build, base_work, cfg, trivial) as d:
        d.start()
        time.sleep(1)
        base_kb = bl.proc_status(d.pid)["VmRSS"]
    print(f"   a daemon with one trivial workflow: RSS {base_kb / 1024:.1f} MB", flush=True)

    res = {"static": [], "fanout": [], "shell_static": [], "shell_fanout": [], "raw": []}
    for rep in range(args.reps):
        for kind, toml in (("static", static_toml(n, "noop")), ("fanout", fanout_toml(n, "noop"))):
            secs, rss0, hwm = one_run(build, work_root, kind, toml, n, cfg, args.load_timeout)
            r = {"us_per_task": secs / n * 1e6, "bytes_per_task": (hwm - base_kb) * 1024 / n,
                 "rss_loaded_kb": rss0, "vmhwm_kb": hwm}
            res[kind].append(r)
            print(f"   rep {rep + 1} {kind:7} {r['us_per_task']:.2f} us/task, peak RSS {hwm / 1024:.1f} MB "
                  f"(loaded {rss0 / 1024:.1f} MB): {r['bytes_per_task']:.0f} B/task", flush=True)
        raw_before = st.raw_spawn(build, ns, args.parallel, ["/bin/true"])
        for kind, toml in (("shell_static", static_toml(ns, "shell", "true")),
                           ("shell_fanout", fanout_toml(ns, "shell", "true"))):
            secs, _, _ = one_run(build, work_root, kind, toml, ns, cfg, args.load_timeout)
            res[kind].append({"tasks_per_s": ns / secs})
        raw_after = st.raw_spawn(build, ns, args.parallel, ["/bin/true"])
        res["raw"].append({"tasks_per_s": bl.mean([raw_before, raw_after])})
        print(f"   rep {rep + 1} shell   fan-out {res['shell_fanout'][-1]['tasks_per_s']:.0f}/s, static "
              f"{res['shell_static'][-1]['tasks_per_s']:.0f}/s, raw /bin/true {raw_before:.0f}/{raw_after:.0f}/s",
              flush=True)

    def med(kind, key):
        return bl.median([r[key] for r in res[kind]])

    t_ratio = med("fanout", "us_per_task") / med("static", "us_per_task")
    m_ratio = med("fanout", "bytes_per_task") / med("static", "bytes_per_task")
    shell_ratio = med("shell_fanout", "tasks_per_s") / med("raw", "tasks_per_s")
    static_shell_ratio = med("shell_static", "tasks_per_s") / med("raw", "tasks_per_s")
    rows = [
        ["noop, time per task", f"{med('fanout', 'us_per_task'):.2f} us", f"{med('static', 'us_per_task'):.2f} us static",
         f"{t_ratio:.2f}", f"<= {GOAL_TIME_RATIO}", "met" if t_ratio <= GOAL_TIME_RATIO else "MISSED"],
        ["noop, memory per task", f"{med('fanout', 'bytes_per_task'):.0f} B",
         f"{med('static', 'bytes_per_task'):.0f} B static", f"{m_ratio:.2f}", f"<= {GOAL_MEM_RATIO}",
         "met" if m_ratio <= GOAL_MEM_RATIO else "MISSED"],
        [f"shell `true`, tasks/s, {args.parallel} in flight", f"{med('shell_fanout', 'tasks_per_s'):.0f}",
         f"{med('raw', 'tasks_per_s'):.0f} raw /bin/true", f"{shell_ratio:.2f}", f">= {GOAL_SHELL_RATIO}",
         "met" if shell_ratio >= GOAL_SHELL_RATIO else "MISSED"],
        ["(static shell tasks, same run)", f"{med('shell_static', 'tasks_per_s'):.0f}",
         f"{med('raw', 'tasks_per_s'):.0f} raw /bin/true", f"{static_shell_ratio:.2f}", "-", "-"],
    ]
    print()
    bl.print_table(["measure", "fan-out", "baseline", "ratio", "goal", ""], rows)
    missed = [r[0] for r in rows if r[5] == "MISSED"]
    results = {"machine": machine, "base_rss_kb": base_kb, "reps": res, "time_ratio": t_ratio,
               "memory_ratio": m_ratio, "shell_ratio": shell_ratio, "static_shell_ratio": static_shell_ratio,
               "missed": missed}
    return bl.finish(args, results, lambda: bool(missed))


if __name__ == "__main__":
    sys.exit(main())
