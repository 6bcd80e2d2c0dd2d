//! Fan-out: one publisher's messages delivered to 100 connected clients by the router
//! (`to: "*"`, legacy.md §L5.3), measured at the subscribers.
//!
//! Owns the publisher/subscriber workload. Latency is publisher send → subscriber receive
//! (the payload carries its send time); throughput counts deliveries.

use std::io;
use std::time::{Duration, Instant};

use super::measure::{Latencies, Measurement};
use rhizomorph::config::Config;
use rhizomorph::endpoint::Endpoint;
use rhizomorph::frame::Channel;
use rhizomorph::header::RoutingHeader;
use rhizomorph_testkit::payload::{stamp_of, stamped};

/// Connects `subscribers` clients and a publisher to the router at `url` (workspace `fan`),
/// publishes `messages` 256-byte messages to all, and waits until every subscriber has them.
pub async fn run_fanout(
    implementation: &str,
    url: &str,
    config: &Config,
    subscribers: usize,
    messages: usize,
) -> io::Result<Measurement> {
    let run = format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ std::process::id() as u128
    );
    let mut subs = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let c = config.clone().with_token(format!("fan{run}/sub-{i}"));
        subs.push(Endpoint::connect(url, c).await.map_err(io::Error::other)?);
    }
    let publisher = Endpoint::connect(url, config.clone().with_token(format!("fan{run}/pub")))
        .await
        .map_err(io::Error::other)?;
    // The router registers a peer when its connection task starts: give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let epoch = Instant::now();
    let mut tasks = Vec::with_capacity(subscribers);
    for mut sub in subs {
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            for _ in 0..messages {
                let m = tokio::time::timeout(Duration::from_secs(30), sub.recv())
                    .await
                    .map_err(|_| io::Error::other("fan-out: a subscriber waited 30 s"))?
                    .ok_or_else(|| io::Error::other("fan-out: subscriber connection ended"))?;
                if let Some(d) = stamp_of(&m.payload, epoch) {
                    lat.record(d);
                }
            }
            Ok::<_, io::Error>((lat, sub))
        }));
    }
    let header = RoutingHeader::new().with("to", "*");
    for i in 0..messages {
        publisher
            .send(Channel::Rpc, header.clone(), stamped(i as u64, epoch, 256))
            .await
            .map_err(io::Error::other)?;
    }
    let mut all = Latencies::default();
    let mut keep = Vec::new();
    for t in tasks {
        let (lat, sub) = t.await.map_err(io::Error::other)??;
        all.merge(&lat);
        keep.push(sub);
    }
    let elapsed = epoch.elapsed();
    let deliveries = (subscribers * messages) as u64;
    Ok(all.into_measurement(
        "fanout",
        &format!("1 to {subscribers}"),
        implementation,
        deliveries,
        deliveries * 256,
        elapsed,
    ))
}
