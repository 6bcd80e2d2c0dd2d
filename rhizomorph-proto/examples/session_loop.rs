//! Measures the sans-IO session alone: 256 B rpc messages from one session to another in
//! memory, in batches of 64, with the receiver releasing each. No sockets, no tokio.
//!
//! Run: `cargo run --release --example session_loop`

use std::time::Instant;

use bytes::Bytes;
use rhizomorph_proto::frame::Channel;
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::session::{Event, OutgoingMessage, Session, SessionConfig};
use rhizomorph_proto::session::{Target, Transmit};

fn main() {
    let now = Instant::now();
    let (mut a, mut b) =
        Session::connected_pair(SessionConfig::default(), SessionConfig::default(), now);
    let header = RoutingHeader::new()
        .with("type", "method")
        .with("from", "ws-user-1/bench-client")
        .with("to", "ws-user-1/bench-echo")
        .with("method", "services.echo.echo");
    let payload = Bytes::from(vec![7u8; 256]);
    let total = 2_000_000u64;
    let start = Instant::now();
    let mut received = 0u64;
    while received < total {
        for _ in 0..64 {
            a.send(
                Channel::Rpc,
                OutgoingMessage::new(header.clone(), payload.clone()),
            )
            .unwrap();
        }
        while let Some(x) = a
            .poll_transmit(now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
        {
            b.handle_batch(now, x);
        }
        while let Some(e) = b.poll_event() {
            if let Event::Message(m) = e {
                b.release(m.channel, m.credit);
                received += 1;
            }
        }
        while let Some(x) = b
            .poll_transmit(now, Target::Batch, usize::MAX)
            .map(Transmit::into_bytes)
        {
            a.handle_batch(now, x);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{received} messages in {secs:.2} s: {:.0} msgs/s one way ({:.0} ns per message, both ends)", received as f64 / secs, secs * 1e9 / received as f64);
}
