#!/usr/bin/env bash
# Type-check labctl for Windows (x86_64-pc-windows-msvc) on this Linux host, so that the
# cfg(unix) gating does not rot: every Unix-only call (std::os::unix, rustix, /proc, signals,
# unix sockets) must sit behind cfg(unix), with a Windows counterpart or a "not supported on
# Windows yet" error. Runs `cargo clippy -D warnings` for the Windows target on the libraries
# and binaries (not the tests, which are Unix-only).
#
# What it does NOT do: link or run anything, or compile C. A stub stands in for the MSVC
# compiler and librarian (it writes empty files), so the C parts of dependencies (libssh2,
# zlib, stacker/psm) are not checked; only Rust is.
#
# Needs the target's standard library (`rustup target add x86_64-pc-windows-msvc`). Without it
# the check is skipped with a notice, unless LABCTL_REQUIRE_WINDOWS_CHECK=1 (then it fails).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-msvc

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  if [ "${LABCTL_REQUIRE_WINDOWS_CHECK:-}" = 1 ]; then
    echo "check-windows: the $target standard library is not installed (rustup target add $target)" >&2
    exit 1
  fi
  echo "check-windows: SKIPPED: the $target standard library is not installed (rustup target add $target)"
  exit 0
fi

# The stub compiler, at a fixed path: build scripts rerun when CC_<target> changes.
stub_dir="${CARGO_TARGET_DIR:-target}/windows-check"
mkdir -p "$stub_dir"
stub="$(cd "$stub_dir" && pwd)/cc"
cat >"$stub.new" <<'EOF'
#!/bin/sh
# Stands in for cl.exe and lib.exe in scripts/check-windows.sh: creates the object and library
# files it is asked for, empty, and compiles nothing (`cargo check` links nothing).
prev=
for a in "$@"; do
  case "$a" in
    -Fo*) : >"${a#-Fo}" ;;
    -out:*) : >"${a#-out:}" ;;
    *.a | *.lib) case "$prev" in cq | crs | rcs) : >"$a" ;; esac ;;
  esac
  if [ "$prev" = -o ]; then : >"$a"; fi
  prev=$a
done
exit 0
EOF
chmod +x "$stub.new"
mv "$stub.new" "$stub"

export CC_x86_64_pc_windows_msvc="$stub" AR_x86_64_pc_windows_msvc="$stub"
cargo clippy --workspace --locked --target "$target" -- -D warnings
echo "check-windows: labctl's libraries and binaries type-check for $target (not linked, not run)"
