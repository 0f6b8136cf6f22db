#!/bin/sh
# One simulated hypervisor host of the two-host test (crates/labctl/tests/e2e_twohost.rs)
# and benchmark (scripts/bench/class-twohost.sh): run as
#   unshare --pid --fork --kill-child --mount-proc --mount --net --propagation private \
#     sh twohost-host.sh DIR ADDRESS
# (this shell is PID 1 of the host's PID namespace: when unshare dies, even by SIGKILL, the
# kernel kills every process in it, QEMU included, which libvirt daemonizes with setsid)
# DIR holds sshd_config and receives libvirt's private directories; ADDRESS is the veth
# address the caller gives this namespace.
set -eu
T=$1
ADDR=$2
ip link set lo up
i=0
until ip -4 -o addr show | grep -q " $ADDR/"; do
  i=$((i+1)); [ "$i" -lt 600 ] || { echo "no address $ADDR" >&2; exit 1; }
  sleep 0.1
done
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/libvirt /run/sshd
chmod 755 /run/sshd
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
  s="$T/$(echo "$d" | tr / _)"
  mkdir -p "$s"
  mount --bind "$s" "$d"
done
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/images /var/cache/libvirt/qemu /var/log/libvirt/qemu
cp -a /etc/libvirt "$T/etc"
rm -f "$T"/etc/qemu/networks/autostart/*
cat >> "$T/etc/qemu.conf" <<'EOC'
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
EOC
mount --bind "$T/etc" /etc/libvirt
/usr/sbin/sshd -D -f "$T/sshd_config" -E "$T/sshd.log" &
/usr/sbin/libvirtd --pid-file "$T/libvirtd.pid" &
# Not exec: as PID 1 this shell reaps the QEMU processes libvirt orphans (dash's wait reaps
# any child); libvirtd as PID 1 would leave them zombies, which it takes for still running.
wait $!
