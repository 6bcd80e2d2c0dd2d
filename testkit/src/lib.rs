//! What rhizomorph's tests, examples and benchmarks share (`publish = false`).
//!
//! - [`echo_server`]: the echo server behind `rhizomorph serve` and the tests.
//! - [`shaper`], [`udp_shaper`]: slow links on loopback (a rate and a bottleneck queue; loss
//!   for UDP), so head-of-line blocking is measured without root or network namespaces.
//! - [`msgpack_ws`]: the msgpack-over-one-WebSocket baseline peer (what hypha-rpc peers do).
//! - [`python`]: the venv `scripts/test.sh` makes, a real hypha server, the real hypha-rpc
//!   provider.
//! - [`payload`]: incompressible and time-stamped payloads.
//! - [`process`]: a process's resident memory and open fds (for hostile-peer bounds).
//! - [`raw_ws`]: a hand-driven legacy WebSocket client for hostile-peer tests.
//! - [`redis_server`]: a real redis-server on a free port, stopped when dropped.
//! - [`transports`]: the two transports a check runs over, with loopback configs.
//!
//! Never part of what a user links: the library and the protocol crate do not depend on it.

pub mod echo_server;
pub mod msgpack_ws;
pub mod payload;
pub mod process;
pub mod python;
pub mod raw_ws;
pub mod redis_server;
pub mod shaper;
pub mod transports;
pub mod udp_shaper;

use std::io;

/// Binds 127.0.0.1 and runs `serve` on every accepted connection (no-delay set) in its own
/// task: the accept loop of every baseline server.
pub async fn serve_tcp<F, Fut>(serve: F) -> io::Result<std::net::SocketAddr>
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve(tcp));
        }
    });
    Ok(addr)
}
