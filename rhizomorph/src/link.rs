//! What every handle of one connection holds, and what happens when the last one goes.
//!
//! Owns [`Link`]: the handle over the shared session, the application's readiness, and the
//! graceful close when the [`Connection`](crate::Connection), its senders and its channel
//! receivers are all dropped. Never waits on the application's behalf except in that close's
//! background task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::frame::ErrorCode;
use crate::session::Message;
use crate::transport::handle::Handle;

/// How long a graceful close waits for the drain before it closes at once.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// What every handle of one connection holds (the [`Connection`], its [`Sender`]s and
/// [`ChannelReceiver`]s). When the last is dropped, the connection closes gracefully.
pub(crate) struct Link {
    pub(crate) handle: Arc<dyn Handle>,
    /// The legacy server's `connection_info` was released (the application is ready).
    ready: AtomicBool,
}

impl Link {
    /// The link over `handle`.
    pub(crate) fn new(handle: Arc<dyn Handle>) -> Arc<Link> {
        Arc::new(Link {
            handle,
            ready: AtomicBool::new(false),
        })
    }
}

impl Link {
    /// Marks the application ready for the peer (once).
    pub(crate) fn mark_ready(&self) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            self.handle.mark_ready();
        }
    }

    /// The application took `m`: its credit goes back to the peer.
    pub(crate) fn received(&self, m: &Message) {
        self.handle.received(m);
    }

    /// Nobody will take `dropped` (their receiver went): their credit goes back, and the
    /// `settled` replies they owed are owed no more.
    pub(crate) fn abandoned(&self, dropped: &[Message], settled: u64) {
        for m in dropped {
            self.handle.received(m);
        }
        for _ in 0..settled {
            self.handle.reply_settled();
        }
    }

    /// What a receiver took, its payload decompressed within our `MAX_MESSAGE_SIZE`.
    /// spec: wire.md §12.3, §6.1.1 — a failure concerns this message only and is reported
    /// with it.
    pub(crate) fn decompressed(&self, taken: Poll<Option<Message>>) -> Poll<Option<Message>> {
        let max = self.max_message_size();
        taken.map(|m| {
            m.map(|mut m| {
                m.decompress(max);
                m
            })
        })
    }

    /// Our `MAX_MESSAGE_SIZE`, the decompression limit.
    pub(crate) fn max_message_size(&self) -> u64 {
        self.handle.common().max_message_size
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Nobody can use the connection any more: close it as `Sender::close` does, without
        // anyone to wait for the drain — a task does, if there is a runtime to run it.
        let common = self.handle.common();
        if common.is_closed() {
            return;
        }
        self.handle.close_gracefully();
        let handle = self.handle.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let common = handle.common();
                    let drained = tokio::time::timeout(
                        DRAIN_DEADLINE,
                        common.changed.wait_for(|| common.close_reason()),
                    )
                    .await;
                    if drained.is_err() {
                        handle.close_now(ErrorCode::NO_ERROR, "drain timed out");
                    }
                });
            }
            Err(_) => self
                .handle
                .close_now(ErrorCode::NO_ERROR, "all handles dropped"),
        }
    }
}
