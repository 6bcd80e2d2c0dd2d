//! The pieces of the `rhizomorph` command that its tests and probes reuse.
//!
//! - [`bench`](mod@bench): `rhizomorph bench`, the loopback benchmark of both transports against their
//!   baselines (raw TCP, bare quinn, msgpack over WebSocket, HTTP/2), with its scenarios.
//! - [`inspect`]: `rhizomorph inspect`, frame dumps decoded by the real decoder.
//! - [`connect`]: `rhizomorph connect URL`, a client to talk to a server by hand.
//!
//! Never linked by a user's server: everything a server needs is in the `rhizomorph` crate.

pub mod bench;
pub mod connect;
pub mod inspect;
