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
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing Debian's qemu-system-x86 removes a backported qemu-utils (seen on images that
# ship qemu-utils 10 from backports): put Debian's back.
if ! command -v qemu-img >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
fi
