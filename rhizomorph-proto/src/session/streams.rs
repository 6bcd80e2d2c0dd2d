//! Per-channel-stream framing (wire.md §17): one ordered byte stream per channel, as QUIC
//! carries the session.
//!
//! Owns what only this framing has: the undecoded bytes of each of the peer's streams, the
//! SCHEMA and CANCEL-with-ABORT frames that travel on their channel's stream (§17.3), which of
//! the peer's streams have ended, and a graceful CLOSE that waits for them (§17.6). Never
//! prioritizes the streams or runs their flow control: the transport does (§17.4, §17.5).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Event, Framing, Initiator, Role, Session, SessionError, State};
use crate::frame::{Channel, Close, ErrorCode, Frame};

/// The per-channel-stream state of a session (empty and unused with batched framing).
#[derive(Debug, Default)]
pub(super) struct ChannelStreams {
    /// Received bytes per channel stream, not yet decoded: a partial frame, or frames that
    /// arrived before the HELLO exchange finished.
    pub(super) bufs: [BytesMut; 4],
    /// SCHEMA and CANCEL-with-ABORT frames that travel on their channel's stream (§17.3).
    pub(super) frames: [VecDeque<Frame>; 4],
    /// Which of the peer's streams have ended (FIN), §17.6.
    pub(super) ended: [bool; 4],
    /// The peer's CLOSE while its streams finish, with the deadline.
    pub(super) peer_close: Option<(Close, Instant)>,
}

impl Session {
    /// Per-channel streams (wire.md §17.2): handles bytes received on the peer's stream for
    /// `channel`, after the stream's channel-id preamble. Whole frames are decoded straight
    /// from `bytes` (payloads stay slices of it); a partial frame waits for more. Channel
    /// streams wait for the HELLO exchange, since QUIC may deliver them before the control
    /// stream. The driver reads a stream only while [`can_read`](Self::can_read) allows.
    pub fn handle_stream(&mut self, now: Instant, channel: Channel, mut bytes: Bytes) {
        self.now = now;
        if matches!(self.state, State::Closed | State::Detached) {
            return;
        }
        self.keepalive.on_receive(now);
        let i = channel.index();
        if let Err(e) = self.check_stream_timing(channel) {
            return self.fail(e);
        }
        let was_open = self.state == State::Open;
        if self.streams.bufs[i].is_empty() && self.stream_decodable(channel) {
            loop {
                match self.decoder.decode_bytes(&mut bytes) {
                    Ok(Some(frame)) => {
                        if !self.on_stream_frame(channel, frame) {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return self.fail(e.into()),
                }
            }
        }
        if !bytes.is_empty() {
            self.streams.bufs[i].extend_from_slice(&bytes);
            self.decode_stream(channel);
        }
        if !was_open && self.state == State::Open {
            // The HELLO exchange just finished: frames that arrived early on other streams.
            for ch in [Channel::Rpc, Channel::Stream, Channel::Bulk] {
                self.decode_stream(ch);
            }
        }
    }

    /// Per-channel streams: whether the driver should read more of the peer's stream for
    /// `channel`. The session holds at most the local windows (bytes received and not yet
    /// released, plus undecoded bytes) and one read beyond; while the driver does not read,
    /// QUIC's flow control stops the peer (§17.5).
    pub fn can_read(&self, channel: Channel) -> bool {
        let s = &self.config.settings;
        let held = |i: usize| self.incoming[i].held_bytes() + self.streams.bufs[i].len() as u64;
        held(channel.index()) < s.initial_channel_window
            && (0..4).map(held).sum::<u64>() < s.initial_connection_window
            && self.incoming[channel.index()].held_messages() < self.config.max_held_messages
    }

    /// Per-channel streams: the peer's stream for `channel` ended (FIN). Once all of them have
    /// after a graceful CLOSE, the connection is over (§17.6).
    pub fn handle_stream_end(&mut self, now: Instant, channel: Channel) {
        self.now = now;
        self.streams.ended[channel.index()] = true;
        if self.state == State::Finishing && self.streams.ended.iter().all(|&e| e) {
            self.finish_peer_close();
        }
    }

    /// Per-channel streams: whether [`poll_transmit`](Self::poll_transmit) with `Target::Stream(channel)`
    /// would return bytes for `channel` now.
    pub fn has_channel_output(&self, channel: Channel) -> bool {
        let i = channel.index();
        if matches!(self.state, State::Closed | State::Detached) {
            return false;
        }
        !self.streams.frames[i].is_empty()
            || (channel == Channel::Control
                && (self.pong.is_some() || !self.control.is_empty() || self.ack_due()))
            // With per-channel streams the session's credit never runs out (§17.5).
            // spec: wire.md §21.4.2 — a message the replay buffer holds back is not output.
            || (self.state == State::Open && self.outgoing[i].has_ready())
    }

    /// Queues a frame that is ordered with `channel`'s messages (SCHEMA, CANCEL with ABORT):
    /// on that channel's stream with per-channel streams (§17.3), with the control frames
    /// otherwise (they leave before any later message).
    pub(super) fn queue_on_channel(&mut self, channel: Channel, frame: Frame) {
        match self.config.framing {
            Framing::PerChannelStreams if channel != Channel::Control => {
                self.streams.frames[channel.index()].push_back(frame)
            }
            _ => self.control.push_back(frame),
        }
    }

    pub(super) fn must_finish_streams(&self, close: &Close) -> bool {
        self.config.framing == Framing::PerChannelStreams
            && close.code == ErrorCode::NO_ERROR
            && self.state == State::Open
            && !self.streams.ended.iter().all(|&e| e)
    }

    pub(super) fn finish_peer_close(&mut self) {
        if let Some((c, _)) = self.streams.peer_close.take() {
            self.state = State::Closed;
            self.events.push_back(Event::Closed {
                code: c.code,
                reason: c.reason,
                initiator: Initiator::Peer,
            });
        }
    }

    pub(super) fn stream_decodable(&self, stream: Channel) -> bool {
        // spec: wire.md §17.2.2 — HELLO comes first on the control stream; frames on other
        // streams are read once the exchange is over.
        stream == Channel::Control
            || matches!(self.state, State::Open | State::Closing | State::Finishing)
    }

    pub(super) fn check_stream_timing(&self, stream: Channel) -> Result<(), SessionError> {
        // A client opens channel streams only after the server's HELLO (§17.2.2); a server
        // that has not sent it yet cannot be receiving them.
        let early = self.role == Role::Server
            && stream != Channel::Control
            && matches!(self.state, State::AwaitingHello | State::AwaitingAccept);
        if early {
            return Err(SessionError::UnexpectedFrame {
                frame: "a channel stream",
                state: self.state.name(),
            });
        }
        Ok(())
    }

    pub(super) fn decode_stream(&mut self, stream: Channel) {
        if !self.stream_decodable(stream) {
            return;
        }
        loop {
            match self.decoder.decode(&mut self.streams.bufs[stream.index()]) {
                Ok(Some(frame)) => {
                    if !self.on_stream_frame(stream, frame) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => return self.fail(e.into()),
            }
        }
    }

    /// Handles one frame from `stream`; false when the connection ended.
    pub(super) fn on_stream_frame(&mut self, stream: Channel, frame: Frame) -> bool {
        let r = Self::check_stream(stream, &frame).and_then(|()| self.on_frame(frame));
        if let Err(e) = r {
            self.fail(e);
            return false;
        }
        self.state != State::Closed
    }

    /// spec: wire.md §17.3 — MESSAGE, SCHEMA and CANCEL-with-ABORT travel on their channel's
    /// stream; every other frame on the control stream; CREDIT nowhere.
    pub(super) fn check_stream(stream: Channel, frame: &Frame) -> Result<(), SessionError> {
        let home = match frame {
            Frame::Padding { .. } | Frame::Ignored { .. } => return Ok(()),
            Frame::Credit(_) => None,
            Frame::Message(m) => Some(m.channel),
            Frame::Schema(s) => Some(s.channel),
            Frame::Cancel(c) if c.abort => Some(c.channel),
            _ => Some(Channel::Control),
        };
        if home == Some(stream) {
            Ok(())
        } else {
            Err(SessionError::WrongStream {
                frame: crate::frame::FrameType::name(frame.frame_type()),
                stream,
            })
        }
    }
}
