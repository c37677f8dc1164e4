#!/usr/bin/env bash
# Runs the cloud binary in an empty root: a chroot holding only what the Functions
# package holds (host.json, the function folders, teams-presence), with no shared
# libraries at all. Proves the binary needs nothing from the image it lands on.
#
#   1. `teams-presence --help` in the bare root;
#   2. `teams-presence handler` in the bare root answers the host's readiness probe
#      (GET / on FUNCTIONS_CUSTOMHANDLER_PORT; the chroot shares this machine's network,
#      so curl probes it from outside) and a forwarded GET /api/health;
#   3. names and TLS: the root gets an /etc/hosts naming tp-smoke.test and a CA bundle at
#      /etc/ssl/certs/ca-certificates.crt holding a test CA made here; `doctor` is pointed
#      at https://tp-smoke.test:PORT (a loopback TLS server whose certificate that CA
#      signed) and must report Microsoft Graph reachable: the name resolved through
#      /etc/hosts (no NSS modules, no resolver library) and the certificate verified
#      against the bundle named by SSL_CERT_FILE, as the Function App's settings set it,
#      and also without that setting; controls: a bundle without the test CA and a name
#      missing from /etc/hosts must both fail.
#
# Usage: scripts/cloud-chroot-smoke.sh BINARY     (as root: chroot needs it)
# Needs: chroot, curl, openssl, python3. Talks to 127.0.0.1 only.
set -euo pipefail
bin=$(realpath "${1:?usage: scripts/cloud-chroot-smoke.sh BINARY}")
say() { echo "chroot-smoke: $*"; }
die() { echo "chroot-smoke: FAILED: $*" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || die "chroot needs root: run it with sudo"
for tool in chroot curl openssl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool"
done

chroot_bin=$(command -v chroot)   # env -i clears PATH: call it by its full path
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The package exactly as infra/hooks/package-cloud.sh makes it, as the root of the chroot.
"$bin" package cloud --out "$root" --binary "$bin" >/dev/null
say "root holds only the package:"
(cd "$root" && find . -mindepth 1 | sort | sed 's/^/  /')

say "1. --help in the empty root"
env -i "$chroot_bin" "$root" /teams-presence --help | head -n 3

say "2. handler in the empty root"
port=$(free_port)
env -i FUNCTIONS_CUSTOMHANDLER_PORT="$port" STORE=sqlite RUST_LOG=warn \
    "$chroot_bin" "$root" /teams-presence handler >"$work/handler.log" 2>&1 &
pids+=($!)
ok=0
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then ok=1; break; fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.2
done
[[ "$ok" == 1 ]] || { cat "$work/handler.log" >&2; die "handler did not answer GET / on 127.0.0.1:$port"; }
say "   GET / -> HTTP $(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")"
health=$(curl -fsS "http://127.0.0.1:$port/api/health") || die "GET /api/health failed"
say "   GET /api/health -> $health"

say "3. a name from /etc/hosts and TLS against the root's CA bundle"
mkdir -p "$root/etc/ssl/certs" "$root/data"
printf '127.0.0.1\tlocalhost tp-smoke.test\n' >"$root/etc/hosts"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=teams-presence smoke CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=tp-smoke.test" \
    -keyout "$work/srv.key" -out "$work/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:tp-smoke.test\n' >"$work/ext"
openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 1 -extfile "$work/ext" -out "$work/srv.pem" 2>/dev/null
cp "$work/ca.pem" "$root/etc/ssl/certs/ca-certificates.crt"
tls_port=$(free_port)
python3 - "$tls_port" "$work/srv.pem" "$work/srv.key" "$work/requests.log" <<'PY' &
import http.server, ssl, sys
port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(f"{self.command} {self.path} Host={self.headers.get('Host')}\n")
        self.send_response(401)  # what Graph says without a token
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
pids+=($!)
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null && break
    sleep 0.1
done
doctor() {
    env -i "$@" AZURE_CLIENT_ID=00000000-0000-0000-0000-000000000001 AZURE_TENANT_ID=organizations \
        AZURE_AUTHORITY_HOST="https://tp-smoke.test:$tls_port" GRAPH_ENDPOINT="https://tp-smoke.test:$tls_port" \
        STORE=sqlite "$chroot_bin" "$root" /teams-presence doctor --data-dir /data 2>&1 || true
}
out=$(doctor SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
graph=$(grep -E '^(ok|FAIL|warn) +Microsoft Graph' <<<"$out" || true)
say "   with SSL_CERT_FILE (as the Function App sets it): $graph"
[[ "$graph" == ok* ]] || { printf '%s\n' "$out" >&2; die "doctor could not reach https://tp-smoke.test:$tls_port"; }
grep -q "Host=tp-smoke.test:$tls_port" "$work/requests.log" || die "the TLS server saw no request for tp-smoke.test"
say "   the loopback TLS server saw: $(grep -m1 presence "$work/requests.log")"
# Without SSL_CERT_FILE: native-tls probes the usual bundle locations itself
# (openssl-probe), so the binary finds the image's bundle even where the setting is absent.
plain=$(doctor | grep -E '^(ok|FAIL|warn) +Microsoft Graph' || true)
say "   without SSL_CERT_FILE (the binary finds /etc/ssl/certs itself): $plain"
[[ "$plain" == ok* ]] || die "without SSL_CERT_FILE the binary did not find the root's CA bundle"
# Controls: verification is real (another CA in the bundle fails) and names come from
# /etc/hosts (a name not in it fails).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=some other CA" \
    -keyout "$work/other.key" -out "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null
wrong=$(doctor SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt | grep -E '^(ok|FAIL|warn) +Microsoft Graph' || true)
say "   control, CA bundle without the server's CA: $wrong"
[[ "$wrong" == FAIL* ]] || die "the TLS certificate was accepted without its CA in the bundle"
cp "$work/ca.pem" "$root/etc/ssl/certs/ca-certificates.crt"
printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
gone=$(doctor | grep -E '^(ok|FAIL|warn) +Microsoft Graph' || true)
say "   control, tp-smoke.test not in /etc/hosts: $gone"
[[ "$gone" == FAIL* ]] || die "tp-smoke.test resolved without an /etc/hosts entry"
say "OK: --help, readiness probe, /api/health, a name from /etc/hosts and verified TLS in an empty root"
