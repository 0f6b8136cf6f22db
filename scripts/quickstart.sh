#!/usr/bin/env bash
# quickstart.sh - from a fresh clone to a running lab, in one command.
#
# Usage: scripts/quickstart.sh [DIR] [--lab NAME] [--workers N]
#
#   DIR          where the lab is written (default: ./mylab; kept if it already exists)
#   --lab NAME   bundled lab to start from (default: k8s; `labctl init --list` shows them)
#   --workers N  number of workers (default: 3)
#
# Steps, each skipped when already done:
#   1. host packages (scripts/setup.sh: QEMU, debootstrap, build tools), as root, or through
#      sudo when you are not root (Debian/Ubuntu hosts)
#   2. labctl itself: `cargo install --locked --path crates/labctl` (needs Rust: rustup.rs),
#      with its man pages and bash completion under ~/.local/share
#   3. the Debian 12 box (scripts/build-box.sh, needs root once; ~2 minutes, cached in
#      ~/.cache/labctl, or LABCTL_CACHE)
#   4. `labctl init --lab NAME DIR`, then `labctl up --workers N` in DIR
# The environment passes through: LABCTL_NO_EGRESS=1 keeps the guests off the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DIR=mylab
LAB=k8s
WORKERS=3
die() { echo "quickstart: error: $*" >&2; exit 1; }
step() { printf '\n==> %s (%ss)\n' "$*" "$SECONDS" >&2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --lab) [[ $# -ge 2 ]] || die "--lab needs a name"; LAB=$2; shift 2 ;;
        --workers) [[ $# -ge 2 ]] || die "--workers needs a number"; WORKERS=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) DIR=$1; shift ;;
    esac
done

# Root, or sudo: whichever this host has.
AS_ROOT=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 ||
        die "installing packages and building the box need root: run this as root, or install sudo"
    AS_ROOT=(sudo)
fi

CACHE=${LABCTL_CACHE:-$HOME/.cache/labctl}
# Made as you before anything runs as root, so labctl can write its cache there later.
mkdir -p "$CACHE/boxes"

step "host packages"
"${AS_ROOT[@]}" bash "$REPO/scripts/setup.sh"

step "labctl"
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$CARGO_BIN:$PATH"
command -v cargo >/dev/null 2>&1 ||
    die "cargo is missing: install Rust from https://rustup.rs (or your distribution), then run this again"
cargo install --locked --quiet --path "$REPO/crates/labctl"
LABCTL=$CARGO_BIN/labctl
[[ -x $LABCTL ]] || LABCTL=$(command -v labctl)
# Man pages and bash completion for this user (XDG data dir; man and bash-completion look there).
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
"$LABCTL" -q man --out "$DATA/man/man1"
mkdir -p "$DATA/bash-completion/completions"
"$LABCTL" completions bash > "$DATA/bash-completion/completions/labctl"

step "box"
"${AS_ROOT[@]}" env LABCTL_CACHE="$CACHE" bash "$REPO/scripts/build-box.sh" >/dev/null

step "lab $LAB in $DIR"
if [[ -e $DIR/lab.toml ]]; then
    echo "quickstart: $DIR/lab.toml exists; using it" >&2
else
    LABCTL_CACHE=$CACHE "$LABCTL" init --lab "$LAB" "$DIR"
fi
cd "$DIR"
LABCTL_CACHE=$CACHE "$LABCTL" up --workers "$WORKERS"
step "done"
echo "The lab is up. From $DIR: \`labctl status\`, \`labctl ssh m-k8s\`, \`labctl halt\`, \`labctl destroy -f\`." >&2
