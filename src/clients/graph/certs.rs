//! The notification key ring: the certificate(s) Graph encrypts rich change notifications
//! for, with their private keys.
//!
//! Graph wraps each notification's symmetric key with the public key of the certificate a
//! subscription named (`encryptionCertificate` + `encryptionCertificateId`), so we must keep
//! every certificate Graph may still have used: during a rotation that is two, the new one
//! (PATCHed onto every live subscription) and the previous one (for notifications Graph
//! encrypted before that and retries for up to 4 hours).
//!
//! # Where the keys come from
//!
//! * `NOTIFICATION_CERTIFICATE_PATH`: a PEM file with one or more certificate + private key
//!   pairs, in any order. The *first certificate* in the file is the current one; every other
//!   pair is an older one kept for decryption only. Certificates without a matching private
//!   key (a chain) are ignored; a private key without its certificate is an error.
//! * `serve` without that setting: a self-signed RSA-2048 certificate generated on first start
//!   and kept in `{data-dir}/notification-cert.pem` (mode 0600). It is renewed automatically
//!   when it has less than 30 days left; the old pair stays in the file as the previous one.
//! * Key Vault (`KEY_VAULT_NOTIFICATION_CERTIFICATE`, cloud build): `clients::keyvault`
//!   loads the current version and the previous one as PEM; the handler makes a ring of each
//!   with [`KeyRing::from_pem`] and joins them with [`KeyRing::with_previous`].
//!
//! # Rotation procedure (docs/certificates.md has the long form)
//!
//! 1. Create the new pair; put it *first* in the file (the old pair may stay after it).
//! 2. Restart (or redeploy); the next subscription run PATCHes every live subscription with
//!    the new certificate (Graph's documented rotation, `encryptionCertificate` +
//!    `encryptionCertificateId`), and notifications already on their way, retried by Graph
//!    for up to 4 hours, are still decrypted with the old key.
//! 3. The old key is kept for that long by the program itself: `engine::subscriptions`
//!    stores every key a subscription uses, sealed with `TOKEN_ENCRYPTION_KEY`, and loads the
//!    ones retired less than 4½ hours ago at start, so the old pair may leave the file (or
//!    Key Vault move on twice) without losing a retried notification.
//!
//! # The certificate id
//!
//! `encryptionCertificateId` is ours to choose (at most 128 characters). We derive it from
//! the certificate itself, `sha256-` and the first 16 bytes of the SHA-256 of its DER in hex,
//! so every instance that loads the same file agrees on it and no setting is needed.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// The file `serve` keeps its generated certificate in, under the data directory.
pub const SERVE_CERT_FILE: &str = "notification-cert.pem";

/// A generated certificate is replaced when it has fewer days than this left.
const RENEW_BEFORE_DAYS: i64 = 30;

/// Lifetime of a generated certificate.
const GENERATED_VALIDITY_DAYS: u32 = 2 * 365;

/// Why a key ring could not be loaded. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The PEM holds no certificate with a matching private key.
    #[error("no certificate with its private key found")]
    NoPair,
    /// A private key has no certificate in the same text.
    #[error("a private key has no matching certificate")]
    OrphanKey,
    /// A PEM block could not be parsed (encrypted keys are not supported).
    #[error("cannot parse {0} (PEM expected; encrypted private keys are not supported)")]
    Parse(&'static str),
    /// The key is not RSA of 2048 to 4096 bits (Graph's requirement).
    #[error("the notification key must be RSA with 2048 to 4096 bits")]
    NotRsa,
}

/// RSA-OAEP unwrapping failed. Deliberately without detail: which step failed is nothing a
/// caller can act on, and telling it apart is what padding-oracle attacks feed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot unwrap the data key")]
pub struct UnwrapError;

/// One certificate and its private key. Clones share the key (reference counted).
#[derive(Clone)]
pub struct NotificationKey {
    id: String,
    cert_der: Vec<u8>,
    not_after: Option<DateTime<Utc>>,
    key: PKey<Private>,
    /// The same key as a low-level RSA key, made once: [`Self::unwrap_oaep_sha1`] then costs
    /// the one private-key operation and no per-call context set-up (docs/performance.md).
    rsa: Rsa<Private>,
}

impl std::fmt::Debug for NotificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationKey")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl NotificationKey {
    fn new(cert: &X509, key: PKey<Private>) -> Result<Self, CertError> {
        let rsa = key.rsa().map_err(|_| CertError::NotRsa)?;
        let bits = rsa.size() * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(CertError::NotRsa);
        }
        let cert_der = cert.to_der().map_err(|_| CertError::Parse("certificate"))?;
        let digest = openssl::sha::sha256(&cert_der);
        let id = format!("sha256-{}", hex(&digest[..16]));
        Ok(Self {
            id,
            cert_der,
            not_after: asn1_to_utc(cert.not_after()),
            key,
            rsa,
        })
    }

    /// The `encryptionCertificateId` subscriptions send with this certificate.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `encryptionCertificate` subscriptions send: base64 of the DER certificate.
    pub fn certificate_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_der)
    }

    /// When the certificate expires (Graph does not check it; we renew generated ones).
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.not_after
    }

    /// RSA-OAEP unwrap with SHA-1 and MGF1-SHA-1, the padding Graph uses for `dataKey`
    /// (.NET's `Decrypt(data, fOAEP: true)`).
    pub fn unwrap_oaep_sha1(&self, wrapped: &[u8]) -> Result<Vec<u8>, UnwrapError> {
        // `RSA_private_decrypt` with `RSA_PKCS1_OAEP_PADDING` is exactly OAEP with SHA-1 and
        // MGF1-SHA-1. Through `EVP_PKEY_decrypt` OpenSSL 3 would build a context, fetch the
        // cipher and both digests by name and set three parameters on every call: about a
        // tenth of the RSA operation itself.
        let mut out = vec![0u8; self.rsa.size() as usize];
        let n = self
            .rsa
            .private_decrypt(wrapped, &mut out, Padding::PKCS1_OAEP)
            .map_err(|_| UnwrapError)?;
        out.truncate(n);
        Ok(out)
    }

    /// The DER certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate *and private key* as PEM (what `serve` writes to its data directory).
    pub fn to_pem(&self) -> anyhow::Result<Vec<u8>> {
        let cert = X509::from_der(&self.cert_der)?;
        let mut out = cert.to_pem()?;
        out.extend(self.key.private_key_to_pem_pkcs8()?);
        Ok(out)
    }
}

/// The certificates we can decrypt notifications for. The first is the current one.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    keys: Vec<NotificationKey>,
}

impl KeyRing {
    /// An empty ring: every encrypted notification is rejected (`UnknownCertificate`).
    pub fn empty() -> Self {
        Self::default()
    }

    /// A ring of the given keys, the first being the current one.
    pub fn from_keys(keys: Vec<NotificationKey>) -> Self {
        Self { keys }
    }

    /// Parses PEM text holding one or more certificate + private key pairs (see the module
    /// docs for the rules).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertError> {
        let mut certs = Vec::new();
        let mut keys = Vec::new();
        for block in pem_blocks(pem) {
            if block.label == "CERTIFICATE" {
                certs
                    .push(X509::from_pem(block.text).map_err(|_| CertError::Parse("certificate"))?);
            } else if block.label.ends_with("PRIVATE KEY") {
                if block.label.contains("ENCRYPTED") {
                    return Err(CertError::Parse("private key"));
                }
                keys.push(
                    PKey::private_key_from_pem(block.text)
                        .map_err(|_| CertError::Parse("private key"))?,
                );
            }
        }
        let mut ring = Vec::new();
        for cert in &certs {
            let Ok(public) = cert.public_key() else {
                continue;
            };
            if let Some(pos) = keys.iter().position(|k| public.public_eq(k)) {
                let key = keys.remove(pos);
                ring.push(NotificationKey::new(cert, key)?);
            }
        }
        if !keys.is_empty() {
            return Err(CertError::OrphanKey);
        }
        if ring.is_empty() {
            return Err(CertError::NoPair);
        }
        Ok(Self { keys: ring })
    }

    /// Loads `NOTIFICATION_CERTIFICATE_PATH`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read notification certificate {}", path.display()))?;
        Self::from_pem(&pem)
            .with_context(|| format!("notification certificate {} is not usable", path.display()))
    }

    /// Appends an older ring's keys (decryption only) after this one's.
    pub fn with_previous(mut self, previous: KeyRing) -> Self {
        for k in previous.keys {
            if !self.keys.iter().any(|m| m.id == k.id) {
                self.keys.push(k);
            }
        }
        self
    }

    /// The certificate new subscriptions use.
    pub fn current(&self) -> Option<&NotificationKey> {
        self.keys.first()
    }

    /// The key for an `encryptionCertificateId`.
    pub fn find(&self, id: &str) -> Option<&NotificationKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Every key, current first.
    pub fn keys(&self) -> &[NotificationKey] {
        &self.keys
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `serve` without `NOTIFICATION_CERTIFICATE_PATH`: loads `{data_dir}/notification-cert.pem`,
    /// generating a self-signed RSA-2048 certificate (mode 0600) on first start, and a new one,
    /// keeping the old as previous, when the current one has less than 30 days left.
    pub fn load_or_create(data_dir: &Path, now: DateTime<Utc>) -> anyhow::Result<Self> {
        let path = data_dir.join(SERVE_CERT_FILE);
        let existing = match std::fs::read(&path) {
            Ok(pem) => Some(Self::from_pem(&pem).with_context(|| {
                format!(
                    "{} is not usable; move it away to regenerate",
                    path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let fresh_enough = |ring: &KeyRing| {
            ring.current()
                .and_then(|k| k.not_after)
                .is_some_and(|t| t - now > chrono::Duration::days(RENEW_BEFORE_DAYS))
        };
        match existing {
            Some(ring) if fresh_enough(&ring) => Ok(ring),
            previous => {
                let new = generate_self_signed("teams-presence notifications")?;
                let mut ring = KeyRing { keys: vec![new] };
                if let Some(prev) = previous {
                    // Keep only the one that was current: older ones have long expired from
                    // every subscription.
                    ring.keys.extend(prev.keys.into_iter().take(1));
                }
                let mut pem = Vec::new();
                for k in &ring.keys {
                    pem.extend(k.to_pem()?);
                }
                crate::files::write_private(&path, &pem)?;
                tracing::info!(certificate_id = %ring.keys[0].id, "generated notification certificate");
                Ok(ring)
            }
        }
    }
}

/// A new self-signed RSA-2048 certificate (Graph does not check the issuer or chain).
pub fn generate_self_signed(common_name: &str) -> anyhow::Result<NotificationKey> {
    let rsa = Rsa::generate(2048).context("cannot generate an RSA key")?;
    let key = PKey::from_rsa(rsa)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", common_name)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(GENERATED_VALIDITY_DAYS)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    Ok(NotificationKey::new(&cert, key)?)
}

fn asn1_to_utc(t: &openssl::asn1::Asn1TimeRef) -> Option<DateTime<Utc>> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(t).ok()?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Utc.timestamp_opt(secs, 0).single()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

struct PemBlock<'a> {
    label: &'a str,
    text: &'a [u8],
}

/// Splits PEM text into its `-----BEGIN X-----` ... `-----END X-----` blocks (OpenSSL's
/// reader only returns the first private key of a file).
fn pem_blocks(pem: &[u8]) -> Vec<PemBlock<'_>> {
    let Ok(text) = std::str::from_utf8(pem) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let block_end = start + end + end_marker.len();
        out.push(PemBlock {
            label,
            text: &pem[offset + start..offset + block_end],
        });
        offset += block_end;
        rest = &rest[block_end..];
    }
    out
}

/// The notification key ring: `NOTIFICATION_CERTIFICATE_PATH` when set; otherwise, with a
/// data directory (`serve`), the generated certificate kept there; otherwise (`handler`) an
/// empty ring, so encrypted notifications are rejected until a certificate is configured.
///
/// Key Vault (`KEY_VAULT_NOTIFICATION_CERTIFICATE`) is not loaded here: the handler's
/// `host::certificates` loads it (current and previous version) and replaces this ring.
pub fn from_settings(
    settings: &crate::config::Settings,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<KeyRing> {
    if let Some(path) = &settings.graph.notification_certificate_path {
        return KeyRing::load(path).map_err(|e| {
            crate::config::ConfigError {
                setting: "NOTIFICATION_CERTIFICATE_PATH".into(),
                problem: format!("{e:#}"),
            }
            .into()
        });
    }
    match data_dir {
        Some(dir) => KeyRing::load_or_create(dir, chrono::Utc::now()),
        None => {
            tracing::warn!("NOTIFICATION_CERTIFICATE_PATH is not set: encrypted notifications will be rejected");
            Ok(KeyRing::empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_two_pairs_makes_the_first_current_and_keeps_the_second() {
        let a = generate_self_signed("a").unwrap();
        let b = generate_self_signed("b").unwrap();
        // Key before certificate for the second pair: order within the file is free.
        let mut pem = a.to_pem().unwrap();
        let b_pem = b.to_pem().unwrap();
        let b_text = String::from_utf8(b_pem).unwrap();
        let (cert, key) = b_text.split_at(b_text.find("-----BEGIN PRIVATE KEY").unwrap());
        pem.extend(key.as_bytes());
        pem.extend(cert.as_bytes());
        let ring = KeyRing::from_pem(&pem).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.current().unwrap().id(), a.id());
        assert!(ring.find(b.id()).is_some());
        assert!(a.id().starts_with("sha256-") && a.id().len() == 7 + 32);
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn a_key_without_its_certificate_is_refused() {
        let a = generate_self_signed("a").unwrap();
        let b = generate_self_signed("b").unwrap();
        let mut pem = a.to_pem().unwrap();
        pem.extend(b.key.private_key_to_pem_pkcs8().unwrap());
        assert!(matches!(KeyRing::from_pem(&pem), Err(CertError::OrphanKey)));
        assert!(matches!(
            KeyRing::from_pem(&X509::from_der(&a.cert_der).unwrap().to_pem().unwrap()),
            Err(CertError::NoPair)
        ));
        assert!(matches!(KeyRing::from_pem(b"junk"), Err(CertError::NoPair)));
    }

    #[test]
    fn serve_generates_keeps_and_renews_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let first = KeyRing::load_or_create(dir.path(), now).unwrap();
        let path = dir.path().join(SERVE_CERT_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = KeyRing::load_or_create(dir.path(), now).unwrap();
        assert_eq!(again.current().unwrap().id(), first.current().unwrap().id());
        // Two years later the certificate is close to expiry: a new one, the old kept.
        let later = now + chrono::Duration::days(GENERATED_VALIDITY_DAYS as i64 - 10);
        let renewed = KeyRing::load_or_create(dir.path(), later).unwrap();
        assert_ne!(
            renewed.current().unwrap().id(),
            first.current().unwrap().id()
        );
        assert!(renewed.find(first.current().unwrap().id()).is_some());
        assert_eq!(renewed.keys().len(), 2);
    }

    #[test]
    fn oaep_sha1_unwraps_what_openssl_wrapped() {
        let k = generate_self_signed("x").unwrap();
        let rsa = k.key.rsa().unwrap();
        let mut wrapped = vec![0u8; rsa.size() as usize];
        // RSA_PKCS1_OAEP_PADDING in OpenSSL is SHA-1 / MGF1-SHA-1, as Graph's.
        let n = rsa
            .public_encrypt(&[7u8; 32], &mut wrapped, Padding::PKCS1_OAEP)
            .unwrap();
        wrapped.truncate(n);
        assert_eq!(k.unwrap_oaep_sha1(&wrapped).unwrap(), vec![7u8; 32]);
        assert!(k.unwrap_oaep_sha1(&wrapped[1..]).is_err());
    }
}
