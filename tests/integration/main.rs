//! The one integration-test binary. Each module is one area of behaviour:
//!
//! - `architecture`: ARCHITECTURE.md's layer table against the code, no import cycle (through
//!   re-exports, globs and parent modules too), a core without I/O.
//! - `support`: the `TestApp`/host-invocation helpers, Azurite, ports, logging.
//! - `fakes`: loopback servers standing in for Graph, Entra ID and friends.
//! - `store`: one conformance suite run against SQLite and Azurite.
//! - `handler`: the custom handler as the Functions host drives it.
//! - `handler_start`: the real handler binary's start: the readiness probe first, unresolved
//!   Key Vault references, a Key Vault that never answers (issue 27), certificates picked up
//!   when the vault answers later (the fake Key Vault in `fakes::keyvault`).
//! - `serve`: the standalone server from an empty environment.
//! - `cli`: the binary's exit codes and one-line errors.
//! - `auth`: sign-in and tokens against the fake Entra ID.
//! - `presence`: polling, change detection and publishing against the fake Graph.
//! - `reliability`: at-least-once publishing (pending marks, re-sends) and the cloud cadence.
//! - `graph_presence_writes`: presence writes and user lookups against the fake Graph's rules.
//! - `webhook`: change notifications, decryption and validation tokens.
//! - `notification_accept`: the webhook's acceptance steps called without HTTP.
//! - `pbx_http`: the generic HTTP PBX adapter's outbound requests against a fake PBX.
//! - `pbx_notifications`: the PBX sync in `serve` with Teams learnt from change
//!   notifications that carry our own writes back, duplicated and reordered.
//! - `auth_hardening`, `webhook_hardening`, `store_retries`: issue 13's attacks and lost answers.
//! - `edge`: `subscribe` and `hue-subscriber` against fake Service Bus and Hue bridges.
//! - `threecx`: the 3CX V20 client (token, XAPI, Call Control socket) against a fake PBX.
//! - `edge_boot`: the `subscribe` binary started before its Hue bridge.
//! - `hue_bridge`: the Hue sink, the edge and `hue list`/`doctor` against a real bridge's layout.
//! - `sinks`: MQTT against a real mosquitto, the signed webhook, WLED, and the fan-out in `serve`.
//! - `tenant_load`: a 10,000-user tenant-mode tick and PBX calls under Graph's throttling.
//! - `infra_hooks`: the azd hooks with stub `az`/`azd`, and the per-edge rule plan (issue 27).
//! - `shutdown`: the real binaries given SIGTERM: `serve` mid-burst delivers what it accepted,
//!   `subscribe` abandons nothing it applied, `pbx run` through the edge's receive loop.
//! - `round_trips`: Table operations, Service Bus sends and Graph calls per presence change.
//! - `instances`: the real handler binary twice on one Azurite: guards hold across instances.
//! - `faults`: issue 14's fault suite: outages of the store, the topic and the bridge, Graph's
//!   throttling and 5xx, a revoked refresh token, `kill -9` during a burst, a lost peek-lock.

mod architecture;
mod auth;
mod auth_hardening;
mod cli;
mod doctor;
mod edge;
mod edge_boot;
mod fakes;
mod faults;
mod graph_presence_writes;
mod handler;
mod handler_start;
mod hue_bridge;
mod hue_tls;
mod infra_hooks;
mod instances;
mod notification_accept;
mod pbx_e2e;
mod pbx_generic;
mod pbx_http;
mod pbx_notifications;
mod presence;
mod private_files;
mod reliability;
mod round_trips;
mod serve;
mod serve_e2e;
mod shutdown;
mod sinks;
mod status_page;
mod store;
mod store_retries;
mod subscriptions;
mod support;
mod tenant_load;
mod threecx;
mod webhook;
mod webhook_hardening;
