//! The JWT parsers: `entra::validate_id_token` (sign-in) and
//! `validation_token::verify` / `key_id` (notification batches), plus
//! `SigningKeys::from_jwks`, on attacker-controlled text.
//!
//! First byte selects: **0** the rest as a whole token; **1** header and payload JSON of the
//! fuzzer's choosing (split at the first 0xff), base64url-encoded into a token with a garbage
//! signature, so the header parser and the algorithm/kid checks see arbitrary JSON (claims
//! sit behind the RS256 signature, which no fuzzer can forge; their checks are table-tested
//! in `tests/integration/auth*.rs`); **2** the rest as a JWKS document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use teams_presence::clients::entra::validate_id_token;
use teams_presence::clients::graph::validation_token::{self, SigningKeys};

/// A JWKS with one real RSA-2048 public key (kid `fuzz-kid`), so tokens naming it reach
/// signature verification.
const JWKS: &str = r#"{"keys": [{"kty": "RSA", "use": "sig", "kid": "fuzz-kid", "n": "02zFuU64kykjzGS9OdbglemiVdyjbejomRDX1aOMMfCmFQy0p-zu3b-6hlJMna_rzk6aQT47dQRntYIUqSeLdNNlf9CCtRYXgWROD5tv2GZlx8EbDowSQriUE6dB7-u63FSMIdsJI_O3pEPojANtUt4Y_pSlbidqFIfXymQX6KquyYgJ_nF8fGyR1TqZ9pBwxg_NsvF40FE3QvS158Gj7NWijn1eCsGHD63W0M6F8z9AhlFMXDxgxzBmDpaubTH2MkGtKHNyU2b4cihSij0j17CgReSBVkZBsz29DBYN09FPH9nCZdiAwNoaKOuLstx8nu4UOUrNUGH1-O8VSKpPeQ", "e": "AQAB"}]}"#;
const CLIENT_ID: &str = "c0ffee00-0000-4000-8000-000000000001";

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn check(token: &str, keys: &SigningKeys) {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let _ = validate_id_token(token, keys, CLIENT_ID, Some("nonce-123"), now);
    let _ = validate_id_token(token, keys, CLIENT_ID, None, now);
    let _ = validation_token::key_id(token);
    let _ = validation_token::verify(token, keys, CLIENT_ID, now);
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static KEYS: SigningKeys = SigningKeys::from_jwks(JWKS.as_bytes()).unwrap();
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                KEYS.with(|k| check(token, k));
            }
        }
        1 => {
            let (header, payload) = match rest.iter().position(|b| *b == 0xff) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let token = format!("{}.{}.{}", b64url(header), b64url(payload), b64url(&[7u8; 256]));
            KEYS.with(|k| check(&token, k));
        }
        _ => {
            if let Ok(keys) = SigningKeys::from_jwks(rest) {
                let _ = keys.len();
            }
        }
    }
});
