#!/usr/bin/env bash
# Installs Debian's Rust 1.85 with the armhf standard library, the cross linker and
# qemu-user: the only way to build and run the arm32v7 binary on this kind of machine
# (rustup cannot fetch other targets here, and there is no Docker engine).
# Recipe and version pins: docs/pi.md, "Build the armv7 binary on Debian". Idempotent.
set -euo pipefail
if [ -x /usr/bin/rustc ] && /usr/bin/rustc --print target-libdir --target armv7-unknown-linux-gnueabihf >/dev/null 2>&1 \
   && [ -d /usr/lib/rustlib/armv7-unknown-linux-gnueabihf ] \
   && command -v arm-linux-gnueabihf-gcc >/dev/null && command -v qemu-arm >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then
  exec sudo -E bash "$0" "$@"
fi
dpkg --add-architecture armhf
# The armhf index of bookworm-security sometimes fails to download ("Mirror sync in
# progress?"); that does not matter for the packages below.
apt-get update -qq || true
V=1.85.0+dfsg3-1~deb12u3
apt-get install -y -qq --no-install-recommends \
  liblzma5=5.4.1-1+deb12u1 liblzma5:armhf=5.4.1-1+deb12u1 \
  rustc-web=$V cargo-web=$V libstd-rust-web-dev=$V libstd-rust-web-1.85=$V \
  libstd-rust-web-dev:armhf=$V libstd-rust-web-1.85:armhf=$V \
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user file >/dev/null
