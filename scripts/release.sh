#!/usr/bin/env bash
# One command for a release: builds every artefact into dist/ and writes dist/SHA256SUMS.
#
#   scripts/release.sh            # version from Cargo.toml
#
# dist/ then holds (VERSION from Cargo.toml, or TP_VERSION):
#   teams-presence-VERSION-armv7-linux      static binary, 32-bit Raspberry Pi OS (armhf)
#   teams-presence-VERSION-aarch64-linux    static binary, 64-bit Raspberry Pi OS (arm64)
#   teams-presence-VERSION-x86_64-linux     static binary, amd64 Linux
#   teams-presence_VERSION_armhf.deb, _arm64.deb, _amd64.deb   Debian packages (systemd units)
#   teams-presence-home-assistant-VERSION.tar.gz   the Home Assistant add-on repository
#   home-assistant/                         the same, unpacked: publish it as a git repository
#   SHA256SUMS                              `sha256sum -c SHA256SUMS` checks the files above
#
# Every binary is the one scripts/build-static.sh builds (Debian's Rust 1.85, static glibc,
# the Pi feature set), so the same bytes are in the .deb, the add-on and the plain download.
# CI's tagged-release workflow (.github/workflows/release.yml) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
version=${TP_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
dist=${TP_DIST:-dist}
mkdir -p "$dist"
say() { printf 'release: %s (%ss)\n' "$*" "$(( $(date +%s) - start ))" >&2; }

declare -A TARGET=([armv7]=armv7-unknown-linux-gnueabihf [aarch64]=aarch64-unknown-linux-gnu [x86_64]=x86_64-unknown-linux-gnu)
declare -A DEB=([armv7]=armhf [aarch64]=arm64 [x86_64]=amd64)
declare -A HA=([armv7]=armv7 [aarch64]=aarch64 [x86_64]=amd64)
files=()

ha="$dist/home-assistant"
rm -rf "$ha"
cp -r deploy/home-assistant "$ha"
sed -i "s/^version: .*/version: \"$version\"/" "$ha/teams-presence/config.yaml"
mkdir -p "$ha/teams-presence/bin"

for arch in armv7 aarch64 x86_64; do
  say "building the $arch binary"
  bin=$(bash scripts/build-static.sh "${TARGET[$arch]}")
  out="$dist/teams-presence-$version-$arch-linux"
  install -m 0755 "$bin" "$out"
  files+=("$(basename "$out")")
  install -m 0755 "$bin" "$ha/teams-presence/bin/teams-presence-${HA[$arch]}"
  say "packaging the ${DEB[$arch]} .deb"
  deb=$(TP_BINARY="$bin" TP_DEB_VERSION="$version" TP_DIST="$dist" bash scripts/package-deb.sh "${DEB[$arch]}")
  files+=("$(basename "$deb")")
done

say "the Home Assistant add-on repository"
tarball="teams-presence-home-assistant-$version.tar.gz"
tar -C "$dist" --owner=0 --group=0 --sort=name -czf "$dist/$tarball" home-assistant
files+=("$tarball")

(cd "$dist" && sha256sum "${files[@]}" > SHA256SUMS)
say "done: $dist/SHA256SUMS"
cat "$dist/SHA256SUMS"
