#!/usr/bin/env bash
# The whole test suite, installing what it needs first. This is the README's test command
# and what CI runs (.ci/run). Steps:
#   0. Debian's chromium for the status-page browser test, Debian's mosquitto for the MQTT tests,
#      systemd (systemd-analyze) and python3-yaml for the packaging checks
#   1. Azurite (npm, pinned in tests/azurite/package-lock.json) for the Table Storage tests,
#      and Python's `cryptography` (in .venv-test when missing) for the notification tests
#   2. cargo fmt --check; clippy -D warnings for each feature set that ships (default; the Pi
#      builds' --no-default-features --features busylight) and the minimal one
#      (--no-default-features), which keeps the code without busylights compiling; the fuzz
#      targets checked, unused dependencies (cargo-machete), licences, bans and sources
#      (cargo-deny)
#   3. cargo test for default features and --no-default-features (together they cover the
#      Pi feature set: it is the minimal one plus busylights, which the default has)
#   4. cargo doc with warnings denied
#   5. checkov over infra/ (scripts/check-infra.sh)
#   6. the Pi binaries (arm32v7 and aarch64): built with Debian's toolchain, at most 10 MB,
#      run under qemu-arm / qemu-aarch64 (--version and the edge end to end)
#   6b. the amd64 .deb: built, its units through systemd-analyze verify, installed into a
#      throwaway root (dpkg --root), --version from there, upgraded, purged
#       (scripts/deb-smoke.sh); the Home Assistant add-on's config.yaml against the
#      Supervisor's rules (tests/addon); the default build links no libudev/libusb
#   7. the cloud binary: static x86_64 musl build (scripts/build-cloud.sh), packaged by the
#      azd hook, checked for dynamic dependencies, run in an empty chroot
# Set SKIP_ARMV7=1, SKIP_AARCH64=1, SKIP_DEB=1, SKIP_CLOUD_STATIC=1 or SKIP_INFRA=1 to leave a
# slow step out locally (CI never does).
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

step "systemd-analyze and PyYAML (the .deb's units, the Home Assistant add-on's config)"
if ! command -v systemd-analyze >/dev/null || ! /usr/bin/python3 -c "import yaml" 2>/dev/null; then
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd python3-yaml >/dev/null
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
step "clippy (--no-default-features --features busylight: the Pi builds' feature set)"
cargo clippy --locked --all-targets --no-default-features --features busylight -- -D warnings

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

step "the default build links no libudev or libusb (busylights over hidraw in Rust)"
if ldd target/debug/teams-presence | grep -E 'libudev|libusb'; then
  echo "the default build links a USB library" >&2
  exit 1
fi
ldd target/debug/teams-presence

step "Home Assistant add-on: config.yaml against the Supervisor's rules"
/usr/bin/python3 -m unittest discover -s tests/addon -v

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps

# The release builds below (three static Pi-profile builds with Debian's Rust, the cloud's
# musl build with rustup's) share one target directory kept between runs, outside the work
# tree like the tools above: their dependencies (OpenSSL compiled in, for four targets) are
# built once per Cargo.lock, and only this crate is compiled again. Cargo decides what is
# stale, as in target/. Emptied when it passes 30 GB. STATIC_TARGET_DIR moves it.
static_target="${STATIC_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teams-presence/target-static}"
if [ -d "$static_target" ] && [ "$(du -s -B1G "$static_target" | cut -f1)" -gt 30 ]; then
  echo "emptying $static_target (over 30 GB)"
  rm -rf "$static_target"
fi
mkdir -p "$static_target"

if [ "${SKIP_INFRA:-0}" != 1 ]; then
  step "infra: checkov"
  bash scripts/check-infra.sh
fi

if [ "${SKIP_ARMV7:-0}" != 1 ]; then
  step "arm32v7 build"
  bin=$(CARGO_TARGET_DIR="$static_target" bash scripts/build-armv7.sh)
  file "$bin"
  ls -l "$bin"
  [ "$(stat -c %s "$bin")" -le 10485760 ] || { echo "the armv7 binary is over 10 MB" >&2; exit 1; }
  step "arm32v7 smoke run under qemu-arm"
  qemu-arm "$bin" --help | head -3
  qemu-arm "$bin" --version
  if [ -f scripts/armv7-e2e.sh ]; then
    step "arm32v7 end to end under qemu-arm"
    bash scripts/armv7-e2e.sh "$bin"
  fi
fi

if [ "${SKIP_AARCH64:-0}" != 1 ]; then
  step "aarch64 build (64-bit Raspberry Pi OS)"
  bin64=$(CARGO_TARGET_DIR="$static_target" bash scripts/build-aarch64.sh)
  file "$bin64"
  ls -l "$bin64"
  [ "$(stat -c %s "$bin64")" -le 10485760 ] || { echo "the aarch64 binary is over 10 MB" >&2; exit 1; }
  step "aarch64 smoke run under qemu-aarch64"
  qemu-aarch64 "$bin64" --version
  step "aarch64 end to end under qemu-aarch64"
  RUNNER=qemu-aarch64 bash scripts/armv7-e2e.sh "$bin64"
fi

if [ "${SKIP_DEB:-0}" != 1 ]; then
  step "Debian package (amd64): static x86_64 build and dpkg-deb"
  deb=$(CARGO_TARGET_DIR="$static_target" bash scripts/package-deb.sh amd64)
  step "Debian package: systemd-analyze verify, throwaway-root install, --version, upgrade, purge"
  bash scripts/deb-smoke.sh "$deb"
fi

if [ "${SKIP_CLOUD_STATIC:-0}" != 1 ]; then
  step "cloud binary: static x86_64-unknown-linux-musl release build"
  if ! command -v musl-gcc >/dev/null 2>&1; then
    $SUDO apt-get update -qq || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
  fi
  CARGO_TARGET_DIR="$static_target" bash scripts/build-cloud.sh >/dev/null
  step "cloud package (the azd hook) and its binary's dependencies"
  CARGO_TARGET_DIR="$static_target" TP_SKIP_BUILD=1 sh infra/hooks/package-cloud.sh
  bash scripts/check-static.sh dist/cloud/teams-presence
  step "cloud package in an empty root (chroot)"
  bash scripts/cloud-chroot-smoke.sh dist/cloud/teams-presence
fi

step "all green"
# One closing line with every test counted (cargo prints one summary per test binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$results"
rm -f "$results"
