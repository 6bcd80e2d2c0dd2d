//! The reassembly budget (wire.md §8.3.1): bytes allocated for messages under reassembly,
//! counted per connection and, optionally, across every connection that shares one budget
//! (a server's listener), so that N connections each assembling large messages cannot take
//! N times the memory.
//!
//! Owns the counters. Never allocates or frees message bytes itself, never blocks: a
//! reservation that does not fit fails at once, and the receiver refuses that one message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A budget of bytes, reserved and released by the receivers that share it.
#[derive(Debug)]
pub struct ReassemblyBudget {
    limit: u64,
    used: AtomicU64,
}

impl ReassemblyBudget {
    /// A budget of `limit` bytes, to share (one per listener, say).
    pub fn new(limit: u64) -> Arc<ReassemblyBudget> {
        Arc::new(ReassemblyBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes` if they fit; false (nothing reserved) if not.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` reserved earlier.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// The budgets one receiver reserves from: its connection's own and, if set, a shared one.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    pub(crate) connection: Arc<ReassemblyBudget>,
    pub(crate) shared: Option<Arc<ReassemblyBudget>>,
}

impl Budgets {
    /// Reserves `bytes` from both, or from neither.
    pub(crate) fn try_reserve(&self, bytes: u64) -> bool {
        if !self.connection.try_reserve(bytes) {
            return false;
        }
        if let Some(shared) = &self.shared {
            if !shared.try_reserve(bytes) {
                self.connection.release(bytes);
                return false;
            }
        }
        true
    }

    /// Gives `bytes` back to both.
    pub(crate) fn release(&self, bytes: u64) {
        self.connection.release(bytes);
        if let Some(shared) = &self.shared {
            shared.release(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_limit_or_fail_whole() {
        let b = ReassemblyBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41));
        assert!(b.try_reserve(40));
        b.release(100);
        assert_eq!(b.used(), 0);
        let both = Budgets {
            connection: ReassemblyBudget::new(50),
            shared: Some(b.clone()),
        };
        assert!(!both.try_reserve(51), "over the connection's");
        assert_eq!(b.used(), 0, "nothing left reserved");
        assert!(b.try_reserve(80));
        assert!(!both.try_reserve(30), "over the shared one");
        assert_eq!(both.connection.used(), 0, "the connection's given back");
    }
}
