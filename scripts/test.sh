#!/usr/bin/env bash
# Run every test: formatting, lints, unit and CLI tests, and the end-to-end tests that boot
# QEMU guests (TCG, guest internet off). Sets up the host first (scripts/setup.sh) and builds
# the Debian box once (scripts/build-box.sh, cached in ~/.cache/labctl).
set -euo pipefail
cd "$(dirname "$0")/.."
export LABCTL_NO_EGRESS=1          # no guest may reach the internet from a test
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s (%ss)\n' "$*" "$SECONDS"; }

step "host packages"
bash scripts/setup.sh
step "box (built once, then cached)"
bash scripts/build-box.sh
step "shellcheck (scripts and test stand-ins)"
shellcheck scripts/*.sh scripts/bench/*.sh scripts/bench/vagrant/*.sh crates/labctl/tests/standins/* \
  crates/labctl/tests/data/*.sh
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "Windows type-check (every Unix-only call behind cfg(unix); required under CI, skipped elsewhere without the target)"
bash scripts/check-windows.sh
step "tests (unit, CLI, end-to-end with real guests)"
profile=default
[ -n "${CI:-}" ] && profile=ci
# The corpus fuzzers (crates/labctl-fuzz) run 2 s each by default; CI gives them 30 s each.
[ -n "${CI:-}" ] && export LABCTL_FUZZ_SECONDS="${LABCTL_FUZZ_SECONDS:-30}"
cargo nextest run --workspace --locked --profile "$profile" --run-ignored all --no-fail-fast
step "benchmark harness (quick mode)"
if [ -x scripts/bench/run.sh ]; then bash scripts/bench/run.sh --quick --out "${TMPDIR:-/tmp}/labctl-bench-quick.md"; fi
step "done"
