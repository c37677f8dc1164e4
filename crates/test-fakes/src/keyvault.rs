//! Azure Key Vault's secrets API as the handler reads certificates from it, reached the way
//! the real binary reaches it: over HTTPS to `https://NAME.vault.azure.net`, signed in with
//! the App Service managed identity, and able to "never answer" at first and then answer.
//!
//! Three parts, all on 127.0.0.1:
//!
//! * **The vault, behind an HTTPS proxy.** The handler gets `HTTPS_PROXY` pointing here, so
//!   its Azure SDK client connects to the real host name through `CONNECT`; the proxy answers
//!   `200 Connection established` and the vault speaks TLS with a certificate for that name,
//!   issued by a test CA the handler trusts through `SSL_CERT_FILE` (OpenSSL's default
//!   verify paths, which native-tls uses). While [`FakeKeyVault::answering`] is off, the
//!   vault accepts the connection and never sends a byte (a vault behind a firewall that
//!   drops, or one that hangs); connections taken then stay silent after it is switched on.
//! * **The vault's REST API**, from learn.microsoft.com/rest/api/keyvault/secrets (Get
//!   Secret, Get Secret Versions) and the examples in Azure/azure-rest-api-specs,
//!   specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.5/examples/
//!   GetSecret-example.json and GetSecretVersions-example.json:
//!   `GET /secrets/{name}/{version?}?api-version=...` answers the secret bundle (`value`,
//!   `id` = `{vault}/secrets/{name}/{version}`, `attributes` with Unix-time `created`); a
//!   certificate's secret also has `contentType`, `kid` and `managed: true`
//!   (learn.microsoft.com/azure/key-vault/certificates/about-certificates, "Composition of a
//!   certificate"). `GET /secrets/{name}/versions` pages its items with a `nextLink` that
//!   names the port (`:443`) and a `$skiptoken`, one item per page here as in the example with
//!   `maxresults=1`. An unknown secret is 404 `SecretNotFound`. A request without a token is
//!   401 with `WWW-Authenticate: Bearer authorization="https://login.windows.net/{tenant}",
//!   resource="https://vault.azure.net"` and `AKV10000: Request is missing a Bearer or PoP
//!   token.` (recorded from the real service in Azure/azure-sdk-for-js,
//!   sdk/keyvault/keyvault-secrets/recordings/node/secret_client__list_secrets_in_various_ways/
//!   recording_can_list_secret_properties.js; learn.microsoft.com/azure/key-vault/general/
//!   authentication-requests-and-responses): the SDK authenticates only after that challenge.
//!   While [`FakeKeyVault::refuse`] is on, a request with a valid token is 403 `Forbidden`
//!   with the inner code `ForbiddenByRbac` and the role-propagation hint, as for an identity
//!   whose Key Vault Secrets User assignment has not reached the vault yet
//!   (learn.microsoft.com/azure/key-vault/general/common-error-codes; the same text the
//!   Azure CLI prints, used by the `infra_hooks` stubs).
//! * **The App Service identity endpoint** (learn.microsoft.com/azure/app-service/
//!   overview-managed-identity, "REST endpoint reference"): `GET {IDENTITY_ENDPOINT}?resource=
//!   ...&api-version=2019-08-01&client_id=...` with the `X-IDENTITY-HEADER` header equal to
//!   `IDENTITY_HEADER`; it answers `access_token`, `expires_on` (Unix seconds as a string),
//!   `resource`, `token_type` and `client_id`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use serde_json::{json, Value};

/// The vault's host name (any `*.vault.azure.net` passes the SDK's challenge check).
pub const VAULT_HOST: &str = "kv-tp-test.vault.azure.net";
/// The token the identity endpoint hands out; it must never reach a log or a page.
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.fake-vault-token.c2lnbmF0dXJl";
/// `IDENTITY_HEADER`, a secret App Service gives the worker; never to be logged either.
pub const IDENTITY_HEADER: &str = "f5d3b8a1-identity-header-secret";
/// The user-assigned identity's client id (`MANAGED_IDENTITY_CLIENT_ID`).
pub const IDENTITY_CLIENT_ID: &str = "7c1e2d3f-0000-4000-8000-00000000c1d0";

struct Version {
    id: String,
    created: i64,
    pem: String,
}

#[derive(Default)]
struct Shared {
    secrets: Mutex<HashMap<String, Vec<Version>>>,
    /// One line per request: `CONNECT host:port`, `GET /path bearer|anonymous -> status`,
    /// `TOKEN client_id -> status`.
    seen: Mutex<Vec<String>>,
    /// Connections taken while not answering, kept open and silent.
    held: Mutex<Vec<TcpStream>>,
    held_count: AtomicUsize,
    answering: AtomicBool,
    refusing: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn note(&self, line: String) {
        self.seen.lock().unwrap().push(line);
    }
}

/// The fake vault with its proxy and identity endpoint. Dropping it stops them.
pub struct FakeKeyVault {
    shared: Arc<Shared>,
    proxy_port: u16,
    identity_port: u16,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeKeyVault {
    /// Starts the three parts; the vault answers only once [`Self::answer`] is called if
    /// `answering` is false.
    pub fn start(answering: bool) -> Self {
        let (ca, ca_key) = issue(None, "teams-presence test CA", true);
        let (leaf, leaf_key) = issue(Some((&ca, &ca_key)), VAULT_HOST, false);
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_certificate(&leaf).unwrap();
        acceptor.set_private_key(&leaf_key).unwrap();
        let acceptor = Arc::new(acceptor.build());

        let shared = Arc::new(Shared::default());
        shared.answering.store(answering, Ordering::SeqCst);

        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_port = proxy.local_addr().unwrap().port();
        {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for conn in proxy.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (shared, acceptor) = (shared.clone(), acceptor.clone());
                    std::thread::spawn(move || vault_connection(conn, &shared, &acceptor));
                }
            });
        }

        let identity = TcpListener::bind("127.0.0.1:0").unwrap();
        let identity_port = identity.local_addr().unwrap().port();
        {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for conn in identity.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        serve_http(conn, |head| identity_answer(head, &shared));
                    });
                }
            });
        }
        Self {
            shared,
            proxy_port,
            identity_port,
            ca_file,
            _dir: dir,
        }
    }

    /// `https://kv-tp-test.vault.azure.net`, as `KEY_VAULT_URL`.
    pub fn vault_url(&self) -> String {
        format!("https://{VAULT_HOST}")
    }

    /// The environment the handler needs to reach this vault as it would the real one.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEY_VAULT_URL", self.vault_url()),
            ("MANAGED_IDENTITY_CLIENT_ID", IDENTITY_CLIENT_ID.into()),
            (
                "IDENTITY_ENDPOINT",
                format!("http://127.0.0.1:{}/msi/token", self.identity_port),
            ),
            ("IDENTITY_HEADER", IDENTITY_HEADER.into()),
            (
                "HTTPS_PROXY",
                format!("http://127.0.0.1:{}", self.proxy_port),
            ),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
            ("SSL_CERT_FILE", self.ca_file.display().to_string()),
        ]
    }

    /// Adds a version of the certificate `name` (PEM: certificate and key), created
    /// `created` (Unix seconds); the last one added is the current version.
    pub fn put_certificate(&self, name: &str, created: i64, pem: &[u8]) {
        // Key Vault's version ids are 32 hex digits.
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.shared
            .secrets
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(Version {
                id,
                created,
                pem: String::from_utf8(pem.to_vec()).unwrap(),
            });
    }

    /// From now on new connections are answered.
    pub fn answer(&self) {
        self.shared.answering.store(true, Ordering::SeqCst);
    }

    /// While `on`, Key Vault refuses the app's identity (403, RBAC not propagated yet).
    pub fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// Connections accepted and left unanswered so far.
    pub fn held(&self) -> usize {
        self.shared.held_count.load(Ordering::SeqCst)
    }

    /// Every request seen, one line each.
    pub fn seen(&self) -> Vec<String> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeKeyVault {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.held.lock().unwrap().clear();
        // Wake the accept loops so they see `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.proxy_port));
        let _ = TcpStream::connect(("127.0.0.1", self.identity_port));
    }
}

/// A certificate (EC P-256: quick to make) for `cn`, self-signed as a CA, or issued by
/// `issuer` for the server name `cn`.
fn issue(issuer: Option<(&X509, &PKey<Private>)>, cn: &str, ca: bool) -> (X509, PKey<Private>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(uuid::Uuid::new_v4().as_u128() as u32 >> 1)
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
    } else {
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns(cn)
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    let signer = issuer.map_or(&key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// One request's head: method, path, query pairs, headers (lower-case names).
struct Head {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
}

/// Reads one request head (requests here have no bodies); `None` at the end of the stream.
fn read_head(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = text.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_owned();
            let target = first.next()?.to_owned();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return Some(Head {
                method,
                path: path.to_owned(),
                query: url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect(),
                headers,
            });
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An answer: status, extra header lines, JSON body.
struct Answer(u16, Vec<String>, Value);

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    }
}

/// Answers requests on `s` (keep-alive) until the client closes it.
fn serve_http<S: Read + Write>(mut s: S, answer: impl Fn(&Head) -> Answer) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut s, &mut buf) {
        let Answer(status, extra, body) = answer(&head);
        let body = body.to_string();
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n",
            reason(status),
            body.len()
        );
        for h in extra {
            out.push_str(&h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&body);
        if s.write_all(out.as_bytes()).and_then(|_| s.flush()).is_err() {
            return;
        }
    }
}

/// One connection to the proxy: `CONNECT`, then the vault over TLS, or silence.
fn vault_connection(mut conn: TcpStream, shared: &Shared, acceptor: &openssl::ssl::SslAcceptor) {
    let mut buf = Vec::new();
    let Some(head) = read_head(&mut conn, &mut buf) else {
        return;
    };
    shared.note(format!("{} {}", head.method, head.path));
    if head.method != "CONNECT" {
        let _ = conn.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    if conn
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    if !shared.answering.load(Ordering::SeqCst) {
        // Accepted, never answered: the TLS handshake waits for good.
        shared.held_count.fetch_add(1, Ordering::SeqCst);
        shared.held.lock().unwrap().push(conn);
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(tls) = acceptor.accept(conn) else {
        return;
    };
    serve_http(tls, |head| vault_answer(head, shared));
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer(
        status,
        Vec::new(),
        json!({"error": {"code": code, "message": message}}),
    )
}

fn vault_answer(head: &Head, shared: &Shared) -> Answer {
    let bearer = head
        .headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    let answer = vault_route(head, bearer, shared);
    shared.note(format!(
        "{} {} {} -> {}",
        head.method,
        head.path,
        if bearer.is_some() {
            "bearer"
        } else {
            "anonymous"
        },
        answer.0
    ));
    answer
}

fn vault_route(head: &Head, bearer: Option<&str>, shared: &Shared) -> Answer {
    let q = |k: &str| {
        head.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let Some(api_version) = q("api-version") else {
        return error(400, "BadParameter", "api-version is required");
    };
    match bearer {
        None => {
            let mut a = error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
            );
            a.1.push("WWW-Authenticate: Bearer authorization=\"https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\"".into());
            return a;
        }
        Some(t) if t != ACCESS_TOKEN => {
            return error(401, "Unauthorized", "AKV10032: Invalid issuer.");
        }
        Some(_) => {}
    }
    if shared.refusing.load(Ordering::SeqCst) {
        return Answer(
            403,
            Vec::new(),
            json!({"error": {
                "code": "Forbidden",
                "message": format!("Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={IDENTITY_CLIENT_ID};oid=5b0e1c7e-0000-4000-8000-0000000000a1;iss=https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-tp/providers/microsoft.keyvault/vaults/kv-tp-test/secrets/{}'\r\nAssignment: (not found)\r\nVault: kv-tp-test;location=westeurope\r\n", head.path.trim_start_matches("/secrets/").split('/').next().unwrap_or("")),
                "innererror": {"code": "ForbiddenByRbac"}
            }}),
        );
    }
    if head.method != "GET" {
        return error(400, "BadParameter", "only GET here");
    }
    let parts: Vec<&str> = head
        .path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let vault = format!("https://{VAULT_HOST}");
    let secrets = shared.secrets.lock().unwrap();
    let not_found = |name: &str| {
        error(
            404,
            "SecretNotFound",
            &format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
        )
    };
    let attributes = |v: &Version| {
        json!({"enabled": true, "created": v.created, "updated": v.created,
               "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90})
    };
    match parts.as_slice() {
        ["secrets", name, "versions"] => {
            let Some(versions) = secrets.get(*name) else {
                return not_found(name);
            };
            let at: usize = q("$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0);
            let value: Vec<Value> = versions
                .iter()
                .skip(at)
                .take(1)
                .map(|v| {
                    json!({"id": format!("{vault}/secrets/{name}/{}", v.id),
                           "attributes": attributes(v),
                           "contentType": "application/x-pem-file", "managed": true})
                })
                .collect();
            let next = (at + 1 < versions.len()).then(|| {
                format!(
                    "https://{VAULT_HOST}:443/secrets/{name}/versions?api-version={api_version}&$skiptoken={}&maxresults=1",
                    at + 1
                )
            });
            Answer(200, Vec::new(), json!({"value": value, "nextLink": next}))
        }
        ["secrets", name] | ["secrets", name, _] => {
            let Some(versions) = secrets.get(*name) else {
                return not_found(name);
            };
            let found = match parts.get(2) {
                Some(id) => versions.iter().find(|v| v.id == *id),
                None => versions.last(),
            };
            let Some(v) = found else {
                return not_found(name);
            };
            Answer(
                200,
                Vec::new(),
                json!({
                    "value": v.pem,
                    "contentType": "application/x-pem-file",
                    "id": format!("{vault}/secrets/{name}/{}", v.id),
                    "kid": format!("{vault}/keys/{name}/{}", v.id),
                    "managed": true,
                    "attributes": attributes(v),
                }),
            )
        }
        _ => error(400, "BadParameter", "unknown path"),
    }
}

fn identity_answer(head: &Head, shared: &Shared) -> Answer {
    let q = |k: &str| {
        head.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let client_id = q("client_id").unwrap_or_default();
    let answer =
        if head.headers.get("x-identity-header").map(String::as_str) != Some(IDENTITY_HEADER) {
            Answer(
                401,
                Vec::new(),
                json!({"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"}),
            )
        } else if q("api-version").as_deref() != Some("2019-08-01")
            || q("resource").as_deref() != Some("https://vault.azure.net")
            || client_id != IDENTITY_CLIENT_ID
        {
            Answer(
                400,
                Vec::new(),
                json!({"statusCode": 400, "message": "No managed identity matches the request"}),
            )
        } else {
            let expires = chrono::Utc::now().timestamp() + 3600;
            Answer(
                200,
                Vec::new(),
                json!({"access_token": ACCESS_TOKEN, "expires_on": expires.to_string(),
                   "resource": "https://vault.azure.net", "token_type": "Bearer",
                   "client_id": client_id}),
            )
        };
    shared.note(format!("TOKEN client_id={client_id} -> {}", answer.0));
    answer
}
