//! Microsoft Entra ID (the v2.0 endpoints): the only module that speaks its OAuth wire format.
//!
//! Authorize URLs (authorization code + PKCE S256, `response_mode=form_post`), the token
//! endpoint's grants (authorization_code, refresh_token, client_credentials, device_code),
//! the device-code endpoint, client authentication by secret or by a certificate client
//! assertion (PS256 with `x5t#S256` by default, RS256 with `x5t` as an option), and id_token
//! validation against the signing keys.
//!
//! Errors are split by what the caller does: [`TokenError::SignInRequired`] means the user has
//! to sign in again (invalid_grant, interaction_required and their AADSTS codes), `Transient`
//! means try again later, `Rejected` is a request we should not repeat. None of them carries a
//! token, code, verifier or secret: Entra's description is cut to its AADSTS code and first
//! sentence.

use crate::clients::tls::LazyClient;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::hash::MessageDigest;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::clients::graph::validation_token::SigningKeys;
use crate::config::{ConfigError, Settings};

pub use crate::config::AssertionAlg;

/// How the app authenticates to the token endpoint.
#[derive(Clone)]
pub enum ClientCredential {
    /// `AZURE_CLIENT_SECRET`.
    Secret(SecretString),
    /// A certificate and its private key.
    Certificate(Box<CertificateCredential>),
    /// A public client (device code with "Allow public client flows").
    None,
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret([REDACTED])"),
            ClientCredential::Certificate(c) => write!(f, "Certificate(x5t#S256={})", c.x5t_s256),
            ClientCredential::None => f.write_str("None"),
        }
    }
}

/// A certificate for client assertions.
#[derive(Clone)]
pub struct CertificateCredential {
    key: EncodingKey,
    /// base64url SHA-256 thumbprint of the certificate's DER.
    pub x5t_s256: String,
    /// base64url SHA-1 thumbprint (for RS256).
    pub x5t: String,
    /// The signature algorithm.
    pub alg: AssertionAlg,
    /// The certificate's `notAfter` (for `doctor`'s expiry warning).
    pub not_after: Option<DateTime<Utc>>,
}

/// Why a client certificate cannot be used (one line; never the key itself).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The PEM holds no certificate.
    #[error("no certificate in the PEM file")]
    NoCertificate,
    /// The PEM holds no private key.
    #[error("no private key in the PEM file")]
    NoPrivateKey,
    /// The private key is not an RSA key.
    #[error("the private key is not RSA")]
    NotRsa,
    /// The RSA key cannot be encoded.
    #[error("unusable private key")]
    UnusableKey,
    /// The certificate's thumbprint cannot be computed.
    #[error("cannot hash the certificate")]
    Unhashable,
    /// The client assertion could not be signed.
    #[error("cannot sign the client assertion: {0}")]
    Unsigned(#[source] jsonwebtoken::errors::Error),
}

impl CertificateCredential {
    /// From a PEM holding the certificate and its RSA private key (any order).
    pub fn from_pem(pem: &[u8], alg: AssertionAlg) -> Result<Self, CredentialError> {
        let cert =
            openssl::x509::X509::from_pem(pem).map_err(|_| CredentialError::NoCertificate)?;
        let key = openssl::pkey::PKey::private_key_from_pem(pem)
            .map_err(|_| CredentialError::NoPrivateKey)?;
        let rsa = key.rsa().map_err(|_| CredentialError::NotRsa)?;
        let der = rsa
            .private_key_to_der()
            .map_err(|_| CredentialError::UnusableKey)?;
        let thumb = |md| {
            cert.digest(md)
                .map(|d| B64URL.encode(d))
                .map_err(|_| CredentialError::Unhashable)
        };
        Ok(Self {
            key: EncodingKey::from_rsa_der(&der),
            x5t_s256: thumb(MessageDigest::sha256())?,
            x5t: thumb(MessageDigest::sha1())?,
            alg,
            not_after: asn1_to_utc(cert.not_after()),
        })
    }

    /// A signed client assertion for `audience` (the token endpoint URL).
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<String, CredentialError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            iss: &'a str,
            sub: &'a str,
            jti: String,
            nbf: i64,
            iat: i64,
            exp: i64,
        }
        let mut header = Header::new(match self.alg {
            AssertionAlg::Ps256 => Algorithm::PS256,
            AssertionAlg::Rs256 => Algorithm::RS256,
        });
        match self.alg {
            AssertionAlg::Ps256 => header.x5t_s256 = Some(self.x5t_s256.clone()),
            AssertionAlg::Rs256 => header.x5t = Some(self.x5t.clone()),
        }
        let t = now.timestamp();
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: t,
            iat: t,
            exp: t + 300,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(CredentialError::Unsigned)
    }
}

/// What the token endpoint returned.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// Bearer token for Graph.
    #[serde(deserialize_with = "de_secret")]
    pub access_token: SecretString,
    /// Lifetime in seconds.
    #[serde(default = "default_expiry")]
    pub expires_in: u64,
    /// The (rotated) refresh token, with offline_access.
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub refresh_token: Option<SecretString>,
    /// With `openid`.
    #[serde(default)]
    pub id_token: Option<String>,
}

fn de_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

fn de_opt_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Option::<String>::deserialize(d).map(|o| o.map(SecretString::from))
}

fn default_expiry() -> u64 {
    3600
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

/// The device-code endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCode {
    /// Secret polling handle.
    #[serde(deserialize_with = "de_secret")]
    pub device_code: SecretString,
    /// What the user types.
    pub user_code: String,
    /// Where they type it.
    pub verification_uri: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// Entra's ready-made instruction.
    #[serde(default)]
    pub message: String,
}

fn default_interval() -> u64 {
    5
}

/// One poll of the device-code grant.
#[derive(Debug)]
pub enum DevicePoll {
    /// The user has not finished yet.
    Pending,
    /// Poll slower (interval + 5 s).
    SlowDown,
    /// Signed in.
    Done(Box<TokenResponse>),
}

/// Token endpoint failures, split by what the caller does.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The grant is dead (invalid_grant, interaction_required, AADSTS700082, ...): the user
    /// must sign in again. The reason is secret-free.
    #[error("sign-in required: {0}")]
    SignInRequired(String),
    /// Network trouble, timeouts, 5xx, temporarily_unavailable: try again later.
    #[error("token endpoint unavailable: {0}")]
    Transient(String),
    /// Anything else (invalid_client, bad configuration): do not repeat blindly.
    #[error("token request rejected: {0}")]
    Rejected(String),
    /// Device code: the user declined.
    #[error("the sign-in was declined")]
    Declined,
    /// Device code: the code expired before the user finished.
    #[error("the code expired before sign-in finished")]
    Expired,
}

/// The claims we keep from an id_token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `oid`.
    pub user_id: String,
    /// `tid`.
    pub tenant_id: String,
    /// `preferred_username`.
    pub upn: String,
    /// `name`.
    pub display_name: String,
}

/// Why an id_token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// Not a JWT, wrong algorithm, missing claims.
    #[error("the id_token is malformed")]
    Malformed,
    /// Signature does not verify with any published key.
    #[error("the id_token signature does not verify")]
    BadSignature,
    /// Expired, wrong audience, issuer or nonce.
    #[error("the id_token is not for this sign-in ({0})")]
    WrongClaims(&'static str),
}

/// Validates an id_token received from the token endpoint: RS256 signature with the
/// published keys, `aud` = our client id, `iss` = the v2 issuer of its own `tid`, not expired,
/// and the nonce of this sign-in when one was sent. Pure: keys and `now` come in.
pub fn validate_id_token(
    token: &str,
    keys: &SigningKeys,
    client_id: &str,
    nonce: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Identity, IdTokenError> {
    #[derive(Deserialize)]
    struct Claims {
        aud: String,
        iss: String,
        tid: String,
        oid: String,
        exp: i64,
        #[serde(default)]
        nbf: Option<i64>,
        #[serde(default)]
        nonce: Option<String>,
        #[serde(default)]
        preferred_username: Option<String>,
        #[serde(default)]
        name: Option<String>,
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(IdTokenError::Malformed);
    }
    let kid = header.kid.ok_or(IdTokenError::Malformed)?;
    let key = keys.get(&kid).ok_or(IdTokenError::BadSignature)?;
    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
    // We check time and audience ourselves, against the `now` we were given.
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => IdTokenError::BadSignature,
        _ => IdTokenError::Malformed,
    })?;
    let c = data.claims;
    let t = now.timestamp();
    if c.exp + 300 < t || c.nbf.is_some_and(|n| n - 300 > t) {
        return Err(IdTokenError::WrongClaims("expired"));
    }
    // A GUID, whose case carries no meaning (validation tokens compare it the same way).
    if !c.aud.eq_ignore_ascii_case(client_id) {
        return Err(IdTokenError::WrongClaims("audience"));
    }
    if !c.iss.ends_with(&format!("/{}/v2.0", c.tid)) {
        return Err(IdTokenError::WrongClaims("issuer"));
    }
    if let Some(expected) = nonce {
        // Lengths first: `memcmp::eq` asserts they are equal (a panic on a crafted token).
        let ok = c.nonce.as_deref().is_some_and(|n| {
            n.len() == expected.len() && openssl::memcmp::eq(n.as_bytes(), expected.as_bytes())
        });
        if !ok {
            return Err(IdTokenError::WrongClaims("nonce"));
        }
    }
    Ok(Identity {
        user_id: c.oid,
        tenant_id: c.tid,
        upn: c.preferred_username.unwrap_or_default(),
        display_name: c.name.unwrap_or_default(),
    })
}

/// PKCE: a random verifier and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = random_token(32);
    let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// `n` random bytes as base64url (for `state`, nonces, verifiers, clientState).
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).expect("the OS random source works");
    B64URL.encode(b)
}

/// The `roles` claim of an app-only access token (client credentials): the application
/// permissions consented for this app in the tenant, e.g. `Presence.ReadWrite.All`.
///
/// Read **without verifying the signature**, on purpose: the token is our own, fetched a
/// moment ago from Entra ID's token endpoint over TLS, and only its audience (Graph) can
/// check a Graph token. This is for telling an admin what is missing, never for deciding
/// who may do what. `None` when the token is not a JWT; an empty list when it has no roles.
pub fn access_token_roles(access_token: &str) -> Option<Vec<String>> {
    let payload = access_token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let roles = match claims.get("roles") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return None,
    };
    Some(roles)
}

/// An Entra ID client for one app registration.
#[derive(Clone, Debug)]
pub struct EntraClient {
    http: LazyClient,
    authority: Url,
    tenant: String,
    client_id: String,
    credential: ClientCredential,
    scopes: Vec<String>,
}

impl EntraClient {
    /// From the settings. The credential comes from `AZURE_CLIENT_SECRET` or
    /// `AZURE_CLIENT_CERTIFICATE_PATH` (a public client when neither is set).
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let client_id = s.require_client_id()?.to_owned();
        let credential = if let Some(secret) = &s.app.client_secret {
            ClientCredential::Secret(secret.clone())
        } else if let Some(path) = &s.app.client_certificate_path {
            ClientCredential::Certificate(Box::new(load_certificate(
                path,
                s.app.client_assertion_alg,
            )?))
        } else {
            ClientCredential::None
        };
        Ok(Self::new(
            &s.app.authority_host,
            &s.app.tenant,
            &client_id,
            credential,
            s.app.auth_scopes.clone(),
        ))
    }

    /// A client with an explicit credential.
    pub fn new(
        authority: &Url,
        tenant: &str,
        client_id: &str,
        credential: ClientCredential,
        scopes: Vec<String>,
    ) -> Self {
        let http = LazyClient::new(|b| {
            b.connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(15))
        });
        Self {
            http,
            authority: authority.clone(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            credential,
            scopes,
        }
    }

    /// The same client with another credential.
    pub fn with_credential(mut self, credential: ClientCredential) -> Self {
        self.credential = credential;
        self
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Whether a client credential (secret or certificate) is configured.
    pub fn is_confidential(&self) -> bool {
        !matches!(self.credential, ClientCredential::None)
    }

    fn endpoint(&self, tenant: &str, leaf: &str) -> String {
        format!(
            "{}/{tenant}/oauth2/v2.0/{leaf}",
            self.authority.as_str().trim_end_matches('/')
        )
    }

    /// The authorize URL for a sign-in.
    pub fn authorize_url(
        &self,
        redirect_uri: &Url,
        state: &str,
        code_challenge: &str,
        nonce: &str,
        login_hint: Option<&str>,
    ) -> Url {
        let mut u =
            Url::parse(&self.endpoint(&self.tenant, "authorize")).expect("authority is a URL");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("client_id", &self.client_id)
                .append_pair("response_type", "code")
                .append_pair("response_mode", "form_post")
                .append_pair("redirect_uri", redirect_uri.as_str())
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(h) = login_hint {
                q.append_pair("login_hint", h);
            }
        }
        u
    }

    /// Redeems an authorization code.
    #[tracing::instrument(name = "sign_in_redeem", skip_all)]
    pub async fn redeem_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &Url,
    ) -> Result<TokenResponse, TokenError> {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("code_verifier", verifier.to_owned()),
            ("redirect_uri", redirect_uri.to_string()),
            ("scope", self.scopes.join(" ")),
        ];
        self.token_request(&self.tenant.clone(), form).await
    }

    /// Redeems a refresh token for `tenant` (the user's home tenant).
    #[tracing::instrument(name = "token_refresh", skip_all, fields(tenant_id = %tenant))]
    pub async fn refresh(
        &self,
        tenant: &str,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, TokenError> {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose_secret().to_owned()),
            ("scope", self.scopes.join(" ")),
        ];
        self.token_request(tenant, form).await
    }

    /// App-only token (client credentials) for tenant-wide work.
    #[tracing::instrument(name = "app_token_grant", skip_all, fields(tenant_id = %tenant))]
    pub async fn app_token(&self, tenant: &str, scope: &str) -> Result<TokenResponse, TokenError> {
        let form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("scope", scope.to_owned()),
        ];
        self.token_request(tenant, form).await
    }

    /// Starts a device-code sign-in.
    #[tracing::instrument(name = "sign_in_device_code", skip_all)]
    pub async fn device_code(&self) -> Result<DeviceCode, TokenError> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("scope", &self.scopes.join(" ")),
        ];
        self.post_form(
            &self.endpoint(&self.tenant, "devicecode"),
            &form,
            "device-code",
        )
        .await
    }

    /// Polls the device-code grant once.
    #[tracing::instrument(level = "debug", name = "sign_in_device_poll", skip_all)]
    pub async fn poll_device_code(&self, code: &DeviceCode) -> Result<DevicePoll, TokenError> {
        let form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
            ),
            ("device_code", code.device_code.expose_secret().to_owned()),
        ];
        match self.token_request(&self.tenant.clone(), form).await {
            Ok(t) => Ok(DevicePoll::Done(Box::new(t))),
            Err(TokenError::Rejected(e)) if e.starts_with("authorization_pending") => {
                Ok(DevicePoll::Pending)
            }
            Err(TokenError::Rejected(e)) if e.starts_with("slow_down") => Ok(DevicePoll::SlowDown),
            Err(e) => Err(e),
        }
    }

    async fn token_request(
        &self,
        tenant: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenResponse, TokenError> {
        let url = self.endpoint(tenant, "token");
        form.push(("client_id", self.client_id.clone()));
        match &self.credential {
            ClientCredential::Secret(s) => {
                form.push(("client_secret", s.expose_secret().to_owned()))
            }
            ClientCredential::Certificate(c) => {
                let assertion = c
                    .assertion(&self.client_id, &url, Utc::now())
                    .map_err(|e| TokenError::Rejected(e.to_string()))?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
            }
            ClientCredential::None => {}
        }
        self.post_form(&url, &form, "token").await
    }
}

impl EntraClient {
    /// POSTs a form to an Entra endpoint and reads the JSON answer: a success parses into
    /// `T`, an OAuth error is classified. reqwest's errors can hold the URL; secrets travel in
    /// the body, never in it.
    async fn post_form<T: serde::de::DeserializeOwned, F: Serialize + ?Sized>(
        &self,
        url: &str,
        form: &F,
        what: &str,
    ) -> Result<T, TokenError> {
        let r = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| TokenError::Transient(e.without_url().to_string()))?;
        let status = r.status();
        let body: Value = r
            .json()
            .await
            .map_err(|_| TokenError::Transient(format!("HTTP {status} without JSON")))?;
        if !status.is_success() {
            return Err(classify(status, &body));
        }
        serde_json::from_value(body)
            .map_err(|_| TokenError::Rejected(format!("{what} response is malformed")))
    }
}

fn asn1_to_utc(t: &openssl::asn1::Asn1TimeRef) -> Option<DateTime<Utc>> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(t).ok()?;
    DateTime::from_timestamp(i64::from(diff.days) * 86_400 + i64::from(diff.secs), 0)
}

/// Loads `AZURE_CLIENT_CERTIFICATE_PATH`; the error names the setting.
pub fn load_certificate(
    path: &Path,
    alg: AssertionAlg,
) -> Result<CertificateCredential, ConfigError> {
    let bad = |problem: String| ConfigError {
        setting: "AZURE_CLIENT_CERTIFICATE_PATH".into(),
        problem,
    };
    let pem =
        std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    CertificateCredential::from_pem(&pem, alg).map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// Maps an error answer to what the caller should do.
fn classify(status: reqwest::StatusCode, body: &Value) -> TokenError {
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let description = body
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reason = short_reason(&error, description);
    match error.as_str() {
        "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => {
            TokenError::SignInRequired(reason)
        }
        "authorization_declined" => TokenError::Declined,
        "expired_token" => TokenError::Expired,
        "temporarily_unavailable" => TokenError::Transient(reason),
        _ if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
            TokenError::Transient(reason)
        }
        _ => TokenError::Rejected(reason),
    }
}

/// `error` plus the AADSTS code and first sentence of the description, nothing else (the rest
/// holds trace ids and timestamps, and nothing we want in a log).
fn short_reason(error: &str, description: &str) -> String {
    let first = description.split(['\r', '\n']).next().unwrap_or("");
    let first = first.split(". ").next().unwrap_or(first);
    let first: String = first.chars().take(160).collect();
    if first.is_empty() {
        error.to_owned()
    } else {
        format!("{error}: {first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_roles_reads_the_payload_without_verifying() {
        let jwt = |claims: &str| format!("eyJhbGciOiJSUzI1NiJ9.{}.sig", B64URL.encode(claims));
        assert_eq!(
            access_token_roles(&jwt(
                r#"{"roles":["Presence.ReadWrite.All","User.ReadBasic.All"]}"#
            )),
            Some(vec![
                "Presence.ReadWrite.All".into(),
                "User.ReadBasic.All".into()
            ])
        );
        assert_eq!(access_token_roles(&jwt(r#"{"aud":"x"}"#)), Some(vec![]));
        assert_eq!(access_token_roles(&jwt(r#"{"roles":"x"}"#)), None);
        assert_eq!(access_token_roles("opaque-token"), None);
        assert_eq!(access_token_roles("a.!!!.c"), None);
    }

    #[test]
    fn errors_are_classified_by_what_the_caller_does() {
        let cases = [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2026-01-01.\r\nTrace ID: abc"}"#,
                "SignInRequired",
            ),
            (
                400,
                r#"{"error":"interaction_required","error_description":"AADSTS50076: MFA"}"#,
                "SignInRequired",
            ),
            (400, r#"{"error":"authorization_pending"}"#, "Rejected"),
            (400, r#"{"error":"expired_token"}"#, "Expired"),
            (503, r#"{"error":"temporarily_unavailable"}"#, "Transient"),
            (500, r#"{}"#, "Transient"),
            (
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
                "Rejected",
            ),
        ];
        for (status, body, want) in cases {
            let e = classify(
                reqwest::StatusCode::from_u16(status).unwrap(),
                &serde_json::from_str(body).unwrap(),
            );
            assert!(format!("{e:?}").starts_with(want), "{body}: {e:?}");
            assert!(!e.to_string().contains("Trace ID"), "{e}");
        }
        let e = classify(
            reqwest::StatusCode::BAD_REQUEST,
            &serde_json::from_str(cases[0].1).unwrap(),
        );
        assert_eq!(e.to_string(), "sign-in required: invalid_grant: AADSTS700082: The refresh token has expired due to inactivity");
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        let (v, c) = pkce_pair();
        assert!(v.len() >= 43);
        assert_eq!(c, B64URL.encode(Sha256::digest(v.as_bytes())));
    }

    #[test]
    fn authorize_url_has_every_parameter() {
        let c = EntraClient::new(
            &Url::parse("https://login.example").unwrap(),
            "organizations",
            "cid",
            ClientCredential::None,
            vec!["a".into(), "offline_access".into()],
        );
        let u = c.authorize_url(
            &Url::parse("https://app/api/auth/end").unwrap(),
            "st",
            "ch",
            "no",
            Some("me@x"),
        );
        assert!(u
            .as_str()
            .starts_with("https://login.example/organizations/oauth2/v2.0/authorize?"));
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["response_mode"], "form_post");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "a offline_access");
        assert_eq!(q["login_hint"], "me@x");
        assert_eq!(q["redirect_uri"], "https://app/api/auth/end");
    }
}
