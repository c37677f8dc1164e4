#!/bin/sh
# azd prepackage hook for service `api` (azure.yaml): build the linux-x64 binary and
# assemble the Functions package folder dist/cloud, which azd then zips and deploys.
#
# dist/cloud must hold host.json at its root, one folder per cloud function with its
# function.json, and the `teams-presence` executable with its run bit;
# `teams-presence package cloud --out DIR [--binary EXE]` writes exactly that.
#
# Environment:
#   CARGO            cargo to use (default: cargo)
#   TP_SKIP_BUILD=1  reuse an existing target/x86_64-unknown-linux-gnu/release build
#   TP_BINARY=PATH   ship this linux-x64 executable (built elsewhere, e.g. in CI or with
#                    a cross toolchain); the packaging command then runs from a native
#                    build on this machine (`cargo run -- package cloud --binary PATH`)
set -eu

# Newer azd runs hooks in the script's directory, older ones in the service path:
# work from the repository root either way.
cd "$(dirname "$0")/../.."

target=x86_64-unknown-linux-gnu
out=dist/cloud
cargo=${CARGO:-cargo}

package_prebuilt() {
    [ -f "$TP_BINARY" ] || { echo "package-cloud: TP_BINARY=$TP_BINARY does not exist" >&2; exit 1; }
    rm -rf "$out"
    mkdir -p "$out"
    "$cargo" run --release --locked --quiet -- package cloud --out "$out" --binary "$TP_BINARY"
}

build_and_package() {
    host_os=$(uname -s)
    host_arch=$(uname -m)
    if [ "$host_os" != Linux ] || [ "$host_arch" != x86_64 ]; then
        # Building for another OS/arch than this one needs a cross toolchain.
        echo "package-cloud: this hook builds on Linux x86_64 (found $host_os $host_arch)." >&2
        echo "package-cloud: run 'azd deploy' from Linux x86_64 (a dev container, WSL or CI)," >&2
        echo "package-cloud: or build $target elsewhere and set TP_BINARY=path/to/it." >&2
        exit 1
    fi
    if [ "${TP_SKIP_BUILD:-0}" != 1 ]; then
        echo "package-cloud: cargo build --release --locked --target $target"
        "$cargo" build --release --locked --target "$target"
    fi
    bin=target/$target/release/teams-presence
    [ -x "$bin" ] || { echo "package-cloud: $bin is missing; build it first" >&2; exit 1; }
    rm -rf "$out"
    mkdir -p "$out"
    "$bin" package cloud --out "$out" --binary "$bin"
}

if [ -n "${TP_BINARY:-}" ]; then
    package_prebuilt
else
    build_and_package
fi

# Fail here rather than after a deploy whose host cannot start.
fail=0
[ -f "$out/host.json" ] || { echo "package-cloud: $out/host.json missing" >&2; fail=1; }
[ -x "$out/teams-presence" ] || { echo "package-cloud: $out/teams-presence missing or not executable" >&2; fail=1; }
for fn in auth-start auth-end notifications lifecycle presence-refresh subscriptions-renew; do
    [ -f "$out/$fn/function.json" ] || { echo "package-cloud: $out/$fn/function.json missing" >&2; fail=1; }
done
# The edge function needs PRESENCE_SUBSCRIPTION, which the cloud app does not have.
if [ -d "$out/hue-subscriber" ]; then
    echo "package-cloud: $out/hue-subscriber is an edge function and must not be in the cloud package" >&2
    fail=1
fi
[ "$fail" = 0 ] || exit 1

echo "package-cloud: $out is ready:"
find "$out" -type f | sort | while read -r f; do
    if [ -x "$f" ]; then echo "  $f (executable)"; else echo "  $f"; fi
done
