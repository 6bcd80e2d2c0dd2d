//! `bench --scenario resume`: what resumable sessions (wire.md §21) cost when nothing breaks —
//! the rpc-100 and oneway rows with resumption off and on, over WebSocket and over QUIC,
//! against the same servers (which have it on: a client that does not ask gets a 1.0
//! connection), interleaved over several rounds.
//!
//! Owns only the pairing of the two configurations; the workloads are `rpc.rs` and `oneway.rs`
//! unchanged, so the two rows differ by the replay buffers, ACKs and sequence bookkeeping alone.

use std::io;
use std::time::Duration;

use super::measure::Measurement;
use super::{bar, median_of_rounds, oneway, rhizo_rpc_client, rpc, BenchOptions, ServerSide};

/// The replay buffer per channel and the hold time the `on` rows use.
const BUFFER: u64 = 2 << 20;
const HOLD: Duration = Duration::from_secs(120);

/// Runs the rows; each round runs off and on once (the order alternates between rounds).
pub async fn run(options: &BenchOptions) -> io::Result<Vec<Measurement>> {
    let server = options.config.clone().with_resumption(BUFFER, HOLD);
    let servers = ServerSide::start_with(server, options.server_threads, options.reuse_port)?;
    let ws = format!("ws://{}/", servers.rhizomorph);
    let quic = format!("quic://localhost:{}", servers.rhizomorph_quic.port());
    let off = options.config.clone();
    let on = options.config.clone().with_resumption(BUFFER, HOLD);
    let pinned = |c: &rhizomorph::Config| {
        let mut c = c.clone();
        c.client_tls = servers.quic_client.client_tls.clone();
        c
    };
    let (quic_off, quic_on) = (pinned(&off), pinned(&on));
    let n = ((200_000.0 * options.scale) as usize).max(1000);
    let rounds = options.rounds.max(3);
    let pb = bar(
        options,
        rounds as u64,
        "resume (rpc-100, oneway; off/on)".into(),
    );
    let mut all = Vec::new();
    for r in 0..rounds {
        let mut round = Vec::new();
        let mut pairs = [
            [("rhizo-ws", &ws, &off), ("rhizo-ws-resume", &ws, &on)],
            [
                ("rhizo-quic", &quic, &quic_off),
                ("rhizo-quic-resume", &quic, &quic_on),
            ],
        ];
        if r % 2 == 1 {
            pairs.iter_mut().for_each(|p| p.reverse());
        }
        for pair in &pairs {
            for &(label, url, config) in pair {
                let mut m = rpc::run_rpc(label, 100, options.rpc_duration, |_| {
                    rhizo_rpc_client(url, config)
                })
                .await?;
                m.scenario = format!("resume-{}", m.scenario);
                round.push(m);
            }
            for &(label, url, config) in pair {
                let mut m = oneway::rhizomorph(label, url, config, n).await?;
                m.scenario = "resume-oneway".into();
                round.push(m);
            }
        }
        // The same order in every round, for the median.
        round.sort_by(|a, b| {
            (&a.scenario, &a.implementation).cmp(&(&b.scenario, &b.implementation))
        });
        all.push(round);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(median_of_rounds(all))
}
