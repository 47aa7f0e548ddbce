#!/usr/bin/env python3
"""Benchmark: CronExpr::next() computations per second on one core, over a mix of 14 expressions
(plain, L/W/#, H, six-field) in UTC and DST zones, against a raw zone-aware next-minute step
measured in the same run by the same binary (bench/cron_next). See docs/benchmarks.md.

Usually run through scripts/bench, which builds build-bench/ (Release) first.
"""

import datetime
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

GOAL_PER_SECOND = 1_000_000


def run_once(build, seconds):
    """One run of bench/cron_next: its JSON line as a dict."""
    out = subprocess.run([str(build / "bench" / "cron_next"), "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = bl.argument_parser(__doc__, reps=3, strict_help="exit 3 when the goal is missed")
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="seconds each measurement (next() or the baseline, whole mix) lasts")
    args = ap.parse_args()

    build = Path(args.build_dir).resolve()
    machine = bl.machine(build)
    print(f"== cron_next: CronExpr::next() on one core, 14 expressions x 4,096 instants in "
          f"2026-2035, {args.reps} repetitions (medians shown)")
    for k, v in machine.items():
        if k not in ("state_dir_fs", "bin_sh"):
            print(f"   {k:15} {v}")
    bl.warn_if_busy()

    reps = []
    for rep in range(args.reps):
        r = run_once(build, args.seconds)
        r["baseline_mean"] = bl.mean(r["baseline_per_second"])
        r["ratio"] = r["baseline_mean"] / r["next_per_second"]
        reps.append(r)
        print(f"   rep {rep + 1}: next() {r['next_per_second']:,.0f}/s, baseline "
              f"{'/'.join(f'{x:,.0f}' for x in r['baseline_per_second'])}/s (before/after), "
              f"next() takes {r['ratio']:.2f}x the baseline's time", flush=True)

    rate = bl.median([r["next_per_second"] for r in reps])
    base = bl.median([r["baseline_mean"] for r in reps])
    ratio = bl.median([r["ratio"] for r in reps])
    met = rate >= GOAL_PER_SECOND
    print()
    print("   baseline: date::time_zone::get_info + the next wall-clock minute (date::floor) + "
          "year_month_day/hh_mm_ss + back to UTC")
    bl.print_table(["metric", "TaskHub", "baseline", "ratio", "goal", "result"], [
        ["next() per second, one core", f"{rate:,.0f}", f"{base:,.0f} next-minute steps",
         f"{ratio:.2f}", f"goal >= {GOAL_PER_SECOND:,}/s", "pass" if met else "FAIL"],
    ])
    print()
    per_expr = {}
    for r in reps:
        for e in r["expressions"]:
            per_expr.setdefault((e["expr"], e["zone"]), []).append(e["next_per_second"])
    bl.print_table(["expression", "zone", "next() per second"],
                   [[f'"{expr}"', zone, f"{bl.median(v):,.0f}"] for (expr, zone), v in per_expr.items()])

    results = {
        "benchmark": "cron_next",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "reps": args.reps,
        "seconds": args.seconds,
        "next_per_second": rate,
        "baseline_per_second": base,
        "ratio": ratio,
        "goal_per_second": GOAL_PER_SECOND,
        "met": met,
        "per_expression": [{"expr": e, "zone": z, "next_per_second": bl.median(v)}
                           for (e, z), v in per_expr.items()],
        "repetitions": reps,
    }
    return bl.finish(args, results, lambda: not met)


if __name__ == "__main__":
    sys.exit(main())
