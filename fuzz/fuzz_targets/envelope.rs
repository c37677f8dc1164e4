//! The Functions host's invocation envelope: `Invocation::parse` and every typed accessor
//! the handler uses on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use teams_presence::host::envelope::Invocation;

fuzz_target!(|data: &[u8]| {
    let Ok(inv) = Invocation::parse(data) else {
        return;
    };
    let _ = inv.timer("timer");
    let _ = inv.service_bus("msg");
    let _ = inv.metadata_str("DeliveryCount");
    let _ = inv.metadata_map("Query");
    let _ = inv.invocation_id();
    // Last: taking the request apart consumes the invocation.
    if let Ok(req) = inv.into_http_request("req") {
        let _ = req.path_and_query("/api/notifications");
    }
});
