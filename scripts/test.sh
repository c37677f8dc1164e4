#!/usr/bin/env bash
# The whole test suite, installing what it needs first. This is the README's test command
# and what CI runs (.ci/run). Steps:
#   0. Debian's chromium for the status-page browser test, Debian's mosquitto for the MQTT tests,
#      libudev-dev for hidapi (the `busylight` feature)
#   1. Azurite (npm, pinned in tests/azurite/package-lock.json) for the Table Storage tests,
#      and Python's `cryptography` (in .venv-test when missing) for the notification tests
#   2. cargo fmt --check; clippy -D warnings for each feature set
#      + the fuzz targets checked, unused dependencies (cargo-machete), licences, bans and
#        sources (cargo-deny)
#   3. cargo test for each feature set (default = cloud build; --no-default-features = Pi build)
#   4. cargo doc with warnings denied
#   5. checkov over infra/ (scripts/check-infra.sh)
#   6. the arm32v7 binary: built with Debian's toolchain, run under qemu-arm
#   7. the cloud binary: static x86_64 musl build (scripts/build-cloud.sh), packaged by the
#      azd hook, checked for dynamic dependencies, run in an empty chroot
# Set SKIP_ARMV7=1, SKIP_CLOUD_STATIC=1 or SKIP_INFRA=1 to leave a slow step out locally
# (CI never does).
set -euo pipefail   # pipefail: `cargo test | tee` fails when cargo test fails
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

step "Chromium (the status page is tested in a real headless browser)"
if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

step "mosquitto (the MQTT sink is tested against a real broker)"
if [ ! -x /usr/sbin/mosquitto ]; then
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
fi

step "libudev-dev (hidapi, for the busylight feature's clippy check)"
if ! pkg-config --exists libudev 2>/dev/null; then
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libudev-dev pkg-config >/dev/null
fi

step "Azurite"
if [ ! -x tests/azurite/node_modules/.bin/azurite-table ]; then
  npm ci --prefix tests/azurite --no-audit --no-fund --loglevel=error
fi

step "Python with cryptography (the tests' independent notification encryptor)"
if ! python3 -c "import cryptography" 2>/dev/null; then
  if [ ! -x .venv-test/bin/python3 ]; then
    python3 -m venv .venv-test
  fi
  .venv-test/bin/python3 -c "import cryptography" 2>/dev/null \
    || .venv-test/bin/pip install --quiet --disable-pip-version-check cryptography
  export PATH="$PWD/.venv-test/bin:$PATH"
fi

step "format"
cargo fmt --all --check

step "clippy (default features: cloud build)"
cargo clippy --locked --all-targets -- -D warnings
step "clippy (--no-default-features: Pi build)"
cargo clippy --locked --all-targets --no-default-features -- -D warnings
step "clippy (--features busylight: USB busylights through hidapi; check only)"
cargo clippy --locked --all-targets --features busylight -- -D warnings

step "fuzz targets, type-checked with the stable toolchain (cargo-fuzz itself needs nightly)"
# fuzz/ is its own workspace: sharing target/ reuses the dependencies checked above, and
# --no-default-features leaves out libFuzzer's C++, which a check does not link.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" \
  cargo clippy --locked --manifest-path fuzz/Cargo.toml --bins --no-default-features -- -D warnings

step "unused dependencies (cargo-machete); licences, bans and sources (cargo-deny, deny.toml)"
# Installed once into a cache outside the work tree, pinned; later runs only look for the file.
# Advisories are left out: they need the RustSec database, a git repository this machine
# cannot fetch.
tools="${XDG_CACHE_HOME:-$HOME/.cache}/teams-presence/cargo-tools"
tool() { # crate version: installs when missing, prints the binary's path
  local bin="$tools/$1-$2/bin/$1"
  [ -x "$bin" ] || cargo install --locked --quiet --root "$tools/$1-$2" "$1" --version "$2" >&2
  echo "$bin"
}
machete=$(tool cargo-machete 0.9.2)
deny=$(tool cargo-deny 0.20.2)
"$machete"
"$deny" --locked check --hide-inclusion-graph licenses bans sources

results=$(mktemp)
step "tests (default features)"
cargo test --locked 2>&1 | tee -a "$results"
step "tests (--no-default-features)"
cargo test --locked --no-default-features 2>&1 | tee -a "$results"

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps

if [ "${SKIP_INFRA:-0}" != 1 ]; then
  step "infra: checkov"
  bash scripts/check-infra.sh
fi

if [ "${SKIP_ARMV7:-0}" != 1 ]; then
  step "arm32v7 build"
  bin=$(bash scripts/build-armv7.sh)
  file "$bin"
  ls -l "$bin"
  step "arm32v7 smoke run under qemu-arm"
  qemu-arm "$bin" --help | head -3
  qemu-arm "$bin" --version
  if [ -f scripts/armv7-e2e.sh ]; then
    step "arm32v7 end to end under qemu-arm"
    bash scripts/armv7-e2e.sh "$bin"
  fi
fi

if [ "${SKIP_CLOUD_STATIC:-0}" != 1 ]; then
  step "cloud binary: static x86_64-unknown-linux-musl release build"
  if ! command -v musl-gcc >/dev/null 2>&1; then
    $SUDO apt-get update -qq || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
  fi
  bash scripts/build-cloud.sh >/dev/null
  step "cloud package (the azd hook) and its binary's dependencies"
  TP_SKIP_BUILD=1 sh infra/hooks/package-cloud.sh
  bash scripts/check-static.sh dist/cloud/teams-presence
  step "cloud package in an empty root (chroot)"
  bash scripts/cloud-chroot-smoke.sh dist/cloud/teams-presence
fi

step "all green"
# One closing line with every test counted (cargo prints one summary per test binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$results"
rm -f "$results"
