//! Graph change notifications and lifecycle notifications: parsing, per-item checks and
//! decryption of rich (encrypted) presence notifications. Pure: no I/O, `now` is an argument.
//!
//! The checks, each on its own: [`check_subscription`] (the item names a subscription we
//! created, its `clientState` hashes to the stored digest in constant time, its tenant is the
//! subscription's) and [`open`] (the key ring has the certificate named by
//! `encryptionCertificateId`; RSA-OAEP (SHA-1, MGF1-SHA-1) unwraps `dataKey` to 32 bytes;
//! HMAC-SHA256 of the ciphertext with that key matches `dataSignature` (constant time)
//! *before* anything is decrypted; AES-256-CBC with IV = the key's first 16 bytes and PKCS#7
//! padding decrypts `data`; the plaintext is a presence resource whose user the subscription
//! covers). The batch's `validationTokens` are checked in [`super::validation_token`], since
//! that needs the signing keys. The order the webhook runs them in (validation tokens first,
//! before any store read) is written once, in the module doc of `engine::notifications`.
//!
//! The user id comes from the decrypted `id` only: `resourceData` and `resource` sit outside
//! the signature (and `resource`'s shape varies: `communications/presences/{id}` or
//! `...('{id}')`), so neither can name the user.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::clients::graph::certs::KeyRing;
use crate::core::presence::{Observation, Presence, Source};

/// What the checks need to know about a subscription of ours. The stored record implements
/// it (in `engine::subscriptions`, which sees both sides), so this module, like every client,
/// needs nothing from the store.
pub trait Subscription {
    /// Hex SHA-256 of the `clientState` it was created with ([`client_state_sha256_hex`]).
    fn client_state_sha256(&self) -> &str;
    /// The tenant of the users it covers.
    fn tenant_id(&self) -> &str;
    /// The users it covers, as Graph sent their ids.
    fn user_ids(&self) -> &[String];
}

/// Why a notification item was dropped. Fixed names only: never a secret or a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Not a change notification object (missing or mistyped fields).
    Malformed,
    /// No subscription of ours has this id.
    UnknownSubscription,
    /// `clientState` is absent or does not match the subscription's.
    ClientStateMismatch,
    /// `tenantId` is absent or not the subscription's tenant.
    TenantMismatch,
    /// No valid validation token in the batch vouches for the item's tenant.
    NoValidToken,
    /// The item carries no `encryptedContent` (presence subscriptions always include it).
    NotEncrypted,
    /// `encryptionCertificateId` names no certificate in the key ring.
    UnknownCertificate,
    /// A base64 field is not base64.
    BadEncoding,
    /// RSA-OAEP unwrapping of `dataKey` failed or did not yield 32 bytes.
    KeyUnwrapFailed,
    /// `dataSignature` does not match the ciphertext.
    BadSignature,
    /// AES-CBC decryption or its padding failed.
    DecryptFailed,
    /// The plaintext is not a presence resource.
    BadPayload,
    /// The decrypted user is not one the subscription covers.
    UserNotInSubscription,
    /// A lifecycle notification with an event we do not know.
    UnknownLifecycleEvent,
}

impl Rejection {
    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownSubscription => "unknown_subscription",
            Rejection::ClientStateMismatch => "client_state_mismatch",
            Rejection::TenantMismatch => "tenant_mismatch",
            Rejection::NoValidToken => "no_valid_token",
            Rejection::NotEncrypted => "not_encrypted",
            Rejection::UnknownCertificate => "unknown_certificate",
            Rejection::BadEncoding => "bad_encoding",
            Rejection::KeyUnwrapFailed => "key_unwrap_failed",
            Rejection::BadSignature => "bad_signature",
            Rejection::DecryptFailed => "decrypt_failed",
            Rejection::BadPayload => "bad_payload",
            Rejection::UserNotInSubscription => "user_not_in_subscription",
            Rejection::UnknownLifecycleEvent => "unknown_lifecycle_event",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body as a whole is not a notification batch (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not JSON, not an object, or `value` is not an array.
    #[error("body is not a notification batch")]
    Malformed,
}

/// `clientState` as received. Its `Debug` never shows the value.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ClientState(String);

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientState([REDACTED])")
    }
}

/// Hex SHA-256 of a `clientState`: what [`Subscription::client_state_sha256`] answers.
pub fn client_state_sha256_hex(client_state: &str) -> String {
    hex(&openssl::sha::sha256(client_state.as_bytes()))
}

/// `resourceData` of a notification: parsed for completeness, never trusted (unsigned).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResourceData {
    /// The user id, for presence.
    #[serde(default)]
    pub id: Option<String>,
}

/// `encryptedContent`: base64 fields as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedContent {
    /// AES-256-CBC ciphertext.
    pub data: String,
    /// HMAC-SHA256 of the ciphertext bytes.
    pub data_signature: String,
    /// The symmetric key, RSA-OAEP wrapped with our certificate.
    pub data_key: String,
    /// Which of our certificates wrapped it.
    pub encryption_certificate_id: String,
}

/// One change notification as Graph sends it (the fields we use).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotification {
    /// The subscription it belongs to.
    pub subscription_id: String,
    /// The subscription's secret.
    #[serde(default)]
    pub client_state: Option<ClientState>,
    /// Tenant of the resource.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Resource data (the user id).
    #[serde(default)]
    pub resource_data: Option<ResourceData>,
    /// The encrypted resource.
    #[serde(default)]
    pub encrypted_content: Option<EncryptedContent>,
}

/// What a lifecycle notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The subscription needs a fresh token soon (the only one Graph sends for presence).
    ReauthorizationRequired,
    /// Graph removed the subscription: recreate it.
    SubscriptionRemoved,
    /// Notifications were lost: re-read the state.
    Missed,
}

impl LifecycleEvent {
    /// Graph's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleEvent::ReauthorizationRequired => "reauthorizationRequired",
            LifecycleEvent::SubscriptionRemoved => "subscriptionRemoved",
            LifecycleEvent::Missed => "missed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            LifecycleEvent::ReauthorizationRequired,
            LifecycleEvent::SubscriptionRemoved,
            LifecycleEvent::Missed,
        ]
        .into_iter()
        .find(|e| e.as_str().eq_ignore_ascii_case(s))
    }
}

/// One lifecycle notification as Graph sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleNotification {
    /// The subscription it is about.
    pub subscription_id: String,
    /// The subscription's secret.
    #[serde(default)]
    pub client_state: Option<ClientState>,
    /// Tenant of the subscription.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The event, as sent.
    pub lifecycle_event: String,
}

impl LifecycleNotification {
    /// The event, if we know it.
    pub fn event(&self) -> Result<LifecycleEvent, Rejection> {
        LifecycleEvent::parse(&self.lifecycle_event).ok_or(Rejection::UnknownLifecycleEvent)
    }
}

/// A parsed batch: each item parsed on its own (one bad item does not sink the others).
#[derive(Debug)]
pub struct Batch<T> {
    /// The items, in order.
    pub items: Vec<Result<T, Rejection>>,
    /// `validationTokens`, one JWT per (app, tenant) pair of the items.
    pub validation_tokens: Vec<String>,
}

/// Parses `{"value":[...],"validationTokens":[...]}`.
pub fn parse_batch<T: DeserializeOwned>(body: &[u8]) -> Result<Batch<T>, BatchError> {
    // Graph's batches are well formed: typed in one pass, without a `Value` tree per item.
    // Anything else takes the lenient path below, where one bad item does not sink the rest.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed<T> {
        value: Vec<T>,
        #[serde(default)]
        validation_tokens: Vec<Value>,
    }
    if let Ok(b) = serde_json::from_slice::<Typed<T>>(body) {
        return Ok(Batch {
            items: b.value.into_iter().map(Ok).collect(),
            validation_tokens: strings(b.validation_tokens),
        });
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(BatchError::Malformed);
    };
    let items = match obj.remove("value") {
        Some(Value::Array(items)) => items,
        _ => return Err(BatchError::Malformed),
    };
    let validation_tokens = match obj.remove("validationTokens") {
        Some(Value::Array(tokens)) => strings(tokens),
        _ => Vec::new(),
    };
    Ok(Batch {
        items: items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|_| Rejection::Malformed))
            .collect(),
        validation_tokens,
    })
}

/// The strings of a JSON array (tokens that are not strings are no tokens).
fn strings(values: Vec<Value>) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|t| match t {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The item belongs to `sub` (found by its `subscriptionId`), carries its
/// `clientState` and its tenant. Returns the tenant id.
pub fn check_subscription<'a, S: Subscription + ?Sized>(
    client_state: Option<&ClientState>,
    tenant_id: Option<&'a str>,
    sub: Option<&S>,
) -> Result<&'a str, Rejection> {
    let sub = sub.ok_or(Rejection::UnknownSubscription)?;
    let state = client_state.ok_or(Rejection::ClientStateMismatch)?;
    let received = openssl::sha::sha256(state.0.as_bytes());
    let stored = unhex32(sub.client_state_sha256()).ok_or(Rejection::ClientStateMismatch)?;
    // Both are 32 bytes, so memcmp::eq cannot panic; it does not stop at the first difference.
    if !openssl::memcmp::eq(&received, &stored) {
        return Err(Rejection::ClientStateMismatch);
    }
    match tenant_id {
        Some(t) if t.eq_ignore_ascii_case(sub.tenant_id()) => Ok(t),
        _ => Err(Rejection::TenantMismatch),
    }
}

/// Decrypts an item already matched to `sub` and vouched for by a validation token,
/// and turns it into an observation made at `now`.
pub fn open<S: Subscription + ?Sized>(
    item: &ChangeNotification,
    sub: &S,
    keys: &KeyRing,
    now: DateTime<Utc>,
) -> Result<Observation, Rejection> {
    let content = item
        .encrypted_content
        .as_ref()
        .ok_or(Rejection::NotEncrypted)?;
    let plaintext = decrypt_content(content, keys)?;
    // The user comes from the signed, decrypted content only: `resourceData` is outside the
    // signature and would let an item be attributed to someone else.
    let payload = parse_presence(&plaintext)?;
    // Ids are stored as Graph sends them, so the exact compare (a memcmp that stops at the
    // first differing byte) nearly always decides; the case-insensitive one is the fallback.
    if !sub.user_ids().contains(&payload.user_id)
        && !sub
            .user_ids()
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&payload.user_id))
    {
        return Err(Rejection::UserNotInSubscription);
    }
    Ok(Observation {
        user_id: payload.user_id,
        tenant_id: sub.tenant_id().to_owned(),
        presence: payload.presence,
        source: Source::Notification,
        observed_at: now,
        graph_sequence: payload.sequence,
        item_digest: Some(item_digest(content)),
    })
}

/// What identifies one delivered item: a digest of its encrypted content. Graph encrypts
/// every notification with a fresh key, so two real changes never share it, while a
/// redelivery or a replayed capture carries the very same bytes.
pub fn item_digest(content: &EncryptedContent) -> String {
    let mut h = openssl::sha::Sha256::new();
    for part in [&content.data_key, &content.data, &content.data_signature] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finish()[..16])
}

/// The per-item checks for one item, given whether its tenant had a valid validation token
/// (the fuzz target and the benchmark; the webhook runs the steps separately, in the order
/// `engine::notifications` gives, to check a batch's tokens once before any store read).
pub fn process<S: Subscription + ?Sized>(
    item: &ChangeNotification,
    sub: Option<&S>,
    tenant_has_valid_token: impl Fn(&str) -> bool,
    keys: &KeyRing,
    now: DateTime<Utc>,
) -> Result<Observation, Rejection> {
    let tenant = check_subscription(item.client_state.as_ref(), item.tenant_id.as_deref(), sub)?;
    if !tenant_has_valid_token(tenant) {
        return Err(Rejection::NoValidToken);
    }
    open(item, sub.ok_or(Rejection::UnknownSubscription)?, keys, now)
}

/// Unwraps the key, checks the signature, decrypts. Returns the plaintext bytes.
pub fn decrypt_content(content: &EncryptedContent, keys: &KeyRing) -> Result<Vec<u8>, Rejection> {
    let cert = keys
        .find(&content.encryption_certificate_id)
        .ok_or(Rejection::UnknownCertificate)?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let wrapped = b64
        .decode(&content.data_key)
        .map_err(|_| Rejection::BadEncoding)?;
    let data = b64
        .decode(&content.data)
        .map_err(|_| Rejection::BadEncoding)?;
    let signature = b64
        .decode(&content.data_signature)
        .map_err(|_| Rejection::BadEncoding)?;
    let key = secrecy::zeroize::Zeroizing::new(
        cert.unwrap_oaep_sha1(&wrapped)
            .map_err(|_| Rejection::KeyUnwrapFailed)?,
    );
    let key: &[u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| Rejection::KeyUnwrapFailed)?;
    verify_and_decrypt(key, &data, &signature)
}

/// HMAC-SHA256(key, ciphertext) must equal `signature` (constant time) before AES-256-CBC
/// with IV = key[..16] decrypts the ciphertext.
pub fn verify_and_decrypt(
    key: &[u8; 32],
    ciphertext: &[u8],
    signature: &[u8],
) -> Result<Vec<u8>, Rejection> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|_| Rejection::KeyUnwrapFailed)?;
    mac.update(ciphertext);
    let expected = mac.finalize().into_bytes();
    if signature.len() != expected.len() || !openssl::memcmp::eq(&expected, signature) {
        return Err(Rejection::BadSignature);
    }
    openssl::symm::decrypt(
        openssl::symm::Cipher::aes_256_cbc(),
        key,
        Some(&key[..16]),
        ciphertext,
    )
    .map_err(|_| Rejection::DecryptFailed)
}

/// The decrypted presence resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresencePayload {
    /// The user (the decrypted `id`; never `resourceData.id`, which is not signed).
    pub user_id: String,
    /// Availability and activity.
    pub presence: Presence,
    /// `sequenceNumber` when present, made sortable (numbers zero-padded to 20 digits).
    pub sequence: Option<String>,
}

/// Parses the decrypted JSON: `{"id", "availability", "activity", "sequenceNumber"?}`.
pub fn parse_presence(plaintext: &[u8]) -> Result<PresencePayload, Rejection> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        #[serde(default)]
        id: Option<String>,
        availability: String,
        activity: String,
        #[serde(default)]
        sequence_number: Option<Value>,
    }
    let w: Wire = serde_json::from_slice(plaintext).map_err(|_| Rejection::BadPayload)?;
    let user_id =
        w.id.filter(|s| !s.trim().is_empty())
            .ok_or(Rejection::BadPayload)?;
    let sequence = match w.sequence_number {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Number(n)) => n.as_u64().map(|n| format!("{n:020}")),
        _ => None,
    };
    Ok(PresencePayload {
        user_id: user_id.trim().to_owned(),
        presence: Presence::new(&w.availability, &w.activity),
        sequence,
    })
}

/// A subscription id (attacker-controlled text) made safe to log: id characters only,
/// at most 64 of them.
pub fn loggable_id(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::graph::certs::generate_self_signed;
    use crate::clients::graph::testing;
    use crate::store::SubscriptionRecord;
    use chrono::TimeZone;
    use serde_json::json;

    const USER: &str = "7b1a3c1e-0000-4000-8000-000000000001";
    const TENANT: &str = "11111111-2222-3333-4444-555555555555";

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn sub() -> SubscriptionRecord {
        SubscriptionRecord {
            subscription_id: "sub-1".into(),
            user_ids: vec![USER.to_uppercase()],
            tenant_id: TENANT.into(),
            owner_user_id: USER.into(),
            resource: format!("/communications/presences/{USER}"),
            client_state_sha256: client_state_sha256_hex("s3cret"),
            expires_at: now(),
            created_at: now(),
            certificate_id: String::new(),
        }
    }

    fn ring() -> (KeyRing, String) {
        let k = generate_self_signed("t").unwrap();
        let id = k.id().to_owned();
        let pem = testing::key_pem(&k);
        (KeyRing::from_pem(&pem).unwrap(), id)
    }

    fn item(ring: &KeyRing, cert_id: &str, payload: &Value) -> Value {
        let cert = ring.find(cert_id).unwrap();
        testing::notification_json(
            "sub-1",
            "s3cret",
            TENANT,
            USER,
            &testing::seal(cert, cert_id, payload.to_string().as_bytes()),
        )
    }

    fn run(ring: &KeyRing, v: Value) -> Result<Observation, Rejection> {
        let n: ChangeNotification = serde_json::from_value(v).map_err(|_| Rejection::Malformed)?;
        process(&n, Some(&sub()), |t| t == TENANT, ring, now())
    }

    #[test]
    fn a_sealed_notification_opens_into_an_observation() {
        let (ring, id) = ring();
        let obs = run(
            &ring,
            item(
                &ring,
                &id,
                &json!({"id": USER, "availability": "busy", "activity": "InACall", "sequenceNumber": 42}),
            ),
        )
        .unwrap();
        assert_eq!(obs.user_id, USER);
        assert_eq!(obs.tenant_id, TENANT);
        assert_eq!(obs.presence, Presence::new("Busy", "InACall"));
        assert_eq!(obs.source, Source::Notification);
        assert_eq!(obs.observed_at, now());
        assert_eq!(obs.graph_sequence.as_deref(), Some("00000000000000000042"));
    }

    #[test]
    fn every_tampering_is_rejected_with_its_reason() {
        let (ring, id) = ring();
        let good = item(
            &ring,
            &id,
            &json!({"id": USER, "availability": "Away", "activity": "Away"}),
        );
        let flip = |field: &str| {
            let mut v = good.clone();
            let s = v["encryptedContent"][field].as_str().unwrap().to_owned();
            let mut bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
            bytes[5] ^= 1;
            v["encryptedContent"][field] =
                json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            v
        };
        let set = |path: &[&str], val: Value| {
            let mut v = good.clone();
            let mut cur = &mut v;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[path[path.len() - 1]] = val;
            v
        };
        let cases: Vec<(Value, Rejection)> = vec![
            (flip("dataSignature"), Rejection::BadSignature),
            (flip("data"), Rejection::BadSignature),
            (flip("dataKey"), Rejection::KeyUnwrapFailed),
            (
                set(&["clientState"], json!("wrong")),
                Rejection::ClientStateMismatch,
            ),
            (
                set(&["clientState"], Value::Null),
                Rejection::ClientStateMismatch,
            ),
            (
                set(&["tenantId"], json!("other")),
                Rejection::TenantMismatch,
            ),
            (
                set(
                    &["encryptedContent", "encryptionCertificateId"],
                    json!("nope"),
                ),
                Rejection::UnknownCertificate,
            ),
            (
                set(&["encryptedContent", "data"], json!("!!!")),
                Rejection::BadEncoding,
            ),
            (
                set(&["encryptedContent"], Value::Null),
                Rejection::NotEncrypted,
            ),
            (set(&["subscriptionId"], json!(7)), Rejection::Malformed),
        ];
        for (v, want) in cases {
            assert_eq!(run(&ring, v).unwrap_err(), want);
        }
        // A valid item whose tenant has no validation token.
        let n: ChangeNotification = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(
            process(&n, Some(&sub()), |_| false, &ring, now()).unwrap_err(),
            Rejection::NoValidToken
        );
        assert_eq!(
            process(&n, None::<&SubscriptionRecord>, |_| true, &ring, now()).unwrap_err(),
            Rejection::UnknownSubscription
        );
        // The same content under another certificate: unwrapping fails.
        let (other, _) = self::ring();
        let other_id = other.current().unwrap().id().to_owned();
        let moved = set(
            &["encryptedContent", "encryptionCertificateId"],
            json!(other_id),
        );
        assert_eq!(run(&other, moved).unwrap_err(), Rejection::KeyUnwrapFailed);
    }

    #[test]
    fn payload_rules() {
        let (ring, id) = ring();
        let cases: Vec<(Value, Result<&str, Rejection>)> = vec![
            // No id in the signed content: `resourceData.id` does not stand in for it.
            (
                json!({"availability": "Busy", "activity": "Busy"}),
                Err(Rejection::BadPayload),
            ),
            (
                json!({"id": "someone-else", "availability": "Busy", "activity": "Busy"}),
                Err(Rejection::UserNotInSubscription),
            ),
            (
                json!({"id": USER, "availability": "Busy"}),
                Err(Rejection::BadPayload),
            ),
            (json!([1, 2]), Err(Rejection::BadPayload)),
        ];
        for (payload, want) in cases {
            let got = run(&ring, item(&ring, &id, &payload)).map(|o| o.user_id);
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{payload}");
        }
        // Padding garbage under a valid signature: decrypt fails, nothing panics.
        let key = [9u8; 32];
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(&[1u8; 32]);
        let sig = mac.finalize().into_bytes();
        assert_eq!(
            verify_and_decrypt(&key, &[1u8; 32], &sig).unwrap_err(),
            Rejection::DecryptFailed
        );
        assert_eq!(
            verify_and_decrypt(&key, &[1u8; 32], &sig[..31]).unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn batch_parsing_keeps_good_items_next_to_bad_ones() {
        let b: Batch<ChangeNotification> = parse_batch(
            br#"{"value":[{"subscriptionId":"a"},{"nope":1}],"validationTokens":["t",5]}"#,
        )
        .unwrap();
        assert!(b.items[0].is_ok());
        assert_eq!(b.items[1].as_ref().unwrap_err(), &Rejection::Malformed);
        assert_eq!(b.validation_tokens, vec!["t".to_owned()]);
        for bad in [&b"[]"[..], b"{}", b"{\"value\":{}}", b"\xff"] {
            assert!(parse_batch::<ChangeNotification>(bad).is_err());
        }
        let l: Batch<LifecycleNotification> = parse_batch(
            br#"{"value":[{"subscriptionId":"a","lifecycleEvent":"reauthorizationRequired"},{"subscriptionId":"b","lifecycleEvent":"x"}]}"#,
        )
        .unwrap();
        let events: Vec<_> = l
            .items
            .iter()
            .map(|i| i.as_ref().unwrap().event())
            .collect();
        assert_eq!(
            events,
            vec![
                Ok(LifecycleEvent::ReauthorizationRequired),
                Err(Rejection::UnknownLifecycleEvent)
            ]
        );
    }

    #[test]
    fn client_state_never_shows_in_debug_output() {
        let n: ChangeNotification =
            serde_json::from_str(r#"{"subscriptionId":"a","clientState":"hunter2"}"#).unwrap();
        assert!(!format!("{n:?}").contains("hunter2"));
        assert_eq!(loggable_id("ab\n\u{1b}[31m-1"), "ab31m-1");
    }
}
