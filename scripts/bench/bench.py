#!/usr/bin/env python3
"""labctl benchmarks, run side by side in one go; writes a Markdown report.

Scenarios (smoke lab: m-k8s + 2 workers, stand-in steps, guest internet off):
  * `labctl up --workers 2`, default parallelism vs `--jobs 1` (one node at a time, the way
    Vagrant with VirtualBox works), alternating, with the critical path of each run computed
    from its own --json events (the longest chain of boot + steps given the measured times);
  * boot to SSH: labctl's time from QEMU start to SSH-ready against the guest's own time from
    kernel start to sshd started (journal, monotonic clock);
  * `labctl status` on the running 3-node lab (many runs).
Usage: bench.py [--quick] [--runs N] [--out FILE]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LABCTL = ROOT / "target" / "release" / "labctl"
ENV = dict(os.environ, LABCTL_NO_EGRESS="1", LABCTL_NO_PROGRESS="1", NO_COLOR="1")
ENV["LABCTL_HOME"] = str(Path(ENV.get("LABCTL_CACHE", Path.home() / ".cache" / "labctl")) / "bench-home")


def sh(args, cwd=None, check=True, capture=True):
    p = subprocess.run([str(LABCTL), *args], cwd=cwd, env=ENV, text=True,
                       stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and p.returncode != 0:
        sys.stderr.write(p.stdout or "")
        sys.stderr.write(p.stderr or "")
        raise SystemExit(f"labctl {' '.join(args)} failed ({p.returncode})")
    return p


def make_lab(parent: Path, port: int) -> Path:
    d = parent / f"lab{port}"
    sh(["init", "--lab", "smoke", str(d)])
    t = (d / "lab.toml").read_text()
    t = t.replace("ssh_port = 60010", f"ssh_port = {port}").replace("ssh_port = 60101", f"ssh_port = {port + 91}")
    (d / "lab.toml").write_text(t)
    return d


def up_events(lab: Path, extra):
    t0 = time.monotonic()
    p = sh(["up", "--json", "--workers", "2", *extra], cwd=lab)
    wall = time.monotonic() - t0
    events = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return wall, events


def critical_path(events):
    """Longest chain of boot + steps, from one run's events (seconds)."""
    booting, ready, steps = {}, {}, {}
    for e in events:
        n, t = e["node"], e["time"] / 1000.0
        if e["event"] == "phase" and e["phase"] in ("creating", "booting"):
            booting.setdefault(n, t)
        if e["event"] == "phase" and e["phase"] == "ready":
            ready[n] = t
        if e["event"] == "step_finished" and e.get("outcome") == "done":
            steps.setdefault(n, []).append((e["step"], e["duration_ms"] / 1000.0))
    if not ready:
        return None
    boot = {n: ready[n] - booting.get(n, ready[n]) for n in ready}
    # smoke lab: workers' work_nodes waits for m-k8s.master_node; everything else is per node.
    finish = {}
    for n in sorted(ready, key=lambda x: x != "m-k8s"):
        t = boot[n]
        for step, d in steps.get(n, []):
            if step == "work_nodes":
                t = max(t, finish.get(("m-k8s", "master_node"), 0.0))
            t += d
            finish[(n, step)] = t
    return max(finish.values()) if finish else max(boot.values())


def boot_overhead(lab: Path, events):
    """labctl's QEMU start → SSH ready, and the guest's kernel start → sshd started."""
    t = {}
    for e in events:
        if e["node"] == "m-k8s" and e["event"] == "phase":
            t.setdefault(e["phase"], e["time"] / 1000.0)
    host = t.get("configuring", t.get("ready", 0)) - t.get("booting", 0)
    out = sh(["ssh", "m-k8s", "--", "journalctl -b -o short-monotonic --no-pager -u ssh.service | grep -m1 'Started'"], cwd=lab).stdout
    guest = float(out.split("]")[0].strip("[ ").split()[0]) if "[" in out else float("nan")
    return host, guest


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 run each, labctl only (CI)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--status-runs", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    runs = 1 if a.quick else a.runs
    status_runs = 10 if a.quick else a.status_runs
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "labctl"], cwd=ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="labctl-bench-"))
    lab = make_lab(tmp, 63010)
    results = {"up": [], "up_jobs1": [], "crit": [], "crit_jobs1": [], "boot_host": [], "boot_guest": [], "status": [],
               "reset1": [], "rebuild1": [], "reset_all": [], "destroy": []}
    try:
        order = [("up", [])] * runs + ([] if a.quick else [("up_jobs1", ["--jobs", "1"])] * runs)
        # alternate default and --jobs 1
        if not a.quick:
            order = [x for pair in zip([("up", [])] * runs, [("up_jobs1", ["--jobs", "1"])] * runs) for x in pair]
        for i, (name, extra) in enumerate(order):
            sh(["destroy", "-f"], cwd=lab)
            wall, events = up_events(lab, extra)
            results[name].append(wall)
            cp = critical_path(events)
            results["crit" if name == "up" else "crit_jobs1"].append(cp)
            if name == "up":
                h, g = boot_overhead(lab, events)
                results["boot_host"].append(h)
                results["boot_guest"].append(g)
            print(f"run {i + 1}/{len(order)} {name}: {wall:.1f}s (critical path {cp:.1f}s)", file=sys.stderr)
        if not results["up"]:
            sh(["up", "--workers", "2"], cwd=lab)
        # Reset one node from the golden snapshot, against destroy + up of that node.
        for i in range(runs):
            t0 = time.monotonic()
            sh(["reset", "w1-k8s"], cwd=lab)
            results["reset1"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            sh(["destroy", "-f", "w1-k8s"], cwd=lab)
            sh(["up", "--workers", "2", "w1-k8s"], cwd=lab)
            results["rebuild1"].append(time.monotonic() - t0)
            sh(["up", "--workers", "2"], cwd=lab)  # golden snapshot again for the next round
            t0 = time.monotonic()
            sh(["reset", "--all"], cwd=lab)
            results["reset_all"].append(time.monotonic() - t0)
            print(f"reset round {i + 1}: reset1 {results['reset1'][-1]:.1f}s, destroy+up node {results['rebuild1'][-1]:.1f}s, reset --all {results['reset_all'][-1]:.1f}s", file=sys.stderr)
        for _ in range(status_runs):
            t0 = time.perf_counter()
            sh(["status"], cwd=lab)
            results["status"].append((time.perf_counter() - t0) * 1000)
        t0 = time.monotonic()
        sh(["destroy", "-f"], cwd=lab)
        results["destroy"].append(time.monotonic() - t0)
    finally:
        sh(["destroy", "-f"], cwd=lab, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(a, results, runs)


def write_report(a, r, runs):
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], text=True, capture_output=True).stdout.splitlines()[0]
    ver = subprocess.run([str(LABCTL), "--version"], text=True, capture_output=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    f = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    up, j1 = median(r["up"]), median(r["up_jobs1"])
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `scripts/bench/run.sh{' --quick' if a.quick else ''}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {platform.node()}, {os.cpu_count()} cores ({cpu}), {platform.platform()}; QEMU: {qemu}; {ver}.",
        "Guests: the locally built Debian 12 box, TCG (no KVM here), guest internet off. Lab: `labs/smoke`",
        "(m-k8s + 2 workers, stand-in steps: config, install_pkg = sleep 3 s, master_node publishes a join",
        "command, work_nodes waits for it and pings the master). Runs alternate between configurations.",
        "",
        "| scenario | runs (s) | median | target |",
        "|---|---|---|---|",
        f"| `up --workers 2` (default: parallel) | {f(r['up'])} | **{up:.1f} s** | — |",
    ]
    if r["up_jobs1"]:
        lines.append(f"| `up --workers 2 --jobs 1` (one node at a time, like Vagrant+VirtualBox) | {f(r['up_jobs1'])} | **{j1:.1f} s** | — |")
    lines += [
        f"| critical path of the default runs (longest chain of boot + steps) | {f(r['crit'])} | {median(r['crit']):.1f} s | — |",
        f"| m-k8s: QEMU start → SSH ready, as labctl sees it | {f(r['boot_host'])} | {median(r['boot_host']):.2f} s | — |",
        f"| m-k8s: kernel start → sshd started, the guest's own clock | {f(r['boot_guest'])} | {median(r['boot_guest']):.2f} s | — |",
        f"| `labctl status` on the running 3-node lab ({len(r['status'])} runs, ms) | min {min(r['status']):.1f}, max {max(r['status']):.1f} | **{median(r['status']):.1f} ms** | ≤ 20 ms |",
        f"| `labctl reset w1-k8s` (golden snapshot, with the lab's check) | {f(r['reset1'])} | **{median(r['reset1']):.1f} s** | ≤ 3 s |",
        f"| `labctl destroy -f w1-k8s && labctl up w1-k8s` | {f(r['rebuild1'])} | {median(r['rebuild1']):.1f} s | — |",
        f"| `labctl reset --all` (3 nodes) | {f(r['reset_all'])} | **{median(r['reset_all']):.1f} s** | — |",
        f"| `labctl destroy -f` of the 3-node lab | {f(r['destroy'])} | {median(r['destroy']):.2f} s | — |",
        "",
        "Ratios:",
        "",
    ]
    if r["up_jobs1"]:
        lines.append(f"- default / `--jobs 1`: **{up / j1:.2f}** (parallel bring-up takes {100 * up / j1:.0f} % of the serial time).")
    lines.append(f"- default wall time / its critical path: **{up / median(r['crit']):.2f}** (1.00 would mean no waiting beyond the longest chain).")
    lines.append(f"- reset of one node / destroy + up of it: **{median(r['reset1']) / median(r['rebuild1']):.3f}**; reset --all / (destroy + up) of the lab: **{median(r['reset_all']) / (up + median(r['destroy'])):.3f}**.")
    lines.append(f"- labctl overhead on boot to SSH: **{median(r['boot_host']) - median(r['boot_guest']):.2f} s** (target ≤ 0.5 s; includes QEMU start, firmware and kernel decompression before the guest's clock starts, and the polling interval).")
    lines += [
        "",
        "Not measured here yet: the side-by-side comparison with Vagrant (issue 7).",
        "",
        "Rerun: `scripts/bench/run.sh` (full, about 15 minutes) or `scripts/bench/run.sh --quick` (one run, labctl only).",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
