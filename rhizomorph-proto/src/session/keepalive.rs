//! Keepalive and RTT estimation (wire.md §13).
//!
//! Owns when to send PING, when the peer counts as dead, and the smoothed RTT. Works on the
//! `Instant`s the session is given (a virtual clock in tests); never reads the clock itself.

use std::time::{Duration, Instant};

/// Keepalive state for one connection.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    timeout: Duration,
    epoch: Instant,
    last_received: Instant,
    outstanding: Option<u64>,
    srtt: Option<Duration>,
    latest_rtt: Option<Duration>,
}

impl Keepalive {
    /// Keepalive that pings after `interval` of silence and gives up after `timeout`.
    pub fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Keepalive {
            interval,
            timeout,
            epoch: now,
            last_received: now,
            outstanding: None,
            srtt: None,
            latest_rtt: None,
        }
    }

    /// Something arrived from the peer.
    pub fn on_receive(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// spec: wire.md §13.1 — the PING to send now, if the peer has been silent for the
    /// interval and no PING is outstanding. The opaque value is the send time in µs.
    pub fn poll_ping(&mut self, now: Instant) -> Option<u64> {
        if self.outstanding.is_some() || now.duration_since(self.last_received) < self.interval {
            return None;
        }
        let opaque = now.duration_since(self.epoch).as_micros() as u64;
        self.outstanding = Some(opaque);
        Some(opaque)
    }

    /// Sends a PING now regardless of the interval (to measure RTT); `None` if one is outstanding.
    pub fn force_ping(&mut self, now: Instant) -> Option<u64> {
        if self.outstanding.is_some() {
            return None;
        }
        let opaque = now.duration_since(self.epoch).as_micros() as u64;
        self.outstanding = Some(opaque);
        Some(opaque)
    }

    /// A PONG arrived; returns the measured RTT if it answers our PING (§13.2).
    pub fn on_pong(&mut self, now: Instant, opaque: u64) -> Option<Duration> {
        if self.outstanding != Some(opaque) {
            return None; // unsolicited PONG: ignored (§5.6)
        }
        self.outstanding = None;
        let sent = self.epoch + Duration::from_micros(opaque);
        let rtt = now.saturating_duration_since(sent);
        // spec: wire.md §13.2 — srtt = 7/8 srtt + 1/8 sample.
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        self.latest_rtt = Some(rtt);
        Some(rtt)
    }

    /// Whether the peer has been silent past the timeout (§13.1).
    pub fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_received) >= self.timeout
    }

    /// When the next keepalive action is due.
    pub fn next_deadline(&self) -> Instant {
        if self.outstanding.is_some() {
            self.last_received + self.timeout
        } else {
            self.last_received + self.interval
        }
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}
