#!/usr/bin/env bash
# Builds one static Linux binary of the Pi feature set with Debian's Rust 1.85 (the way CI
# can here: rustup cannot fetch other targets' standard libraries) and prints its path.
# build-armv7.sh, build-aarch64.sh and package-deb.sh (amd64) call it.
#
#   scripts/build-static.sh armv7-unknown-linux-gnueabihf   # 32-bit Raspberry Pi OS
#   scripts/build-static.sh aarch64-unknown-linux-gnu       # 64-bit Raspberry Pi OS
#   scripts/build-static.sh x86_64-unknown-linux-gnu        # the amd64 .deb
#
# What every one of them is:
# - static glibc (`+crt-static`): runs on any Debian/Raspberry Pi OS release, in an empty
#   chroot and in an Alpine container (the Home Assistant add-on), and under qemu-user,
#   where a dynamically linked armhf binary crashes when it starts a thread;
# - OpenSSL compiled in (`vendored-openssl`), USB busylights (`busylight`, pure Rust over
#   hidraw: no libudev or libusb), no Azure SDK crates (they need Rust 1.88);
# - `--profile pi`: size and memory over peak speed (Cargo.toml), no unwind tables (a panic
#   aborts); PROFILE=release for the cloud build's profile.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: $0 TARGET (armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-gnu, x86_64-unknown-linux-gnu)}
case "$TARGET" in
  armv7-unknown-linux-gnueabihf) arch=armhf gcc=arm-linux-gnueabihf ;;
  aarch64-unknown-linux-gnu) arch=arm64 gcc=aarch64-linux-gnu ;;
  x86_64-unknown-linux-gnu) arch='' gcc='' ;;
  *) echo "build-static: unsupported target $TARGET" >&2; exit 2 ;;
esac
bash scripts/install-cross-toolchain.sh $arch >&2
export RUSTC=/usr/bin/rustc
env_target=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')
PROFILE=${PROFILE:-pi}
rustflags="-C target-feature=+crt-static"
if [ "$PROFILE" = pi ]; then
  # No unwind tables: a panic aborts with this profile, so they only served backtraces; they
  # were 1.4 MB (14 %) of the aarch64 binary, which then missed 10 MB. The same for the C
  # code (OpenSSL, SQLite); Debian's std and glibc's archive keep theirs.
  rustflags="$rustflags -C force-unwind-tables=no"
  export "CFLAGS_${TARGET//-/_}=-fno-asynchronous-unwind-tables -fno-unwind-tables"
fi
export "CARGO_TARGET_${env_target}_RUSTFLAGS=$rustflags"
if [ -n "$gcc" ]; then
  export "CARGO_TARGET_${env_target}_LINKER=$gcc-gcc"
  export "CC_${TARGET//-/_}=$gcc-gcc" "AR_${TARGET//-/_}=$gcc-ar"
fi
# The Pi feature set: what the Dockerfile and the Home Assistant add-on ship too.
FEATURES=busylight,vendored-openssl
/usr/bin/cargo build --locked --profile "$PROFILE" --no-default-features --features "$FEATURES" \
  --target "$TARGET" >&2
bin="${CARGO_TARGET_DIR:-$PWD/target}/$TARGET/$PROFILE/teams-presence"
[ -x "$bin" ] || { echo "build-static: $bin was not produced" >&2; exit 1; }
echo "$bin"
