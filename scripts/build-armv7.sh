#!/usr/bin/env bash
# Builds the Raspberry Pi (arm32v7, 32-bit Raspberry Pi OS) binary the way CI can here:
# Debian's Rust 1.85 with its armhf std, the cross linker, static glibc, OpenSSL compiled
# from source, the Pi feature set (scripts/build-static.sh says what). Prints the binary's
# path. A user with Docker can use the Dockerfile instead (docs/pi.md).
set -euo pipefail
exec bash "$(dirname "$0")/build-static.sh" armv7-unknown-linux-gnueabihf
