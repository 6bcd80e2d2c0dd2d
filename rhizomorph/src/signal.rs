//! [`Signal`]: a state-change notification that costs one atomic load to raise while nobody
//! waits for it.
//!
//! `tokio::sync::Notify::notify_waiters` locks its waiter list every time; the driver raises
//! "send-buffer room may have opened" after every batch and the application "the session has
//! room again" after every message taken, while waiters are rare (a sender at a full buffer, a
//! QUIC reader at a full window). Owns nothing but the wake-up; never holds state itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Wakes the tasks waiting for a condition to change.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    notify: Notify,
    /// Tasks inside [`Signal::wait_for`], plus the wakers [`Signal::poll_for`] registered.
    waiters: AtomicUsize,
    /// Wakers of poll-based waiters (a `Sink`'s `poll_ready`), each woken once by the next
    /// notification. One per task: a task that polls again replaces nothing and adds nothing.
    wakers: Mutex<Vec<Waker>>,
}

/// Counts one waiter for as long as it lives (also when its future is dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Signal {
    /// Wakes every task waiting now. Call it after changing the state the waiters check.
    ///
    /// Not lost: a waiter counts itself before it checks the state, so either this load sees
    /// it (and wakes it), or its check comes after the change (and sees it).
    pub(crate) fn notify_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
            let wakers = std::mem::take(&mut *self.lock_wakers());
            if !wakers.is_empty() {
                self.waiters.fetch_sub(wakers.len(), Ordering::SeqCst);
                wakers.into_iter().for_each(Waker::wake);
            }
        }
    }

    fn lock_wakers(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The poll face of [`wait_for`](Self::wait_for): `Ready` with what `check` gives, or
    /// `Pending` with `cx`'s waker registered for the next notification. Not lost: the waker
    /// is registered before the second check.
    pub(crate) fn poll_for<T>(
        &self,
        cx: &mut Context<'_>,
        mut check: impl FnMut() -> Option<T>,
    ) -> Poll<T> {
        if let Some(v) = check() {
            return Poll::Ready(v);
        }
        {
            let mut wakers = self.lock_wakers();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
                self.waiters.fetch_add(1, Ordering::SeqCst);
            }
        }
        match check() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }

    /// Waits until `check` gives a value, checking once now and again after every
    /// [`notify_waiters`](Self::notify_waiters).
    pub(crate) async fn wait_for<T>(&self, mut check: impl FnMut() -> Option<T>) -> T {
        let _waiting = Waiting::new(&self.waiters);
        loop {
            // Registered before the check, so a wake-up between the check and the wait is not
            // lost.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check() {
                return v;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_sees_a_change_made_before_or_while_it_waits() {
        let signal = Arc::new(Signal::default());
        let flag = Arc::new(AtomicBool::new(false));
        // Nobody waits: raising costs nothing and is not remembered.
        signal.notify_waiters();
        assert_eq!(signal.waiters.load(Ordering::SeqCst), 0);
        let waiter = {
            let (signal, flag) = (signal.clone(), flag.clone());
            tokio::spawn(async move {
                signal
                    .wait_for(|| flag.load(Ordering::SeqCst).then_some(7))
                    .await
            })
        };
        // Let it register and find the flag unset.
        while signal.waiters.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        flag.store(true, Ordering::SeqCst);
        signal.notify_waiters();
        assert_eq!(waiter.await.unwrap(), 7);
        assert_eq!(
            signal.waiters.load(Ordering::SeqCst),
            0,
            "the count is given back"
        );
        // Already true: no wait at all.
        assert_eq!(signal.wait_for(|| Some(1)).await, 1);
    }

    #[tokio::test]
    async fn a_dropped_wait_gives_its_count_back() {
        let signal = Signal::default();
        let wait = signal.wait_for(|| None::<()>);
        let r = tokio::time::timeout(std::time::Duration::from_millis(5), wait).await;
        assert!(r.is_err());
        assert_eq!(signal.waiters.load(Ordering::SeqCst), 0);
    }
}
