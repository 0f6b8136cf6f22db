#!/usr/bin/env python3
"""labctl benchmarks, and labctl against Vagrant on the same box, side by side in one go.

Lab: labs/smoke (m-k8s + 2 workers, stand-in steps, guest internet off), and for Vagrant the
same machines and scripts (scripts/bench/vagrant/run.sh, vagrant-libvirt in a network
namespace). Rounds alternate tools: labctl round 1, Vagrant round 1, labctl round 2, ...
Usage: bench.py [--quick] [--runs N] [--vagrant] [--out FILE]
  --quick    one labctl round, no Vagrant (CI exercises this so the harness cannot rot)
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
CACHE = Path(os.environ.get("LABCTL_CACHE", Path.home() / ".cache" / "labctl"))
ENV = dict(os.environ, LABCTL_NO_EGRESS="1", LABCTL_NO_PROGRESS="1", NO_COLOR="1")
ENV["LABCTL_HOME"] = str(CACHE / "bench-home")


def sh(args, cwd=None, check=True):
    p = subprocess.run([str(LABCTL), *args], cwd=cwd, env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"labctl {' '.join(args)} failed ({p.returncode})")
    return p


def timed(args, cwd):
    t0 = time.monotonic()
    p = sh(args, cwd=cwd)
    return time.monotonic() - t0, p


def make_lab(parent: Path, port: int) -> Path:
    d = parent / f"lab{port}"
    sh(["init", "--lab", "smoke", str(d)])
    t = (d / "lab.toml").read_text()
    t = t.replace("ssh_port = 60010", f"ssh_port = {port}").replace("ssh_port = 60101", f"ssh_port = {port + 91}")
    (d / "lab.toml").write_text(t)
    return d


def events_of(p):
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def critical_path(events):
    """Longest chain of boot + steps given the measured times of one run (seconds)."""
    start, ready, steps = {}, {}, {}
    for e in events:
        n, t = e["node"], e["time"] / 1000.0
        if e["event"] == "phase" and e["phase"] in ("creating", "booting"):
            start.setdefault(n, t)
        if e["event"] == "phase" and e["phase"] == "ready":
            ready[n] = t
        if e["event"] == "step_finished" and e.get("outcome") == "done":
            steps.setdefault(n, []).append((e["step"], e["duration_ms"] / 1000.0))
    finish = {}
    for n in sorted(ready, key=lambda x: x != "m-k8s"):
        t = ready[n] - start.get(n, ready[n])
        for step, d in steps.get(n, []):
            if step == "work_nodes":
                t = max(t, finish.get(("m-k8s", "master_node"), 0.0))
            t += d
            finish[(n, step)] = t
    return max(finish.values()) if finish else float("nan")


def boot_overhead(lab: Path, events):
    """labctl: QEMU start -> SSH ready; the guest: kernel start -> sshd started."""
    t = {}
    for e in events:
        if e["node"] == "m-k8s" and e["event"] == "phase":
            t.setdefault(e["phase"], e["time"] / 1000.0)
    host = t.get("configuring", t.get("ready", 0)) - t.get("booting", 0)
    out = sh(["ssh", "m-k8s", "--", "journalctl -b -o short-monotonic --no-pager -u ssh.service | grep -m1 Started"], cwd=lab).stdout
    guest = float(out.split("]")[0].strip("[ ").split()[0]) if "[" in out else float("nan")
    return host, guest


def labctl_round(lab: Path, r, quick: bool, status_runs: int):
    sh(["destroy", "-f"], cwd=lab)
    secs, p = timed(["up", "--json", "m-k8s", "--workers", "2"], lab)
    r["up1"].append(secs)
    ev = events_of(p)
    h, g = boot_overhead(lab, ev)
    r["boot_host"].append(h)
    r["boot_guest"].append(g)
    sh(["destroy", "-f"], cwd=lab)
    secs, p = timed(["up", "--json", "--workers", "2"], lab)
    r["up3"].append(secs)
    r["crit"].append(critical_path(events_of(p)))
    for _ in range(status_runs):
        t0 = time.perf_counter()
        sh(["status"], cwd=lab)
        r["status"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        sh(["ssh", "m-k8s", "--", "true"], cwd=lab)
        r["ssh_true"].append(time.perf_counter() - t0)
    r["reset1"].append(timed(["reset", "w1-k8s"], lab)[0])
    r["reset_all"].append(timed(["reset", "--all"], lab)[0])
    if not quick:
        r["rebuild1"].append(timed(["reset", "--rebuild", "w1-k8s"], lab)[0])
        t0 = time.monotonic()
        sh(["destroy", "-f", "w1-k8s"], cwd=lab)
        sh(["up", "--workers", "2", "w1-k8s"], cwd=lab)
        r["destroy_up1"].append(time.monotonic() - t0)
    r["destroy3"].append(timed(["destroy", "-f"], lab)[0])
    if not quick:
        secs, p = timed(["up", "--json", "--workers", "2", "--jobs", "1"], lab)
        r["up3_jobs1"].append(secs)
        r["crit_jobs1"].append(critical_path(events_of(p)))
        sh(["destroy", "-f"], cwd=lab)


def vagrant_round(v, extra, runs=1):
    out = Path(tempfile.mkstemp(prefix="vbench-", suffix=".json")[1])
    cmd = ["bash", str(ROOT / "scripts/bench/vagrant/run.sh"), "--runs", str(runs), "--no-serial", "--json", str(out), *extra]
    subprocess.run(cmd, check=True)
    data = json.loads(out.read_text())
    out.unlink()
    for k, xs in data.get("results", {}).items():
        v.setdefault(k, []).extend(xs)
    v["_versions"] = data.get("versions", {})
    v.setdefault("_notes", []).extend(data.get("notes", []))


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--vagrant", action="store_true", help="also run Vagrant, alternating rounds")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    runs = 1 if a.quick else a.runs
    global LABCTL
    if a.quick:
        # CI: the debug build the tests just made is enough to exercise the harness.
        LABCTL = ROOT / "target" / "debug" / "labctl"
        subprocess.run(["cargo", "build", "-q", "-p", "labctl"], cwd=ROOT, check=True)
    else:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "labctl"], cwd=ROOT, check=True)
    keys = ["up1", "boot_host", "boot_guest", "up3", "crit", "status", "ssh_true", "reset1", "reset_all", "rebuild1", "destroy_up1", "destroy3", "up3_jobs1", "crit_jobs1"]
    r = {k: [] for k in keys}
    v, vh = {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="labctl-bench-"))
    lab = make_lab(tmp, 63010)
    started = time.monotonic()
    failures = []
    raw = CACHE / "bench-raw.json"

    def checkpoint(what):
        # Raw numbers so far, so that a failure late in an hour-long run loses nothing.
        raw.write_text(json.dumps({"labctl": r, "vagrant": v, "vagrant_guest_hint": vh, "failures": failures}, indent=1))
        print(f"{what} done at {time.monotonic() - started:.0f}s (raw numbers in {raw})", file=sys.stderr)

    def vagrant(into, extra, what):
        try:
            vagrant_round(into, extra)
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            failures.append(f"{what} failed ({e}); see the vagrant-bench logs in {CACHE / 'vagrant-bench' / 'logs'}")
        checkpoint(what)

    try:
        for i in range(runs):
            labctl_round(lab, r, a.quick, 10 if a.quick else 15)
            checkpoint(f"labctl round {i + 1}/{runs}")
            if a.vagrant and not a.quick:
                vagrant(v, [], f"vagrant round {i + 1}/{runs}")
        if a.vagrant and not a.quick:
            vagrant(vh, ["--guest-hint"], "vagrant round with the guest OS given")
    finally:
        sh(["destroy", "-f"], cwd=lab, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(a, r, v, vh, runs, time.monotonic() - started, failures)
    if failures:
        raise SystemExit("benchmark incomplete: " + "; ".join(failures))


def write_report(a, r, v, vh, runs, total, failures):
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], text=True, capture_output=True).stdout.splitlines()[0]
    ver = subprocess.run([str(LABCTL), "--version"], text=True, capture_output=True).stdout.strip()
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], text=True, capture_output=True).stdout.strip()
    ver += f" (commit {rev})" if rev else ""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    f = lambda xs, d=1: ", ".join(f"{x:.{d}f}" for x in xs) or "—"
    m = lambda xs, d=1: f"{median(xs):.{d}f}" if xs else "—"
    ratio = lambda a_, b_: f"{median(a_) / median(b_):.3f}" if a_ and b_ and median(b_) else "—"
    L = [
        "# Benchmarks",
        "",
        f"Generated by `scripts/bench/run.sh{' --quick' if a.quick else (' --vagrant' if a.vagrant else '')}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {total / 60:.0f} minutes.",
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.platform()}; {qemu}; {ver}.",
    ]
    if v.get("_versions"):
        L.append("Vagrant side: " + ", ".join(f"{k} {val}" for k, val in v["_versions"].items()) + ".")
    L += [
        "Guests: the locally built Debian 12 box (the same box file for both tools), TCG (KVM hangs here),",
        "guest internet off. Lab: `labs/smoke` (m-k8s 768 MB + 2 workers 512 MB, 1 CPU each; stand-in steps:",
        "config, install_pkg = sleep 3 s, master_node publishes a join command, work_nodes waits for it and",
        f"pings the master). {runs} round(s); rounds alternate tools. All times in seconds unless noted.",
        "",
        "## labctl against Vagrant" if v else "## labctl",
        "",
        "| scenario | labctl runs | labctl median | Vagrant runs | Vagrant median | labctl / Vagrant |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        ("`up` of 1 node with its steps (labctl: `up m-k8s`)", r["up1"], v.get("up1", [])),
        ("`up` of 3 nodes with the steps (labctl default parallelism; vagrant-libvirt parallel)", r["up3"], v.get("up3", [])),
        ("`status` on the running lab", [x / 1000 for x in r["status"]], v.get("status", [])),
        ("`ssh m-k8s -- true`", r["ssh_true"], v.get("ssh_true", [])),
        ("rebuild one worker (labctl `reset --rebuild w1-k8s`; Vagrant `destroy -f w1 && up w1`)", r["rebuild1"], v.get("rebuild_worker", [])),
        ("`destroy` of the lab", r["destroy3"], v.get("destroy3", [])),
    ]
    for name, lx, vx in rows:
        L.append(f"| {name} | {f(lx, 3 if name.startswith('`status') else 1)} | **{m(lx, 3 if name.startswith('`status') else 1)}** | {f(vx, 2)} | {m(vx, 2)} | {ratio(lx, vx)} |")
    if vh:
        L += ["", f"Vagrant with the guest OS given (`config.vm.guest = :debian`, no detection): `up` of 1 node {m(vh.get('up1', []), 1)} s, of 3 nodes {m(vh.get('up3', []), 1)} s, `status` {m(vh.get('status', []), 2)} s (1 round)."]
    L += [
        "",
        "## labctl alone",
        "",
        "| scenario | runs | median | target |",
        "|---|---|---|---|",
        f"| `up --workers 2` | {f(r['up3'])} | **{m(r['up3'])}** | ≤ 0.5 × Vagrant's |",
        f"| `up --workers 2 --jobs 1` (one node at a time, the way Vagrant + VirtualBox works) | {f(r['up3_jobs1'])} | **{m(r['up3_jobs1'])}** | — |",
        f"| critical path of the default runs (longest chain of boot + steps, from each run's events) | {f(r['crit'])} | {m(r['crit'])} | — |",
        f"| m-k8s: QEMU start → SSH ready, as labctl sees it | {f(r['boot_host'], 2)} | {m(r['boot_host'], 2)} | — |",
        f"| m-k8s: kernel start → sshd started, the guest's own clock | {f(r['boot_guest'], 2)} | {m(r['boot_guest'], 2)} | — |",
        f"| `labctl status`, 3 nodes running (ms) | {len(r['status'])} runs, min {min(r['status']):.1f}, max {max(r['status']):.1f} | **{m(r['status'])} ms** | ≤ 20 ms |",
        f"| `labctl reset w1-k8s` (golden snapshot + the lab's check) | {f(r['reset1'])} | **{m(r['reset1'])}** | ≤ 3 s |",
        f"| `labctl reset --all` (3 nodes) | {f(r['reset_all'])} | **{m(r['reset_all'])}** | — |",
        f"| `labctl destroy -f w1-k8s && labctl up w1-k8s` | {f(r['destroy_up1'])} | {m(r['destroy_up1'])} | — |",
        "",
        "Ratios:",
        "",
        f"- parallel `up` / `--jobs 1`: **{ratio(r['up3'], r['up3_jobs1'])}**; parallel `up` / its critical path: **{ratio(r['up3'], r['crit'])}**.",
        f"- `up` of 1 node / the guest's own boot-to-sshd time: **{ratio(r['up1'], r['boot_guest'])}** (target ≤ 1.1; `up` also runs the node's 3 steps and takes the golden snapshot).",
        f"- labctl's boot-to-SSH overhead over the guest's own: **{median(r['boot_host']) - median(r['boot_guest']):.2f} s** (target ≤ 0.5 s; includes QEMU start and kernel decompression before the guest clock starts, and the probe interval).",
        f"- `reset` of one node / destroy + up of it: **{ratio(r['reset1'], r['destroy_up1'])}**; `reset --all` / destroy + up of the lab: **{median(r['reset_all']) / (median(r['up3']) + median(r['destroy3'])):.3f}**.",
    ]
    if v:
        L.append(f"- `status`: Vagrant / labctl = **{median(v.get('status', [float('nan')])) / (median(r['status']) / 1000):.0f}×** (target ≥ 100×); `up` of 3 nodes labctl / Vagrant = **{ratio(r['up3'], v.get('up3', []))}** (target ≤ 0.5).")
    for f_ in failures:
        L.append(f"- **Incomplete**: {f_}.")
    for n in (v.get("_notes") or [])[:6]:
        L.append(f"- Vagrant note: {n}")
    L += ["", "Rerun: `scripts/bench/run.sh --vagrant` (everything, about an hour), `scripts/bench/run.sh` (labctl only), `scripts/bench/run.sh --quick` (one labctl round; CI); `scripts/bench/boot-breakdown.sh` splits one node's boot-to-SSH time.", ""]
    Path(a.out).write_text("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
