#!/usr/bin/env python3
"""The per-edge Service Bus plan: TEAMS_PRESENCE_EDGES checked and turned into topic rules.

The one place the per-edge filters are written. infra/hooks/preprovision.sh runs it and
stores its output in the azd environment as TEAMS_PRESENCE_EDGE_PLAN, which
infra/main.parameters.json hands to the deployment as the `edgePlan` parameter; Bicep only
loops over what it gets (infra/modules/servicebus.bicep). The tests run this same file
(tests/integration/infra_hooks.rs), so what they check is what gets deployed.

Input (TEAMS_PRESENCE_EDGES, JSON):
    [{"name": "pi-home", "users": ["<Entra object id>", ...]}, ...]   users ["*"]: everyone

Output (stdout, JSON):
    {"edges": [{"name": "pi-home", "existing": false}, ...],
     "rules": [{"edgeIndex": 0, "edge": "pi-home", "name": "users-01",
                "sqlExpression": "userId IN ('...', ...)"}, ...]}

Why several rules: a SQL filter's condition is at most 1,024 characters, and a topic holds at
most 2,000 SQL filters (Service Bus quotas, MicrosoftDocs/azure-docs
articles/service-bus-messaging/includes/common-limits.md, "Size of SQL filters or actions"
and "Number of SQL filters per topic"). `userId IN ('<36-character id>', ...)` passes 1,024
at the 26th id, so the ids are packed into as many rules as they need (25 per rule); a
message matching any rule of a subscription is delivered to it. Each edge's `$Default` rule
becomes a FalseFilter (`1=0`, written by Bicep), so only these rules let anything through.

Checked (each problem names the edge; all are reported, nothing is written):
- the value is a JSON array of objects with `name` and `users` and nothing else;
- `name`: 1 to 50 characters (a subscription's name limit; the queue is `edge-<name>`),
  letters, digits, `.`, `-`, `_`, starting and ending with a letter or digit, unique without
  regard to case (Service Bus names are case-insensitive);
- `users`: an array of Entra object ids (GUIDs, so nothing in them can end the SQL string)
  or exactly `["*"]`;
- the whole plan fits the topic's 2,000 SQL filters.

`existing` comes from --existing (the subscription names az lists for the topic): only an
edge whose subscription is listed there is treated as existing; Bicep creates every other one
without forwarding first, so it cannot pass anything on before its rules are in place.

Usage: edge_plan.py [--existing NAMES]   (NAMES: one per line; TEAMS_PRESENCE_EDGES from the
environment, unset or empty = no edges). Exit 2 with the problems on stderr.
"""

import json
import os
import re
import sys

MAX_FILTER = 1024          # characters of a SQL filter's condition
MAX_SQL_FILTERS = 2000     # per topic (every $Default FalseFilter counts too)
MAX_NAME = 50              # a subscription's (and a rule's) name
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PREFIX, SEP, SUFFIX = "userId IN (", ", ", ")"


def rules_for(users):
    """The SQL conditions for one edge's users: `1=1` for everyone, else the ids packed into
    `userId IN (...)` conditions of at most MAX_FILTER characters each."""
    if users == ["*"]:
        return ["1=1"]
    out, current = [], []
    for uid in users:
        item = "'" + uid + "'"
        candidate = PREFIX + SEP.join(current + [item]) + SUFFIX
        if current and len(candidate) > MAX_FILTER:
            out.append(PREFIX + SEP.join(current) + SUFFIX)
            current = [item]
        else:
            current.append(item)
    if current:
        out.append(PREFIX + SEP.join(current) + SUFFIX)
    return out


def plan(edges_json, existing=()):
    """(plan, problems). `plan` is None when there is any problem."""
    problems = []
    text = (edges_json or "").strip()
    if not text:
        return {"edges": [], "rules": []}, []
    try:
        edges = json.loads(text)
    except ValueError as e:
        return None, [f"TEAMS_PRESENCE_EDGES is not valid JSON ({e}); expected "
                      '[{"name": "pi-home", "users": ["<object id>"]}, ...]']
    if not isinstance(edges, list):
        return None, ["TEAMS_PRESENCE_EDGES must be a JSON array of edges, "
                      '[{"name": "pi-home", "users": ["<object id>"]}, ...]']
    existing_lower = {n.strip().lower() for n in existing if n.strip()}
    seen = {}
    out_edges, out_rules = [], []
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            problems.append(f"edges[{i}]: must be an object with name and users")
            continue
        name = edge.get("name")
        label = f"edges[{i}] ({json.dumps(name)[:60]})" if name is not None else f"edges[{i}]"
        for key in edge:
            if key not in ("name", "users"):
                problems.append(f"{label}: unknown key {json.dumps(key)[:60]} (an edge has name and users)")
        if not isinstance(name, str) or not name:
            problems.append(f"{label}: name must be a non-empty string")
            name = None
        elif len(name) > MAX_NAME:
            problems.append(f"{label}: name is {len(name)} characters; Service Bus allows "
                            f"{MAX_NAME} in a subscription's name")
        elif not NAME.match(name):
            problems.append(f"{label}: name may hold letters, digits, '.', '-' and '_', and must "
                            "start and end with a letter or digit")
        elif name.lower() in seen:
            problems.append(f"{label}: name is already used by edges[{seen[name.lower()]}] "
                            "(Service Bus names ignore case)")
        else:
            seen[name.lower()] = i
        users = edge.get("users")
        ids = []
        if not isinstance(users, list):
            problems.append(f"{label}: users must be an array of Entra object ids, or [\"*\"] "
                            "for everyone")
        elif users == ["*"]:
            ids = ["*"]
        else:
            for j, uid in enumerate(users):
                if uid == "*":
                    problems.append(f"{label}: users[{j}] is \"*\", which means everyone and "
                                    "stands alone: [\"*\"]")
                elif not isinstance(uid, str) or not GUID.match(uid.strip()):
                    shown = json.dumps(uid)[:60]
                    problems.append(f"{label}: users[{j}] {shown} is not an Entra object id "
                                    "(a GUID such as 11111111-2222-3333-4444-555555555555)")
                else:
                    # Entra object ids are lower case in tokens and in Graph, and so in the
                    # messages' userId; SQL string comparison is exact.
                    uid = uid.strip().lower()
                    if uid not in ids:
                        ids.append(uid)
        if name is None or any(p.startswith(label + ":") for p in problems):
            continue
        index = len(out_edges)
        out_edges.append({"name": name, "existing": name.lower() in existing_lower})
        conditions = rules_for(ids) if ids else []
        for k, sql in enumerate(conditions, 1):
            out_rules.append({
                "edgeIndex": index,
                "edge": name,
                "name": "all-users" if ids == ["*"] else f"users-{k:02d}",
                "sqlExpression": sql,
            })
    total = len(out_rules) + len(out_edges)
    if not problems and total > MAX_SQL_FILTERS:
        problems.append(f"the edges need {total} SQL filters (their rules and one $Default each); "
                        f"a Service Bus topic holds {MAX_SQL_FILTERS}")
    if problems:
        return None, problems
    return {"edges": out_edges, "rules": out_rules}, []


def main(argv):
    existing = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--existing" and args:
            existing = args.pop(0).splitlines()
        else:
            print(f"usage: {os.path.basename(sys.argv[0])} [--existing NAMES]", file=sys.stderr)
            return 2
    result, problems = plan(os.environ.get("TEAMS_PRESENCE_EDGES", ""), existing)
    if problems:
        for p in problems:
            print(f"edge-plan: {p}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
