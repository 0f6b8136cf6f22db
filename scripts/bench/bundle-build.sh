#!/usr/bin/env bash
# bundle-build.sh [LAB] - time `labctl bundle build --lab LAB` (default labs/k8s) with a cold
# cache (fresh LABCTL_HOME and LABCTL_CACHE: apt's lists and every .deb downloaded from the
# distribution's mirror) and then warm (same cache, bundle rebuilt in place), and report the
# bundle's size. Needs network access to the Debian mirror through apt (the only download).
# Uses the debug build (sha2 is optimized in dev builds) unless LABCTL is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${1:-labs/k8s}
if [[ -z "${LABCTL:-}" ]]; then
    cargo build -q -p labctl
    LABCTL=$PWD/target/debug/labctl
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export LABCTL_HOME=$T/home LABCTL_CACHE=$T/cache NO_COLOR=1
run() {
    local label=$1
    local start end
    start=$(date +%s.%N)
    "$LABCTL" bundle build --lab "$LAB" >"$T/$label.out" 2>"$T/$label.err"
    end=$(date +%s.%N)
    printf '%s: %.1f s\n' "$label" "$(echo "$end - $start" | bc)"
}
echo "lab: $LAB; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run cold
run warm
cat "$T/warm.out"
B=$(ls -d "$T"/home/bundles/*/)
echo "bundle directory: $(du -sb "$B" | cut -f1) bytes ($(du -sh "$B" | cut -f1)), $(find "$B" -type f | wc -l) files"
echo "pool: $(find "$B" -name '*.deb' | wc -l) .deb files, $(find "$B" -name '*.deb' -printf '%s\n' | awk '{s+=$1} END {print s}') bytes"
"$LABCTL" bundle export "$(basename "$B")" "$T/bundle.tar" >/dev/null
echo "export archive: $(stat -c %s "$T/bundle.tar") bytes"
echo "apt cache (lists + debs): $(du -sh "$T/cache" | cut -f1)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
