#!/usr/bin/env bash
# class.sh - `labctl class up` of 2 students' labs (labs/smoke, 1 worker each) on two "hosts"
# that are both this machine (uri = "local", one lab at a time per host, so the two labs
# come up in parallel) against `labctl up` of the same two labs one after the other. Both
# on this machine: it measures labctl's orchestration and parallelism, not more hardware.
# Boots 4 TCG/KVM guests per round (2 rounds); needs the box built by scripts/build-box.sh.
# Guests' internet is off (LABCTL_NO_EGRESS=1). Everything is destroyed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${LABCTL:-}" ]]; then
    cargo build -q -p labctl
    LABCTL=$PWD/target/debug/labctl
fi
BOX=${LABCTL_CACHE:-$HOME/.cache/labctl}/boxes/labctl-debian-12.box
[[ -f $BOX ]] || { echo "no box at $BOX: run scripts/build-box.sh" >&2; exit 1; }
T=$(mktemp -d)
export LABCTL_HOME=$T/home LABCTL_CACHE=$T/cache LABCTL_NO_EGRESS=1 LABCTL_NO_PROGRESS=1 NO_COLOR=1
mkdir -p "$LABCTL_CACHE/boxes"
ln -s "$BOX" "$LABCTL_CACHE/boxes/labctl-debian-12.box"
cleanup() {
    "$LABCTL" class destroy -f --class "$T/class" >/dev/null 2>&1 || true
    for l in "$T/seq1" "$T/seq2"; do "$LABCTL" destroy -f --lab "$l" >/dev/null 2>&1 || true; done
    rm -rf "$T"
}
trap cleanup EXIT
"$LABCTL" init --lab smoke "$T/lab" >/dev/null
# Ports of its own (61800…) so that no other lab on the machine is in the way.
sed -i -e 's/ssh_port = 60010/ssh_port = 61800/' -e 's/ssh_port = 60101/ssh_port = 61891/' \
    -e 's/prep_seconds = 3/prep_seconds = 1/' "$T/lab/lab.toml"
# The box is added to the store once, outside the timings.
"$LABCTL" box add labctl/debian-12 "$BOX" >/dev/null
mkdir -p "$T/class"
cat >"$T/class/class.toml" <<TOML
[class]
name = "bench"
lab = "$T/lab"
workers = 1
students = ["ann", "bob"]

[[host]]
name = "h1"
uri = "local"
memory_mb = 3000
max_parallel = 1

[[host]]
name = "h2"
uri = "local"
memory_mb = 3000
max_parallel = 1
TOML
secs() { echo "$2 - $1" | bc; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
a=$(date +%s.%N)
"$LABCTL" class up --class "$T/class" 2>"$T/class.err" || { cat "$T/class.err"; exit 1; }
b=$(date +%s.%N)
printf 'class up, 2 labs on 2 hosts:        %.1f s\n' "$(secs "$a" "$b")"
"$LABCTL" class destroy -f --class "$T/class" >/dev/null 2>&1
# The same two labs (copies of the class's lab, 1 worker, ports of their own), one `up` after
# the other.
for s in 1 2; do
    cp -r "$T/lab" "$T/seq$s"
    sed -i -e "s/^name = \"smoke\"/name = \"seq$s\"/" -e 's/^workers = 2/workers = 1/' \
        -e "s/ssh_port = 61800/ssh_port = $((61800 + 92 * s))/" \
        -e "s/ssh_port = 61891/ssh_port = $((61891 + 92 * s))/" "$T/seq$s/lab.toml"
done
c=$(date +%s.%N)
"$LABCTL" up --lab "$T/seq1" 2>"$T/seq1.err" || { cat "$T/seq1.err"; exit 1; }
"$LABCTL" up --lab "$T/seq2" 2>"$T/seq2.err" || { cat "$T/seq2.err"; exit 1; }
d=$(date +%s.%N)
printf 'up, the same 2 labs one after other: %.1f s\n' "$(secs "$c" "$d")"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
