//! wire.md §17.4 over real QUIC: with 2 MB bulk messages saturating a lossy link (100 Mbit/s,
//! 64 KB bottleneck queue, 1% datagram loss), rpc round trips on their own stream are not held
//! by the bulk transfer, while the same round trips on the bulk channel (one stream) wait
//! behind it. Same harness as `rhizomorph bench --transport quic --scenario hol`.

use std::time::Duration;

use indicatif::ProgressBar;
use rhizomorph::transport::tls;
use rhizomorph::{Channel, Config, Listener};
use rhizomorph_cli::bench::scenarios::hol_rhizomorph_on;
use rhizomorph_testkit::echo_server;
use rhizomorph_testkit::shaper::LinkShape;
use rhizomorph_testkit::udp_shaper::UdpShaper;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hol_17_4_rpc_p99_on_a_lossy_link_under_bulk() {
    let link = LinkShape::mbit(100.0, 64);
    let (cert, key, fp) = tls::self_signed(&["localhost"]).unwrap();
    let server = Config::default().with_server_tls(tls::server_tls(vec![cert], key).unwrap());
    let client = Config::default().with_client_tls(tls::client_tls_pinned(&fp).unwrap());
    let listener = Listener::bind_quic("127.0.0.1:0", server).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server::serve(listener));

    let run = |channel: Channel| {
        let client = client.clone();
        async move {
            let shaped = UdpShaper::start(addr, link, 0.01).await.unwrap();
            let url = format!("quic://{}/", shaped.addr());
            hol_rhizomorph_on(
                "rhizo-quic",
                &url,
                &client,
                Duration::from_secs(3),
                channel,
                &ProgressBar::hidden(),
            )
            .await
            .unwrap()
        }
    };
    let own = run(Channel::Rpc).await;
    let shared = run(Channel::Bulk).await;
    let note = |m: &rhizomorph_cli::bench::Measurement, k: &str| {
        m.notes
            .iter()
            .find(|(n, _)| n == k)
            .map_or(0.0, |(_, v)| *v)
    };
    eprintln!(
        "rpc round trip under bulk, 100 Mbit/s, 64 KB queue, 1% loss: own stream p50 {:.1} p99 {:.1} ms ({} samples, idle p99 {:.1}, bulk {:.1} MB/s); bulk's stream p50 {:.1} p99 {:.1} ms ({} samples)",
        own.p50_ms, own.p99_ms, own.messages, note(&own, "idle link rpc p99 ms"), note(&own, "bulk MB/s"),
        shared.p50_ms, shared.p99_ms, shared.messages
    );
    assert!(
        note(&own, "bulk MB/s") > 3.0,
        "the bulk transfer must load the link (got {:.1} MB/s)",
        note(&own, "bulk MB/s")
    );
    assert!(own.messages >= 50, "too few rpc samples: {}", own.messages);
    // Generous bounds: loss retransmissions cost a few RTTs (ms on loopback); a 2 MB message
    // holds the link 160 ms.
    assert!(
        own.p99_ms < 60.0,
        "rpc p99 on its own stream {:.1} ms",
        own.p99_ms
    );
    assert!(
        shared.p99_ms > 100.0,
        "rpc p99 behind bulk on one stream {:.1} ms: expected to wait behind 2 MB messages",
        shared.p99_ms
    );
}
