#!/usr/bin/env bash
# boot-breakdown.sh [RUNS] - where the time from QEMU start to "SSH ready" goes, for m-k8s of
# labs/smoke brought up alone (release build, the cached box, guest internet off). Per run:
# labctl's booting -> configuring phases (host clock), and from the guest's journal (kernel
# clock): sshd started, and labctl's first accepted login. The gap between the last two is the
# first SSH connection's cost in the guest (sshd fork + re-exec, key exchange, auth under TCG).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
export LABCTL_NO_EGRESS=1 LABCTL_NO_PROGRESS=1 NO_COLOR=1
export LABCTL_HOME=${LABCTL_HOME:-$HOME/.cache/labctl/bench-home}
cargo build --release -q -p labctl
L=$PWD/target/release/labctl
T=$(mktemp -d)
trap '"$L" destroy -f --lab "$T/lab" >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
"$L" init --lab smoke "$T/lab" >/dev/null
# Ports of its own (64010, 64101…) so that no other lab on the machine is in the way.
export LABCTL_PORT_OFFSET=4000
for ((i = 1; i <= RUNS; i++)); do
    "$L" destroy -f --lab "$T/lab" >/dev/null 2>&1 || true
    "$L" up --json --lab "$T/lab" m-k8s >"$T/events.json" 2>/dev/null || true
    "$L" ssh --lab "$T/lab" m-k8s -- "journalctl -b -o short-monotonic --no-pager | grep -E 'Started ssh.service|sshd.*Accepted publickey' | head -2" >"$T/journal.txt"
    python3 - "$T/events.json" "$T/journal.txt" <<'PY'
import json, sys
t = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        e = json.loads(line)
        if e["node"] == "m-k8s" and e["event"] == "phase":
            t.setdefault(e["phase"], e["time"] / 1000)
ts = [float(l.split("]")[0].strip("[ ").split()[0]) for l in open(sys.argv[2]) if l.startswith("[")]
host = t["configuring"] - t["booting"]
print(f"host: QEMU start -> SSH ready {host:.2f} s | guest: kernel -> sshd started {ts[0]:.2f} s, "
      f"-> first login accepted {ts[1]:.2f} s | sshd started -> login {ts[1] - ts[0]:.2f} s, "
      f"host beyond the guest's login {host - ts[1]:.2f} s")
PY
done
