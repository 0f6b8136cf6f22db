#!/usr/bin/env bash
# build-box.sh - build the labctl Debian 12 (bookworm) guest box locally.
#
# Usage: scripts/build-box.sh [--out FILE] [--force]
#
# Output (default $CACHE/boxes/labctl-debian-12.box) is an uncompressed tar in
# the vagrant-libvirt box layout: box.img (qcow2, ext4 on the whole /dev/vda),
# metadata.json, Vagrantfile, vmlinuz, initrd.img, insecure_key, labctl.json.
#
# Needs root and, for the very first build only, Debian's package mirror.
# Everything it downloads is kept in $CACHE/build/ (CACHE defaults to
# ~/.cache/labctl, override with LABCTL_CACHE), so later builds are offline:
#   debs-*.tgz     debootstrap --make-tarball of every .deb the image needs
#   rootfs-*.tar.zst  the freshly debootstrapped (not yet configured) root fs
# The mirror is taken from /etc/apt (override with LABCTL_MIRROR).
#
# Idempotent: if the output exists and its stamp file (FILE.stamp) records the
# sha256 of this script, the path is printed and nothing else happens.
# --force rebuilds the box (the caches above are still used; delete
# $CACHE/build/rootfs-*.tar.zst to re-run debootstrap from the .debs).
# Caches are named by a hash of the package list and never deleted
# automatically (other checkouts may use an older list); old ones can go.
set -euo pipefail

SUITE=bookworm
ARCH=amd64
DISK_GIB=8
BOX_HOSTNAME=labctl-box
CMDLINE="root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
# The package set of the image. Changing it changes the cache key below, so the
# next build downloads again.
PKGS=openssh-server,systemd-sysv,udev,dbus,iproute2,iputils-ping,sudo,bash,linux-image-cloud-amd64,initramfs-tools,zstd,busybox-static,procps,libnss-myhostname,systemd-timesyncd
# Modules the mini initramfs loads (with their dependencies) to reach /dev/vda.
INITRD_MODULES="virtio_pci virtio_blk"

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
CACHE=${LABCTL_CACHE:-$HOME/.cache/labctl}
BUILD=$CACHE/build
OUT=$CACHE/boxes/labctl-debian-12.box
FORCE=0

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$SCRIPT"
}

die() {
    echo "build-box: error: $*" >&2
    exit 1
}

# Progress goes to stderr; stdout carries only the box path (for $(...)).
log() {
    echo "build-box: $*" >&2
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --out)
            [[ $# -ge 2 && -n $2 ]] || die "--out needs a file name"
            OUT=$2
            shift 2
            ;;
        --out=*)
            OUT=${1#--out=}
            shift
            ;;
        --force)
            FORCE=1
            shift
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
[[ -n $OUT ]] || die "--out needs a file name"
[[ $OUT == /* ]] || OUT=$PWD/$OUT
STAMP=$OUT.stamp

# ---------------------------------------------------------------- fast path
# Read only: works without root and without any tool beyond coreutils.
SCRIPT_SHA=$(sha256sum "$SCRIPT")
SCRIPT_SHA=${SCRIPT_SHA%% *}

box_is_current() {
    [[ -f $OUT && -f $STAMP ]] || return 1
    local key value want_sha="" want_size=""
    while read -r key value; do
        case $key in
            script_sha256) want_sha=$value ;;
            box_size) want_size=$value ;;
        esac
    done <"$STAMP"
    [[ $want_sha == "$SCRIPT_SHA" && $want_size == "$(stat -c %s "$OUT")" ]]
}

if [[ $FORCE -eq 0 ]] && box_is_current; then
    echo "$OUT"
    exit 0
fi

# ---------------------------------------------------------------- preflight
if [[ $(id -u) -ne 0 ]]; then
    die "must run as root (debootstrap, chroot and device nodes need it): sudo $0"
fi

missing_pkgs=()
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing_pkgs+=("$2")
}
need debootstrap debootstrap
need qemu-img qemu-utils
need mke2fs e2fsprogs
need ssh-keygen openssh-client
need cpio cpio
need zstd zstd
need gzip gzip
need tar tar
need flock util-linux
need chroot coreutils
need sha256sum coreutils
need find findutils
need awk mawk
if [[ ${#missing_pkgs[@]} -gt 0 ]]; then
    mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
    echo "build-box: missing tools; install them with:" >&2
    echo "  apt-get install -y --no-install-recommends ${missing_pkgs[*]}" >&2
    exit 1
fi

now() { echo "$EPOCHREALTIME"; }
declare -A T=()
PHASES=(download debootstrap configure initramfs mke2fs qemu-img tar)
T0=$(now)
phase_end() { # phase_end NAME START
    T[$1]=$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
}

mkdir -p "$BUILD" "$(dirname "$OUT")"
LOGFILE=$BUILD/build.log
: >"$LOGFILE"

# ---------------------------------------------------------------- clean-up
WORK=""
PARTIAL=""

# Unmount whatever is still mounted below $1 (debootstrap mounts /proc, /sys
# and maybe /dev in its target; a killed run could leave them behind).
umount_below() {
    local dir=$1 m
    while read -r m; do
        if [[ -n $m ]]; then
            umount -l "$m" 2>/dev/null || true
        fi
    done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
}

remove_workdir() {
    umount_below "$1"
    rm -rf --one-file-system "$1"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $WORK && -d $WORK ]]; then
        remove_workdir "$WORK" || true
    fi
    if [[ -n $PARTIAL ]]; then
        rm -f "$PARTIAL"
    fi
    if [[ $rc -ne 0 ]]; then
        echo "build-box: FAILED (exit $rc); last lines of $LOGFILE:" >&2
        tail -n 25 "$LOGFILE" >&2 || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One build at a time per cache dir; then look again: a concurrent run may
# have just produced the box.
exec {LOCKFD}>"$BUILD/lock"
flock "$LOCKFD"
if [[ $FORCE -eq 0 ]] && box_is_current; then
    echo "$OUT"
    exit 0
fi

# Leftovers of runs that were killed hard (we hold the lock, so none is live).
for old in "$BUILD"/work.*; do
    [[ -d $old ]] && remove_workdir "$old"
done

WORK=$(mktemp -d "$BUILD/work.XXXXXX")
ROOT=$WORK/rootfs

# ---------------------------------------------------------------- mirror
detect_mirror() {
    local m=""
    if [[ -n ${LABCTL_MIRROR:-} ]]; then
        echo "$LABCTL_MIRROR"
        return
    fi
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        # deb822: first URI of a "deb" stanza whose Suites has the plain suite.
        m=$(awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[Tt]ypes:/)  { sub(/^[^:]*:[ \t]*/, "", line); types = line }
                    if (line ~ /^URIs:/)      { sub(/^[^:]*:[ \t]*/, "", line); uris = line }
                    if (line ~ /^[Ss]uites:/) { sub(/^[^:]*:[ \t]*/, "", line); suites = " " line " " }
                }
                if (types ~ /(^| )deb( |$)/ && index(suites, " " suite " ") && uris != "") {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z $m && -r /etc/apt/sources.list ]]; then
        # one-line format: deb [opts] URI SUITE COMPONENTS...
        m=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(detect_mirror)
MIRROR=${MIRROR%/}

KEY=$(printf '%s|%s|minbase|%s' "$SUITE" "$ARCH" "$PKGS" | sha256sum)
KEY=${KEY:0:12}
DEBS=$BUILD/debs-$SUITE-$KEY.tgz
# Bump BASE_REV when the clean-up done before caching the root fs changes.
BASE_REV=1
ROOTFS_CACHE=$BUILD/rootfs-$SUITE-$KEY-r$BASE_REV.tar.zst
KEYRING_OPT=()
if [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
    KEYRING_OPT=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
fi
DEBOOTSTRAP=(debootstrap --variant=minbase --arch="$ARCH" "${KEYRING_OPT[@]}" --include="$PKGS")

# ---------------------------------------------------------------- download
t=$(now)
if [[ ! -s $DEBS ]]; then
    log "downloading packages from $MIRROR (one time, ~90 MB) ..."
    "${DEBOOTSTRAP[@]}" --make-tarball="$WORK/debs.tgz" "$SUITE" "$WORK/dl" "$MIRROR" >>"$LOGFILE" 2>&1
    mv "$WORK/debs.tgz" "$DEBS"
    rm -rf --one-file-system "$WORK/dl"
else
    log "using cached packages $DEBS"
fi
phase_end download "$t"

# ---------------------------------------------------------------- debootstrap
TAR_FS_OPTS=(--numeric-owner --xattrs --xattrs-include='*' --acls)
t=$(now)
mkdir "$ROOT"
if [[ -s $ROOTFS_CACHE ]]; then
    log "unpacking cached base root fs $ROOTFS_CACHE"
    tar "${TAR_FS_OPTS[@]}" -I zstd -xpf "$ROOTFS_CACHE" -C "$ROOT"
else
    log "debootstrap $SUITE (offline, from $DEBS) ..."
    "${DEBOOTSTRAP[@]}" --unpack-tarball="$DEBS" "$SUITE" "$ROOT" "$MIRROR" >>"$LOGFILE" 2>&1
    umount_below "$ROOT"
    # Large and useless in the image (and in the cache): the .debs (they are
    # in $DEBS), apt's lists, and the initrd made by the kernel's postinst
    # (the box boots the mini initramfs built below).
    rm -f "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin "$ROOT"/boot/initrd.img-*
    rm -rf "${ROOT:?}"/var/lib/apt/lists/*
    log "caching base root fs as $ROOTFS_CACHE"
    tar "${TAR_FS_OPTS[@]}" -I 'zstd -T0 -3' -cpf "$WORK/rootfs.tar.zst" -C "$ROOT" .
    mv "$WORK/rootfs.tar.zst" "$ROOTFS_CACHE"
fi
phase_end debootstrap "$t"

# ---------------------------------------------------------------- configure
t=$(now)
log "configuring the guest"

mapfile -t kernels < <(cd "$ROOT/boot" && ls vmlinuz-* 2>/dev/null)
[[ ${#kernels[@]} -eq 1 ]] || die "expected exactly one kernel in the root fs, found: ${kernels[*]:-none}"
KVER=${kernels[0]#vmlinuz-}

in_root() {
    SYSTEMD_OFFLINE=1 LC_ALL=C chroot "$ROOT" "$@" >>"$LOGFILE" 2>&1
}

# Identity: every clone gets its own machine-id (kernel arg systemd.machine_id=
# or generated at boot). An *empty* file is not "first boot" for systemd, so no
# preset-all runs at boot and the trimming below stays in force.
echo "$BOX_HOSTNAME" >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<EOF_HOSTS
127.0.0.1	localhost
127.0.1.1	$BOX_HOSTNAME
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF_HOSTS
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
printf '/dev/vda\t/\text4\trw,relatime,errors=remount-ro\t0 0\n' >"$ROOT/etc/fstab"
# Name resolution follows the lab's egress setting, which labctl passes on the
# kernel command line (labctl.egress=0|1; QEMU direct boot). With egress on, the
# guest uses the NAT network's built-in DNS forwarder, 10.0.2.3 (QEMU's slirp
# and VirtualBox's NAT engine both answer there); with egress off it gets no
# name server at all (slirp restrict=on drops DNS, so one would only add
# timeouts). No argument (a disk boot, e.g. VirtualBox) counts as egress on.
# A resolv.conf that a lab step replaced (no "# labctl box:" first line) is
# left alone. Time: systemd-timesyncd, started only with egress on.
rm -f "$ROOT/etc/resolv.conf"
echo "# labctl box: no DNS yet (set at boot by labctl-dns.service)" >"$ROOT/etc/resolv.conf"
cat >"$ROOT/usr/local/sbin/labctl-dns" <<'EOF_DNS'
#!/bin/sh
# labctl box: /etc/resolv.conf from the kernel argument labctl.egress (see build-box.sh).
egress=1
for arg in $(cat /proc/cmdline); do
    case $arg in
        labctl.egress=0) egress=0 ;;
        labctl.egress=1) egress=1 ;;
    esac
done
if [ -e /etc/resolv.conf ] && ! head -n 1 /etc/resolv.conf | grep -q '^# labctl box:'; then
    exit 0
fi
if [ "$egress" = 1 ]; then
    printf '# labctl box: egress on, the NAT network'"'"'s DNS forwarder\nnameserver 10.0.2.3\n' >/etc/resolv.conf.labctl
else
    printf '# labctl box: egress off, no DNS (the lab network has no internet)\n' >/etc/resolv.conf.labctl
fi
mv -f /etc/resolv.conf.labctl /etc/resolv.conf
EOF_DNS
chmod 0755 "$ROOT/usr/local/sbin/labctl-dns"
cat >"$ROOT/etc/systemd/system/labctl-dns.service" <<'EOF_DNSUNIT'
[Unit]
Description=Name resolution for the lab's egress setting (labctl)
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target ssh.service systemd-timesyncd.service
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/labctl-dns

[Install]
WantedBy=sysinit.target
EOF_DNSUNIT
install -d -m 0755 "$ROOT/etc/systemd/system/systemd-timesyncd.service.d"
printf '[Unit]\nConditionKernelCommandLine=!labctl.egress=0\n' \
    >"$ROOT/etc/systemd/system/systemd-timesyncd.service.d/10-labctl.conf"
printf 'deb http://deb.debian.org/debian %s main\n' "$SUITE" >"$ROOT/etc/apt/sources.list"
# C.UTF-8 is built into glibc; the file also silences pam_env on every login.
echo "LANG=C.UTF-8" >"$ROOT/etc/default/locale"

# root: key-only SSH; empty password for the serial console only.
ssh-keygen -q -t ed25519 -N '' -C labctl-insecure-box-key -f "$WORK/insecure_key"
install -d -m 0700 "$ROOT/root/.ssh"
install -m 0600 "$WORK/insecure_key.pub" "$ROOT/root/.ssh/authorized_keys"
in_root passwd -d root

install -d -m 0755 "$ROOT/etc/ssh/sshd_config.d"
cat >"$ROOT/etc/ssh/sshd_config.d/10-labctl.conf" <<'EOF_SSHD'
# labctl box. Included at the top of sshd_config, so these win.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UseDNS no
GSSAPIAuthentication no
PrintLastLog no
EOF_SSHD
# Every ssh command runs the PAM session stack; the dynamic motd forks
# uname and friends each time, which is slow under TCG.
sed -i -E '/pam_(motd|mail)\.so/s/^/# labctl: /' "$ROOT/etc/pam.d/sshd"
: >"$ROOT/etc/motd"

# SSH host keys: none in the image; each clone makes its own at first boot.
# Measured in the guest under TCG (1 vCPU, idle): `ssh-keygen -A` 7.1 s and one
# RSA-3072 key 4-12.7 s, but an ed25519 key 0.17-0.2 s. Boot-to-SSH with the
# key made at first boot vs. at build time showed no difference above the
# run-to-run noise (22.3-22.9 s both, same host load). So: first-boot
# generation, ed25519 only, and sshd is told to use just that key.
rm -f "$ROOT"/etc/ssh/ssh_host_*
echo "HostKey /etc/ssh/ssh_host_ed25519_key" >>"$ROOT/etc/ssh/sshd_config.d/10-labctl.conf"
cat >"$ROOT/etc/systemd/system/labctl-ssh-hostkey.service" <<'EOF_HOSTKEY'
[Unit]
Description=Generate this clone's SSH host key (labctl)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key
ExecStartPost=/bin/sync -f /etc/ssh

[Install]
WantedBy=ssh.service
EOF_HOSTKEY

# ssh.service without the network.target ordering and without the extra
# `sshd -t` fork (a full copy in /etc: After= cannot be reset by a drop-in).
sed -e '/^ExecStartPre=.*sshd -t/d' \
    -e 's/^After=\(.*\)network\.target */After=\1/' \
    "$ROOT/lib/systemd/system/ssh.service" >"$ROOT/etc/systemd/system/ssh.service"
in_root systemctl reenable ssh.service
in_root systemctl enable labctl-ssh-hostkey.service
in_root systemctl enable labctl-dns.service

# Network: systemd-networkd, DHCP on eth0 only (net.ifnames=0 on the cmdline).
# labctl configures eth1 after boot (a file in /etc/systemd/network +
# `networkctl reload`). ClientIdentifier=mac: clones must not share a DHCP id.
cat >"$ROOT/etc/systemd/network/10-eth0.network" <<'EOF_NET'
[Match]
Name=eth0

[Network]
DHCP=ipv4
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=mac
UseHostname=no
UseDNS=no
EOF_NET
in_root systemctl enable systemd-networkd.service

# Boot trimming (each of these costs time under TCG and is useless in a lab VM).
install -d -m 0755 "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$ROOT/etc/systemd/journald.conf.d/10-labctl.conf"
mask_units=(
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
    e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-tmpfiles-clean.timer
    getty-static.service kmod-static-nodes.service systemd-random-seed.service
    systemd-update-utmp.service systemd-update-utmp-runlevel.service
    systemd-journal-flush.service systemd-pstore.service systemd-remount-fs.service
    systemd-sysusers.service systemd-network-generator.service modprobe@.service
    dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount
    sys-fs-fuse-connections.mount sys-kernel-config.mount
)
for u in "${mask_units[@]}"; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"
done
# Generators run at every boot and on each daemon-reload (~0.2 s each under
# TCG). Keep fstab (lab-added mounts) and getty (serial console) only; no
# encrypted/GPT/verity/hibernate/sysv-script/rc.local/ip= handling is needed.
install -d -m 0755 "$ROOT/etc/systemd/system-generators"
for g in systemd-cryptsetup-generator systemd-debug-generator systemd-gpt-auto-generator \
    systemd-hibernate-resume-generator systemd-integritysetup-generator \
    systemd-rc-local-generator systemd-run-generator systemd-system-update-generator \
    systemd-sysv-generator systemd-veritysetup-generator; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system-generators/$g"
done
# Only the serial console gets a getty (generated from console=ttyS0).
rm -f "$ROOT/etc/systemd/system/getty.target.wants/getty@tty1.service"

# Smaller image: no docs/man pages now or later, no package cache.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/10-labctl-nodoc" <<'EOF_DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF_DPKG
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "${ROOT:?}"/usr/share/man/* "${ROOT:?}"/usr/share/info/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
install -d -m 0755 "$ROOT/var/lib/apt/lists/partial"
find "$ROOT/var/log" -type f -delete
rm -f "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old
phase_end configure "$t"

# ---------------------------------------------------------------- initramfs
# Mini initramfs: static busybox, the virtio modules and a short /init.
# (virtio_pci and virtio_blk are modules in the cloud kernel; ext4 is built in.)
t=$(now)
log "building mini initramfs for $KVER"
IRD=$WORK/initramfs
MODDIR=$ROOT/lib/modules/$KVER
mkdir -p "$IRD"/{bin,dev,proc,sys,root,lib/modules}
cp "$ROOT/bin/busybox" "$IRD/bin/busybox"
for applet in sh mount umount insmod sleep switch_root cat findfs echo; do
    ln -s busybox "$IRD/bin/$applet"
done
mknod -m 600 "$IRD/dev/console" c 5 1
mknod -m 666 "$IRD/dev/null" c 1 3

declare -A MOD_SEEN=()
MOD_ORDER=()
add_module() { # add_module NAME: the module and its dependencies, in load order
    local name=$1 line path deps i
    name=${name//-/_}
    grep -Eq "/${name}\.ko(\.[a-z]+)?$" "$MODDIR/modules.builtin" 2>/dev/null && return 0
    line=$(awk -v n="$name" '{
            p = $1; sub(/:$/, "", p); b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b)
            gsub(/-/, "_", b)
            if (b == n) { print; exit }
        }' "$MODDIR/modules.dep")
    [[ -n $line ]] || die "kernel module $name not found for $KVER"
    path=${line%%:*}
    read -r -a deps <<<"${line#*:}"
    # modules.dep lists the full closure; load it back to front (as modprobe does).
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
        add_module_path "${deps[i]}"
    done
    add_module_path "$path"
}
add_module_path() {
    local path=$1 base
    [[ -n ${MOD_SEEN[$path]:-} ]] && return 0
    MOD_SEEN[$path]=1
    base=${path##*/}
    case $base in
        *.ko) cp "$MODDIR/$path" "$IRD/lib/modules/$base" ;;
        *.ko.zst) base=${base%.zst}; zstd -q -d -c "$MODDIR/$path" >"$IRD/lib/modules/$base" ;;
        *.ko.xz) base=${base%.xz}; xz -d -c "$MODDIR/$path" >"$IRD/lib/modules/$base" ;;
        *.ko.gz) base=${base%.gz}; gzip -d -c "$MODDIR/$path" >"$IRD/lib/modules/$base" ;;
        *) die "unknown module file type: $path" ;;
    esac
    MOD_ORDER+=("$base")
}
for m in $INITRD_MODULES; do
    add_module "$m"
done
printf '%s\n' "${MOD_ORDER[@]}" >"$IRD/lib/modules/load-order"

cat >"$IRD/init" <<'EOF_INIT'
#!/bin/sh
# labctl mini initramfs: load virtio modules, mount the root fs, switch_root.
export PATH=/bin
# The first console line of a boot: labctl takes a node under KVM that never prints
# it as hung (nested KVM) and starts it under TCG instead.
echo "labctl-initramfs: starting"
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" || echo "initramfs: insmod $m failed"
done
root=/dev/vda mode=rw fstype=ext4 init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case $arg in
        root=*) root=${arg#root=} ;;
        rootfstype=*) fstype=${arg#rootfstype=} ;;
        init=*) init=${arg#init=} ;;
        ro) mode=ro ;;
        rw) mode=rw ;;
    esac
done
i=0
while :; do
    case $root in
        LABEL=* | UUID=*) dev=$(findfs "$root" 2>/dev/null) || dev="" ;;
        *) dev=$root ;;
    esac
    [ -n "$dev" ] && [ -b "$dev" ] && break
    i=$((i + 1))
    if [ $i -gt 300 ]; then
        echo "initramfs: root device $root did not appear within 30 s"
        exec sh
    fi
    sleep 0.1
done
if ! mount -t "$fstype" -o "$mode" "$dev" /root; then
    echo "initramfs: cannot mount $dev on /root"
    exec sh
fi
umount /sys
umount /proc
mount --move /dev /root/dev
exec switch_root /root "$init" "$@"
EOF_INIT
chmod 0755 "$IRD/init"
STAGE=$WORK/box
mkdir "$STAGE"
(cd "$IRD" && find . -print0 | LC_ALL=C sort -z | cpio --quiet --null -o -H newc -R 0:0) >"$STAGE/initrd.img"
cp "$ROOT/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"
phase_end initramfs "$t"

# ---------------------------------------------------------------- mke2fs
# No partition table, no loop device. Inode tables and journal are zeroed
# here (they stay sparse), so the guest's ext4lazyinit never writes ~130 MB
# into every clone's overlay.
t=$(now)
log "mke2fs (ext4, ${DISK_GIB} GiB sparse)"
mke2fs -q -F -t ext4 -L root -E lazy_itable_init=0,lazy_journal_init=0 \
    -d "$ROOT" "$WORK/box.raw" "${DISK_GIB}G" >>"$LOGFILE" 2>&1
phase_end mke2fs "$t"

# ---------------------------------------------------------------- qemu-img
t=$(now)
log "qemu-img convert to qcow2"
qemu-img convert -f raw -O qcow2 "$WORK/box.raw" "$STAGE/box.img" >>"$LOGFILE" 2>&1
rm -f "$WORK/box.raw"
phase_end qemu-img "$t"

# ---------------------------------------------------------------- box tar
t=$(now)
log "writing box $OUT"
cp "$WORK/insecure_key" "$STAGE/insecure_key"
chmod 0600 "$STAGE/insecure_key"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GIB" >"$STAGE/metadata.json"
printf '{"format_version":1,"os":"debian","os_version":"12","user":"root","private_key":"insecure_key","disk":"box.img","kernel":"vmlinuz","initrd":"initrd.img","cmdline":"%s","network":"systemd-networkd","built_by":"scripts/build-box.sh","kernel_version":"%s"}\n' \
    "$CMDLINE" "$KVER" >"$STAGE/labctl.json"
cat >"$STAGE/Vagrantfile" <<EOF_VAGRANT
# Box Vagrantfile for vagrant-libvirt, made by labctl's scripts/build-box.sh.
# Debian 12 (kernel $KVER), direct kernel boot, root login with the
# box's insecure key, no NAT management network.
Vagrant.configure("2") do |config|
  config.vm.guest = :debian
  config.ssh.username = "root"
  config.ssh.private_key_path = File.expand_path("insecure_key", __dir__)
  config.ssh.insert_key = false
  config.vm.synced_folder ".", "/vagrant", disabled: true

  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.kernel = File.expand_path("vmlinuz", __dir__)
    lv.initrd = File.expand_path("initrd.img", __dir__)
    lv.cmd_line = "$CMDLINE"
    lv.graphics_type = "none"
    lv.video_type = "none"
    lv.management_network_mode = "none"
  end
end
EOF_VAGRANT
chmod 0644 "$STAGE"/{box.img,metadata.json,labctl.json,Vagrantfile,vmlinuz,initrd.img}
PARTIAL=$OUT.partial.$$
tar --owner=0 --group=0 --numeric-owner -cf "$PARTIAL" -C "$STAGE" \
    metadata.json labctl.json Vagrantfile box.img vmlinuz initrd.img insecure_key
mv -f "$PARTIAL" "$OUT"
PARTIAL=""
BOX_SIZE=$(stat -c %s "$OUT")
{
    echo "script_sha256 $SCRIPT_SHA"
    echo "box_size $BOX_SIZE"
    echo "kernel_version $KVER"
    echo "mirror $MIRROR"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAGE/stamp"
mv -f "$STAGE/stamp" "$STAMP"
phase_end tar "$t"

# ---------------------------------------------------------------- summary
T[total]=$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
{
    echo "build-box: phase timings (s):"
    for p in "${PHASES[@]}" total; do
        printf '  %-12s %6s\n' "$p" "${T[$p]:-0.0}"
    done
    echo "build-box: kernel $KVER, box $(numfmt --to=iec-i --suffix=B "$BOX_SIZE") ($BOX_SIZE bytes)"
} >&2
echo "$OUT"
