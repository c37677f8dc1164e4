#!/usr/bin/env bash
# Installs Debian's Rust 1.85 with the armhf standard library, the cross linker and
# qemu-user: the only way to build and run the arm32v7 binary on this kind of machine
# (rustup cannot fetch other targets here, and there is no Docker engine). Idempotent.
# The arm64 (64-bit Pi OS) toolchain comes the same way: scripts/install-cross-toolchain.sh.
set -euo pipefail
exec bash "$(dirname "$0")/install-cross-toolchain.sh" armhf
