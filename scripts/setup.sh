#!/usr/bin/env bash
# Install what labctl needs on a Debian/Ubuntu host: QEMU, the box builder's tools, and the
# build dependencies. Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
pkgs=(qemu-system-x86 qemu-utils debootstrap busybox-static zstd cpio openssh-client
      libssl-dev pkg-config build-essential shellcheck iproute2 curl ca-certificates dnsmasq-base
      libvirt-daemon-system libvirt-clients)  # the libvirt provider's end-to-end test
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
updated=""
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing Debian's qemu-system-x86 removes a backported qemu-utils (seen on images that
# ship qemu-utils 10 from backports): put Debian's back.
if ! command -v qemu-img >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
fi
# openssh-server: the two-host class test (crates/labctl/tests/e2e_twohost.rs) runs its own
# sshd inside each simulated hypervisor host's namespaces. Installing the package must not
# start a host sshd: without systemd, Debian's postinst starts it through invoke-rc.d, which a
# policy-rc.d that exits 101 forbids. A temporary one is put in place (and removed, even on
# failure) only when none exists. On a systemd host the postinst also enables ssh.service for
# the next boot: that is undone. Afterwards nothing may listen on port 22 in this machine's
# network namespace that did not before (the tests' own sshds listen inside their namespaces).
listen22() { ss -Hltn 'sport = :22' 2>/dev/null | wc -l; }
if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q "install ok installed"; then
  [ -n "$updated" ] || $SUDO apt-get update -qq
  before=$(listen22)
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT INT TERM
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openssh-server >/dev/null || rc=$?
  if [ -n "$made_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM; fi
  [ "$rc" -eq 0 ] || exit "$rc"
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
  after=$(listen22)
  if [ "$after" != "$before" ]; then
    echo "setup: installing openssh-server started an sshd on port 22; stop it: labctl's tests run their own" >&2
    exit 1
  fi
fi
# The Windows type-check (scripts/check-windows.sh) needs the Windows target's standard
# library; rustup fetches it from the Rust distribution server, into the user's ~/.rustup.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-pc-windows-msvc; then
  rustup target add x86_64-pc-windows-msvc
fi
