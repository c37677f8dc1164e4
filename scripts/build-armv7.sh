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
# PROFILE=release builds with the cloud profile instead, for comparison.
PROFILE=${PROFILE:-pi}
/usr/bin/cargo build --locked --profile "$PROFILE" --no-default-features --features vendored-openssl \
  --target armv7-unknown-linux-gnueabihf >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/armv7-unknown-linux-gnueabihf/$PROFILE/teams-presence"
