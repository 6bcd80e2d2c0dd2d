//! Process-wide connection counters by mode (wire.md §3.4.2: a fallback is never silent).
//!
//! Owns five atomic counters and their snapshot. Never blocks and never allocates.

use std::sync::atomic::{AtomicU64, Ordering};

use super::shared::Mode;

static NATIVE: AtomicU64 = AtomicU64::new(0);
static LEGACY: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);
static LEGACY_PINGS: AtomicU64 = AtomicU64::new(0);
static REDELIVERED: AtomicU64 = AtomicU64::new(0);

/// Connections opened since the process started, by mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModeCounts {
    /// Connections (either side) in native mode.
    pub native: u64,
    /// Connections (either side) in legacy mode.
    pub legacy: u64,
    /// Client connections that offered `rhizomorph.v1`, were refused it and fell back.
    pub fallbacks: u64,
    /// Legacy `{"type": "ping"}` messages a server answered with a pong.
    pub legacy_pings_answered: u64,
    /// Messages a client dropped as copies of cluster inbox entries it had taken (wire.md
    /// §22.5: a node that took over a dead node's inbox sent them again).
    pub redelivered_dropped: u64,
}

/// The counters now.
pub fn snapshot() -> ModeCounts {
    ModeCounts {
        native: NATIVE.load(Ordering::Relaxed),
        legacy: LEGACY.load(Ordering::Relaxed),
        fallbacks: FALLBACKS.load(Ordering::Relaxed),
        legacy_pings_answered: LEGACY_PINGS.load(Ordering::Relaxed),
        redelivered_dropped: REDELIVERED.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_connection(mode: Mode) {
    match mode {
        Mode::Native => NATIVE.fetch_add(1, Ordering::Relaxed),
        Mode::Legacy => LEGACY.fetch_add(1, Ordering::Relaxed),
    };
}

pub(crate) fn count_fallback() {
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_legacy_pings(n: u64) {
    LEGACY_PINGS.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn count_redelivered() {
    REDELIVERED.fetch_add(1, Ordering::Relaxed);
}
