//! Flow control (wire.md §9, §17.5): the credit windows in both directions, and when released
//! credit is worth a CREDIT frame.
//!
//! Owns every window of one connection: what the peer granted us (per channel and for the
//! connection), what we granted the peer and has not been used, and what the application has
//! released but we have not credited yet. The framing is decided here once: with per-channel
//! streams (QUIC) the transport's own flow control replaces CREDIT, so the windows never run
//! out, received bytes are not charged, and a CREDIT frame is an error. Never queues frames
//! itself and never sees messages: the session charges and releases byte counts.

use std::collections::VecDeque;

use super::config::Framing;
use super::error::SessionError;
use super::outgoing::MIN_CHUNK;
use crate::frame::{Channel, Credit, CreditTarget, Frame, Settings, MAX_WINDOW};

/// Over QUIC the session's own credit never runs out: QUIC's stream windows stop the sender
/// instead (wire.md §17.5). 2^62 bytes is beyond any connection's lifetime.
const UNLIMITED_WINDOW: u64 = 1 << 62;

/// The most a first MESSAGE frame carries besides its header block and data (wire.md §8.1).
pub(super) const FIRST_FRAME_METADATA: u64 = 40;

/// What a receiver's window must hold beyond `MAX_HEADER_LIST_SIZE` for a sender to make
/// progress (wire.md §9.5): a first frame's other metadata and 1 KiB of data, rounded up.
const PROGRESS_MARGIN: u64 = 1088;
const _: () = assert!(PROGRESS_MARGIN >= FIRST_FRAME_METADATA + MIN_CHUNK);

/// The credit state of one connection, both directions (see the module docs).
#[derive(Debug)]
pub(super) struct FlowControl {
    framing: Framing,
    /// Credit the peer granted on the connection (§9.1), left.
    send_connection: u64,
    /// Per channel, credit the peer granted (§9.2), left.
    send_channel: [u64; 4],
    /// Credit we granted the peer on the connection, left.
    recv_connection: u64,
    /// Per channel, credit we granted the peer, left.
    recv_channel: [u64; 4],
    /// Connection bytes released by the application and not yet credited.
    pending_connection: u64,
    /// Per channel, bytes released by the application and not yet credited.
    pending_channel: [u64; 4],
    /// Our initial windows, announced in HELLO (what "a quarter" is measured against, §9.5).
    initial_connection: u64,
    initial_channel: u64,
    /// Below this window any released credit is urgent (§9.5): a first frame carries at most
    /// `MAX_HEADER_LIST_SIZE` of header block and 40 bytes of other metadata (§8.1), and a
    /// sender may wait for 1 KiB of data beside them.
    floor: u64,
}

impl FlowControl {
    /// Windows for a session announcing `local`: the peer may send that much at once; we may
    /// send nothing until its HELLO grants credit ([`open`](Self::open)).
    pub(super) fn new(local: &Settings, framing: Framing) -> Self {
        FlowControl {
            framing,
            send_connection: 0,
            send_channel: [0; 4],
            recv_connection: local.initial_connection_window,
            recv_channel: [local.initial_channel_window; 4],
            pending_connection: 0,
            pending_channel: [0; 4],
            initial_connection: local.initial_connection_window,
            initial_channel: local.initial_channel_window,
            floor: local.max_header_list_size.saturating_add(PROGRESS_MARGIN),
        }
    }

    /// The HELLO exchange finished: the peer's initial windows are our credit (§9.1).
    pub(super) fn open(&mut self, peer: &Settings) {
        (self.send_connection, self.send_channel) = match self.framing {
            Framing::Batched => (
                peer.initial_connection_window,
                [peer.initial_channel_window; 4],
            ),
            Framing::PerChannelStreams => (UNLIMITED_WINDOW, [UNLIMITED_WINDOW; 4]),
        };
    }

    /// Charges a received MESSAGE frame's `len` payload bytes to our windows.
    ///
    /// spec: wire.md §9.2.3 — more than the window allows is FLOW_CONTROL_ERROR; §17.5 — with
    /// per-channel streams QUIC's windows do this, and nothing is charged here.
    pub(super) fn charge_received(
        &mut self,
        channel: Channel,
        len: u64,
    ) -> Result<(), SessionError> {
        if self.framing == Framing::PerChannelStreams {
            return Ok(());
        }
        let ch = channel.index();
        if len > self.recv_channel[ch] {
            return Err(SessionError::WindowExceeded {
                target: channel.name(),
                len,
                window: self.recv_channel[ch],
            });
        }
        if len > self.recv_connection {
            return Err(SessionError::WindowExceeded {
                target: "connection",
                len,
                window: self.recv_connection,
            });
        }
        self.recv_channel[ch] -= len;
        self.recv_connection -= len;
        Ok(())
    }

    /// A CREDIT frame from the peer.
    pub(super) fn on_credit(&mut self, c: Credit) -> Result<(), SessionError> {
        if self.framing == Framing::PerChannelStreams {
            // spec: wire.md §17.5 — QUIC's flow control replaces CREDIT.
            return Err(SessionError::WrongStream {
                frame: "CREDIT",
                stream: Channel::Control,
            });
        }
        let (window, target) = match c.target {
            CreditTarget::Connection => (&mut self.send_connection, "connection"),
            CreditTarget::Channel(ch) => (&mut self.send_channel[ch.index()], ch.name()),
        };
        // spec: wire.md §9.7 — a window over 2^32 − 1 is FLOW_CONTROL_ERROR.
        if *window + c.increment > MAX_WINDOW {
            return Err(SessionError::WindowOverflow {
                target,
                window: *window,
                increment: c.increment,
            });
        }
        *window += c.increment;
        Ok(())
    }

    /// The frame payload `channel` may send now: its credit and the connection's, at most
    /// `max_payload`.
    pub(super) fn available(&self, channel: Channel, max_payload: u64) -> u64 {
        self.send_connection
            .min(self.send_channel[channel.index()])
            .min(max_payload)
    }

    /// A frame of `len` payload bytes left on `channel`: charged to the peer's credit.
    pub(super) fn spend(&mut self, channel: Channel, len: u64) {
        self.send_connection -= len;
        self.send_channel[channel.index()] -= len;
    }

    /// The application released `bytes` received on `channel` (§9.3): they become creditable.
    /// Over per-channel streams reading the stream is the credit (§17.5): nothing to do.
    pub(super) fn released(&mut self, channel: Channel, bytes: u64) {
        if bytes == 0 || self.framing == Framing::PerChannelStreams {
            return;
        }
        self.pending_channel[channel.index()] += bytes;
        self.pending_connection += bytes;
    }

    /// The most credit the peer's windows ever hold for one channel: the smaller of its initial
    /// channel and connection windows (§9.1); unlimited where QUIC's windows replace them.
    pub(super) fn window_ceiling(&self, peer: &Settings) -> u64 {
        match self.framing {
            Framing::PerChannelStreams => UNLIMITED_WINDOW,
            Framing::Batched => peer
                .initial_channel_window
                .min(peer.initial_connection_window),
        }
    }

    /// Whether a CREDIT frame must be sent even if nothing else is (so the driver knows a
    /// release needs a write). Smaller amounts wait for a batch that leaves anyway (§9.5).
    pub(super) fn credit_due(&self) -> bool {
        (0..4).any(|i| {
            self.worth(
                self.pending_channel[i],
                self.recv_channel[i],
                self.initial_channel,
                false,
            )
        }) || self.worth(
            self.pending_connection,
            self.recv_connection,
            self.initial_connection,
            false,
        )
    }

    /// Queues on `control` the CREDIT frames due: urgent credit always, smaller amounts only
    /// if the batch being built `carries` other frames or urgent credit (§9.5).
    pub(super) fn queue_credit(&mut self, carries: bool, control: &mut VecDeque<Frame>) {
        let carries = carries || self.credit_due();
        for ch in Channel::ALL {
            let i = ch.index();
            let pending = self.pending_channel[i];
            if self.worth(pending, self.recv_channel[i], self.initial_channel, carries) {
                self.pending_channel[i] = 0;
                self.recv_channel[i] += pending;
                control.push_back(Frame::Credit(Credit {
                    target: CreditTarget::Channel(ch),
                    increment: pending,
                }));
            }
        }
        let pending = self.pending_connection;
        if self.worth(
            pending,
            self.recv_connection,
            self.initial_connection,
            carries,
        ) {
            self.pending_connection = 0;
            self.recv_connection += pending;
            control.push_back(Frame::Credit(Credit {
                target: CreditTarget::Connection,
                increment: pending,
            }));
        }
    }

    /// spec: wire.md §9.5 — whether `pending` releasable bytes are worth a CREDIT frame. On
    /// their own (`carried` false): a quarter of the initial window, or any amount once the
    /// window is below a quarter or below the floor (what one frame may need to make progress,
    /// §9.5.1). In a batch that leaves anyway (`carried`): from 16 KiB, if that is less.
    fn worth(&self, pending: u64, window: u64, initial: u64, carried: bool) -> bool {
        let quarter = (initial / 4).max(1);
        let enough = if carried {
            quarter.min(16 * 1024)
        } else {
            quarter
        };
        pending > 0 && (pending >= enough || window < quarter.max(self.floor))
    }
}
