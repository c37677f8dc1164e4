#!/usr/bin/env bash
# Builds the Raspberry Pi (arm32v7) binary the way CI can here: Debian's Rust 1.85 with its
# armhf std, the cross linker, static glibc, OpenSSL compiled from source, and the edge
# feature set (no Azure SDK crates, which need Rust 1.88). Prints the binary's path.
# A user with Docker can use the Dockerfile instead (docs/pi.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-armv7-toolchain.sh >&2
export RUSTC=/usr/bin/rustc
export RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
/usr/bin/cargo build --locked --release --no-default-features --features vendored-openssl \
  --target armv7-unknown-linux-gnueabihf >&2
echo "$PWD/target/armv7-unknown-linux-gnueabihf/release/teams-presence"
