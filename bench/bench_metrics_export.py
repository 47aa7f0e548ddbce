#!/usr/bin/env python3
"""Benchmark: a scrape of HTTP /metrics with 1,000 workflows loaded (each with a finished run),
against a bare HTTP server answering a static body of the same size on loopback
(bench/raw_http.cc), measured in the same invocation; and what [metrics] textfile + listen cost:
shell_tasks throughput (2,000 `true` tasks, scraped every second meanwhile) and idle RSS, with
them on and off, back to back; and what notifications cost: runs/s of one-task runs with a command
notification per run and without. See docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import bench_shell_tasks as st  # noqa: E402

GOAL_SCRAPE_MS = 5.0
RENDER_CACHE_S = 1.0  # the listener renders at most once a second (docs/operations.md)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# What Prometheus 2.x sends: it gets OpenMetrics, as rendered.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def scrape(port, accept=PROMETHEUS_ACCEPT):
    """(milliseconds, body) of one GET /metrics on a new connection, as Prometheus makes it (or,
    with accept=None, as curl does: the text format, converted from OpenMetrics)."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    ms = (time.perf_counter() - t0) * 1000
    if r.status != 200:
        raise RuntimeError(f"GET /metrics answered {r.status}")
    return ms, body


def metrics_config(cfg, work, port):
    cfg = dict(cfg)
    cfg["metrics"] = {"textfile": str(work / "taskhub.prom"), "textfile_interval": "1s",
                      "listen": f"127.0.0.1:{port}"}
    return cfg


def scrape_bench(args, build, work_root):
    """Part 1: ms per scrape of taskhubd and of raw_http serving the same number of bytes."""
    workflows = {f"wf{i:04d}": '[[trigger]]\ncron = "0 0 1 1 *"\n\n[[task]]\nid = "t"\nplugin = "noop"\n'
                 for i in range(args.workflows)}
    work = Path(tempfile.mkdtemp(prefix="scrape-", dir=work_root))
    port = free_port()
    with bl.Daemon(build, work, metrics_config(st.example_config(), work, port), workflows) as d:
        d.start()
        t0 = time.monotonic()
        for name in workflows:
            d.ctl("run", name)
        # Every run ended (the metrics then hold a histogram series per workflow).
        while True:
            runs = json.loads(d.ctl("runs", "--json", "--limit", str(args.workflows + 10)).stdout)
            if len(runs) >= args.workflows and all(r["state"] == "succeeded" for r in runs):
                break
            time.sleep(0.2)
        print(f"   {args.workflows} workflows loaded and run once in {time.monotonic() - t0:.1f}s", flush=True)
        rendered, plain, cached = [], [], []
        size = 0
        for _ in range(args.scrapes):
            time.sleep(RENDER_CACHE_S + 0.05)  # past the render cache: this scrape renders
            ms, body = scrape(port)
            rendered.append(ms)
            size = len(body)
            cached.append(scrape(port)[0])  # within the second: the same text, not rendered again
            time.sleep(RENDER_CACHE_S + 0.05)
            plain.append(scrape(port, None)[0])  # rendered and converted to the text format
        lines = body.count(b"\n")
        rss = bl.proc_status(d.pid)["VmRSS"]
    raw = subprocess.Popen([str(build / "bench" / "raw_http"), "--size", str(size)], stdout=subprocess.PIPE, text=True)
    try:
        raw_port = int(raw.stdout.readline())
        raw_ms = [scrape(raw_port)[0] for _ in range(args.scrapes)]
    finally:
        raw.kill()
        raw.wait()
    inproc = json.loads(subprocess.run([str(build / "bench" / "metrics_render"), "--workflows", str(args.workflows)],
                                       capture_output=True, text=True, check=True).stdout)
    return {"rendered_ms": rendered, "plain_ms": plain, "cached_ms": cached, "raw_ms": raw_ms, "bytes": size,
            "lines": lines, "rss_kb": rss, "in_process": inproc}


def throughput(build, work_root, tasks, parallel, metrics_on):
    """One fresh taskhubd running `tasks` `true` tasks; with metrics on, the textfile is written
    every second and /metrics scraped every second while the run lasts."""
    cfg = st.example_config()
    cfg.setdefault("plugins", {}).setdefault("shell", {})["max_concurrency"] = parallel
    work = Path(tempfile.mkdtemp(prefix="tasks-", dir=work_root))
    port = free_port()
    if metrics_on:
        cfg = metrics_config(cfg, work, port)
    stop = threading.Event()
    scrapes = [0]

    def scraper():
        while not stop.wait(1.0):
            scrape(port)
            scrapes[0] += 1
    with bl.Daemon(build, work, cfg, {"bench": st.throughput_workflow(tasks)}) as d:
        d.start()
        t = threading.Thread(target=scraper)
        if metrics_on:
            t.start()
        try:
            out = d.ctl("run", "bench", "--wait", "--json", check=False)
        finally:
            stop.set()
            if metrics_on:
                t.join()
        run = json.loads(out.stdout)
        if run["state"] != "succeeded":
            raise RuntimeError(f"run {run['id']} ended {run['state']}: {run['message']}")
    return tasks / (st.iso_ms(run["ended"]) - st.iso_ms(run["started"]))


def run_rate(build, work_root, runs, notify_on):
    """One fresh taskhubd; `runs` runs of a one-task workflow (`true`) triggered back to back
    (overlap = allow). With notify_on, every run's end is a `command = "true"` notification (a
    durable outbox row and a program started by the notifier). Returns (runs/s from the first
    run's creation to the last run's end, seconds until the last notification was delivered or
    None)."""
    cfg = st.example_config()
    cfg.pop("notify", None)
    if notify_on:
        cfg["notify"] = [{"on": ["success", "failure"], "command": "true"}]
    work = Path(tempfile.mkdtemp(prefix="runs-", dir=work_root))
    wf = '[policy]\noverlap = "allow"\n\n[[task]]\nid = "t"\nplugin = "shell"\ncommand = "true"\n'
    with bl.Daemon(build, work, cfg, {"one": wf}) as d:
        d.start()
        t0 = time.time()
        for _ in range(runs):
            d.ctl("run", "one")
        while True:
            recs = json.loads(d.ctl("runs", "--json", "--limit", str(runs + 10)).stdout)
            if len(recs) >= runs and all(r["state"] == "succeeded" for r in recs):
                break
            time.sleep(0.1)
        first = min(st.iso_ms(r["created"]) for r in recs)
        last = max(st.iso_ms(r["ended"]) for r in recs)
        delivered = None
        if notify_on:
            while True:
                n = json.loads(d.ctl("status", "--json").stdout)["notifications"]
                if n["sent"] + n["failed"] >= runs:
                    break
                time.sleep(0.05)
            delivered = time.time() - t0
    return runs / (last - first), delivered


def idle_rss(build, work_root, settle, metrics_on):
    workflows = {p.stem: p.read_text() for p in sorted((bl.REPO / "etc" / "workflows.d").glob("*.toml"))}
    work = Path(tempfile.mkdtemp(prefix="idle-", dir=work_root))
    port = free_port()
    cfg = metrics_config(st.example_config(), work, port) if metrics_on else st.example_config()
    with bl.Daemon(build, work, cfg, workflows) as d:
        d.start()
        if metrics_on:
            scrape(port)
        time.sleep(settle)
        s = bl.proc_status(d.pid)
    return s["VmRSS"], s["Threads"]


def main():
    ap = bl.argument_parser(__doc__, reps=3)
    ap.add_argument("--workflows", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=15, help="scrapes measured (each over a second apart)")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=2, help="the shell plugin's max_concurrency")
    ap.add_argument("--idle-settle", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=200, help="runs triggered for notifications on/off")
    args = ap.parse_args()
    build = Path(args.build_dir).resolve()
    return bl.in_work_root(build, lambda work_root: run(args, build, work_root))


def run(args, build, work_root):
    machine = bl.machine(work_root)
    print(f"== metrics_export: scrape of /metrics with {args.workflows} workflows; shell_tasks and idle RSS with "
          f"[metrics] textfile + listen on and off, {args.reps} repetitions (medians shown)")
    for k, v in machine.items():
        print(f"   {k:15} {v}")
    bl.warn_if_busy()

    s = scrape_bench(args, build, work_root)
    rendered, cached, raw = bl.median(s["rendered_ms"]), bl.median(s["cached_ms"]), bl.median(s["raw_ms"])
    plain = bl.median(s["plain_ms"])
    inproc = s["in_process"]
    print(f"   scrape: {rendered:.2f} ms rendered ({bl.spread2(s['rendered_ms'])}), {plain:.2f} ms as the text format, "
          f"{cached:.2f} ms from the one-second cache, raw_http {raw:.2f} ms; {s['bytes']} bytes, {s['lines']} "
          f"lines; in process: render {inproc['render_ms']:.2f} ms, conversion {inproc['convert_ms']:.2f} ms",
          flush=True)

    reps = []
    for rep in range(args.reps):
        # off, on, on, off: a drift in machine load hits both sides alike.
        off = [throughput(build, work_root, args.tasks, args.parallel, False)]
        on = [throughput(build, work_root, args.tasks, args.parallel, True) for _ in range(2)]
        off.append(throughput(build, work_root, args.tasks, args.parallel, False))
        r = {"off": bl.mean(off), "on": bl.mean(on)}
        r["ratio"] = r["on"] / r["off"]
        r["rss_off"], r["threads_off"] = idle_rss(build, work_root, args.idle_settle, False)
        r["rss_on"], r["threads_on"] = idle_rss(build, work_root, args.idle_settle, True)
        # Notifications: runs/s with a command notification per run vs none (off, on, on, off).
        n_off = [run_rate(build, work_root, args.runs, False)[0]]
        n_on = [run_rate(build, work_root, args.runs, True) for _ in range(2)]
        n_off.append(run_rate(build, work_root, args.runs, False)[0])
        r["runs_off"], r["runs_on"] = bl.mean(n_off), bl.mean([x[0] for x in n_on])
        r["runs_ratio"] = r["runs_on"] / r["runs_off"]
        r["delivered_s"] = bl.mean([x[1] for x in n_on])
        reps.append(r)
        print(f"   rep {rep + 1}: {r['on']:.0f} tasks/s with metrics vs {r['off']:.0f} without ({r['ratio']:.2f}); "
              f"idle RSS {r['rss_on'] / 1024:.1f} MB vs {r['rss_off'] / 1024:.1f} MB; {r['runs_on']:.0f} runs/s with "
              f"a notification per run vs {r['runs_off']:.0f} without ({r['runs_ratio']:.2f}), the last of "
              f"{args.runs} delivered {r['delivered_s']:.1f}s after the first trigger", flush=True)

    def med(key):
        return bl.median([r[key] for r in reps])

    rows = [
        ["ms per scrape of /metrics, rendered (OpenMetrics)", f"{rendered:.2f}", f"{raw:.2f} raw_http, same bytes",
         f"{rendered / raw:.1f}", f"<= {GOAL_SCRAPE_MS:.0f} ms", "pass" if rendered <= GOAL_SCRAPE_MS else "MISS"],
        ["ms per scrape, text format (curl, no Accept)", f"{plain:.2f}", f"{raw:.2f} raw_http", f"{plain / raw:.1f}",
         "-", "info"],
        ["ms to render (in process, no HTTP)", f"{inproc['render_ms']:.2f}", "-", "-", "-", "info"],
        ["ms to convert to the text format (in process)", f"{inproc['convert_ms']:.2f}", "-", "-", "-", "info"],
        ["ms per scrape, within the render cache", f"{cached:.2f}", f"{raw:.2f} raw_http", f"{cached / raw:.1f}",
         "-", "info"],
        ["tasks/s, textfile 1s + listen scraped 1/s", f"{med('on'):.0f}", f"{med('off'):.0f} metrics off",
         f"{med('ratio'):.2f} ({bl.spread2([r['ratio'] for r in reps])})", "-", "info"],
        ["idle RSS, example workflows", f"{med('rss_on') / 1024:.1f} MB", f"{med('rss_off') / 1024:.1f} MB off",
         f"+{(med('rss_on') - med('rss_off')) / 1024:.2f} MB", "-", "info"],
        [f"runs/s, {args.runs} one-task runs, a command notification each", f"{med('runs_on'):.0f}",
         f"{med('runs_off'):.0f} no notification", f"{med('runs_ratio'):.2f} "
         f"({bl.spread2([r['runs_ratio'] for r in reps])})", "-", "info"],
    ]
    bl.print_table(["metric", "TaskHub", "baseline", "ratio", "goal", "result"], rows)
    results = {"benchmark": "metrics_export", "machine": machine, "scrape": s, "reps": reps, "problems": [],
               "goals": {"scrape_ms": {"value": rendered, "goal": GOAL_SCRAPE_MS}}}
    return bl.finish(args, results, lambda: rendered > GOAL_SCRAPE_MS)


if __name__ == "__main__":
    sys.exit(main())
