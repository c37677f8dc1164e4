//! Graph's *sending* side of rich notifications, for unit tests, the benchmark, the load
//! tool and fuzz seeds. Production code never encrypts; the integration tests use an
//! independent implementation (tests/fixtures/encrypt_notification.py) instead of this one.

use base64::Engine;
use hmac::Mac;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::rsa::Padding;
use openssl::x509::X509;
use serde_json::{json, Value};

use crate::clients::graph::certs::NotificationKey;

/// Encrypts `plaintext` for `cert` the way Graph does and returns `encryptedContent`.
pub fn seal(cert: &NotificationKey, cert_id: &str, plaintext: &[u8]) -> Value {
    seal_for_certificate(cert.certificate_der(), cert_id, plaintext)
}

/// [`seal`] with only the certificate (DER), as Graph has it from `encryptionCertificate`.
pub fn seal_for_certificate(cert_der: &[u8], cert_id: &str, plaintext: &[u8]) -> Value {
    let mut key = [0u8; 32];
    openssl::rand::rand_bytes(&mut key).expect("random bytes");
    let x509 = X509::from_der(cert_der).expect("a DER certificate");
    let public = x509.public_key().expect("public key");
    let mut enc = Encrypter::new(&public).expect("encrypter");
    enc.set_rsa_padding(Padding::PKCS1_OAEP).expect("padding");
    enc.set_rsa_oaep_md(MessageDigest::sha1()).expect("oaep md");
    enc.set_rsa_mgf1_md(MessageDigest::sha1()).expect("mgf1 md");
    let mut wrapped = vec![0u8; enc.encrypt_len(&key).expect("len")];
    let n = enc.encrypt(&key, &mut wrapped).expect("wrap");
    wrapped.truncate(n);
    let data = openssl::symm::encrypt(
        openssl::symm::Cipher::aes_256_cbc(),
        &key,
        Some(&key[..16]),
        plaintext,
    )
    .expect("aes");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(&data);
    let sig = mac.finalize().into_bytes();
    let b64 = &base64::engine::general_purpose::STANDARD;
    json!({
        "data": b64.encode(&data),
        "dataSignature": b64.encode(sig),
        "dataKey": b64.encode(&wrapped),
        "encryptionCertificateId": cert_id,
        "encryptionCertificateThumbprint": hex_sha1(cert_der),
    })
}

/// A presence change notification item around `encrypted_content`, shaped like Graph's.
pub fn notification_json(
    subscription_id: &str,
    client_state: &str,
    tenant_id: &str,
    user_id: &str,
    encrypted_content: &Value,
) -> Value {
    json!({
        "subscriptionId": subscription_id,
        "clientState": client_state,
        "changeType": "updated",
        "tenantId": tenant_id,
        "organizationId": tenant_id,
        "resource": format!("communications/presences/{user_id}"),
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00.0000000Z",
        "resourceData": {
            "@odata.id": format!("users/{user_id}/presence"),
            "@odata.type": "#microsoft.graph.presence",
            "id": user_id,
        },
        "encryptedContent": encrypted_content,
    })
}

/// The presence resource Graph encrypts.
pub fn presence_json(user_id: &str, availability: &str, activity: &str) -> Value {
    json!({
        "@odata.id": format!("users/{user_id}/presence"),
        "@odata.type": "#microsoft.graph.presence",
        "id": user_id,
        "availability": availability,
        "activity": activity,
    })
}

/// The certificate and key as PEM.
pub fn key_pem(key: &NotificationKey) -> Vec<u8> {
    key.to_pem().expect("PEM")
}

fn hex_sha1(der: &[u8]) -> String {
    openssl::sha::sha1(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}
