#!/usr/bin/env bash
# Builds the Debian package teams-presence_VERSION_ARCH.deb with plain dpkg-deb (no cargo-deb
# to compile on every clean CI run) and prints its path. ARCH: amd64, arm64 (64-bit Raspberry
# Pi OS) or armhf (32-bit). The binary is the static one of scripts/build-static.sh (the Pi
# feature set), so the package needs no library; its files come from deploy/debian/.
#
#   scripts/package-deb.sh amd64
#   TP_BINARY=path/to/teams-presence scripts/package-deb.sh arm64   # package a built binary
#
# Env: TP_BINARY (skip the build), TP_DEB_VERSION (default: Cargo.toml's version),
# TP_DIST (output folder, default dist/).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:?usage: $0 amd64|arm64|armhf}
case "$ARCH" in
  amd64) target=x86_64-unknown-linux-gnu ;;
  arm64) target=aarch64-unknown-linux-gnu ;;
  armhf) target=armv7-unknown-linux-gnueabihf ;;
  *) echo "package-deb: unknown architecture $ARCH (amd64, arm64 or armhf)" >&2; exit 2 ;;
esac
bin=${TP_BINARY:-$(bash scripts/build-static.sh "$target")}
[ -x "$bin" ] || { echo "package-deb: $bin is not an executable" >&2; exit 1; }
version=${TP_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
dist=${TP_DIST:-dist}
mkdir -p "$dist"
out="$dist/teams-presence_${version}_${ARCH}.deb"

root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
d=deploy/debian
install -D -m 0755 "$bin" "$root/usr/bin/teams-presence"
install -D -m 0644 "$d/teams-presence.service" "$root/usr/lib/systemd/system/teams-presence.service"
install -D -m 0644 "$d/teams-presence-subscribe.service" "$root/usr/lib/systemd/system/teams-presence-subscribe.service"
install -D -m 0644 "$d/teams-presence.sysusers" "$root/usr/lib/sysusers.d/teams-presence.conf"
install -D -m 0644 deploy/udev/60-teams-presence-busylight.rules "$root/usr/lib/udev/rules.d/60-teams-presence-busylight.rules"
# 0640 from the start; postinst adds the group through a stat override.
install -D -m 0640 "$d/teams-presence.toml" "$root/etc/teams-presence/teams-presence.toml"
install -D -m 0644 "$d/teams-presence.default" "$root/etc/default/teams-presence"
install -D -m 0644 "$d/README.Debian" "$root/usr/share/doc/teams-presence/README.Debian"
install -D -m 0644 "$d/copyright" "$root/usr/share/doc/teams-presence/copyright"

mkdir -p "$root/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "$d/$s" "$root/DEBIAN/$s"; done
printf '%s\n' /etc/teams-presence/teams-presence.toml /etc/default/teams-presence > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: teams-presence
Version: $version
Architecture: $ARCH
Maintainer: teams-presence maintainers <maintainers@teams-presence.invalid>
Installed-Size: $size
Depends: ca-certificates, systemd | adduser
Section: net
Priority: optional
Description: Microsoft Teams presence on Hue lights, MQTT, WLED and USB busylights
 One static binary: the all-in-one server with its status page and sign-in
 (teams-presence.service), and the edge subscriber of a cloud deployment
 (teams-presence-subscribe.service). Settings in /etc/teams-presence/teams-presence.toml,
 state in /var/lib/teams-presence.
CONTROL
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >&2
echo "$out"
