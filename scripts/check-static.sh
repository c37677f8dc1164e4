#!/usr/bin/env bash
# Fails unless BINARY is a statically linked ELF executable: no program interpreter
# (PT_INTERP), no NEEDED shared libraries in its dynamic section, and `file` saying
# "statically linked" or "static-pie linked". The cloud package ships such a binary
# (scripts/build-cloud.sh) so it runs on any Functions Linux image.
#
# Usage: scripts/check-static.sh BINARY
set -euo pipefail
bin=${1:?usage: scripts/check-static.sh BINARY}
die() { echo "check-static: $bin: $*" >&2; exit 1; }

[[ -f "$bin" ]] || die "no such file"
for tool in file readelf; do
    command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' (Debian: apt-get install file binutils)"
done

desc=$(file -b "$bin")
case "$desc" in
    ELF*) ;;
    *) die "not an ELF executable: $desc" ;;
esac

needed=$(readelf -d "$bin" 2>/dev/null | grep '(NEEDED)' || true)
interp=$(readelf -l "$bin" 2>/dev/null | grep -i 'Requesting program interpreter' || true)
fail=0
if [[ -n "$needed" ]]; then
    echo "check-static: $bin needs shared libraries:" >&2
    printf '  %s\n' "$needed" >&2
    fail=1
fi
if [[ -n "$interp" ]]; then
    echo "check-static: $bin has a dynamic loader:$(sed 's/.*interpreter: / /; s/]$//' <<<"$interp")" >&2
    fail=1
fi
case "$desc" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) echo "check-static: file(1) does not call it static: $desc" >&2; fail=1 ;;
esac
[[ "$fail" == 0 ]] || die "dynamically linked: it would depend on the host's libraries"

echo "check-static: OK: $bin: no NEEDED libraries, no interpreter; $(cut -d, -f1-2 <<<"$desc"),$(grep -o ' static[^,]*linked' <<<"$desc")"
