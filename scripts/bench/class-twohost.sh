#!/usr/bin/env bash
# class-twohost.sh - `labctl class up` of 2 students' labs (labs/smoke, 1 worker each) on two
# libvirt hosts reached over SSH (`qemu+ssh://`), against `labctl up` of the same two labs one
# after the other on one of those hosts. Both "hosts" are simulated on this machine exactly as
# in crates/labctl/tests/e2e_twohost.rs: each is a PID + mount + network namespace with its own
# libvirtd and sshd (crates/labctl/tests/data/twohost-host.sh), joined by a veth pair to a
# client namespace in which labctl runs; nothing is added to this machine's own network
# namespace. Same hardware on both sides: it measures labctl's parallelism across hosts and
# its per-host overhead (virsh and SSH round trips), not extra hardware.
#
# Round 0 (cold) is a `class up` that also uploads the box to both hosts; then RUNS rounds
# (default 2) of warm `class up` and warm sequential `up`, each followed by destroy. Needs
# root, libvirt, openssh-server (scripts/setup.sh) and the box (scripts/build-box.sh). Guests'
# internet is off (LABCTL_NO_EGRESS=1). Everything is removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-2}
if [[ -z "${LABCTL:-}" ]]; then
    cargo build -q -p labctl
    LABCTL=$PWD/target/debug/labctl
fi
BOX=${LABCTL_CACHE:-$HOME/.cache/labctl}/boxes/labctl-debian-12.box
[[ -f $BOX ]] || { echo "no box at $BOX: run scripts/build-box.sh" >&2; exit 1; }
[[ -x /usr/sbin/sshd && -x /usr/sbin/libvirtd ]] || { echo "needs libvirtd and sshd: scripts/setup.sh" >&2; exit 1; }
HOST_SH=$PWD/crates/labctl/tests/data/twohost-host.sh
T=$(mktemp -d)
export LABCTL_HOME=$T/home LABCTL_CACHE=$T/cache LABCTL_NO_EGRESS=1 LABCTL_NO_PROGRESS=1 NO_COLOR=1
mkdir -p "$LABCTL_CACHE/boxes" "$T/client/bin"
ln -s "$BOX" "$LABCTL_CACHE/boxes/labctl-debian-12.box"

CLIENT=""
HOSTS=()
netns() { readlink "/proc/$1/ns/net" 2>/dev/null || true; }
others_in_netns() {  # PIDs sharing $1's network namespace, other than $1
    local ns p
    ns=$(netns "$1")
    [[ -n $ns ]] || return 0
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p != "$1" && "$(netns "$p")" == "$ns" ]] && echo "$p"
    done
    return 0
}
in_client() { nsenter -t "$CLIENT" -n env PATH="$T/client/bin:$PATH" "$@"; }
cleanup() {
    set +e
    if [[ -n $CLIENT ]]; then
        in_client "$LABCTL" class destroy -f --class "$T/class" >/dev/null 2>&1
        for l in "$T/seq1" "$T/seq2"; do in_client "$LABCTL" destroy -f --lab "$l" >/dev/null 2>&1; done
    fi
    for h in "${HOSTS[@]}"; do
        # The host's PID 1 (unshare's child): virsh runs in its PID namespace too (its /proc).
        init=$(cut -d' ' -f1 "/proc/$h/task/$h/children" 2>/dev/null)
        if [[ -n $init ]]; then
            for d in $(nsenter -t "$init" -p -m -n virsh -c qemu:///system list --name 2>/dev/null); do
                nsenter -t "$init" -p -m -n virsh -c qemu:///system destroy "$d" >/dev/null 2>&1
            done
        fi
        left=$(others_in_netns "$h")
        # SIGKILL: unshare --fork ignores SIGTERM; its death kills the namespace's PID 1 and so
        # every process in it (--kill-child).
        kill -9 "$h" 2>/dev/null
        for p in $left; do kill -9 "$p" 2>/dev/null; done
    done
    if [[ -n $CLIENT ]]; then
        left=$(others_in_netns "$CLIENT")
        kill "$CLIENT" 2>/dev/null
        for p in $left; do kill -9 "$p" 2>/dev/null; done
    fi
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

wait_unshared() {
    local i=0
    while [[ -z "$(netns "$1")" || "$(netns "$1")" == "$(netns $$)" ]]; do
        i=$((i + 1)); [[ $i -lt 200 ]] || { echo "$1 did not unshare" >&2; exit 1; }
        sleep 0.1
    done
}

# The client: its namespace, key, known_hosts and an `ssh` wrapper with the test's config
# (OpenSSH finds ~/.ssh through the password database, not $HOME; root's own is not touched).
unshare --net sh -c 'ip link set lo up; exec sleep 100000' </dev/null &
CLIENT=$!
wait_unshared "$CLIENT"
ssh-keygen -q -t ed25519 -N "" -C labctl-bench -f "$T/client/id_ed25519"
printf 'Host *\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  IdentityAgent none\n  BatchMode yes\n' \
    "$T/client/known_hosts" >"$T/client/ssh_config"
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$T/client/ssh_config" >"$T/client/bin/ssh"
chmod 755 "$T/client/bin/ssh"

URIS=()
for n in 1 2; do
    H=$T/h$n
    A=10.254.$n.2
    mkdir -p "$H"
    ssh-keygen -q -t ed25519 -N "" -C labctl-bench -f "$H/ssh_host_ed25519_key"
    cp "$T/client/id_ed25519.pub" "$H/authorized_keys"
    cat >"$H/sshd_config" <<EOF
ListenAddress $A
Port 22
HostKey $H/ssh_host_ed25519_key
PidFile $H/sshd.pid
AuthorizedKeysFile $H/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
EOF
    echo "$A $(cut -d' ' -f1-2 "$H/ssh_host_ed25519_key.pub")" >>"$T/client/known_hosts"
    # A PID namespace too: if this script is killed, unshare's child (PID 1 there) dies and
    # the kernel kills QEMU, which libvirt daemonizes out of this script's process group.
    unshare --pid --fork --kill-child --mount-proc --mount --net --propagation private \
        sh "$HOST_SH" "$H" "$A" </dev/null >"$H/host.log" 2>&1 &
    pid=$!
    HOSTS+=("$pid")
    wait_unshared "$pid"
    nsenter -t "$CLIENT" -n ip link add "vc$n" type veth peer name "vh$n" netns "$pid"
    nsenter -t "$CLIENT" -n ip addr add "10.254.$n.1/30" dev "vc$n"
    nsenter -t "$CLIENT" -n ip link set "vc$n" up
    nsenter -t "$pid" -n ip addr add "$A/30" dev "vh$n"
    nsenter -t "$pid" -n ip link set "vh$n" up
    URIS+=("qemu+ssh://root@$A/system?keyfile=$T/client/id_ed25519")
    i=0
    until in_client virsh -c "${URIS[-1]}" version >/dev/null 2>&1; do
        i=$((i + 1)); [[ $i -lt 180 ]] || { cat "$H/host.log" >&2; exit 1; }
        sleep 0.5
    done
done

in_client "$LABCTL" init --lab smoke "$T/lab" >/dev/null
sed -i -e 's/ssh_port = 60010/ssh_port = 62400/' -e 's/ssh_port = 60101/ssh_port = 62491/' \
    -e 's/prep_seconds = 3/prep_seconds = 1/' "$T/lab/lab.toml"
in_client "$LABCTL" box add labctl/debian-12 "$BOX" >/dev/null
mkdir -p "$T/class"
cat >"$T/class/class.toml" <<TOML
[class]
name = "bench"
lab = "$T/lab"
workers = 1
students = ["ann", "bob"]

[[host]]
name = "h1"
uri = "${URIS[0]}"
memory_mb = 3000
max_parallel = 1

[[host]]
name = "h2"
uri = "${URIS[1]}"
memory_mb = 3000
max_parallel = 1
TOML
# The same two labs for the sequential side: copies of the class's lab with 1 worker, on h1,
# ports of their own.
for n in 1 2; do
    cp -r "$T/lab" "$T/seq$n"
    sed -i -e "s/^name = \"smoke\"/name = \"seq$n\"\nprovider = \"libvirt\"\nuri = \"${URIS[0]//\//\\/}\"/" \
        -e 's/^workers = 2/workers = 1/' \
        -e "s/ssh_port = 62400/ssh_port = $((62400 + 92 * n))/" \
        -e "s/ssh_port = 62491/ssh_port = $((62491 + 92 * n))/" "$T/seq$n/lab.toml"
done

secs() { echo "$2 - $1" | bc; }
timed() {  # timed LOG CMD... : prints the seconds; the command's stderr goes to LOG
    local log=$1 a b
    shift
    a=$(date +%s.%N)
    "$@" 2>"$log" >/dev/null || { cat "$log" >&2; exit 1; }
    b=$(date +%s.%N)
    printf '%.1f' "$(secs "$a" "$b")"
}
class_up() { in_client "$LABCTL" class up --class "$T/class"; }
class_down() { in_client "$LABCTL" class destroy -f --class "$T/class" >/dev/null 2>&1; }
seq_up() { in_client "$LABCTL" up --lab "$T/seq1" && in_client "$LABCTL" up --lab "$T/seq2"; }
seq_down() {
    local n
    for n in 1 2; do in_client "$LABCTL" destroy -f --lab "$T/seq$n" >/dev/null 2>&1; done
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cold=$(timed "$T/cold.err" class_up)
printf 'round 0: class up, 2 labs on 2 hosts, cold (box uploaded to both): %s s\n' "$cold"
class_down
C=()
S=()
for r in $(seq 1 "$RUNS"); do
    class_s=$(timed "$T/class$r.err" class_up)
    class_down
    seq_s=$(timed "$T/seq$r.err" seq_up)
    seq_down
    C+=("$class_s")
    S+=("$seq_s")
    printf 'round %d: class up, 2 labs on 2 hosts: %s s; up of the same 2 labs one after the other on h1: %s s\n' "$r" "$class_s" "$seq_s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }
printf 'median of %d: class up on 2 hosts %s s, sequential up on 1 host %s s\n' "$RUNS" "$(median "${C[@]}")" "$(median "${S[@]}")"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
