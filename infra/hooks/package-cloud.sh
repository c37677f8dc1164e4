#!/bin/sh
# azd prepackage hook for service `api` (azure.yaml): build the statically linked
# linux-x64 binary and assemble the Functions package folder dist/cloud, which azd then
# zips and deploys.
#
# The binary is x86_64-unknown-linux-musl, static (scripts/build-cloud.sh): the Functions
# host's Linux image is not the machine it was built on, and a dynamically linked build
# needs that machine's glibc and libssl, so on an image with older ones the handler
# never starts and every function fails with nothing in the app's logs.
#
# dist/cloud must hold host.json at its root, one folder per cloud function with its
# function.json, and the `teams-presence` executable with its run bit;
# `teams-presence package cloud --out DIR [--binary EXE]` writes exactly that.
#
# Environment:
#   CARGO            cargo to use (default: cargo)
#   TP_SKIP_BUILD=1  reuse an existing build of scripts/build-cloud.sh
#   TP_BINARY=PATH   ship this static linux-x64 executable (built elsewhere, e.g. in CI);
#                    the packaging command then runs from a native build on this machine
#                    (`cargo run -- package cloud --binary PATH`)
set -eu

# Newer azd runs hooks in the script's directory, older ones in the service path:
# work from the repository root either way.
cd "$(dirname "$0")/../.."

# azd resolves `dist: dist/cloud` (azure.yaml) from the directory it was started in, not
# from the project: started in a subdirectory it would zip a folder that is not there.
# Linux only (/proc): the parent (or grandparent) process is azd when azd runs this hook.
root=$(pwd -P)
pid=$PPID
for _ in 1 2; do
    [ -r "/proc/$pid/comm" ] || break
    if [ "$(cat "/proc/$pid/comm")" = azd ]; then
        started_in=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
        if [ -n "$started_in" ] && [ "$started_in" != "$root" ]; then
            echo "package-cloud: azd was started in $started_in, but it finds the package (dist: dist/cloud) relative to that directory; run azd from the repository root ($root), or 'azd --cwd $root ...'" >&2
            exit 1
        fi
        break
    fi
    pid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || echo 1)
done

target=x86_64-unknown-linux-musl
out=dist/cloud
cargo=${CARGO:-cargo}

require_static() {
    # A dynamic binary would depend on the image's glibc/OpenSSL: refuse to ship it.
    if command -v readelf >/dev/null 2>&1 && command -v file >/dev/null 2>&1; then
        bash scripts/check-static.sh "$1" >&2 || {
            echo "package-cloud: $1 is not statically linked; build it with scripts/build-cloud.sh" >&2
            exit 1
        }
    else
        echo "package-cloud: file/readelf not found; cannot check that $1 is static" >&2
    fi
}

package_prebuilt() {
    [ -f "$TP_BINARY" ] || { echo "package-cloud: TP_BINARY=$TP_BINARY does not exist" >&2; exit 1; }
    require_static "$TP_BINARY"
    rm -rf "$out"
    mkdir -p "$out"
    "$cargo" run --release --locked --quiet -- package cloud --out "$out" --binary "$TP_BINARY"
}

build_and_package() {
    if [ "${TP_SKIP_BUILD:-0}" = 1 ]; then
        bin=${CARGO_TARGET_DIR:-target}/$target/release/teams-presence
        [ -x "$bin" ] || { echo "package-cloud: $bin is missing; run scripts/build-cloud.sh first" >&2; exit 1; }
        require_static "$bin"
    else
        # One line with the fix when this is not Linux x86_64 or the musl target or
        # musl-gcc is missing.
        bin=$(CARGO="$cargo" bash scripts/build-cloud.sh) || exit 1
    fi
    rm -rf "$out"
    mkdir -p "$out"
    # The static binary runs here too: it packages itself.
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
if command -v file >/dev/null 2>&1; then
    echo "package-cloud: $(file -b "$out/teams-presence" | cut -d, -f1-5)"
fi
echo "package-cloud: $(wc -c <"$out/teams-presence" | tr -d ' ') bytes: $out/teams-presence"
