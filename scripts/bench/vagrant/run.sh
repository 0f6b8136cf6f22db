#!/usr/bin/env bash
# run.sh - the Vagrant side of labctl's side-by-side benchmark (issue #7).
#
# Usage: scripts/bench/vagrant/run.sh [--runs N] [--status-runs M] [--guest-hint]
#                                     [--no-serial] [--json OUT]
#
# Times Vagrant 2.3 + vagrant-libvirt (QEMU/TCG) on the smoke lab's machines
# (m-k8s + w1-k8s + w2-k8s, the steps labctl runs), with the labctl box:
#   up1             `vagrant up` of m-k8s alone, with its provisioning
#   destroy1        `vagrant destroy -f` of it
#   up3             `vagrant up` of the 3-node lab (vagrant-libvirt default:
#                   machines in parallel), then a ping mesh + step check
#   up3_serial      the same with `--no-parallel` (the order Vagrant with
#                   VirtualBox gives: master first); skipped with --no-serial
#   status          `vagrant status` on the running 3-node lab (M runs, def. 10)
#   ssh_true        `vagrant ssh m-k8s -c true` on it (M runs)
#   rebuild_worker  `vagrant destroy -f w1-k8s && vagrant up w1-k8s`
#   destroy3        `vagrant destroy -f` of the 3-node lab
#   up1_first       only when the box is not in the libvirt pool yet: the first
#                   `vagrant up`, which also uploads the box image (not in up1)
# Each scenario runs N times (default 3). --guest-hint sets
# config.vm.guest = :debian (no guest OS detection); default is detection.
# Output: JSON on stdout or in OUT: {"versions", "guest_hint", "results", "notes"}.
# Progress goes to stderr, every vagrant command's output to a log file in
# $LABCTL_CACHE/vagrant-bench/logs/ (LABCTL_CACHE defaults to ~/.cache/labctl).
#
# Needs root. libvirtd, virtlogd, dnsmasq, QEMU and vagrant all run in the
# network namespace labctl-vbench (only `lo`, no route, ip_forward 0); on exit
# (also on failure and Ctrl-C) the domains, networks and pool are removed, the
# daemons stopped by PID, the namespace deleted and /etc/libvirt, /var/lib/libvirt,
# /var/log/libvirt and /var/cache/libvirt put back as they were.
set -euo pipefail

NS="labctl-vbench"
BOX_NAME=labctl/debian-12
SMOKE_TOKEN=123456.1234567890123456 # the seed lab's fixed bootstrap token
MASTER_IP=192.168.1.10
PKGS=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base iptables
    qemu-utils qemu-system-x86 util-linux)
# Directories libvirt writes to; each is copied before the run and put back after.
SNAP_DIRS=(/etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/libvirt)
T_UP=1800      # seconds before one vagrant up/destroy is given up
T_SHORT=300    # same for status, ssh, destroy
BOX_FIX_REV=1  # bump when fix_box_vagrantfile changes

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SCRIPT")
REPO=$(readlink -f "$HERE/../../..")
CACHE=${LABCTL_CACHE:-$HOME/.cache/labctl}
BENCH=$CACHE/vagrant-bench
STATE=$BENCH/state
POOL=$BENCH/pool
VHOME=$BENCH/home
RUNS=3
STATUS_RUNS=10
GUEST_HINT=0
SERIAL=1
JSON_OUT=-

usage() {
    sed -n '2,30s/^# \{0,1\}//p' "$SCRIPT"
}
FAILED=""
die() {
    echo "vagrant-bench: error: $*" >&2
    [[ -n $FAILED ]] || FAILED=$*
    exit 1
}
log() {
    printf '%s vagrant-bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --runs)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"
            RUNS=$2
            shift 2
            ;;
        --status-runs)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--status-runs needs a positive number"
            STATUS_RUNS=$2
            shift 2
            ;;
        --guest-hint)
            GUEST_HINT=1
            shift
            ;;
        --no-serial)
            SERIAL=0
            shift
            ;;
        --json)
            [[ -n ${2:-} ]] || die "--json needs a file name (- for stdout)"
            JSON_OUT=$2
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
done
if [[ $JSON_OUT != - && $JSON_OUT != /* ]]; then
    JSON_OUT=$PWD/$JSON_OUT
fi
[[ $(id -u) -eq 0 ]] || die "must run as root (libvirtd, network namespace)"

mkdir -p "$BENCH" "$STATE" "$POOL" "$VHOME" "$BENCH/logs"
exec {LOCKFD}>"$BENCH/lock"
flock -n "$LOCKFD" || die "another run.sh is using $BENCH"

RUN_ID=$(date +%Y%m%d-%H%M%S)
RUNLOG=$BENCH/logs/$RUN_ID
CONSOLES=$RUNLOG/console
mkdir -p "$RUNLOG/results" "$CONSOLES"
: >"$RUNLOG/notes"
: >"$RUNLOG/versions"
SEQ=0
CHILD=""
T_START=$EPOCHREALTIME
NSX=(ip netns exec "$NS")
VENV=(env VAGRANT_HOME="$VHOME" VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1
    LIBVIRT_DEFAULT_URI=qemu:///system SHELL=/bin/bash)

note() {
    printf '%s\n' "$*" >>"$RUNLOG/notes"
    log "note: $*"
}
version() { # version KEY VALUE
    printf '%s\t%s\n' "$1" "$2" >>"$RUNLOG/versions"
}
result() { # result KEY SECONDS
    printf '%s\n' "$2" >>"$RUNLOG/results/$1"
}
elapsed() { # elapsed T0 T1 (EPOCHREALTIME values)
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'
}

# ------------------------------------------------------------------ install
install_pkgs() {
    local p missing=()
    for p in "${PKGS[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    local apt=(apt-get install -y -q --no-install-recommends "${missing[@]}")
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"$RUNLOG/apt.log" 2>&1; then
        apt-get update -q >>"$RUNLOG/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"$RUNLOG/apt.log" 2>&1 ||
            die "apt-get install failed, see $RUNLOG/apt.log"
    fi
    note "installed: ${missing[*]}"
}

record_versions() {
    local v
    v=$(vagrant --version 2>/dev/null) || v="?"
    version vagrant "${v#Vagrant }"
    version vagrant_libvirt "$(dpkg-query -W -f='${Version}' vagrant-libvirt 2>/dev/null || echo '?')"
    v=$(libvirtd --version 2>/dev/null) || v="?"
    version libvirt "${v##* }"
    v=$(qemu-system-x86_64 --version 2>/dev/null | head -n1) || v="?"
    version qemu "$v"
    v=$(dnsmasq --version 2>/dev/null | head -n1) || v="?"
    version dnsmasq "$v"
    v=$(ruby --version 2>/dev/null) || v="?"
    version ruby "$v"
    version host_kernel "$(uname -r)"
    version host_cpus "$(nproc)"
    version accel "tcg (libvirt domain type qemu)"
}

# ------------------------------------------------------------------ daemons / clean-up
# pid_of NAME: the PID in $STATE/NAME.pid if that process is NAME and runs in
# our namespace (so it is one we started), else nothing.
pid_of() {
    local name=$1 pid comm
    [[ -s $STATE/$name.pid ]] || return 0
    pid=$(<"$STATE/$name.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 0
    [[ $comm == "$name" ]] || return 0
    [[ $(ip netns identify "$pid" 2>/dev/null) == "$NS" ]] || return 0
    echo "$pid"
}

stop_pid() { # stop_pid PID: TERM, up to 10 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# live_daemons: PIDs of libvirtd/virtlogd processes that are not zombies.
live_daemons() {
    local p
    for p in $(pgrep -x libvirtd) $(pgrep -x virtlogd); do
        [[ $(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) == Z ]] || printf '%s ' "$p"
    done
}

netns_exists() {
    ip netns list 2>/dev/null | awk '{ print $1 }' | grep -qx "$NS"
}

virsh_ns() {
    timeout 60 "${NSX[@]}" virsh -q -c qemu:///system "$@"
}

# vagrant_destroy_all: best effort, for the clean-up path.
vagrant_destroy_all() {
    local d
    for d in one three; do
        if [[ -d $BENCH/$d/.vagrant/machines ]] && compgen -G "$BENCH/$d/.vagrant/machines/*/libvirt/id" >/dev/null; then
            log "clean-up: vagrant destroy -f in $d/"
            (cd "$BENCH/$d" && timeout 300 "${NSX[@]}" "${VENV[@]}" vagrant destroy -f) \
                >>"$RUNLOG/cleanup.log" 2>&1 </dev/null || true
        fi
    done
}

teardown_libvirt() {
    local pid dom net p
    pid=$(pid_of libvirtd)
    if [[ -n $pid ]]; then
        vagrant_destroy_all
        # Whatever vagrant left: every domain, network and pool in this libvirtd
        # was made by this harness (it starts with an empty /etc/libvirt state).
        while read -r dom; do
            [[ -n $dom ]] || continue
            virsh_ns destroy "$dom" >>"$RUNLOG/cleanup.log" 2>&1 || true
            virsh_ns undefine "$dom" >>"$RUNLOG/cleanup.log" 2>&1 || true
        done < <(virsh_ns list --all --name 2>/dev/null)
        while read -r net; do
            [[ -n $net ]] || continue
            virsh_ns net-destroy "$net" >>"$RUNLOG/cleanup.log" 2>&1 || true
            [[ $net == default ]] || virsh_ns net-undefine "$net" >>"$RUNLOG/cleanup.log" 2>&1 || true
        done < <(virsh_ns net-list --all --name 2>/dev/null)
        virsh_ns pool-destroy default >>"$RUNLOG/cleanup.log" 2>&1 || true
        virsh_ns pool-undefine default >>"$RUNLOG/cleanup.log" 2>&1 || true
        log "clean-up: stopping libvirtd (pid $pid)"
        stop_pid "$pid"
    fi
    pid=$(pid_of virtlogd)
    if [[ -n $pid ]]; then
        log "clean-up: stopping virtlogd (pid $pid)"
        stop_pid "$pid"
    fi
    rm -f "$STATE/libvirtd.pid" "$STATE/virtlogd.pid"
    if netns_exists; then
        # Anything still in the namespace (QEMU, dnsmasq) was started by our libvirtd.
        for p in $(ip netns pids "$NS" 2>/dev/null); do
            log "clean-up: stopping leftover $(cat "/proc/$p/comm" 2>/dev/null || echo '?') (pid $p) in $NS"
            stop_pid "$p"
        done
        ip netns delete "$NS" || true
    fi
}

# Copy of SNAP_DIRS: $STATE/orig/<dir> (cp -a), or $STATE/orig/<dir>.absent.
snapshot_dirs() {
    local d
    rm -rf "$STATE/orig"
    mkdir -p "$STATE/orig"
    for d in "${SNAP_DIRS[@]}"; do
        mkdir -p "$STATE/orig$(dirname "$d")"
        if [[ -d $d ]]; then
            [[ $(du -sm "$d" | awk '{ print $1 }') -lt 200 ]] ||
                die "$d is larger than 200 MB; not touching it"
            cp -a "$d" "$STATE/orig$d"
        else
            : >"$STATE/orig$d.absent"
        fi
    done
    : >"$STATE/orig/complete"
}

restore_dirs() {
    local d rc=0
    [[ -f $STATE/orig/complete ]] || return 0
    for d in "${SNAP_DIRS[@]}"; do
        if [[ -e $STATE/orig$d.absent ]]; then
            rm -rf --one-file-system "$d"
        elif [[ -d $STATE/orig$d ]]; then
            mkdir -p "$d"
            find "$d" -mindepth 1 -delete
            cp -a "$STATE/orig$d/." "$d/"
            if ! diff -r --no-dereference "$STATE/orig$d" "$d" >>"$RUNLOG/cleanup.log" 2>&1; then
                rc=1
            fi
        fi
    done
    return $rc
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [[ $rc -ne 0 && -z $FAILED ]]; then
        FAILED="exit status $rc"
    fi
    if [[ -n $CHILD ]]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null
        sleep 2
        kill -KILL -- "-$CHILD" 2>/dev/null
        CHILD=""
    fi
    if [[ -e $STATE/active ]]; then
        log "clean-up"
        teardown_libvirt
        mkdir -p "$RUNLOG/var-log-libvirt"
        cp -a /var/log/libvirt/. "$RUNLOG/var-log-libvirt/" 2>/dev/null
        if restore_dirs; then
            note "clean-up: daemons stopped, namespace $NS deleted, ${SNAP_DIRS[*]} restored and identical to the copies taken before the run (diff -r)"
            rm -f "$STATE/active"
        else
            note "clean-up: RESTORE DIFFERS, see $RUNLOG/cleanup.log; the copies are kept in $STATE/orig"
            [[ $rc -ne 0 ]] || rc=1
        fi
        rm -rf "$BENCH/one/.vagrant" "$BENCH/three/.vagrant"
        find "$POOL" -maxdepth 1 -name 'vbench*' -delete 2>/dev/null
    fi
    write_json
    if [[ $rc -ne 0 ]]; then
        log "FAILED ($FAILED); logs in $RUNLOG"
    else
        log "done in $(elapsed "$T_START" "$EPOCHREALTIME") s; logs in $RUNLOG"
    fi
    exit "$rc"
}

write_json() {
    local total
    total=$(elapsed "$T_START" "$EPOCHREALTIME")
    RUNLOG=$RUNLOG GUEST_HINT=$GUEST_HINT FAILED=$FAILED TOTAL=$total JSON_OUT=$JSON_OUT \
        RUNS=$RUNS STATUS_RUNS=$STATUS_RUNS python3 - <<'EOF_PY'
import json, os, sys
d = os.environ["RUNLOG"]
versions = {}
for line in open(os.path.join(d, "versions")):
    k, _, v = line.rstrip("\n").partition("\t")
    versions[k] = v
keys = ["up1_first", "up1", "destroy1", "up3", "up3_serial", "status", "ssh_true",
        "rebuild_worker", "destroy3"]
results = {k: [] for k in keys}
rdir = os.path.join(d, "results")
for k in sorted(os.listdir(rdir)):
    results[k] = [float(x) for x in open(os.path.join(rdir, k)).read().split()]
notes = [l.rstrip("\n") for l in open(os.path.join(d, "notes")) if l.strip()]
out = {
    "tool": "vagrant",
    "versions": versions,
    "guest_hint": os.environ["GUEST_HINT"] == "1",
    "runs": int(os.environ["RUNS"]),
    "status_runs": int(os.environ["STATUS_RUNS"]),
    "ok": not os.environ["FAILED"],
    "error": os.environ["FAILED"] or None,
    "total_seconds": float(os.environ["TOTAL"]),
    "logs": d,
    "results": results,
    "notes": notes,
}
text = json.dumps(out, indent=2) + "\n"
if os.environ["JSON_OUT"] == "-":
    sys.stdout.write(text)
else:
    with open(os.environ["JSON_OUT"], "w") as f:
        f.write(text)
EOF_PY
}

# ------------------------------------------------------------------ vagrant runner
# stamp_lines T0: copy stdin to stdout, each line prefixed with the seconds
# since T0 (an EPOCHREALTIME value). Pure bash: no process per line.
stamp_lines() {
    local t0=${1/./} line d
    while IFS= read -r line || [[ -n $line ]]; do
        d=$((${EPOCHREALTIME/./} - t0))
        printf '%4d.%02d %s\n' $((d / 1000000)) $((d % 1000000 / 10000)) "${line%$'\r'}"
    done
}

# vg LABEL DIR TIMEOUT VAGRANT-ARGS...: runs vagrant in DIR inside the namespace,
# under `script` (a pty: vagrant then writes its output line by line, as in a
# terminal) into a log file, each line stamped with the seconds since the start.
# Sets LAST_SECS (wall clock of the vagrant command) and LAST_LOG.
vg() {
    local label=$1 dir=$2 tmo=$3 cmd t0 rc=0 fifo stamper
    shift 3
    SEQ=$((SEQ + 1))
    LAST_LOG=$(printf '%s/%03d-%s.log' "$RUNLOG" "$SEQ" "$label")
    cmd=$(printf '%q ' vagrant --no-color "$@")
    fifo=$RUNLOG/.out.fifo
    rm -f "$fifo"
    mkfifo "$fifo"
    t0=$EPOCHREALTIME
    stamp_lines "$t0" <"$fifo" >"$LAST_LOG" &
    stamper=$!
    (cd "$dir" && exec setsid timeout -k 20 "$tmo" "${NSX[@]}" "${VENV[@]}" \
        script -q -e -c "$cmd" /dev/null) >"$fifo" 2>&1 </dev/null &
    CHILD=$!
    wait "$CHILD" || rc=$?
    LAST_SECS=$(elapsed "$t0" "$EPOCHREALTIME")
    CHILD=""
    wait "$stamper" || true
    rm -f "$fifo"
    return $rc
}

# log_text FILE: a vg log without the time stamps, CRs, NULs, and the "^@"
# that the pty echoes when `script` passes on the end of its (empty) input.
log_text() {
    sed -E 's/^ *[0-9]+\.[0-9]{2} //; s/^(\^@)+//' "$1" | tr -d '\r\000'
}

# up_phases FILE: when the phases of a `vagrant up` began (seconds since the
# start of the command), from its stamped log, as one line for the notes.
up_phases() {
    awk '
        function first(key) { if (!(key in t)) t[key] = $1 }
        /Creating image \(snapshot of base box volume\)/ { first("image") }
        /Starting domain\./ { first("start") }
        /Machine booted and ready!/ { t["ready"] = $1 }
        /Configuring and enabling network interfaces/ { t["net"] = $1 }
        /Running provisioner:/ { first("prov") }
        { last = $1 }
        END {
            printf "domain started %s s, last machine booted and ready (SSH) %s s, " \
                   "last network configuration begun %s s, first provisioner %s s, output ended %s s", \
                   t["start"], t["ready"], t["net"], t["prov"], last
        }' "$1"
}

# vgt KEY LABEL DIR TIMEOUT ARGS...: vg, record LAST_SECS under KEY, fail loudly.
vgt() {
    local key=$1 label=$2
    shift 2
    if ! vg "$label" "$@"; then
        FAILED="$label failed after $LAST_SECS s (vagrant ${*:3}), see $LAST_LOG"
        tail -n 20 "$LAST_LOG" >&2
        exit 1
    fi
    result "$key" "$LAST_SECS"
    log "$label: $LAST_SECS s"
}

# ------------------------------------------------------------------ box
# Our copy of the labctl box: the same files, with a Vagrantfile changed where
# it does not fit this benchmark (see fix_box_vagrantfile).
fix_box_vagrantfile() { # fix_box_vagrantfile FILE
    local f=$1
    # The box pins the guest type. That hides Vagrant's guest OS detection, which
    # every `vagrant up` of a stock box pays, and leaves --guest-hint nothing to
    # switch: the project Vagrantfile decides (nodes.rb), as with stock boxes.
    if grep -Eq '^[[:space:]]*config\.vm\.guest[[:space:]]*=' "$f"; then
        sed -i -E 's/^([[:space:]]*)(config\.vm\.guest[[:space:]]*=.*)$/\1# removed by the Vagrant benchmark (nodes.rb decides): \2/' "$f"
        BOX_FIXES+=("removed config.vm.guest = :debian from the box Vagrantfile")
    fi
    grep -q 'management_network_mode = "none"' "$f" ||
        die "the box Vagrantfile does not set management_network_mode = \"none\"; refusing (traffic could be NATed)"
}

prepare_box() {
    local src=${LABCTL_BOX:-$CACHE/boxes/labctl-debian-12.box} key stage
    if [[ ! -s $src ]]; then
        log "no box at $src: building it with scripts/build-box.sh"
        src=$(bash "$REPO/scripts/build-box.sh") || die "scripts/build-box.sh failed"
    fi
    # Re-added when the box or the fixes change (BOX_FIX_REV).
    key=$( { echo "$BOX_FIX_REV"; stat -c '%s %Y' "$src"; cat "$src.stamp" 2>/dev/null; } | sha256sum)
    key=${key%% *}
    version box "$src"
    version box_built "$(awk '$1 == "built" { print $2 }' "$src.stamp" 2>/dev/null)"
    version box_kernel "$(awk '$1 == "kernel_version" { print $2 }' "$src.stamp" 2>/dev/null)"
    BOX_FIXES=()
    if [[ -f $BENCH/box.key && $(<"$BENCH/box.key") == "$key" ]] &&
        compgen -G "$VHOME/boxes/labctl-VAGRANTSLASH-debian-12/*/libvirt/Vagrantfile" >/dev/null; then
        log "box $BOX_NAME already added (from $src)"
        mapfile -t BOX_FIXES < <(cat "$BENCH/box.fixes" 2>/dev/null)
    else
        log "adding $src to Vagrant as $BOX_NAME (our copy, see README)"
        stage=$BENCH/box-stage
        rm -rf "$stage"
        mkdir -p "$stage"
        # build-box.sh holds this lock while it writes the box.
        if [[ -e $CACHE/build/lock ]]; then
            flock -s "$CACHE/build/lock" tar -xf "$src" -C "$stage"
        else
            tar -xf "$src" -C "$stage"
        fi
        [[ -f $stage/Vagrantfile && -f $stage/box.img && -f $stage/metadata.json ]] ||
            die "$src is not a vagrant-libvirt box (box.img, metadata.json, Vagrantfile)"
        fix_box_vagrantfile "$stage/Vagrantfile"
        (cd "$stage" && tar -cf "$BENCH/labctl-debian-12.vagrant.box" ./*)
        rm -rf "$stage"
        local t0=$EPOCHREALTIME
        "${NSX[@]}" "${VENV[@]}" vagrant box add --force --name "$BOX_NAME" "$BENCH/labctl-debian-12.vagrant.box" \
            >"$RUNLOG/box-add.log" 2>&1 || die "vagrant box add failed, see $RUNLOG/box-add.log"
        note "vagrant box add: $(elapsed "$t0" "$EPOCHREALTIME") s (one time per box build)"
        rm -f "$BENCH/labctl-debian-12.vagrant.box"
        # vagrant-libvirt keeps the box image in the pool under a fixed name and
        # would go on using an old one: drop it, the next `vagrant up` uploads it.
        find "$POOL" -maxdepth 1 -name 'labctl-VAGRANTSLASH-debian-12_vagrant_box_image_*' -delete
        virsh_ns pool-refresh default >/dev/null
        printf '%s\n' "${BOX_FIXES[@]}" >"$BENCH/box.fixes"
        echo "$key" >"$BENCH/box.key"
    fi
    local f
    for f in "${BOX_FIXES[@]}"; do
        [[ -n $f ]] && note "box: $f"
    done
}

# ------------------------------------------------------------------ scripts + Vagrantfiles
find_labctl() {
    local c
    for c in "${LABCTL:-}" "$REPO/target/release/labctl" "$REPO/target/debug/labctl"; do
        if [[ -n $c && -x $c ]]; then
            echo "$c"
            return
        fi
    done
    log "no labctl binary: cargo build --release -p labctl"
    (cd "$REPO" && cargo build --release -q -p labctl) >&2 || die "cargo build failed"
    echo "$REPO/target/release/labctl"
}

# insert_after_set_eu FILE TEXT: TEXT goes right after the first `set -eu` line,
# i.e. before the step's own bookkeeping starts.
insert_after_set_eu() {
    local f=$1 text=$2
    grep -qx 'set -eu' "$f" || die "no 'set -eu' line in $f"
    TEXT=$text awk '!done && $0 == "set -eu" { print; print ENVIRON["TEXT"]; done = 1; next } { print }' \
        "$f" >"$f.new"
    mv "$f.new" "$f"
}

render_scripts() {
    local labctl dir node join
    labctl=$(find_labctl)
    dir=$BENCH/scripts
    rm -rf "$dir"
    "$labctl" render --lab "$REPO/labs/smoke/lab.toml" --workers 2 --out "$dir" >/dev/null 2>"$RUNLOG/render.log" ||
        die "labctl render failed, see $RUNLOG/render.log"
    for node in m-k8s w1-k8s w2-k8s; do
        [[ -f $dir/$node/steps.txt ]] || die "labctl render wrote no $dir/$node/steps.txt"
    done
    # Value hand-off. labctl passes the master's published join_command to the
    # workers; Vagrant cannot pass values between machines, so (like the seed
    # lab's `kubeadm init --token 123456.1234567890123456`) the master is given a
    # fixed token and the workers get the join command built from it.
    # The token is put in place right before the script reads it back for the
    # join command (its own token generation still runs and is overridden).
    local f=$dir/m-k8s/03-master_node.sh
    # shellcheck disable=SC2016 # a literal line of the script
    grep -qx 'token=$(cat "$token_file")' "$f" ||
        die "$f: no line 'token=\$(cat \"\$token_file\")' (template changed?)"
    TOKEN_LINE="echo $SMOKE_TOKEN > \"\$token_file\" # vagrant-bench: the seed lab's fixed token (no value hand-off in Vagrant)" \
        awk '$0 == "token=$(cat \"$token_file\")" { print ENVIRON["TOKEN_LINE"] } { print }' "$f" >"$f.new"
    mv "$f.new" "$f"
    join="labctl-join --token $SMOKE_TOKEN $MASTER_IP:6443"
    for node in w1-k8s w2-k8s; do
        f=$dir/$node/03-work_nodes.sh
        grep -q "^join_command='<join_command from m-k8s.master_node>'\$" "$f" ||
            die "$f: the join_command placeholder line was not found (template changed?)"
        sed -i "s|^join_command='<join_command from m-k8s.master_node>'\$|join_command='$join'|" "$f"
        # No cross-machine ordering in Vagrant either: machines come up in
        # parallel, so the worker waits until the master answers on the private
        # network (the retry a Vagrant user adds before `kubeadm join`).
        insert_after_set_eu "$f" \
            "# vagrant-bench: wait for the master (Vagrant has no ordering between machines)
i=0; until ping -c1 -W1 $MASTER_IP >/dev/null 2>&1; do i=\$((i + 1)); [ \$i -lt 300 ] || break; sleep 1; done"
    done
    note "steps: the scripts of \`labctl render --lab labs/smoke/lab.toml --workers 2\`, one shell provisioner each; master_node uses the fixed token $SMOKE_TOKEN and workers get join_command='$join' (no value hand-off in Vagrant); work_nodes first waits until the master answers a ping"
}

write_vagrantfiles() {
    local d names prefix hint=false
    [[ $GUEST_HINT -eq 1 ]] && hint=true
    cp "$HERE/nodes.rb" "$BENCH/nodes.rb"
    for d in one three; do
        case $d in
            one) names='%w[m-k8s]' prefix=vbench1- ;;
            three) names='%w[m-k8s w1-k8s w2-k8s]' prefix=vbench3- ;;
        esac
        mkdir -p "$BENCH/$d"
        cat >"$BENCH/$d/Vagrantfile" <<EOF_VF
# Generated by labctl's scripts/bench/vagrant/run.sh (rewritten on every run).
# Run by hand: cd $BENCH/$d && ip netns exec $NS env VAGRANT_HOME=$VHOME vagrant up
# (only while run.sh's libvirtd is up; see scripts/bench/vagrant/README.md).
require_relative "../nodes"

Vagrant.configure("2") do |config|
  VBench.define(config,
                names: $names,
                prefix: "$prefix",
                scripts: "$BENCH/scripts",
                consoles: "$CONSOLES",
                guest_hint: $hint)
end
EOF_VF
    done
    if [[ $GUEST_HINT -eq 1 ]]; then
        note "guest: config.vm.guest = :debian (--guest-hint: no guest OS detection)"
    else
        note "guest: detected by Vagrant at every up (default; --guest-hint skips it)"
    fi
}

# ------------------------------------------------------------------ libvirt in the namespace
setup_libvirt() {
    local i pid
    # A daemon stopped by the previous run may linger for a moment, or stay a zombie until
    # PID 1 reaps it: wait up to 30 s for live ones to go, and ignore zombies.
    for ((i = 0; i < 300; i++)); do
        [[ -z $(live_daemons) ]] && break
        sleep 0.1
    done
    if [[ -n $(live_daemons) ]] || [[ -S /run/libvirt/libvirt-sock ]]; then
        die "a libvirtd/virtlogd not started by this script is running (pid $(live_daemons)); stop it first"
    fi
    ! netns_exists || die "network namespace $NS exists; remove it first (ip netns delete $NS)"
    : >"$STATE/active"
    snapshot_dirs

    log "network namespace $NS (lo only, no route, ip_forward 0)"
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    "${NSX[@]}" sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
    [[ -z $(ip -n "$NS" route show default) ]] || die "the namespace has a default route"

    # qemu.conf: QEMU as root, no security driver, no ownership tracking
    # (no xattr-based remember_owner). libvirtd.conf is not touched: libvirtd
    # gets its own copy with -f (socket for root only, no polkit).
    cat >>/etc/libvirt/qemu.conf <<'EOF_QEMU'

# --- labctl vagrant benchmark (scripts/bench/vagrant/run.sh); removed on exit ---
user = "root"
group = "root"
security_driver = "none"
remember_owner = 0
EOF_QEMU
    cat >"$STATE/libvirtd.conf" <<EOF_LIBVIRTD
# libvirtd config of labctl's vagrant benchmark (scripts/bench/vagrant/run.sh)
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
log_outputs = "3:file:$RUNLOG/libvirtd.log"
EOF_LIBVIRTD

    log "starting virtlogd and libvirtd in $NS"
    "${NSX[@]}" virtlogd -d -p "$STATE/virtlogd.pid"
    "${NSX[@]}" libvirtd -d -p "$STATE/libvirtd.pid" -f "$STATE/libvirtd.conf"
    for ((i = 0; i < 300; i++)); do
        virsh_ns version >/dev/null 2>&1 && break
        sleep 0.2
    done
    virsh_ns version >/dev/null 2>&1 || die "libvirtd did not come up, see $RUNLOG/libvirtd.log"
    pid=$(pid_of libvirtd)
    [[ -n $pid ]] || die "libvirtd is not running in $NS"
    note "libvirtd pid $pid and virtlogd pid $(pid_of virtlogd) in netns $NS"
    # Nothing may be autostarted (the stock NAT network 'default' is not).
    local net
    while read -r net; do
        [[ -n $net ]] || continue
        log "stopping autostarted network $net"
        virsh_ns net-destroy "$net" >/dev/null
    done < <(virsh_ns net-list --name)
    virsh_ns pool-define-as default dir --target "$POOL" >/dev/null
    virsh_ns pool-start default >/dev/null
}

# check_netns: every interface in the namespace is lo, a libvirt bridge or a
# VM tap; no default route; forwarding off.
check_netns() {
    local bad
    bad=$(ip -n "$NS" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' |
        grep -Ev '^(lo|virbr[0-9]+(-nic)?|vnet[0-9]+)$' || true)
    [[ -z $bad ]] || die "unexpected interface(s) in $NS: $bad"
    [[ -z $(ip -n "$NS" route show default) ]] || die "a default route appeared in $NS"
    [[ $("${NSX[@]}" sysctl -n net.ipv4.ip_forward) == 0 ]] || die "ip_forward was turned on in $NS"
    ip -n "$NS" -o -4 addr show | awk '{ print $2, $4 }' | tr '\n' ' '
}

# ------------------------------------------------------------------ lab checks
# check_lab LABEL: ping mesh over the private network, every step finished,
# workers joined with the master's token. Notes the ordering of work_nodes
# against master_node (guest clocks; only indicative).
check_lab() {
    local label=$1 node ip others out master_end token="" joined
    declare -A IPS=([m-k8s]=192.168.1.10 [w1-k8s]=192.168.1.101 [w2-k8s]=192.168.1.102)
    local order=()
    for node in m-k8s w1-k8s w2-k8s; do
        others=()
        for ip in "${IPS[@]}"; do
            [[ $ip == "${IPS[$node]}" ]] || others+=("$ip")
        done
        local c="set -e; for ip in ${others[*]}; do ping -c1 -W2 \$ip >/dev/null; echo MESH \$ip ok; done;"
        c+=" sed 's/^/STEP /' /var/lib/labctl-smoke/steps.log;"
        c+=" echo TOKEN \$(cat /var/lib/labctl-smoke/token 2>/dev/null); echo JOINED \$(cat /var/lib/labctl-smoke/joined 2>/dev/null)"
        if ! vg "$label-check-$node" "$BENCH/three" "$T_SHORT" ssh "$node" -c "$c"; then
            FAILED="$label: ping mesh / step check failed on $node, see $LAST_LOG"
            exit 1
        fi
        out=$(log_text "$LAST_LOG")
        [[ $(grep -c '^MESH .* ok$' <<<"$out") -eq 2 ]] || { FAILED="$label: $node cannot ping both others, see $LAST_LOG"; exit 1; }
        local want=(config install_pkg)
        if [[ $node == m-k8s ]]; then want+=(master_node); else want+=(work_nodes); fi
        local s
        for s in "${want[@]}"; do
            grep -Eq "^STEP [0-9.]+ end $s\$" <<<"$out" || { FAILED="$label: $node did not finish step $s, see $LAST_LOG"; exit 1; }
        done
        if [[ $node == m-k8s ]]; then
            token=$(awk '$1 == "TOKEN" { print $2 }' <<<"$out")
            master_end=$(awk '$1 == "STEP" && $3 == "end" && $4 == "master_node" { t = $2 } END { print t }' <<<"$out")
        else
            joined=$(sed -n 's/^JOINED //p' <<<"$out")
            [[ $joined == "labctl-join --token $token $MASTER_IP:6443" ]] ||
                { FAILED="$label: $node joined '$joined', master token '$token'"; exit 1; }
            local ws
            ws=$(awk '$1 == "STEP" && $3 == "start" && $4 == "work_nodes" { t = $2 } END { print t }' <<<"$out")
            order+=("$node work_nodes started $(elapsed "$master_end" "$ws") s after m-k8s master_node ended")
        fi
    done
    log "$label: ping mesh ok, all steps done, workers joined with token $token"
    note "$label: ${order[*]} (guest clocks; negative = before)"
}

# ------------------------------------------------------------------ main
trap cleanup EXIT
trap 'FAILED="interrupted (SIGINT)"; exit 130' INT
trap 'FAILED="terminated (SIGTERM)"; exit 143' TERM
trap 'FAILED="hangup (SIGHUP)"; exit 129' HUP

install_pkgs
record_versions
version guest_detection "$([[ $GUEST_HINT -eq 1 ]] && echo 'config.vm.guest = :debian (--guest-hint)' || echo 'auto-detect (default)')"

# A run killed hard (SIGKILL, power loss) leaves $STATE/active: undo it first.
if [[ -e $STATE/active ]]; then
    log "a previous run did not clean up; cleaning up now"
    teardown_libvirt
    restore_dirs || die "could not restore the libvirt directories from $STATE/orig, see $RUNLOG/cleanup.log"
    rm -f "$STATE/active"
    note "cleaned up after an earlier run that had been killed"
fi
rm -rf "$BENCH/one/.vagrant" "$BENCH/three/.vagrant"
find "$POOL" -maxdepth 1 -name 'vbench*' -delete

render_scripts
write_vagrantfiles
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

setup_libvirt
prepare_box

# One-time: vagrant-libvirt uploads box.img into the pool at the first `up`.
if ! virsh_ns vol-list default 2>/dev/null | grep -q 'labctl-VAGRANTSLASH-debian-12_vagrant_box_image'; then
    log "first up: box image not in the pool yet (upload included, recorded as up1_first)"
    vgt up1_first up1-first "$BENCH/one" "$T_UP" up
    vgt destroy1 destroy1-first "$BENCH/one" "$T_SHORT" destroy -f
fi

for ((run = 1; run <= RUNS; run++)); do
    log "=== run $run/$RUNS"
    vgt up1 "r$run-up1" "$BENCH/one" "$T_UP" up
    note "r$run-up1 phases: $(up_phases "$LAST_LOG")"
    vgt destroy1 "r$run-destroy1" "$BENCH/one" "$T_SHORT" destroy -f

    vgt up3 "r$run-up3" "$BENCH/three" "$T_UP" up
    note "r$run-up3 phases: $(up_phases "$LAST_LOG")"
    addrs=$(check_netns) || { FAILED="r$run-up3: namespace check failed (see above)"; exit 1; }
    note "r$run-up3: namespace $NS holds only lo, libvirt bridges and VM taps, no default route, ip_forward 0; addresses: $addrs"
    check_lab "r$run-up3"
    if [[ $run -eq 1 ]]; then
        for ((i = 1; i <= STATUS_RUNS; i++)); do
            vgt status "r$run-status$i" "$BENCH/three" "$T_SHORT" status
        done
        for ((i = 1; i <= STATUS_RUNS; i++)); do
            vgt ssh_true "r$run-ssh$i" "$BENCH/three" "$T_SHORT" ssh m-k8s -c true
        done
    fi
    t0=$EPOCHREALTIME
    vgt rebuild_destroy "r$run-rebuild-destroy" "$BENCH/three" "$T_SHORT" destroy -f w1-k8s
    vgt rebuild_up "r$run-rebuild-up" "$BENCH/three" "$T_UP" up w1-k8s
    result rebuild_worker "$(elapsed "$t0" "$EPOCHREALTIME")"
    log "r$run-rebuild-worker: $(tail -n1 "$RUNLOG/results/rebuild_worker") s"
    vgt destroy3 "r$run-destroy3" "$BENCH/three" "$T_SHORT" destroy -f

    if [[ $SERIAL -eq 1 ]]; then
        vgt up3_serial "r$run-up3-serial" "$BENCH/three" "$T_UP" up --no-parallel
        note "r$run-up3-serial phases: $(up_phases "$LAST_LOG")"
        check_lab "r$run-up3-serial"
        vgt destroy3 "r$run-destroy3-serial" "$BENCH/three" "$T_SHORT" destroy -f
    fi
done
note "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
note "destroy3 holds the destroy of the parallel lab (after the worker rebuild) and, unless --no-serial, of the serial one; rebuild_worker = rebuild_destroy + rebuild_up"
