#!/bin/sh
# Record what VirtualBox answers labctl on this machine, for docs/virtualbox.md.
#
# Runs labs/smoke with provider = "virtualbox" and one worker: up, status, snapshot save/list,
# halt, up again, destroy. Every VBoxManage call labctl makes is appended to OUT as a JSON line
# (LABCTL_VBOX_RECORD: argv, LC_ALL/LANG, exit code, stdout, stderr, duration). Nothing else is
# recorded, but the output contains paths under your home directory and VM names: read it
# before you share it.
#
# Usage: scripts/vbox-transcript.sh BOX [OUT.jsonl]
#   BOX  a VirtualBox box you added with `labctl box add NAME FILE|URL` (e.g. a Vagrant
#        virtualbox box of Debian 12 or Ubuntu 22.04)
set -eu
box="${1:?usage: $0 BOX [OUT.jsonl]   (BOX: a VirtualBox box added with labctl box add)}"
out="${2:-$PWD/labctl-vbox-transcript.jsonl}"
labctl="${LABCTL:-labctl}"
dir=$(mktemp -d "${TMPDIR:-/tmp}/labctl-vbox-XXXXXX")
"$labctl" init --lab smoke "$dir/lab" >/dev/null
cd "$dir/lab"
# VirtualBox's default host-only range (no /etc/vbox/networks.conf needed), the given box.
awk -v box="$box" '{
    gsub(/192\.168\.1\./, "192.168.56.")
    if ($0 ~ /^box = /) $0 = "box = \"" box "\""
    print
    if ($0 == "[lab]") print "provider = \"virtualbox\""
}' lab.toml > lab.toml.new
mv lab.toml.new lab.toml
export LABCTL_VBOX_RECORD="$out"
step() { echo "== labctl $*"; "$labctl" "$@" || echo "(exit $?)"; }
step up --workers 1
step status
step snapshot save transcript
step snapshot list
step halt
step up --workers 1
step destroy -f
cd / && rm -rf "$dir"
echo "transcript: $out ($(wc -l < "$out") calls)"
