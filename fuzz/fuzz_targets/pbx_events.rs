//! The inbound PBX events body: `events::parse` on arbitrary bytes, and `events::accept`
//! with a bearer credential so the freshness and replay paths run too.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use teams_presence::clients::pbx::events::{accept, parse, AuthHeaders, ReplayGuard};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let secret = secrecy::SecretString::from("fuzz-secret");
    let headers = AuthHeaders {
        authorization: Some("Bearer fuzz-secret"),
        signature: None,
    };
    let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let mut guard = ReplayGuard::with_capacity(4);
    if accept(headers, data, &secret, now, &mut guard).is_ok() {
        // The same body twice is always refused.
        assert!(accept(headers, data, &secret, now, &mut guard).is_err());
    }
});
