#!/usr/bin/env bash
# Checks a teams-presence .deb the way a user meets it, without touching this machine's
# system: its contents; `systemd-analyze verify` of both units (clean: no line at all);
# an install into a throwaway root (dpkg --root, maintainer scripts run chrootless with
# DPKG_ROOT: user, group, stat override); `teams-presence --version` run in that root
# (chroot); an upgrade to a newer version that keeps the edited settings and the state; and a
# purge that removes the state. The package's binary must be static and for this machine.
#
#   scripts/deb-smoke.sh dist/teams-presence_0.1.0_amd64.deb
#
# Exit status 0 on success, 1 with a reason on failure.
set -euo pipefail
PKG=$(realpath "${1:?usage: $0 path/to/teams-presence_VERSION_ARCH.deb}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "deb-smoke: FAIL: $*" >&2; exit 1; }
say() { echo "deb-smoke: $*"; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (Debian package systemd)"

say "contents (dpkg-deb -c)"
dpkg-deb -c "$PKG"

say "systemd-analyze verify of both units"
# The units, the binary they start and the system's own units (the targets they name) in one
# root, so nothing is looked up on this machine.
X="$WORK/extract"
dpkg-deb -x "$PKG" "$X"
cp -an /lib/systemd/system/. "$X/usr/lib/systemd/system/"
for unit in teams-presence.service teams-presence-subscribe.service; do
  out=$(cd "$X" && systemd-analyze verify --root="$X" "usr/lib/systemd/system/$unit" 2>&1) \
    || fail "systemd-analyze verify $unit: $out"
  [ -z "$out" ] || fail "systemd-analyze verify $unit is not clean: $out"
  echo "systemd-analyze verify $unit: clean"
done

R="$WORK/root"
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers"
touch "$R/var/lib/dpkg/status"
# The root holds only this package: its dependencies (ca-certificates, systemd | adduser)
# are this machine's business, not the test's.
dpkgr() { dpkg --root="$R" --force-script-chrootless --force-depends "$@"; }
installed() { dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Version} ${Status}' teams-presence; }

say "install into a throwaway root"
dpkgr -i "$PKG"
installed | grep -q " install ok installed$" || fail "not installed: $(installed)"
grep -q '^teams-presence:' "$R/etc/passwd" || fail "no teams-presence user"
gid=$(awk -F: '$1 == "teams-presence" { print $3 }' "$R/etc/group")
grep -q '^plugdev:.*teams-presence' "$R/etc/group" || fail "teams-presence is not in plugdev"
[ "$(stat -c '%a %u:%g' "$R/etc/teams-presence/teams-presence.toml")" = "640 0:$gid" ] \
  || fail "settings file is $(stat -c '%a %u:%g' "$R/etc/teams-presence/teams-presence.toml"), want 640 0:$gid"
say "teams-presence --version in the root (chroot)"
version=$(chroot "$R" /usr/bin/teams-presence --version) || fail "the binary does not run in the root"
echo "$version"

say "upgrade keeps settings and state"
uid=$(awk -F: '$1 == "teams-presence" { print $3 }' "$R/etc/passwd")
install -d -m 0700 -o "$uid" -g "$gid" "$R/var/lib/teams-presence"
echo '{"u-1":"00000000000000000042-000000"}' > "$R/var/lib/teams-presence/edge-state.json"
echo 'HUE_BRIDGE = "192.168.1.20"' >> "$R/etc/teams-presence/teams-presence.toml"
before=$(sha256sum < "$R/etc/teams-presence/teams-presence.toml")
# The same package as a newer version (what the next release is to dpkg).
N="$WORK/next"
dpkg-deb -R "$PKG" "$N"
old=$(sed -n 's/^Version: //p' "$N/DEBIAN/control")
sed -i "s/^Version: .*/Version: $old+smoke1/" "$N/DEBIAN/control"
# A changed shipped settings file too: dpkg must keep the admin's edited one (--force-confold
# answers the question a person would get).
echo '# a new comment in the next release' >> "$N/etc/teams-presence/teams-presence.toml"
dpkg-deb --root-owner-group -Zxz --build "$N" "$WORK/next.deb" >/dev/null
dpkgr --force-confold -i "$WORK/next.deb"
installed | grep -q "^$old+smoke1 install ok installed$" || fail "upgrade: $(installed)"
[ "$(sha256sum < "$R/etc/teams-presence/teams-presence.toml")" = "$before" ] || fail "the upgrade changed the edited settings"
[ -f "$R/etc/teams-presence/teams-presence.toml.dpkg-dist" ] || fail "the new shipped settings were not set aside as .dpkg-dist"
grep -q 00000000000000000042 "$R/var/lib/teams-presence/edge-state.json" || fail "the upgrade lost the state"
[ "$(stat -c '%a %g' "$R/etc/teams-presence/teams-presence.toml")" = "640 $gid" ] || fail "the upgrade lost the settings file's mode"
echo "settings (edited), state and mode kept across $old -> $old+smoke1"

say "purge removes the state"
dpkgr --purge teams-presence
[ ! -e "$R/var/lib/teams-presence" ] || fail "purge left /var/lib/teams-presence"
[ ! -e "$R/usr/bin/teams-presence" ] || fail "purge left the binary"
say "OK"
