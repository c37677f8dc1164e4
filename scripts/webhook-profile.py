#!/usr/bin/env python3
"""Where a webhook notification's CPU time goes, from `perf script` call chains.

    webhook-profile.py NOTIFICATIONS FREQUENCY_HZ SCRIPT_OUTPUT [SCRIPT_OUTPUT...]

Each input is `perf script -F comm,ip,sym,dso` of a `perf record --call-graph dwarf` run
(scripts/webhook-profile.sh makes them). A sample goes to the first part named below that
its call chain passes through, walking from the sampled function towards the root, so a
sample in SQLite under the webhook counts as the store, and one in `malloc` under JSON
parsing as the parsing. It prints microseconds per notification for each part, split by
whether the sample was taken in the kernel ([k]) or in user space ([u]), one column per
input.
"""
import collections
import re
import sys

PARTS = [
    ("RSA operation (dataKey unwrap)", r"unwrap_oaep_sha1"),
    ("AES-CBC and HMAC", r"verify_and_decrypt"),
    ("base64 and the rest of decryption", r"decrypt_content"),
    ("decrypted JSON", r"parse_presence"),
    ("digest of the item", r"item_digest"),
    ("subscription and clientState check", r"check_subscription"),
    ("validation tokens", r"validation_token"),
    ("request JSON", r"parse_batch"),
    ("Functions host envelope", r"host::envelope"),
    ("Functions handler", r"host::handler|host::functions"),
    ("store", r"teams_presence::store|sqlite3|rusqlite"),
    ("record, decide", r"engine::pipeline"),
    ("publish, sinks", r"engine::publish|serve::sinks|engine::sinks"),
    ("log lines", r"tracing|logging"),
    ("webhook, the rest", r"http::webhook|notification::open"),
    ("HTTP (hyper, axum)", r"hyper|axum|tower"),
    ("runtime, sockets (tokio)", r"tokio::"),
]
COMPILED = [(name, re.compile(pat)) for name, pat in PARTS]
FRAME = re.compile(r"\s*[0-9a-f]+ (.*?)(?: \(([^()]*)\))?\s*$")


def samples(path):
    chain = None
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if chain is not None:
                    yield chain
                chain = None
            elif not line.startswith("\t"):
                chain = []
            elif chain is not None:
                m = FRAME.match(line)
                if m:
                    chain.append((m.group(1), m.group(2) or ""))
    if chain:
        yield chain


def part(chain):
    for sym, _ in chain:
        for name, pat in COMPILED:
            if pat.search(sym):
                return name
    return "elsewhere"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    notifications, hz = float(sys.argv[1]), float(sys.argv[2])
    per = 1e6 / hz / notifications
    columns = []
    for path in sys.argv[3:]:
        counts, total = collections.Counter(), 0
        for chain in samples(path):
            kernel = bool(chain) and "kallsyms" in chain[0][1]
            counts[(part(chain), "k" if kernel else "u")] += 1
            total += 1
        columns.append((path, counts, total))
    first = columns[0][1]
    rows = sorted({k for _, c, _ in columns for k in c}, key=lambda k: -first.get(k, 0))
    print("| part | " + " | ".join(p.rsplit("/", 1)[-1] for p, _, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for k in rows:
        cells = " | ".join("%.1f" % (c.get(k, 0) * per) for _, c, _ in columns)
        print("| %s [%s] | %s |" % (k[0], k[1], cells))
    print("| **total, µs per notification** | " + " | ".join("**%.1f**" % (t * per) for _, _, t in columns) + " |")


if __name__ == "__main__":
    main()
