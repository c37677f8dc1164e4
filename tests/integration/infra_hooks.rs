//! The azd hooks and the per-edge rule plan (issue 27), run here as azd runs them, with stub
//! `az` and `azd` executables on PATH that record every call and answer as scripted: Key
//! Vault's not-found, throttling, a network error, a refusal, a soft-deleted secret.
//!
//! The stubs' error texts are modelled on what the Azure CLI prints: `ERROR: (<code>)
//! <message>` on stderr, exit code 3 for a 404 and 1 for every other failure
//! (Azure/azure-cli, src/azure-cli-core/azure/cli/core/util.py, `handle_exception` and
//! `get_error_type_by_status_code`); Key Vault's codes SecretNotFound, CertificateNotFound,
//! Forbidden with inner ForbiddenByRbac, Conflict with ObjectIsDeletedButRecoverable and
//! Throttled (429) (learn.microsoft.com/azure/key-vault/general/common-error-codes and
//! .../overview-throttling); azure-core's connection error text for an unreachable host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::{json, Value};

const DEPLOYER: &str = "7d2c1b9e-0000-4000-8000-00000000d3a1";
const SOMEONE_ELSE: &str = "0b5e2f11-0000-4000-8000-0000000000e1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `python3 infra/hooks/edge_plan.py` with TEAMS_PRESENCE_EDGES = `edges`.
fn edge_plan(edges: &str, existing: &str) -> Output {
    Command::new("python3")
        .arg(repo().join("infra/hooks/edge_plan.py"))
        .args(["--existing", existing])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TEAMS_PRESENCE_EDGES", edges)
        .output()
        .expect("python3 runs")
}

fn guids(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("{i:08x}-aaaa-4bbb-8ccc-{:012X}", i * 7919))
        .collect()
}

#[test]
fn edge_rules_for_1_25_26_and_300_users_stay_within_1024_characters_and_cover_every_user() {
    for (n, want_rules) in [(1, 1), (25, 1), (26, 2), (300, 12)] {
        let users = guids(n);
        let edges = json!([{"name": "pi-home", "users": users}]).to_string();
        let out = edge_plan(&edges, "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rules = plan["rules"].as_array().unwrap();
        assert_eq!(rules.len(), want_rules, "{n} users");
        let mut seen = Vec::new();
        let mut lengths = Vec::new();
        for (k, r) in rules.iter().enumerate() {
            let sql = r["sqlExpression"].as_str().unwrap();
            assert!(
                sql.len() <= 1024,
                "{n} users, rule {k}: {} characters",
                sql.len()
            );
            let ids = ids_of(sql).unwrap_or_else(|| panic!("not userId IN ('<id>', ...): {sql}"));
            assert_eq!(r["name"], format!("users-{:02}", k + 1));
            assert_eq!(r["edge"], "pi-home");
            assert_eq!(r["edgeIndex"], 0);
            lengths.push(sql.len());
            seen.extend(ids);
        }
        // Every user once, in order, lower case (the messages' userId is Entra's lower-case oid).
        let want: Vec<String> = users.iter().map(|u| u.to_lowercase()).collect();
        assert_eq!(seen, want, "{n} users");
        eprintln!(
            "{n:>3} users -> {} rule(s), lengths {lengths:?} (limit 1024)",
            rules.len()
        );
    }
    // Everyone: one 1=1 rule.
    let out = edge_plan(r#"[{"name":"lobby","users":["*"]}]"#, "");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["rules"],
        json!([{"edgeIndex": 0, "edge": "lobby", "name": "all-users", "sqlExpression": "1=1"}])
    );
}

/// The ids of `userId IN ('<id>', '<id>', ...)`, or `None` for anything else.
fn ids_of(sql: &str) -> Option<Vec<String>> {
    let inner = sql.strip_prefix("userId IN (")?.strip_suffix(')')?;
    inner
        .split(", ")
        .map(|item| {
            let id = item.strip_prefix('\'')?.strip_suffix('\'')?;
            (id.len() == 36
                && id
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == '-'))
            .then(|| id.to_owned())
        })
        .collect()
}

/// `(object, field)` of every `edge.<field>` and `rule.<field>` in `text`.
fn field_references(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for obj in ["edge", "rule"] {
        let pat = format!("{obj}.");
        for (at, _) in text.match_indices(&pat) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            let field: String = text[at + pat.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if !field.is_empty() {
                out.push((obj.to_owned(), field));
            }
        }
    }
    out
}

#[test]
fn bad_edges_are_refused_with_lines_naming_the_edge_and_no_plan() {
    let long = "e".repeat(51);
    let cases: Vec<(String, &str)> = vec![
        (r#"{"name":"pi"}"#.into(), "TEAMS_PRESENCE_EDGES must be a JSON array"),
        ("[{name: pi}]".into(), "TEAMS_PRESENCE_EDGES is not valid JSON"),
        (
            format!(r#"[{{"name":"{long}","users":[]}}]"#),
            "edges[0] (\"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"): name is 51 characters; Service Bus allows 50",
        ),
        (
            r#"[{"name":"pi home","users":[]}]"#.into(),
            "edges[0] (\"pi home\"): name may hold letters, digits",
        ),
        (
            r#"[{"name":"pi","users":"11111111-2222-3333-4444-555555555555"}]"#.into(),
            "edges[0] (\"pi\"): users must be an array",
        ),
        (
            r#"[{"name":"ok","users":[]},{"name":"pi","users":["x') OR 1=1 OR userId IN ('y"]}]"#.into(),
            "edges[1] (\"pi\"): users[0] \"x') OR 1=1 OR userId IN ('y\" is not an Entra object id",
        ),
        (
            r#"[{"name":"pi","users":["*","11111111-2222-3333-4444-555555555555"]}]"#.into(),
            "edges[0] (\"pi\"): users[0] is \"*\", which means everyone and stands alone",
        ),
        (
            r#"[{"name":"pi","users":[]},{"name":"PI","users":[]}]"#.into(),
            "edges[1] (\"PI\"): name is already used by edges[0]",
        ),
        (
            r#"[{"name":"pi","user":[]}]"#.into(),
            "edges[0] (\"pi\"): unknown key \"user\"",
        ),
    ];
    for (edges, want) in cases {
        let out = edge_plan(&edges, "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{edges}: {err}");
        assert!(out.stdout.is_empty(), "no plan: {edges}");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("edge-plan: {want}"))),
            "{edges}:\n{err}"
        );
        eprint!("{err}");
    }
}

#[test]
fn only_edges_whose_subscription_is_listed_count_as_existing() {
    let out = edge_plan(
        r#"[{"name":"pi-home","users":["*"]},{"name":"pi-office","users":[]}]"#,
        "PI-HOME\nsomething-else\n",
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["edges"],
        json!([{"name": "pi-home", "existing": true}, {"name": "pi-office", "existing": false}])
    );
    // No users: no rule at all, so only the FalseFilter $Default; nothing reaches the queue.
    assert_eq!(plan["rules"].as_array().unwrap().len(), 1);
}

#[test]
fn the_bicep_reads_only_fields_the_plan_has() {
    let bicep = std::fs::read_to_string(repo().join("infra/modules/servicebus.bicep")).unwrap();
    let out = edge_plan(
        r#"[{"name":"pi","users":["11111111-2222-3333-4444-555555555555"]}]"#,
        "",
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for (kind, field) in field_references(&bicep) {
        let obj = if kind == "edge" {
            &plan["edges"][0]
        } else {
            &plan["rules"][0]
        };
        assert!(
            obj.get(&field).is_some(),
            "{kind}.{field} is not in the plan: {obj}"
        );
        checked += 1;
    }
    assert!(checked >= 6, "{checked}");
    for key in ["edgePlan.edges", "edgePlan.rules"] {
        assert!(bicep.contains(key), "{key}");
    }
}

/// A temporary directory with stub `az` and `azd` on PATH; each answer is a file.
struct Stubs {
    dir: tempfile::TempDir,
}

const AZ_STUB: &str = r#"#!/bin/sh
# Stub Azure CLI: records the call, answers as $STUB/<key> says (default: ok).
printf '%s\n' "$*" >>"$STUB/calls"
case "$*" in
    "account get-access-token"*) key=token ;;
    "keyvault secret show"*) key=secret-show ;;
    "keyvault secret set"*) key=secret-set ;;
    "keyvault certificate show"*) key=cert-show ;;
    "keyvault certificate create"*) key=cert-create ;;
    "rest --method post"*) key=refresh ;;
    "rest --method get"*) key=refs ;;
    "servicebus topic subscription rule list"*) key=rule-list ;;
    "servicebus topic subscription rule delete"*) key=rule-delete ;;
    "servicebus topic subscription list"*) key=sub-list ;;
    *) key=other ;;
esac
mode=$(cat "$STUB/$key" 2>/dev/null || echo ok)
case $mode in
    ok)
        if [ "$key" = secret-set ]; then
            while [ $# -gt 0 ]; do
                if [ "$1" = --file ]; then wc -c <"$2" | tr -d ' ' >"$STUB/secret-length"; fi
                shift
            done
        fi
        cat "$STUB/$key.out" 2>/dev/null
        exit 0 ;;
    secret-notfound)
        printf 'ERROR: (SecretNotFound) A secret with (name/id) token-encryption-key was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182\nCode: SecretNotFound\nMessage: A secret with (name/id) token-encryption-key was not found in this key vault.\n' >&2
        exit 3 ;;
    cert-notfound)
        printf 'ERROR: (CertificateNotFound) A certificate with (name/id) graph-notifications was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182\nCode: CertificateNotFound\n' >&2
        exit 3 ;;
    throttled)
        printf 'ERROR: (Throttled) Request was not processed because too many requests were received. Reason: A single client has exceeded the maximum number of requests per second.\nCode: Throttled\n' >&2
        exit 1 ;;
    network)
        printf "ERROR: <urllib3.connection.HTTPSConnection object at 0x7f3b2c1d0a90>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution\n" >&2
        exit 1 ;;
    forbidden)
        printf 'ERROR: (Forbidden) Caller is not authorized to perform action on resource.\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\nCaller: appid=04b07795-8ddb-461a-bbee-02f9e1bf7b46;oid=7d2c1b9e-0000-4000-8000-00000000d3a1\nAction: '"'"'Microsoft.KeyVault/vaults/secrets/getSecret/action'"'"'\nCode: Forbidden\nInner error: {"code": "ForbiddenByRbac"}\n' >&2
        exit 1 ;;
    deleted)
        printf 'ERROR: (Conflict) Secret token-encryption-key is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.\nCode: Conflict\nInner error: {"code": "ObjectIsDeletedButRecoverable"}\n' >&2
        exit 1 ;;
    rg-notfound)
        printf "ERROR: (ResourceGroupNotFound) Resource group 'rg-tp' could not be found.\nCode: ResourceGroupNotFound\n" >&2
        exit 3 ;;
    not-logged-in)
        printf "ERROR: Please run 'az login' to setup account.\n" >&2
        exit 1 ;;
esac
echo "stub az: unknown mode $mode" >&2
exit 99
"#;

const AZD_STUB: &str = r#"#!/bin/sh
# Stub azd: records the call; `azd env set NAME VALUE` stores VALUE in $STUB/env-NAME.
printf '%s\n' "azd $1 $2 $3" >>"$STUB/calls"
if [ "$1" = env ] && [ "$2" = set ]; then printf '%s' "$4" >"$STUB/env-$3"; fi
"#;

impl Stubs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, text) in [("az", AZ_STUB), ("azd", AZD_STUB)] {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            make_executable(&p);
        }
        let s = Self { dir };
        s.answer("token.out", &format!("{}\n", jwt(DEPLOYER)));
        s.answer(
            "refs.out",
            r#"{"value":[{"name":"func-tp/TOKEN_ENCRYPTION_KEY","properties":{"status":"Resolved"}},{"name":"func-tp/ServiceBusConnection","properties":{"status":"Resolved"}}]}"#,
        );
        s
    }

    fn answer(&self, key: &str, what: &str) {
        std::fs::write(self.dir.path().join(key), what).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(name)).ok()
    }

    /// Runs a hook of infra/hooks with the environment azd would give it.
    fn run(&self, hook: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("sh");
        cmd.arg(repo().join("infra/hooks").join(hook))
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    self.dir.path().join("bin").display()
                ),
            )
            .env("STUB", self.dir.path())
            .env("TP_HOOK_RETRIES", "3")
            .env("TP_HOOK_RETRY_SLEEP", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An access token shaped like Entra ID's (only its `oid` claim is read).
fn jwt(oid: &str) -> String {
    let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        b(json!({"typ": "JWT", "alg": "RS256"})),
        b(json!({"aud": "https://vault.azure.net", "oid": oid, "tid": "t"}))
    )
}

const POSTPROVISION_ENV: &[(&str, &str)] = &[
    ("KEY_VAULT_NAME", "kv-tp-test"),
    ("TOKEN_ENCRYPTION_SECRET_NAME", "token-encryption-key"),
    ("KEY_VAULT_NOTIFICATION_CERTIFICATE", "graph-notifications"),
    (
        "AZURE_SUBSCRIPTION_ID",
        "00000000-1111-2222-3333-444444444444",
    ),
    ("AZURE_RESOURCE_GROUP", "rg-tp"),
    ("FUNCTION_APP_NAME", "func-tp"),
    ("AZURE_DEPLOYER_PRINCIPAL_ID", DEPLOYER),
];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_missing_secret_is_created_once_and_app_service_asked_to_resolve_its_references() {
    let s = Stubs::new();
    s.answer("secret-show", "secret-notfound");
    s.answer("cert-show", "cert-notfound");
    let out = s.run("postprovision.sh", POSTPROVISION_ENV);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.count("keyvault secret set"), 1);
    assert_eq!(s.count("keyvault certificate create"), 1);
    // 32 random bytes, base64: 44 characters, through a file, never on a command line.
    assert_eq!(
        s.read("secret-length").as_deref().map(str::trim),
        Some("44")
    );
    assert!(s
        .calls()
        .iter()
        .any(|c| c.starts_with("keyvault secret set")
            && c.contains("--file")
            && !c.contains("--value")));
    let refresh = s
        .calls()
        .into_iter()
        .find(|c| c.starts_with("rest --method post"))
        .expect("refresh asked for");
    assert!(
        refresh.contains("https://management.azure.com/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-tp/providers/Microsoft.Web/sites/func-tp/config/configreferences/appsettings/refresh?api-version=2022-03-01"),
        "{refresh}"
    );
    // The refresh comes after the write.
    let calls = s.calls();
    let set = calls
        .iter()
        .position(|c| c.starts_with("keyvault secret set"))
        .unwrap();
    let post = calls
        .iter()
        .position(|c| c.starts_with("rest --method post"))
        .unwrap();
    assert!(set < post, "{calls:?}");
    assert!(
        text(&out).contains("App Service resolved every Key Vault reference"),
        "{}",
        text(&out)
    );
    eprintln!("{}", text(&out));
}

#[test]
fn an_existing_secret_and_certificate_are_left_alone() {
    let s = Stubs::new();
    let out = s.run("postprovision.sh", POSTPROVISION_ENV);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.count("keyvault secret set"), 0);
    assert_eq!(s.count("keyvault certificate create"), 0);
    assert!(text(&out).contains("secret token-encryption-key exists; left as it is"));
}

#[test]
fn throttling_a_network_error_or_a_refusal_never_counts_as_missing() {
    for (mode, want) in [
        ("throttled", "reading secret token-encryption-key: gave up after 3 tries: ERROR: (Throttled)"),
        (
            "network",
            "reading secret token-encryption-key: gave up after 3 tries: ERROR: <urllib3.connection.HTTPSConnection object at 0x7f3b2c1d0a90>: Failed to establish a new connection",
        ),
        (
            "forbidden",
            "reading secret token-encryption-key: still refused after 3 tries: ERROR: (Forbidden) Caller is not authorized to perform action on resource.",
        ),
        (
            "not-logged-in",
            "reading secret token-encryption-key failed (az exit 1): ERROR: Please run 'az login' to setup account.",
        ),
    ] {
        let s = Stubs::new();
        s.answer("secret-show", mode);
        let out = s.run("postprovision.sh", POSTPROVISION_ENV);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{mode}: {t}");
        assert!(t.contains(&format!("postprovision: {want}")), "{mode}: {t}");
        assert_eq!(s.count("keyvault secret set"), 0, "{mode}: nothing written");
        assert_eq!(s.count("rest --method"), 0, "{mode}: stopped before the refresh");
        let tries = s.count("keyvault secret show");
        assert_eq!(tries, if mode == "not-logged-in" { 1 } else { 3 }, "{mode}");
        if mode == "forbidden" {
            assert!(t.contains(&format!("to principal {DEPLOYER}")), "{t}");
        }
        eprintln!("{mode}: {}", t.lines().last().unwrap_or(""));
    }
}

#[test]
fn a_different_az_login_stops_before_key_vault_is_touched() {
    let s = Stubs::new();
    s.answer("token.out", &format!("{}\n", jwt(SOMEONE_ELSE)));
    let out = s.run("postprovision.sh", POSTPROVISION_ENV);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "the Azure CLI is signed in as principal {SOMEONE_ELSE}, but the deployment gave the Key Vault roles on kv-tp-test to azd's principal {DEPLOYER}"
        )),
        "{t}"
    );
    assert!(t.contains("azd config set auth.useAzCliAuth true"), "{t}");
    assert_eq!(
        s.count("keyvault"),
        0,
        "no Key Vault call, no retries: {:?}",
        s.calls()
    );
    eprintln!("{}", t.trim());

    // No deployer at all: the roles went to nobody.
    let s = Stubs::new();
    let env: Vec<(&str, &str)> = POSTPROVISION_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "AZURE_DEPLOYER_PRINCIPAL_ID")
        .collect();
    let out = s.run("postprovision.sh", &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("gave no one the Key Vault roles"),
        "{}",
        text(&out)
    );
    assert_eq!(s.count("keyvault"), 0);
}

#[test]
fn a_soft_deleted_token_key_is_recovered_not_replaced() {
    let s = Stubs::new();
    s.answer("secret-show", "secret-notfound");
    s.answer("secret-set", "deleted");
    let out = s.run("postprovision.sh", POSTPROVISION_ENV);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(
            "az keyvault secret recover --vault-name kv-tp-test --name token-encryption-key"
        ),
        "{t}"
    );
    assert_eq!(s.count("keyvault secret set"), 1, "one attempt, no retry");
}

#[test]
fn references_still_unresolved_after_the_refresh_are_reported_without_failing_the_deploy() {
    let s = Stubs::new();
    s.answer(
        "refs.out",
        r#"{"value":[{"name":"func-tp/TOKEN_ENCRYPTION_KEY","properties":{"status":"AccessToKeyVaultDenied"}}]}"#,
    );
    let out = s.run("postprovision.sh", POSTPROVISION_ENV);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(
        s.count("rest --method post"),
        3,
        "retried while the role propagates"
    );
    assert!(
        t.contains("WARNING: Key Vault references still unresolved: TOKEN_ENCRYPTION_KEY=AccessToKeyVaultDenied"),
        "{t}"
    );
}

#[test]
fn rules_the_plan_no_longer_has_are_deleted_and_the_others_kept() {
    let s = Stubs::new();
    let plan = edge_plan(
        &json!([{"name": "pi-home", "users": guids(26)}]).to_string(),
        "pi-home",
    );
    let plan = String::from_utf8(plan.stdout).unwrap();
    s.answer(
        "rule-list.out",
        "$Default\nusers-01\nusers-02\nusers-03\nusers-04\n",
    );
    let mut env = POSTPROVISION_ENV.to_vec();
    env.push(("SERVICE_BUS_NAMESPACE", "sb-tp-test"));
    env.push(("TEAMS_PRESENCE_EDGE_PLAN", plan.trim()));
    let out = s.run("postprovision.sh", &env);
    assert!(out.status.success(), "{}", text(&out));
    let deleted: Vec<String> = s
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("servicebus topic subscription rule delete"))
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(deleted[0].contains("--subscription-name pi-home --name users-03"));
    assert!(deleted[1].contains("--subscription-name pi-home --name users-04"));
}

#[test]
fn preprovision_renders_the_plan_marking_only_listed_subscriptions_as_existing() {
    let s = Stubs::new();
    s.answer("sub-list.out", "pi-home\n");
    let edges = json!([
        {"name": "pi-home", "users": guids(300)},
        {"name": "pi-office", "users": ["*"]}
    ])
    .to_string();
    let out = s.run(
        "preprovision.sh",
        &[
            ("TEAMS_PRESENCE_EDGES", &edges),
            ("SERVICE_BUS_NAMESPACE", "sb-tp-test"),
            ("AZURE_RESOURCE_GROUP", "rg-tp"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value =
        serde_json::from_str(&s.read("env-TEAMS_PRESENCE_EDGE_PLAN").unwrap()).unwrap();
    assert_eq!(
        plan["edges"],
        json!([{"name": "pi-home", "existing": true}, {"name": "pi-office", "existing": false}])
    );
    assert_eq!(plan["rules"].as_array().unwrap().len(), 13);
    eprintln!("{}", text(&out).trim());

    // First provision: no namespace yet, az is not asked.
    let s = Stubs::new();
    let out = s.run("preprovision.sh", &[("TEAMS_PRESENCE_EDGES", &edges)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.count("servicebus"), 0);
    let plan: Value =
        serde_json::from_str(&s.read("env-TEAMS_PRESENCE_EDGE_PLAN").unwrap()).unwrap();
    assert_eq!(plan["edges"][0]["existing"], false);

    // The resource group is gone (after `azd down`): nothing exists.
    let s = Stubs::new();
    s.answer("sub-list", "rg-notfound");
    let out = s.run(
        "preprovision.sh",
        &[
            ("TEAMS_PRESENCE_EDGES", &edges),
            ("SERVICE_BUS_NAMESPACE", "sb-tp-test"),
            ("AZURE_RESOURCE_GROUP", "rg-tp"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(s.read("env-TEAMS_PRESENCE_EDGE_PLAN").is_some());
}

#[test]
fn preprovision_stops_on_bad_edges_or_an_az_failure_and_writes_no_plan() {
    let s = Stubs::new();
    let out = s.run(
        "preprovision.sh",
        &[(
            "TEAMS_PRESENCE_EDGES",
            r#"[{"name":"pi home","users":["bob"]}]"#,
        )],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("edge-plan: edges[0] (\"pi home\"): name may hold"),
        "{t}"
    );
    assert!(
        t.contains("users[0] \"bob\" is not an Entra object id"),
        "{t}"
    );
    assert!(s.read("env-TEAMS_PRESENCE_EDGE_PLAN").is_none());

    let s = Stubs::new();
    s.answer("sub-list", "forbidden");
    let out = s.run(
        "preprovision.sh",
        &[
            ("TEAMS_PRESENCE_EDGES", r#"[{"name":"pi","users":["*"]}]"#),
            ("SERVICE_BUS_NAMESPACE", "sb-tp-test"),
            ("AZURE_RESOURCE_GROUP", "rg-tp"),
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("cannot list the subscriptions of topic presence in sb-tp-test (az exit 1): ERROR: (Forbidden)"), "{t}");
    assert!(s.read("env-TEAMS_PRESENCE_EDGE_PLAN").is_none());
}

#[test]
fn packaging_stops_with_the_fix_when_azd_was_started_outside_the_repository_root() {
    // A stand-in named `azd` that, like azd, runs the hook from a directory of its own.
    let dir = tempfile::tempdir().unwrap();
    let azd = dir.path().join("azd");
    std::fs::write(
        &azd,
        format!(
            "#!/bin/sh\ncd \"$1\" && sh {}\n",
            repo().join("infra/hooks/package-cloud.sh").display()
        ),
    )
    .unwrap();
    make_executable(&azd);
    let elsewhere = repo().join("docs");
    let out = Command::new(&azd)
        .arg(&elsewhere)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "package-cloud: azd was started in {}",
            elsewhere.display()
        )),
        "{t}"
    );
    assert!(t.contains("run azd from the repository root"), "{t}");
}
