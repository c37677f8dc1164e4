//! Outbound clients, one module per wire format. They speak to services and hand back
//! typed values; deciding what to do with them is the engine's business.

pub mod pbx;
