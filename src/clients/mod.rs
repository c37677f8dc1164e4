//! Outbound and inbound clients, one module per wire format.

pub mod pbx;
