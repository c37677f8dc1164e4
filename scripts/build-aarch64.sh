#!/usr/bin/env bash
# Builds the 64-bit Raspberry Pi OS (aarch64: Pi 3, 4, 5, Zero 2 W) binary the way CI can
# here: Debian's Rust 1.85 with its arm64 std, the cross linker, static glibc, OpenSSL
# compiled from source, the Pi feature set (scripts/build-static.sh says what). Prints the
# binary's path. A user with Docker can use the Dockerfile instead (docs/pi.md).
set -euo pipefail
exec bash "$(dirname "$0")/build-static.sh" aarch64-unknown-linux-gnu
