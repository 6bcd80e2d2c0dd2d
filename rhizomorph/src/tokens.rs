//! Reconnection tokens of legacy (hypha-rpc) clients (legacy.md §L4.4): the server issues one
//! in every `connection_info` (and on `refresh_token`), and a client that comes back with it
//! gets its identity back — workspace, client id and user — without the authentication hook.
//!
//! Owns the book of issued tokens: 128 random bits each, stored only as their SHA-256 (a dump
//! of the book reveals no token), each good once and for [`ReconnectionTokens::life`], at most
//! [`ReconnectionTokens::capacity`] of them (the oldest go first). Never logs a token.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::legacy::Identity;

/// Why a reconnection token was not honoured (sent to the client as the refusal message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Never issued here, already used, expired, or pushed out of a full book.
    #[error("invalid or expired reconnection token: connect without one to get a new identity")]
    Unknown,
    /// Issued to another client id or workspace than the one the client names now.
    #[error("the reconnection token was issued to {issued}, not to {claimed}")]
    Mismatch {
        /// Whom it was issued to.
        issued: String,
        /// Whom the client says it is.
        claimed: String,
    },
}

#[derive(Debug)]
struct Entry {
    identity: Identity,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Book {
    by_hash: HashMap<[u8; 32], Entry>,
    /// Issue order, for eviction and expiry.
    order: VecDeque<[u8; 32]>,
}

/// The tokens a server issued (cheap to clone: clones share the book).
#[derive(Debug, Clone)]
pub struct ReconnectionTokens {
    book: Arc<Mutex<Book>>,
    life: Duration,
    capacity: usize,
}

impl Default for ReconnectionTokens {
    /// Hypha's life time (48 h), at most 65,536 tokens (≈ 10 MiB at most).
    fn default() -> Self {
        ReconnectionTokens::new(Duration::from_secs(48 * 3600), 65_536)
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl ReconnectionTokens {
    /// A book of tokens good for `life`, holding at most `capacity`.
    pub fn new(life: Duration, capacity: usize) -> Self {
        ReconnectionTokens {
            book: Arc::default(),
            life,
            capacity: capacity.max(1),
        }
    }

    /// How long a token is good for (`reconnection_token_life_time`).
    pub fn life(&self) -> Duration {
        self.life
    }

    /// How many tokens the book holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new token for `identity` (128 random bits from the thread's CSPRNG, as 32 hex
    /// digits).
    pub fn issue(&self, identity: &Identity, now: Instant) -> String {
        let token = format!("{:032x}", rand::random::<u128>());
        let key = hash(&token);
        let mut book = self.lock();
        // Expired ones first, then the oldest while full.
        while let Some(front) = book.order.front().copied() {
            let expired = book.by_hash.get(&front).map_or(true, |e| e.expires <= now);
            if !expired && book.by_hash.len() < self.capacity {
                break;
            }
            book.order.pop_front();
            book.by_hash.remove(&front);
        }
        book.by_hash.insert(
            key,
            Entry {
                identity: identity.clone(),
                expires: now + self.life,
            },
        );
        book.order.push_back(key);
        token
    }

    /// Redeems `token` (once): the identity it was issued for, if the client names the same
    /// client id and workspace (or none).
    pub fn redeem(
        &self,
        token: &str,
        client_id: Option<&str>,
        workspace: Option<&str>,
        now: Instant,
    ) -> Result<Identity, TokenError> {
        let key = hash(token);
        let mut book = self.lock();
        let entry = book.by_hash.remove(&key).ok_or(TokenError::Unknown)?;
        if entry.expires <= now {
            return Err(TokenError::Unknown);
        }
        let id = &entry.identity;
        let same = client_id.map_or(true, |c| c == id.client_id)
            && workspace.map_or(true, |w| w == id.workspace);
        if !same {
            let claimed = format!(
                "{}/{}",
                workspace.unwrap_or(&id.workspace),
                client_id.unwrap_or(&id.client_id)
            );
            // A wrong claim burns the token: it cannot be tried again under another name.
            return Err(TokenError::Mismatch {
                issued: id.full_id(),
                claimed,
            });
        }
        Ok(entry.identity)
    }

    /// Tokens held now.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gives_its_identity_back_once() {
        let book = ReconnectionTokens::default();
        let now = Instant::now();
        let alice = Identity::anonymous("ws-a", "alice");
        let t = book.issue(&alice, now);
        assert_eq!(t.len(), 32);
        assert_ne!(t, book.issue(&alice, now), "tokens are random");
        let back = book.redeem(&t, Some("alice"), Some("ws-a"), now).unwrap();
        assert_eq!(back.full_id(), "ws-a/alice");
        assert_eq!(
            book.redeem(&t, Some("alice"), None, now),
            Err(TokenError::Unknown)
        );
    }

    #[test]
    fn a_token_is_bound_to_its_identity_and_its_life() {
        let book = ReconnectionTokens::new(Duration::from_secs(10), 2);
        let now = Instant::now();
        let alice = Identity::anonymous("ws-a", "alice");
        let t = book.issue(&alice, now);
        assert!(matches!(
            book.redeem(&t, Some("mallory"), None, now),
            Err(TokenError::Mismatch { .. })
        ));
        let t = book.issue(&alice, now);
        assert_eq!(
            book.redeem(&t, None, None, now + Duration::from_secs(11)),
            Err(TokenError::Unknown)
        );
        assert_eq!(
            book.redeem("0123456789abcdef0123456789abcdef", None, None, now),
            Err(TokenError::Unknown)
        );
        // Full: the oldest goes.
        let first = book.issue(&alice, now);
        book.issue(&alice, now);
        book.issue(&alice, now);
        assert!(book.len() <= 2);
        assert_eq!(
            book.redeem(&first, None, None, now),
            Err(TokenError::Unknown)
        );
    }
}
