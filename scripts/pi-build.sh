#!/usr/bin/env bash
# Builds the arm32v7 (Raspberry Pi) static binary with Debian's Rust 1.85
# (../shared/reference/armv7-build.md) and prints its path.
#
# Why a copy of the source: the lockfile is shared by both feature sets, and the cloud-only
# Azure SDK crates (azure_identity ^1) require time >= 0.3.47, whose every release needs
# Rust 1.88; jsonwebtoken (via simple_asn1) then gets that same time in the Pi build too.
# Cargo resolves optional dependencies whatever the features, so the Pi build resolves in a
# scratch copy without the Azure SDK dependencies and pins time to 0.3.45 (Rust 1.83) and
# simple_asn1 to 0.6.3 (0.6.4 asks for time 0.3.47).
# Everything else keeps the versions of the repository's Cargo.lock.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${PI_BUILD_DIR:-$ROOT/target/pi-src}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TARGET=armv7-unknown-linux-gnueabihf

rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
tar -C "$ROOT" --exclude ./target --exclude ./.git -cf - . | tar -C "$SCRATCH" -xf -
cd "$SCRATCH"
# Drop the optional Azure SDK crates and the feature that names them.
sed -i -e '/^azure_core = /d' -e '/^azure_identity = /d' -e '/^azure_security_keyvault_secrets = /d' \
  -e 's/^azure-sdk = \[.*\]$/azure-sdk = []/' Cargo.toml
/usr/bin/cargo update -p simple_asn1 --precise 0.6.3 >&2
/usr/bin/cargo update -p time --precise 0.3.45 >&2
RUSTC=/usr/bin/rustc RUSTFLAGS="-C target-feature=+crt-static" \
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
  /usr/bin/cargo build --release --no-default-features --features vendored-openssl --target $TARGET >&2
echo "$CARGO_TARGET_DIR/$TARGET/release/teams-presence"
