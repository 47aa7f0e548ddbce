"""Helpers shared by the benchmarks in bench/: the machine description, a taskhubd under test,
memory readings from /proc, and the result table. Python 3 standard library only.

Every benchmark compares TaskHub with a raw baseline measured in the same invocation, so that the
ratio stays meaningful on a busy or slow machine; absolute numbers are printed for the record.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# ---- the command line -----------------------------------------------------------------------

def argument_parser(doc, reps=3, reps_help=None, strict_help="exit 3 when a goal is missed"):
    """The command line every benchmark shares: --build-dir, --reps, --json and --strict (what
    scripts/bench passes to each of them), with the first paragraph of the benchmark's docstring
    as the description. The benchmark adds its own options to the parser it gets and parses."""
    ap = argparse.ArgumentParser(description=" ".join(doc.strip().split("\n\n")[0].split()))
    ap.add_argument("--build-dir", default=str(REPO / "build-bench"),
                    help="the Release build tree with taskhubd and the baselines (default: build-bench/)")
    ap.add_argument("--reps", type=int, default=reps,
                    help=reps_help or f"repetitions of the measurement (default {reps})")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--strict", action="store_true", help=strict_help)
    return ap


# ---- the machine ----------------------------------------------------------------------------

def _mount_of(path):
    """(device, fstype, options) of the mount holding path: the longest mount point prefix."""
    path = os.path.realpath(path)
    best = ("?", "?", "?", "")
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[3]):
                best = (dev, fstype, opts, mnt)
    return best[:3]


def _disk_kind(dev):
    """"rotational"/"non-rotational" as /sys/block reports it for /dev/NAME (virtual disks often
    claim rotational), or "?"."""
    name = os.path.basename(dev)
    for cand in (name, re.sub(r"p?\d+$", "", name)):
        p = Path("/sys/block") / cand / "queue" / "rotational"
        if p.exists():
            return "rotational" if p.read_text().strip() == "1" else "non-rotational"
    return "?"


def machine(state_dir):
    """A dict describing this machine and the disk the benchmark's state directory is on."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    dev, fstype, opts = _mount_of(state_dir)
    if fstype.startswith("ext"):
        # jbd2 lists one entry per journaled device: without one, fdatasync and inode
        # allocation behave differently (see create_cost).
        journaled = Path("/proc/fs/jbd2").is_dir() and any(
            e.startswith(os.path.basename(dev) + "-") for e in os.listdir("/proc/fs/jbd2"))
        fstype += " with journal" if journaled else " without journal"
    sh = os.path.realpath("/bin/sh")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "state_dir_fs": f"{fstype} on {dev} ({_disk_kind(dev)}; {opts})",
        "bin_sh": sh,
        "load_at_start": "%.2f %.2f %.2f" % os.getloadavg(),
    }


def warn_if_busy():
    """Warns when other work competes for the CPUs; the ratios survive it, the absolutes do not."""
    load1 = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load1 > 0.5 * cpus:
        print(f"note: load average {load1:.2f} on {cpus} CPU(s): other work is running, so absolute "
              f"rates are low and noisy; ratios are measured back to back and hold up better")


# ---- memory ---------------------------------------------------------------------------------

def proc_status(pid):
    """VmRSS, VmHWM, RssAnon, RssFile, Threads from /proc/PID/status, in KiB (Threads: count)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def smaps_rollup(pid):
    """Rss, Pss, Anonymous, Private_Dirty, ... from /proc/PID/smaps_rollup, in KiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def rss_by_mapping(pid, top=12):
    """The mappings with the most resident memory, grouped by file (or [heap], [anon], ...)."""
    totals = {}
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif parts and parts[0] == "Rss:":
                totals[name] = totals.get(name, 0) + int(parts[1])
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def thread_cpu(pid):
    """CPU seconds (user + system) used so far by each thread of `pid`, summed by thread name
    (taskhubd names its threads: `taskhubd` is the event loop, `taskhubd-store` the store's
    writer, `taskhubd-worker` the pool)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def children(pid):
    """Child processes of pid's main thread (where the shell plugin spawns), or 0 if unknown."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return len(f.read().split())
    except OSError:
        return 0


class ProcessSampler:
    """Samples a process in a background thread until stopped: the largest VmRSS and the most
    child processes seen at once (the parallelism it really reached)."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.max_rss = 0
        self.max_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.max_rss = max(self.max_rss, proc_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self.max_children = max(self.max_children, children(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---- the disk under the state directory -----------------------------------------------------

def fdatasync_latency(directory, n=100):
    """Median seconds of one 12 KiB append + fdatasync in directory: what one SQLite WAL commit
    with synchronous=FULL waits for at least."""
    path = Path(directory) / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    lat = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 12288, i * 12288)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return statistics.median(lat)


def create_cost(directory, n=200):
    """Mean seconds to create one empty file in directory (created here): what opening a
    task's log file costs. The files are left in place: deleting them would make the following
    creations slower on ext4 without a journal, which skips recently freed inodes."""
    d = Path(directory)
    d.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(d / f"t{i:05d}.1.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640))
    return (time.perf_counter() - t0) / n


# ---- a taskhubd under test ------------------------------------------------------------------

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def is_table_array(v):
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def toml_dump(doc):
    """Writes a daemon config: top-level scalars, then [table] and [table.sub] sections, then
    [[array]] tables (such as [[notify]])."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and not is_table_array(v)]

    def section(prefix, table):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"\n[{prefix}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, dict):
                section(f"{prefix}.{k}", v)

    for k, v in doc.items():
        if isinstance(v, dict):
            section(k, v)
    for k, v in doc.items():
        if is_table_array(v):
            for table in v:
                lines.append(f"\n[[{k}]]")
                lines.extend(f"{key} = {toml_value(val)}" for key, val in table.items())
    return "\n".join(lines) + "\n"


# The environment systemd gives a system service such as taskhubd.service (on Debian 12,
# PATH is the only variable it sets by default), rather than the benchmark user's login environment:
# the shell plugin searches PATH for a command like `true`, as the shell would.
SERVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


class Daemon:
    """A taskhubd on a config of its own in a fresh directory: state under work_dir (on the disk
    a real install would use), the socket in a short /tmp path (sun_path is 108 bytes)."""

    def __init__(self, build_dir, work_dir, config, workflows):
        """config: the taskhub.toml keys (paths are filled in); workflows: {name: TOML text}."""
        self.build_dir = Path(build_dir)
        self.dir = Path(work_dir)
        self.sock_dir = Path(tempfile.mkdtemp(prefix="thb-"))
        self.socket = self.sock_dir / "taskhub.sock"
        (self.dir / "workflows.d").mkdir(parents=True)
        for name, text in workflows.items():
            (self.dir / "workflows.d" / f"{name}.toml").write_text(text)
        doc = dict(config)
        doc.update({
            "workflows_dir": str(self.dir / "workflows.d"),
            # The build's plugins, then any more the benchmark names (config "plugin_dirs").
            "plugin_dirs": [str(self.build_dir / "plugins")] + list(config.get("plugin_dirs", [])),
            "state_dir": str(self.dir / "state"),
            "socket": str(self.socket),
        })
        self.config_file = self.dir / "taskhub.toml"
        self.config_file.write_text(toml_dump(doc))
        self.log_file = self.dir / "taskhubd.log"
        self.proc = None

    def ctl(self, *args, check=True):
        ctl = self.build_dir / "ctl" / "taskhubctl"
        return subprocess.run([str(ctl), "--socket", str(self.socket), *args], capture_output=True,
                              text=True, check=check)

    def start(self, timeout=60):
        """Starts taskhubd and returns once it answers `status`; returns the seconds that took."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.build_dir / "daemon" / "taskhubd"), "--config", str(self.config_file)],
            stdin=subprocess.DEVNULL, stdout=open(self.log_file, "w"), stderr=subprocess.STDOUT,
            env=SERVICE_ENV)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"taskhubd exited with {self.proc.returncode} at start; see "
                                   f"{self.log_file}:\n{self.log_file.read_text()[-2000:]}")
            if self.socket.exists() and self.ctl("status", "--json", check=False).returncode == 0:
                return time.monotonic() - t0
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"taskhubd did not answer within {timeout}s; see {self.log_file}")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for_fast_creates(directory, limit_s, threshold_s=100e-6):
    """Waits (up to limit_s) until creating a file in directory costs less than threshold_s.
    ext4 without a journal skips inodes freed in the last 1-5 minutes when it allocates, so after
    a mass deletion (another benchmark's clean-up, a build's) each creation can cost 0.2-2 ms
    instead of 20-40 us. Returns the last cost measured."""
    deadline = time.monotonic() + limit_s
    n = 0
    while True:
        n += 1
        cost = create_cost(Path(directory) / f"settle-{n}", n=200)
        if cost < threshold_s or time.monotonic() >= deadline:
            return cost
        if n == 1:
            print(f"   creating a file in the state directory costs {cost * 1e6:.0f} us (recent mass "
                  f"deletions?); waiting up to {limit_s:.0f} s for it to settle", flush=True)
        time.sleep(10)


# ---- results --------------------------------------------------------------------------------

def in_work_root(build, run):
    """Calls run(work_root) with a new temporary directory under the build tree (on the disk a
    real install's /var/lib/taskhub would be on, not tmpfs, where fdatasync costs nothing) and
    removes it afterwards, whatever happens; returns run's result."""
    work_root = Path(tempfile.mkdtemp(prefix="bench-", dir=build))
    try:
        return run(work_root)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)


def median(xs):
    return statistics.median(xs)


def mean(xs):
    return statistics.fmean(xs)


def spread(xs):
    """"min-max" of a series, to show how noisy the median is."""
    return f"{min(xs):.0f}-{max(xs):.0f}"


def spread2(xs):
    """"min-max" of a series of ratios."""
    return f"{min(xs):.2f}-{max(xs):.2f}"


def print_table(headers, rows):
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    for j, r in enumerate([headers] + rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def finish(args, results, missed):
    """The end of a benchmark's main(): writes results to --json when asked and returns the exit
    status: 1 when results["problems"] is not empty, 3 with --strict when missed() (a goal was
    missed), else 0. missed is only called when there were no problems."""
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if results.get("problems"):
        return 1
    return 3 if args.strict and missed() else 0


def p99_over_baseline_ok(stats, baseline, limit_ms):
    """Whether a latency summary's p99 is at most limit_ms above its baseline's p99 measured in the
    same run (True when there is no such goal: limit_ms None)."""
    return limit_ms is None or (baseline["n"] > 0 and stats["p99"] - baseline["p99"] <= limit_ms)
