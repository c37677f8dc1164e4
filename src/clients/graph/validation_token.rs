//! The `validationTokens` of a rich-notification batch: JWTs Graph's change-tracking app
//! obtains for our app, one per tenant of the batch's items (Microsoft Graph docs,
//! "change notifications with resource data", "How to validate").
//!
//! A token vouches for a tenant when: it is RS256-signed by a key of the Microsoft identity
//! platform's JWKS (`{AZURE_AUTHORITY_HOST}/common/discovery/v2.0/keys`), it is within
//! `nbf`/`exp` (a small leeway for clock skew), `aud` is our client id, `appid` is Graph's
//! change-tracking app [`GRAPH_CHANGE_TRACKING_APP_ID`], and `iss` is the v1 issuer
//! `https://sts.windows.net/{tenantId}/`. The tenant in `iss` is the one vouched for.
//!
//! [`verify`] is pure (keys and `now` are arguments); [`JwksCache`] is the only I/O: keys are
//! cached for an hour, and a token signed with a key id we do not know triggers a refetch at
//! most once a minute, so forged tokens cannot make us hammer the endpoint.

use crate::clients::tls::LazyClient;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// Graph's change-tracking application, the `appid` of every validation token.
pub const GRAPH_CHANGE_TRACKING_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 120;

/// How long fetched keys are used before they are fetched again.
pub const JWKS_TTL: Duration = Duration::from_secs(3600);

/// The least time between two fetches triggered by an unknown key id.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// At most this many tokens of one batch are looked at (Graph sends one per tenant).
pub const MAX_TOKENS_PER_BATCH: usize = 32;

/// Why a token does not vouch for anything. Fixed names only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, not RS256, or claims of the wrong type.
    #[error("malformed")]
    Malformed,
    /// Signed with a key id the JWKS does not have.
    #[error("unknown_key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad_signature")]
    BadSignature,
    /// `exp` is missing or past.
    #[error("expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("not_yet_valid")]
    NotYetValid,
    /// `aud` is not our client id.
    #[error("wrong_audience")]
    WrongAudience,
    /// `iss` is not `https://sts.windows.net/{tenant}/` (or disagrees with `tid`).
    #[error("wrong_issuer")]
    WrongIssuer,
    /// `appid` is not Graph's change-tracking app.
    #[error("wrong_appid")]
    WrongAppId,
}

/// The signing keys could not be fetched and none are cached: nothing can be validated now
/// (the webhook answers 503 so Graph delivers again later).
#[derive(Debug, Clone, thiserror::Error)]
#[error("signing keys unavailable: {0}")]
pub struct KeysUnavailable(pub String);

/// A set of signing keys by key id.
#[derive(Default)]
pub struct SigningKeys {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

/// A JWKS document that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON.
    #[error("JWKS is not JSON")]
    NotJson,
    /// No `keys` array.
    #[error("JWKS has no keys array")]
    NoKeys,
}

impl SigningKeys {
    /// Parses a JWKS document. Keys that are not usable RSA keys are skipped, not fatal.
    pub fn from_jwks(body: &[u8]) -> Result<Self, JwksError> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| JwksError::NotJson)?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeys)?;
        let mut keys = HashMap::new();
        for k in list {
            let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()) else {
                continue;
            };
            // Tokens are RS256: other key types are of no use here.
            if !matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
            ) {
                continue;
            }
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(&jwk))
            else {
                continue;
            };
            keys.insert(kid, key);
        }
        Ok(Self { keys })
    }

    fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key with id `kid` (also used to check id_tokens).
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

/// The key id a token names, if it has a readable header.
pub fn key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid)
}

/// Verifies one token and returns the tenant it vouches for (lower case).
pub fn verify(
    token: &str,
    keys: &SigningKeys,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<String, TokenError> {
    verify_until(token, keys, client_id, now).map(|(tenant, _)| tenant)
}

/// [`verify`], also returning the token's `exp`: a token that passed once is good for the
/// same tenant until then (its signature and claims cannot change, and `nbf` stays passed).
fn verify_until(
    token: &str,
    keys: &SigningKeys,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<(String, i64), TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::Malformed);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = keys.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
    // Time and claims are checked below against `now`; jsonwebtoken checks the signature.
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
        _ => TokenError::Malformed,
    })?;
    let c = data.claims;
    let now = now.timestamp();
    let exp = match c.exp {
        Some(exp) if now <= exp.saturating_add(LEEWAY_SECS) => exp,
        _ => return Err(TokenError::Expired),
    };
    if let Some(nbf) = c.nbf {
        if now < nbf.saturating_sub(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
    }
    let aud_ok = match &c.aud {
        Some(Value::String(a)) => a.eq_ignore_ascii_case(client_id),
        Some(Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(client_id))
        }),
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    if !c
        .appid
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case(GRAPH_CHANGE_TRACKING_APP_ID))
    {
        return Err(TokenError::WrongAppId);
    }
    let tenant = c
        .iss
        .as_deref()
        .and_then(|iss| iss.strip_prefix("https://sts.windows.net/"))
        .and_then(|rest| rest.strip_suffix('/'))
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        })
        .ok_or(TokenError::WrongIssuer)?
        .to_ascii_lowercase();
    if let Some(tid) = &c.tid {
        if !tid.eq_ignore_ascii_case(&tenant) {
            return Err(TokenError::WrongIssuer);
        }
    }
    Ok((tenant, exp))
}

/// The Microsoft identity platform's signing keys, fetched on demand and cached.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    http: LazyClient,
    ttl: Duration,
    min_refetch: Duration,
    state: tokio::sync::Mutex<CacheState>,
    verified: std::sync::Mutex<Verified>,
    /// Tokens checked in full (parse, signature, claims) rather than found in `verified`.
    checks: std::sync::atomic::AtomicU64,
}

/// Tokens that passed [`verify`] with one set of fetched keys and one client id:
/// token → (tenant, `exp`). Graph sends the same validation token with batch after batch
/// for about an hour, so this saves a JWT parse and an RSA signature check per request.
/// Only tokens that passed are kept, so a forger cannot grow it; it is emptied when full,
/// when the keys are fetched again and when the client id differs.
#[derive(Default)]
struct Verified {
    keys: Option<Arc<SigningKeys>>,
    client_id: String,
    tokens: HashMap<String, (String, i64)>,
}

/// At most this many verified tokens are kept (one per tenant is the usual count).
const MAX_VERIFIED: usize = 256;

#[derive(Default)]
struct CacheState {
    keys: Arc<SigningKeys>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl JwksCache {
    /// A cache for `{authority_host}/common/discovery/v2.0/keys`.
    pub fn new(authority_host: &Url) -> Self {
        Self::with_timings(authority_host, JWKS_TTL, MIN_REFETCH_INTERVAL)
    }

    /// A cache with other timings (tests).
    pub fn with_timings(authority_host: &Url, ttl: Duration, min_refetch: Duration) -> Self {
        let http = LazyClient::new(|b| b.timeout(Duration::from_secs(5)));
        Self {
            inner: Arc::new(Inner {
                url: format!(
                    "{}/common/discovery/v2.0/keys",
                    authority_host.as_str().trim_end_matches('/')
                ),
                http,
                ttl,
                min_refetch,
                state: tokio::sync::Mutex::new(CacheState::default()),
                verified: std::sync::Mutex::new(Verified::default()),
                checks: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// How many tokens were checked in full, signature and all (tests: a token that passed
    /// is not checked again until it expires).
    pub fn signature_checks(&self) -> u64 {
        self.inner.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keys able to check tokens signed with `kids`, as far as the endpoint knows them.
    /// Fetches when the cache is empty or older than the TTL, or when a kid is unknown and
    /// the last fetch was more than a minute ago. A failed fetch falls back to cached keys.
    pub async fn keys_for(&self, kids: &[String]) -> Result<Arc<SigningKeys>, KeysUnavailable> {
        let mut st = self.inner.state.lock().await;
        let now = Instant::now();
        let stale = st
            .fetched_at
            .is_none_or(|t| now.duration_since(t) >= self.inner.ttl);
        let unknown = kids.iter().any(|k| !st.keys.contains(k));
        let may_refetch = st
            .last_attempt
            .is_none_or(|t| now.duration_since(t) >= self.inner.min_refetch);
        if !(stale || unknown) || !may_refetch {
            if st.fetched_at.is_none() {
                return Err(KeysUnavailable(
                    "last fetch failed; retrying in a minute".into(),
                ));
            }
            return Ok(st.keys.clone());
        }
        st.last_attempt = Some(now);
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched token signing keys");
                st.keys = Arc::new(keys);
                st.fetched_at = Some(now);
                Ok(st.keys.clone())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch token signing keys");
                if st.fetched_at.is_some() && !kids.iter().any(|k| !st.keys.contains(k)) {
                    Ok(st.keys.clone())
                } else {
                    Err(KeysUnavailable(e))
                }
            }
        }
    }

    async fn fetch(&self) -> Result<SigningKeys, String> {
        let resp = self
            .inner
            .http
            .get(&self.inner.url)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("body: {}", e.without_url()))?;
        let keys = SigningKeys::from_jwks(&body).map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Err("JWKS holds no usable RSA key".into());
        }
        Ok(keys)
    }
}

/// Verifies a batch's tokens and returns the tenants they vouch for. Tokens that fail are
/// logged with their reason (never the token) and skipped; a token signed by a key we cannot
/// get (yet) makes the whole batch [`KeysUnavailable`], so Graph delivers it again.
pub async fn vouched_tenants(
    cache: &JwksCache,
    tokens: &[String],
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<HashSet<String>, KeysUnavailable> {
    let tokens = &tokens[..tokens.len().min(MAX_TOKENS_PER_BATCH)];
    if tokens.is_empty() {
        return Ok(HashSet::new());
    }
    let kids: Vec<String> = tokens.iter().filter_map(|t| key_id(t)).collect();
    let keys = cache.keys_for(&kids).await?;
    // A key we do not have even after the (throttled) refetch: possibly one just rotated in.
    // Answering 202 would drop the batch for good; 503 makes Graph deliver it again later.
    if kids.iter().any(|k| !keys.contains(k)) {
        return Err(KeysUnavailable(
            "a validation token is signed by a key not among the published ones (yet)".into(),
        ));
    }
    let mut verified = cache
        .inner
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if !verified
        .keys
        .as_ref()
        .is_some_and(|k| Arc::ptr_eq(k, &keys))
        || verified.client_id != client_id
    {
        verified.keys = Some(keys.clone());
        verified.client_id = client_id.to_owned();
        verified.tokens.clear();
    }
    let mut tenants = HashSet::new();
    for t in tokens {
        if let Some((tenant, exp)) = verified.tokens.get(t.as_str()) {
            if now.timestamp() <= exp.saturating_add(LEEWAY_SECS) {
                tenants.insert(tenant.clone());
                continue;
            }
        }
        cache
            .inner
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match verify_until(t, &keys, client_id, now) {
            Ok((tenant, exp)) => {
                if verified.tokens.len() >= MAX_VERIFIED {
                    verified.tokens.clear();
                }
                verified.tokens.insert(t.clone(), (tenant.clone(), exp));
                tenants.insert(tenant);
            }
            Err(e) => {
                verified.tokens.remove(t.as_str());
                tracing::warn!(reason = %e, "validation token rejected");
            }
        }
    }
    Ok(tenants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use chrono::TimeZone;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const CLIENT: &str = "aaaaaaaa-0000-4000-8000-00000000000c";
    const TENANT: &str = "11111111-2222-3333-4444-555555555555";

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    struct Signer {
        enc: EncodingKey,
        jwks: Vec<u8>,
    }

    fn signer(kid: &str) -> Signer {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid,
             "n": b64.encode(rsa.n().to_vec()), "e": b64.encode(rsa.e().to_vec()),
             "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}
        ]});
        Signer {
            enc: EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap()),
            jwks: jwks.to_string().into_bytes(),
        }
    }

    fn claims() -> Value {
        let t = now().timestamp();
        json!({
            "aud": CLIENT, "iss": format!("https://sts.windows.net/{TENANT}/"),
            "iat": t - 60, "nbf": t - 60, "exp": t + 3600,
            "appid": GRAPH_CHANGE_TRACKING_APP_ID, "tid": TENANT, "ver": "1.0",
        })
    }

    fn sign(s: &Signer, kid: &str, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &s.enc).unwrap()
    }

    #[test]
    fn claims_table() {
        let s = signer("k1");
        let keys = SigningKeys::from_jwks(&s.jwks).unwrap();
        assert_eq!(keys.len(), 1);
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        let t = now().timestamp();
        let cases: Vec<(Value, Result<String, TokenError>)> = vec![
            (claims(), Ok(TENANT.into())),
            (with("exp", json!(t - LEEWAY_SECS + 5)), Ok(TENANT.into())),
            (
                with("exp", json!(t - LEEWAY_SECS - 5)),
                Err(TokenError::Expired),
            ),
            (with("exp", Value::Null), Err(TokenError::Expired)),
            (
                with("nbf", json!(t + LEEWAY_SECS + 5)),
                Err(TokenError::NotYetValid),
            ),
            (
                with("aud", json!("someone-else")),
                Err(TokenError::WrongAudience),
            ),
            (with("aud", json!([CLIENT])), Ok(TENANT.into())),
            (
                with("appid", json!("11111111-0000-0000-0000-000000000000")),
                Err(TokenError::WrongAppId),
            ),
            (
                with(
                    "iss",
                    json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
                ),
                Err(TokenError::WrongIssuer),
            ),
            (
                with("iss", json!("https://sts.windows.net/other/")),
                Err(TokenError::WrongIssuer),
            ),
            (
                with("iss", json!("https://sts.windows.net//")),
                Err(TokenError::WrongIssuer),
            ),
        ];
        for (c, want) in cases {
            assert_eq!(
                verify(&sign(&s, "k1", &c), &keys, CLIENT, now()),
                want,
                "{c}"
            );
        }
        // Unknown kid, another key's signature under a known kid, junk, HS256.
        assert_eq!(
            verify(&sign(&s, "k2", &claims()), &keys, CLIENT, now()),
            Err(TokenError::UnknownKey)
        );
        let other = signer("k1");
        assert_eq!(
            verify(&sign(&other, "k1", &claims()), &keys, CLIENT, now()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify("a.b.c", &keys, CLIENT, now()),
            Err(TokenError::Malformed)
        );
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(b"x")).unwrap();
        assert_eq!(
            verify(&hs, &keys, CLIENT, now()),
            Err(TokenError::Malformed)
        );
    }

    /// A loopback JWKS endpoint serving `jwks`; the cache pointed at it.
    async fn cache_serving(jwks: Vec<u8>) -> JwksCache {
        let app = axum::Router::new().route(
            "/common/discovery/v2.0/keys",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { jwks }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksCache::new(&Url::parse(&format!("http://{addr}")).unwrap())
    }

    #[tokio::test]
    async fn a_token_that_passed_is_not_checked_again_until_it_expires() {
        let s = signer("k1");
        let cache = cache_serving(s.jwks.clone()).await;
        let good = sign(&s, "k1", &claims());
        let mut expired = claims();
        expired["exp"] = json!(now().timestamp() - 3600);
        let expired = sign(&s, "k1", &expired);
        let tenants = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<HashSet<_>>();

        // Graph repeats one token with batch after batch: one full check.
        for _ in 0..3 {
            let got = vouched_tenants(&cache, std::slice::from_ref(&good), CLIENT, now()).await;
            assert_eq!(got.unwrap(), tenants(&[TENANT]));
        }
        assert_eq!(cache.signature_checks(), 1);
        // Failed tokens are never remembered: checked (and refused) every time.
        for _ in 0..2 {
            let got = vouched_tenants(&cache, std::slice::from_ref(&expired), CLIENT, now()).await;
            assert!(got.unwrap().is_empty());
        }
        assert_eq!(cache.signature_checks(), 3);
        // Another client id starts afresh, and refuses what is not addressed to it.
        let got =
            vouched_tenants(&cache, std::slice::from_ref(&good), "another-client", now()).await;
        assert!(got.unwrap().is_empty());
        assert_eq!(cache.signature_checks(), 4);
        // Past its `exp` (and the leeway) a remembered token is checked again, and refused.
        let _ = vouched_tenants(&cache, std::slice::from_ref(&good), CLIENT, now()).await;
        let later = now() + chrono::Duration::hours(2);
        let got = vouched_tenants(&cache, std::slice::from_ref(&good), CLIENT, later).await;
        assert!(got.unwrap().is_empty());
        assert_eq!(cache.signature_checks(), 6);
    }
}
