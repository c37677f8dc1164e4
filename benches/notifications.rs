//! Notifications checked and decrypted per second on one core (docs/performance.md).
//!
//! `notification/process` is the per-item work of the webhook: clientState digest and
//! constant-time compare, certificate lookup, RSA-OAEP unwrap (the floor: one RSA-2048
//! private-key operation), HMAC-SHA256, AES-256-CBC and the presence JSON. Compare its rate
//! with `openssl speed -seconds 3 rsa2048` (the "sign/s" column).

use std::hint::black_box;

use chrono::TimeZone;
use criterion::{criterion_main, Criterion, Throughput};
use serde_json::json;
use teams_presence::clients::graph::certs::{generate_self_signed, KeyRing};
use teams_presence::clients::graph::notification::{
    self, client_state_sha256_hex, ChangeNotification,
};
use teams_presence::clients::graph::testing;
use teams_presence::store::SubscriptionRecord;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";

fn user(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn bench(c: &mut Criterion) {
    let ring = KeyRing::from_keys(vec![generate_self_signed("bench").unwrap()]);
    let key = ring.current().unwrap();
    let now = chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let sub = SubscriptionRecord {
        subscription_id: "sub".into(),
        user_ids: (0..100).map(user).collect(),
        tenant_id: TENANT.into(),
        owner_user_id: user(0),
        resource: String::new(),
        client_state_sha256: client_state_sha256_hex("state"),
        expires_at: now,
        created_at: now,
        certificate_id: String::new(),
    };
    let raw: Vec<serde_json::Value> = (0..100)
        .map(|n| {
            let payload = testing::presence_json(&user(n), "Busy", "InACall");
            let content = testing::seal(key, key.id(), payload.to_string().as_bytes());
            testing::notification_json("sub", "state", TENANT, &user(n), &content)
        })
        .collect();
    let items: Vec<ChangeNotification> = raw
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    let batch = json!({ "value": raw }).to_string();

    let mut g = c.benchmark_group("notification");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("process", |b| {
        b.iter(|| {
            i = (i + 1) % items.len();
            let obs = notification::process(&items[i], Some(&sub), |_| true, &ring, now);
            black_box(obs.unwrap())
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("parse_and_process_batch_of_100", |b| {
        b.iter(|| {
            let parsed = notification::parse_batch::<ChangeNotification>(batch.as_bytes()).unwrap();
            for item in parsed.items {
                black_box(
                    notification::process(&item.unwrap(), Some(&sub), |_| true, &ring, now)
                        .unwrap(),
                );
            }
        })
    });
    g.finish();
}

/// In a module of its own: `criterion_group!` defines an undocumented `pub fn`.
mod group {
    use criterion::{criterion_group, Criterion};
    criterion_group! {
        name = benches;
        config = Criterion::default().sample_size(30);
        targets = super::bench
    }
}
criterion_main!(group::benches);
