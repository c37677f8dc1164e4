//! Fakes of the services the binary talks to, each a real HTTP server on 127.0.0.1:0.

pub mod entra_keys;
