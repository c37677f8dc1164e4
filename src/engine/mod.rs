//! The engine: the work done with the clients and the store, shared by every role.
//! Components take what they need (a store, a Graph client, a token source, a publisher),
//! bundled in [`context::Context`] where several are needed together; never a role's state.

pub mod applier;
pub mod context;
pub mod device_code;
pub mod guards;
pub mod lifecycle;
pub mod notifications;
pub mod pbx;
pub mod pipeline;
pub mod poller;
pub mod publish;
pub mod shutdown;
pub mod signins;
pub mod sinks;
pub mod subscriptions;
pub mod tokens;
