//! The channel scheduler (wire.md §7.4): which channel's frame leaves next.
//!
//! Owns the starvation counters and nothing else: it is told which channels are ready (have a
//! frame and the credit to send it) and answers with one. Never looks at frames, credit or time,
//! so it is trivially deterministic.

use crate::frame::Channel;

/// Consecutive picks a ready channel may be passed over before it is chosen (§7.4), indexed
/// by channel: control and rpc are never starved (they are the highest priorities).
const STARVATION_LIMIT: [u32; 4] = [0, 0, 4, 16];

/// Strict priority with a starvation bound (wire.md §7.4).
///
/// ```
/// use rhizomorph_proto::frame::Channel;
/// use rhizomorph_proto::session::ChannelScheduler;
/// let mut s = ChannelScheduler::default();
/// // rpc and bulk both ready: rpc wins 16 times, then bulk gets one frame.
/// let picks: Vec<_> = (0..17).map(|_| s.pick([false, true, false, true]).unwrap()).collect();
/// assert!(picks[..16].iter().all(|&c| c == Channel::Rpc));
/// assert_eq!(picks[16], Channel::Bulk);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChannelScheduler {
    passed_over: [u32; 4],
    /// The previous pick was a starvation pick: the next one goes by priority, so a higher
    /// channel never waits behind two lower frames in a row.
    after_starved: bool,
}

impl ChannelScheduler {
    /// Picks the next channel among the `ready` ones (indexed by channel id), or `None`.
    pub fn pick(&mut self, ready: [bool; 4]) -> Option<Channel> {
        // spec: wire.md §7.4 (1) — control first, always.
        if ready[0] {
            return Some(Channel::Control);
        }
        // spec: wire.md §7.4 (2) — a channel passed over STARVATION_LIMIT times while ready is
        // chosen next; the lowest priority such channel first (it has waited longest).
        let starved = if self.after_starved {
            None
        } else {
            (2..4)
                .rev()
                .find(|&i| ready[i] && self.passed_over[i] >= STARVATION_LIMIT[i])
        };
        self.after_starved = starved.is_some();
        let chosen = starved.or_else(|| (1..4).find(|&i| ready[i]))?;
        for (i, (&is_ready, passed)) in ready.iter().zip(&mut self.passed_over).enumerate().skip(1)
        {
            if i == chosen || !is_ready {
                *passed = 0;
            } else {
                *passed += 1;
            }
        }
        Some(Channel::ALL[chosen])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_7_4_control_is_strict() {
        let mut s = ChannelScheduler::default();
        for _ in 0..100 {
            assert_eq!(s.pick([true, true, true, true]), Some(Channel::Control));
        }
    }

    #[test]
    fn scheduler_7_4_rpc_waits_for_at_most_one_lower_frame() {
        let mut s = ChannelScheduler::default();
        let picks: Vec<Channel> = (0..1000)
            .map(|_| s.pick([false, true, true, true]).unwrap())
            .collect();
        // Never two lower-priority frames in a row while rpc is ready.
        for w in picks.windows(2) {
            assert!(w[0] == Channel::Rpc || w[1] == Channel::Rpc, "{w:?}");
        }
        // Every channel gets its share: stream at least 1 in 5, bulk at least 1 in 17.
        let count = |c| picks.iter().filter(|&&p| p == c).count();
        assert!(
            count(Channel::Stream) >= 1000 / 6,
            "{}",
            count(Channel::Stream)
        );
        assert!(
            count(Channel::Bulk) >= 1000 / 20,
            "{}",
            count(Channel::Bulk)
        );
    }

    #[test]
    fn scheduler_7_4_alone_a_channel_gets_everything() {
        let mut s = ChannelScheduler::default();
        assert!((0..50).all(|_| s.pick([false, false, false, true]) == Some(Channel::Bulk)));
        assert_eq!(s.pick([false; 4]), None);
    }
}
