#!/usr/bin/env bash
# cpu-model.sh [RUNS] - what `-cpu max` (labctl's TCG CPU model since issue 11) costs against
# QEMU's default `qemu64` at boot: the cached box booted alone under TCG, as labctl boots a node
# (same memory, direct kernel boot, box command line, egress off), rounds alternating the order.
# Per boot: QEMU start -> the initramfs's first console line, and -> the serial getty's login
# prompt (the guest's boot is over). Prints a markdown table of every run and the medians.
set -euo pipefail
RUNS=${1:-3}
CACHE=${LABCTL_CACHE:-$HOME/.cache/labctl}
BOX=$CACHE/boxes/labctl-debian-12.box
[[ -f $BOX ]] || { echo "cpu-model: no box at $BOX (scripts/build-box.sh)" >&2; exit 1; }
T=$(mktemp -d)
PID=""
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
tar -xf "$BOX" -C "$T" box.img vmlinuz initrd.img labctl.json
CMDLINE=$(sed -n 's/.*"cmdline":"\([^"]*\)".*/\1/p' "$T/labctl.json")

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
# boot CPU -> prints "first_line_s login_s"
boot() {
    local cpu=$1 t0 first="" login=""
    rm -f "$T/ov.qcow2" "$T/serial.log"
    qemu-img create -q -f qcow2 -F qcow2 -b "$T/box.img" "$T/ov.qcow2"
    t0=$(now)
    qemu-system-x86_64 -accel tcg -cpu "$cpu" -smp 1 -m 768 -nodefaults -no-user-config \
        -display none -serial "file:$T/serial.log" -device virtio-rng-pci \
        -drive "file=$T/ov.qcow2,if=virtio,format=qcow2" -kernel "$T/vmlinuz" \
        -initrd "$T/initrd.img" -append "$CMDLINE systemd.hostname=bench labctl.egress=0" \
        -netdev user,id=nat,restrict=on -device virtio-net-pci,netdev=nat &
    PID=$!
    for _ in $(seq 1 6000); do
        if [[ -z $first && -s $T/serial.log ]]; then first=$(since "$t0"); fi
        if grep -q "login:" "$T/serial.log" 2>/dev/null; then login=$(since "$t0"); break; fi
        sleep 0.05
    done
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    echo "${first:-nan} ${login:-nan}"
}

declare -a MAXF=() MAXL=() Q64F=() Q64L=()
echo "| round | cpu | QEMU start -> first console line (s) | -> login prompt (s) |"
echo "|---|---|---|---|"
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then order=(qemu64 max); else order=(max qemu64); fi
    for cpu in "${order[@]}"; do
        read -r f l < <(boot "$cpu")
        printf '| %d | %s | %.2f | %.2f |\n' "$i" "$cpu" "$f" "$l"
        if [[ $cpu == max ]]; then MAXF+=("$f"); MAXL+=("$l"); else Q64F+=("$f"); Q64L+=("$l"); fi
    done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mf=$(median "${MAXF[@]}"); ml=$(median "${MAXL[@]}"); qf=$(median "${Q64F[@]}"); ql=$(median "${Q64L[@]}")
echo
echo "median over $RUNS runs: qemu64 first line $qf s, login $ql s; max first line $mf s, login $ml s;"
echo "ratio max/qemu64 (login): $(awk -v a="$ml" -v b="$ql" 'BEGIN { printf "%.3f", a / b }')"
