#!/usr/bin/env bash
# Build target/debian/labctl_<version>_<arch>.deb with dpkg-deb (no cargo-deb needed): the
# release binary (LTO, stripped), completion scripts for bash, zsh and fish, a man page per
# command, and the bundled labs and templates (also embedded in the binary; here for reading).
#
#   scripts/package-deb.sh            build the package
#   scripts/package-deb.sh --check    build it, unpack it into a temporary root and check it
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ "${1:-}" == "--check" ]] && check=1

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
deb="target/debian/labctl_${version}_${arch}.deb"

cargo build --release --locked -p labctl
bin=target/release/labctl

stage=$(mktemp -d)
root=""
trap 'rm -rf "$stage" ${root:+"$root"}' EXIT
chmod 0755 "$stage"

install -D -m 0755 "$bin" "$stage/usr/bin/labctl"
comp_dir() { install -d -m 0755 "$stage/$1"; }
comp_dir usr/share/bash-completion/completions
comp_dir usr/share/zsh/vendor-completions
comp_dir usr/share/fish/vendor_completions.d
"$bin" completions bash > "$stage/usr/share/bash-completion/completions/labctl"
"$bin" completions zsh > "$stage/usr/share/zsh/vendor-completions/_labctl"
"$bin" completions fish > "$stage/usr/share/fish/vendor_completions.d/labctl.fish"
install -d -m 0755 "$stage/usr/share/man/man1"
"$bin" -q man --out "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1
install -d -m 0755 "$stage/usr/share/labctl"
cp -r labs templates "$stage/usr/share/labctl/"
install -D -m 0644 README.md "$stage/usr/share/doc/labctl/README.md"
printf 'labctl\nLicense: Apache-2.0\n' > "$stage/usr/share/doc/labctl/copyright"
find "$stage/usr" -type d -exec chmod 0755 {} +
find "$stage/usr" -type f ! -path '*/usr/bin/*' -exec chmod 0644 {} +

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk "$stage/usr" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: labctl
Version: ${version}
Architecture: ${arch}
Maintainer: labctl maintainers <labctl@localhost>
Installed-Size: ${size}
Depends: qemu-system-x86, qemu-utils, openssh-client
Recommends: bash-completion
Section: admin
Priority: optional
Description: classroom virtual-machine labs: bring up, provision, reset
 labctl replaces a course Vagrantfile: it boots a lab's nodes in parallel on QEMU (or
 VirtualBox), provisions them over SSH from templates, and resets broken nodes from a
 golden snapshot. "labctl import Vagrantfile" converts an existing lab.
EOF

mkdir -p target/debian
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1); binary $(du -h "$bin" | cut -f1))"

if (( check )); then
    root=$(mktemp -d)
    dpkg-deb -x "$deb" "$root"
    fail() { echo "package check failed: $*" >&2; exit 1; }
    [[ -x "$root/usr/bin/labctl" ]] || fail "no /usr/bin/labctl"
    "$root/usr/bin/labctl" --version | grep -q "$version" || fail "labctl --version"
    for f in usr/share/bash-completion/completions/labctl \
             usr/share/zsh/vendor-completions/_labctl \
             usr/share/fish/vendor_completions.d/labctl.fish \
             usr/share/man/man1/labctl.1.gz usr/share/man/man1/labctl-up.1.gz \
             usr/share/man/man1/labctl-import.1.gz \
             usr/share/labctl/labs/k8s/lab.toml usr/share/labctl/templates/README.md \
             usr/share/doc/labctl/copyright; do
        [[ -s "$root/$f" ]] || fail "missing or empty: /$f"
    done
    bash -n "$root/usr/share/bash-completion/completions/labctl" || fail "bash completion syntax"
    pages=$(find "$root/usr/share/man/man1" -name '*.1.gz' | wc -l)
    (( pages >= 20 )) || fail "only $pages man pages"
    if file "$root/usr/bin/labctl" | grep -q 'not stripped'; then fail "binary not stripped"; fi
    dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' '
    echo
    echo "package check ok: $pages man pages, completions, labs, stripped binary"
fi
