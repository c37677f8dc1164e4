//! The one integration-test binary. Each module is one area of behaviour:
//!
//! - `architecture`: ARCHITECTURE.md's layer table against the code, no import cycle (through
//!   re-exports, globs and parent modules too), a core without I/O.
//! - `support`: the shared test world (`support::World`: fakes, a store, settings, a manual
//!   clock, signed-in people, the handler or the real binary), host-invocation helpers,
//!   Azurite, ports, logging.
//! - `fakes`: the `test-fakes` crate (crates/test-fakes), loopback servers standing in for
//!   Graph, Entra ID, Service Bus, Hue, 3CX, Key Vault and the sinks; shared with the benches
//!   and examples.
//! - `store`: one conformance suite run against SQLite and Azurite.
//! - `store_retries`: a Table write whose answer was lost after it landed is not taken for a
//!   lost race and dropped (issue 13, item 5).
//! - `handler`: the custom handler as the Functions host drives it.
//! - `handler_start`: the real handler binary's start: the readiness probe first, unresolved
//!   Key Vault references, a Key Vault that never answers (issue 27), certificates picked up
//!   when the vault answers later (the fake Key Vault in `fakes::keyvault`).
//! - `instances`: the real handler binary twice on one Azurite: guards hold across instances.
//! - `serve`: the standalone server from an empty environment.
//! - `serve_e2e`: `login` (device code) then `serve` as a user runs them, to a fake Hue lamp,
//!   surviving `kill -9` and a restart.
//! - `cli`: the binary's exit codes and one-line errors.
//! - `doctor`: `teams-presence doctor` on a healthy and on a broken configuration.
//! - `private_files`: the data directory, token key and SQLite files stay the owner's alone,
//!   and a planted symlink is never followed (issue 13, item 10).
//! - `auth`: sign-in and tokens against the fake Entra ID.
//! - `auth_hardening`: sign-in against an attacker: unbounded pending sign-ins, crafted
//!   callbacks, who may sign in (issue 13).
//! - `presence`: polling, change detection and publishing against the fake Graph (and the
//!   fake Graph's own id limit and throttling script).
//! - `reliability`: at-least-once publishing (pending marks, re-sends) and the cloud cadence.
//! - `graph_presence_writes`: presence writes and user lookups against the fake Graph's rules.
//! - `subscriptions`: Graph subscriptions created, renewed, recreated, replaced and
//!   reauthorized against the fake Graph's rules; certificate rotation; tenant mode's bulk
//!   subscriptions.
//! - `webhook`: change notifications, decryption and validation tokens.
//! - `webhook_hardening`: the webhook against an attacker and Graph's redeliveries: replays,
//!   unauthenticated store reads, keys not fetchable yet, where an item's user id comes from.
//! - `status_page`: the status page in a real headless browser (chromium).
//! - `notification_accept`: the webhook's acceptance steps called without HTTP.
//! - `pbx_http`: the generic HTTP PBX adapter's outbound requests against a fake PBX.
//! - `pbx_generic`: the generic HTTP PBX adapter with the `vtx` preset through the production
//!   routes: signed inbound events (in `serve` and through the handler) and the outbound
//!   status request for every row of VTX's table.
//! - `pbx_notifications`: the PBX sync in `serve` with Teams learnt from change
//!   notifications that carry our own writes back, duplicated and reordered.
//! - `pbx_e2e`: `pbx map add` then `serve` with `PBX=3cx` against the fake 3CX, Graph and
//!   Entra ID: the real binary end to end.
//! - `threecx`: the 3CX V20 client (token, XAPI, Call Control socket) against a fake PBX.
//! - `edge`: `subscribe` and `hue-subscriber` against fake Service Bus and Hue bridges.
//! - `edge_boot`: the `subscribe` binary started before its Hue bridge.
//! - `hue_bridge`: the Hue sink, the edge and `hue list`/`doctor` against a real bridge's layout.
//! - `hue_tls`: a bridge whose certificate does not verify is an error, never a fall-back to
//!   plain HTTP with the key in clear (issue 13, item 9).
//! - `sinks`: MQTT against a real mosquitto, the signed webhook, WLED, and the fan-out in `serve`.
//! - `tenant_load`: a 10,000-user tenant-mode tick and PBX calls under Graph's throttling.
//! - `infra_hooks`: the azd hooks with stub `az`/`azd`, and the per-edge rule plan (issue 27).
//! - `shutdown`: the real binaries given SIGTERM: `serve` mid-burst delivers what it accepted,
//!   `subscribe` abandons nothing it applied, `pbx run` through the edge's receive loop.
//! - `round_trips`: Table operations, Service Bus sends and Graph calls per presence change.
//! - `faults`: issue 14's fault suite: outages of the store, the topic and the bridge, Graph's
//!   throttling and 5xx, a revoked refresh token, `kill -9` during a burst, a lost peek-lock.

// The fakes live in their own dev-only crate; `crate::fakes::...` keeps reading as before.
use test_fakes as fakes;

mod architecture;
mod auth;
mod auth_hardening;
mod cli;
mod doctor;
mod edge;
mod edge_boot;
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
