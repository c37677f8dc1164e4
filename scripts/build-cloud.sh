#!/usr/bin/env bash
# Builds the cloud (Azure Functions custom handler) binary: x86_64-unknown-linux-musl,
# statically linked, OpenSSL compiled from source (feature vendored-openssl), default
# features (Azure SDK crates included). A static binary runs on every Functions Linux
# image whatever its glibc or OpenSSL version, which a dynamically linked build does
# not. Prints the binary's path on stdout; everything else goes to stderr.
#
# Needs: Linux x86_64, rustup's x86_64-unknown-linux-musl target, musl-gcc (Debian/Ubuntu
# package musl-tools) for the C code (OpenSSL, SQLite, ring). Each missing piece stops
# the script with one line saying how to get it.
#
# Env: CARGO (default cargo), CARGO_TARGET_DIR (default <repo>/target).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
cargo=${CARGO:-cargo}
die() { echo "build-cloud: $*" >&2; exit 1; }

os=$(uname -s) arch=$(uname -m)
if [[ "$os" != Linux || "$arch" != x86_64 ]]; then
    die "the cloud binary is built on Linux x86_64 (this is $os $arch): run scripts/build-cloud.sh in a Linux x86_64 container, WSL or dev container, or build it in CI and set TP_BINARY=path/to/teams-presence for infra/hooks/package-cloud.sh"
fi
command -v "$cargo" >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        echo "build-cloud: adding the $target target (rustup target add $target)" >&2
        rustup target add "$target" >&2 \
            || die "the $target standard library is missing and rustup could not fetch it: run 'rustup target add $target' where rustup can reach its servers"
    fi
else
    if [[ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]]; then
        die "no rustup and no $target standard library in $(rustc --print sysroot): install Rust with rustup, then 'rustup target add $target'"
    fi
fi
command -v musl-gcc >/dev/null 2>&1 \
    || die "musl-gcc not found (it compiles OpenSSL and SQLite for musl): 'sudo apt-get install musl-tools' (Debian/Ubuntu) or your distribution's musl-gcc package"

export CC_x86_64_unknown_linux_musl=musl-gcc
# The musl target links statically by default; say so, so nobody turns it off by accident.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"
echo "build-cloud: $cargo build --locked --release --features vendored-openssl --target $target" >&2
"$cargo" build --locked --release --features vendored-openssl --target "$target" >&2

bin=${CARGO_TARGET_DIR:-$PWD/target}/$target/release/teams-presence
[[ -x "$bin" ]] || die "$bin was not produced"
bash scripts/check-static.sh "$bin" >&2
echo "$bin"
