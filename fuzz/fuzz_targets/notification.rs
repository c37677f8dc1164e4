//! The notification parser and decryptor. The first byte picks what the rest is:
//!
//! * 0: a notification batch, run through every check with a subscription record that
//!   *matches* the item (its clientState digest, tenant and user), so the fuzzer gets past
//!   the clientState check to certificate lookup, base64 and RSA-OAEP unwrapping;
//! * 1: a 32-byte key and a ciphertext, correctly signed, so AES-CBC padding and the
//!   presence JSON parser see arbitrary plaintext (no fuzzer can forge RSA-OAEP);
//! * 2: a decrypted presence payload, and a lifecycle batch.
#![no_main]

use std::sync::OnceLock;

use chrono::TimeZone;
use hmac::Mac;
use libfuzzer_sys::fuzz_target;
use teams_presence::clients::graph::certs::{generate_self_signed, KeyRing};
use teams_presence::clients::graph::notification::{
    self, client_state_sha256_hex, ChangeNotification, LifecycleNotification,
};
use teams_presence::store::SubscriptionRecord;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::from_keys(vec![generate_self_signed("fuzz").unwrap()]))
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(batch) = notification::parse_batch::<ChangeNotification>(rest) else {
                return;
            };
            // The item's own clientState, read from the raw JSON (the typed one hides it).
            let raw: Vec<serde_json::Value> = serde_json::from_slice::<serde_json::Value>(rest)
                .ok()
                .and_then(|v| v.get("value").and_then(|a| a.as_array().cloned()))
                .unwrap_or_default();
            for (i, item) in batch.items.into_iter().enumerate() {
                let Ok(item) = item else {
                    continue;
                };
                let client_state = raw
                    .get(i)
                    .and_then(|v| v.get("clientState"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                let sub = SubscriptionRecord {
                    subscription_id: item.subscription_id.clone(),
                    user_ids: item
                        .resource_data
                        .as_ref()
                        .and_then(|r| r.id.clone())
                        .into_iter()
                        .collect(),
                    tenant_id: item.tenant_id.clone().unwrap_or_default(),
                    owner_user_id: String::new(),
                    resource: String::new(),
                    client_state_sha256: client_state_sha256_hex(client_state),
                    expires_at: now(),
                    created_at: now(),
                    certificate_id: String::new(),
                };
                let _ = notification::process(&item, Some(&sub), |_| true, ring(), now());
                let _ = notification::open(&item, &sub, ring(), now());
            }
        }
        1 => {
            if rest.len() < 32 {
                return;
            }
            let (key, ciphertext) = rest.split_at(32);
            let key: [u8; 32] = key.try_into().unwrap();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(ciphertext);
            let sig = mac.finalize().into_bytes();
            if let Ok(plain) = notification::verify_and_decrypt(&key, ciphertext, &sig) {
                let _ = notification::parse_presence(&plain);
            }
            let _ = notification::verify_and_decrypt(&key, ciphertext, &sig[..16]);
        }
        _ => {
            let _ = notification::parse_presence(rest);
            if let Ok(batch) = notification::parse_batch::<LifecycleNotification>(rest) {
                for item in batch.items.into_iter().flatten() {
                    let _ = item.event();
                    let _ = notification::loggable_id(&item.subscription_id);
                }
            }
        }
    }
});
