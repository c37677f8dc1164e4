#!/usr/bin/env bash
# Compares scripts/azd_parameters.py's port of github.com/drone/envsubst v1.0.3 (what azd
# substitutes ${VAR} with in infra/main.parameters.json) with the library itself, on the
# hand-written cases below and 20,000 random strings. Not part of CI: it needs Go and the
# library, from Debian's packages (no Go module download):
#   sudo apt-get install golang-go golang-github-drone-envsubst-dev
# Usage: scripts/check-envsubst-port.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lib=/usr/share/gocode/src/github.com/drone/envsubst
command -v go >/dev/null || { echo "check-envsubst-port: go is required (golang-go)" >&2; exit 1; }
[ -d "$lib" ] || { echo "check-envsubst-port: $lib missing (golang-github-drone-envsubst-dev)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/main.go" <<'GO'
package main

import (
	"bufio"
	"encoding/json"
	"os"

	"github.com/drone/envsubst"
)

// One JSON string per input line; prints [result, error, whether an unset variable was named].
func main() {
	env := map[string]string{"A": "alpha", "B": "", "EDGES": "[{\"name\":\"x\"}]", "N": "12345"}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var in string
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			panic(err)
		}
		unset := false
		res, err := envsubst.Eval(in, func(name string) string {
			v, ok := env[name]
			if !ok {
				unset = true
			}
			return v
		})
		e := ""
		if err != nil {
			e = err.Error()
		}
		out.Encode([]interface{}{res, e, unset})
	}
}
GO
(cd "$work" && GO111MODULE=off GOPATH=/usr/share/gocode go build -o envsubst-ref main.go)
python3 - "$work/envsubst-ref" "$root/scripts" <<'PY'
import json, random, subprocess, sys
sys.path.insert(0, sys.argv[2])
import azd_parameters as ap
env = {"A": "alpha", "B": "", "EDGES": '[{"name":"x"}]', "N": "12345"}
cases = [
    "${A}", "${X}", "${X=[]}", '"${TEAMS_PRESENCE_EDGES=[]}"', "${X:=d}", "${X:-d}", "${B:-d}",
    "${B=d}", "${A:+w}", "${X-d}", "${X+d}", "${X:?e}", "$$", "$${A}", "\\\\", "\\/", "a\\b",
    "${A,}", "${A^^}", "${#A}", "${A:1}", "${A:1:2}", "${A:-1}", "${N:2:10}", "${X=${A}}",
    "${X=a${A}b}", "${", "${A", "${}", "}", '{"value":"${A}","reference":null}',
    '{"value":"${X=User}","reference":null}', "$A", "x$", "${A }", "${1A}", "${X=}", "${X=}}",
    "${X={}}", "${EDGES}", "ééé${A}ü", "${A=}", '{"value":"${TEAMS_PRESENCE_EDGE_PLAN}"}',
]
alphabet = list('${}=:-?+,^AXB_1[]"\\/ aé#%')
random.seed(27)
cases += ["".join(random.choice(alphabet) for _ in range(random.randint(0, 14))) for _ in range(20000)]
ref = subprocess.run([sys.argv[1]], input="\n".join(json.dumps(c) for c in cases) + "\n",
                     capture_output=True, text=True, check=True).stdout.splitlines()
same, refused, bad = 0, 0, []
for c, line in zip(cases, ref):
    want = json.loads(line)
    flags = {"unset": False}
    def mapping(v):
        if v not in env:
            flags["unset"] = True
            return ""
        return env[v]
    try:
        got, err = ap.envsubst(c, mapping)
    except ap.NotMirrored:
        refused += 1
        continue
    if [got, err or "", flags["unset"]] == want:
        same += 1
    else:
        bad.append((c, want, [got, err, flags["unset"]]))
print(f"check-envsubst-port: {len(cases)} inputs: {same} identical to drone/envsubst v1.0.3, "
      f"{refused} refused by the port (pattern functions), {len(bad)} different")
for b in bad[:20]:
    print("  differs:", repr(b))
sys.exit(1 if bad else 0)
PY
