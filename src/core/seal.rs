//! Sealing secrets at rest (refresh tokens, PKCE verifiers): AES-256-GCM under
//! `TOKEN_ENCRYPTION_KEY`, pure, no I/O.
//!
//! Format: `v1.<kid>.<nonce>.<ciphertext+tag>` (base64url without padding), where `kid` is the
//! first 8 hex digits of SHA-256(key), so keys can rotate: a [`KeyRing`] holds the current key
//! (used to seal) and older ones (still able to open). The associated data binds a sealed value
//! to where it belongs (e.g. `refresh_token:<user id>`), so a ciphertext copied into another
//! user's row does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use sha2::{Digest, Sha256};

/// Why a sealed value did not open. Deliberately vague: no key or plaintext material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not in the `v1.kid.nonce.ct` format.
    #[error("sealed value is malformed")]
    Malformed,
    /// Sealed with a key this process does not have (rotated away?).
    #[error("sealed with an unknown key id {0}")]
    UnknownKey(String),
    /// Tampered, moved to another record, or the wrong key.
    #[error("sealed value failed authentication")]
    Forged,
}

/// One key with its id.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; 32],
}

impl Key {
    fn new(bytes: [u8; 32]) -> Self {
        let id = hex8(&Sha256::digest(bytes));
        Self { id, bytes }
    }
}

fn hex8(d: &[u8]) -> String {
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The current key and any previous ones.
#[derive(Clone)]
pub struct KeyRing {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids are not secret; key bytes are.
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(current: [u8; 32]) -> Self {
        Self {
            current: Key::new(current),
            previous: Vec::new(),
        }
    }

    /// Adds an older key that can still open values.
    pub fn with_previous(mut self, key: [u8; 32]) -> Self {
        self.previous.push(Key::new(key));
        self
    }

    /// The id of the sealing key.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let mut nonce = [0u8; 12];
        openssl::rand::rand_bytes(&mut nonce).expect("the OS random source works");
        let mut tag = [0u8; 16];
        let mut ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.current.bytes,
            Some(&nonce),
            aad.as_bytes(),
            plaintext,
            &mut tag,
        )
        .expect("AES-256-GCM with a 32-byte key and 12-byte nonce cannot fail");
        ct.extend_from_slice(&tag);
        format!(
            "v1.{}.{}.{}",
            self.current.id,
            B64.encode(nonce),
            B64.encode(ct)
        )
    }

    /// Opens a sealed value bound to `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.split('.');
        let (Some("v1"), Some(kid), Some(nonce), Some(ct), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SealError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kid)
            .ok_or_else(|| SealError::UnknownKey(kid.chars().take(8).collect()))?;
        let nonce = B64.decode(nonce).map_err(|_| SealError::Malformed)?;
        let ct = B64.decode(ct).map_err(|_| SealError::Malformed)?;
        if nonce.len() != 12 || ct.len() < 16 {
            return Err(SealError::Malformed);
        }
        let (body, tag) = ct.split_at(ct.len() - 16);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &key.bytes,
            Some(&nonce),
            aad.as_bytes(),
            body,
            tag,
        )
        .map_err(|_| SealError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let ring = KeyRing::new([7; 32]);
        let s = ring.seal(b"refresh-token-value", "refresh_token:user-a");
        assert!(!s.contains("refresh-token-value"));
        assert!(s.starts_with(&format!("v1.{}.", ring.current_id())));
        assert_eq!(
            ring.open(&s, "refresh_token:user-a").unwrap(),
            b"refresh-token-value"
        );
        // Moved to another user's row: does not open.
        assert_eq!(
            ring.open(&s, "refresh_token:user-b"),
            Err(SealError::Forged)
        );
        // Two seals of the same value differ (fresh nonce).
        assert_ne!(s, ring.seal(b"refresh-token-value", "refresh_token:user-a"));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = KeyRing::new([1; 32]);
        let sealed = old.seal(b"x", "a");
        let new = KeyRing::new([2; 32]).with_previous([1; 32]);
        assert_eq!(new.open(&sealed, "a").unwrap(), b"x");
        assert!(new.seal(b"x", "a").contains(new.current_id()));
        assert!(matches!(
            KeyRing::new([3; 32]).open(&sealed, "a"),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_and_garbage_are_errors_not_panics() {
        let ring = KeyRing::new([9; 32]);
        let s = ring.seal(b"secret", "a");
        // Flip one ciphertext bit and re-encode: the tag no longer matches.
        let (head, ct) = s.rsplit_once('.').unwrap();
        let mut bytes = B64.decode(ct).unwrap();
        bytes[0] ^= 1;
        let tampered = format!("{head}.{}", B64.encode(bytes));
        assert_eq!(ring.open(&tampered, "a"), Err(SealError::Forged));
        for bad in [
            "",
            "v1",
            "v2.a.b.c",
            "v1.x.y.z",
            "v1.x.y.z.w",
            &format!("v1.{}.AAAA.AAAA", ring.current_id()),
        ] {
            assert!(ring.open(bad, "a").is_err(), "{bad}");
        }
        assert!(!format!("{ring:?}").contains("9, 9"));
    }
}
