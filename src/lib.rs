//! Rhizomorph: a multiplexed binary-protocol transport for RPC systems.
//!
//! Many prioritized channels — `control` > `rpc` > `stream` > `bulk` — over one QUIC or
//! WebSocket connection, specified in `spec/wire.md`. This crate is layered as the spec is:
//!
//! - [`frame`]: the sans-IO frame codec (bytes ⇄ frames), checked against negotiated limits.
//! - [`session`]: the sans-IO multiplexing state machine: channels, scheduling, credit,
//!   chunking, header tables, keepalive, shutdown.
//!
//! Arrows run one way: transport → session → frame. The codec never knows about sockets.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod session;

/// The README's examples, compiled and run as doc tests so they cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
