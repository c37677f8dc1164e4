#!/usr/bin/env bash
# Installs Debian bookworm's Rust 1.85 with the standard library of each Debian architecture
# named (armhf, arm64), their cross linkers and qemu-user: the only way to build and run the
# Raspberry Pi binaries on this kind of machine (rustup cannot fetch other targets here, and
# there is no Docker engine). With no architecture it installs the compiler alone (amd64,
# used for the amd64 .deb's static binary). Idempotent: what is there is not installed again.
#
#   scripts/install-cross-toolchain.sh armhf arm64
#
# Version pins: docs/pi.md, "Build the Pi binaries on Debian". The amd64 and foreign copies
# of a multi-arch package must have the same version, and bookworm-security carries newer
# copies of some of them, so every one of them is pinned to bookworm's own.
set -euo pipefail
V=1.85.0+dfsg3-1~deb12u3

declare -A TRIPLE=([armhf]=armv7-unknown-linux-gnueabihf [arm64]=aarch64-unknown-linux-gnu)
declare -A GCC=([armhf]=arm-linux-gnueabihf [arm64]=aarch64-linux-gnu)
declare -A QEMU=([armhf]=qemu-arm [arm64]=qemu-aarch64)

missing=()
[ -x /usr/bin/rustc ] && [ "$(/usr/bin/rustc --version | cut -d' ' -f2)" = 1.85.0 ] || missing+=(rustc)
for arch in "$@"; do
  [ -n "${TRIPLE[$arch]:-}" ] || { echo "install-cross-toolchain: unknown architecture $arch (armhf or arm64)" >&2; exit 2; }
  if [ ! -d "/usr/lib/rustlib/${TRIPLE[$arch]}" ] || ! command -v "${GCC[$arch]}-gcc" >/dev/null \
     || ! command -v "${QEMU[$arch]}" >/dev/null; then
    missing+=("$arch")
  fi
done
[ "${#missing[@]}" = 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then
  exec sudo -E bash "$0" "$@"
fi
# A foreign architecture's index of bookworm-security sometimes fails to download
# ("Mirror sync in progress?"); that does not matter for the packages below.
for arch in "$@"; do dpkg --add-architecture "$arch"; done
apt-get update -qq || true
# liblzma5 is multi-arch "same": every architecture's copy must have one version. Keep the
# one installed when every architecture has it (bookworm-security's), else bookworm's own.
LZMA=$(dpkg-query -W -f='${Version}' liblzma5:amd64 2>/dev/null || true)
for arch in "$@"; do
  apt-cache madison "liblzma5:$arch" | grep -q " $LZMA " || LZMA=5.4.1-1+deb12u1
done
[ -n "$LZMA" ] || LZMA=5.4.1-1+deb12u1
pkgs=(liblzma5="$LZMA" rustc-web="$V" cargo-web="$V" libstd-rust-web-dev="$V" libstd-rust-web-1.85="$V" file)
for arch in "$@"; do
  pkgs+=("liblzma5:$arch=$LZMA" "libstd-rust-web-dev:$arch=$V" "libstd-rust-web-1.85:$arch=$V"
         gcc-"${GCC[$arch]}" libc6-dev-"$arch"-cross qemu-user)
done
apt-get install -y -qq --no-install-recommends --allow-downgrades "${pkgs[@]}" >/dev/null
