//! Measurements: latency histograms, throughput, and the process's resident memory.
//!
//! Owns the numbers a benchmark reports and how they are summarised (medians and tail
//! percentiles from an HDR histogram). Never runs a workload.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One benchmark result row.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Scenario name (`small`, `medium`, `large`, `mixed`, `hol`, `stall`).
    pub scenario: String,
    /// `seq` (one in flight), `64` (64 in flight), or a scenario-specific mode.
    pub mode: String,
    /// Implementation (`rhizomorph`, `msgpack-ws`).
    pub implementation: String,
    /// Messages completed (round trips for echo scenarios).
    pub messages: u64,
    /// Payload bytes sent one way.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6) per second, one way.
    pub mb_per_sec: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Extra figures a scenario reports (RSS, buffered bytes…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<(String, f64)>,
}

/// Collects latencies.
#[derive(Debug)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
        }
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 600_000_000);
        let _ = self.hist.record(us);
    }

    /// Adds another collection's samples.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The `q` quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Builds a result row.
    pub fn into_measurement(
        self,
        scenario: &str,
        mode: &str,
        implementation: &str,
        messages: u64,
        bytes: u64,
        elapsed: Duration,
    ) -> Measurement {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Measurement {
            scenario: scenario.into(),
            mode: mode.into(),
            implementation: implementation.into(),
            messages,
            bytes,
            seconds: secs,
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            p50_ms: self.quantile_ms(0.50),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            notes: Vec::new(),
        }
    }
}

/// The process's resident set size in bytes (Linux `/proc/self/status`), if readable.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
