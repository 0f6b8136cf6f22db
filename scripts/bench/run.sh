#!/usr/bin/env bash
# Benchmarks: see scripts/bench/bench.py. Guests never get internet.
set -euo pipefail
cd "$(dirname "$0")/../.."
export LABCTL_NO_EGRESS=1
bash scripts/build-box.sh >/dev/null
exec python3 scripts/bench/bench.py "$@"
