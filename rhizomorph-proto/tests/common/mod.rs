//! A deterministic in-memory network for sessions: two `Session`s wired back to back through
//! simulated links (bandwidth, latency, a bounded bottleneck queue) on a virtual clock.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizomorph_proto::session::{Event, Session, SessionConfig};
use rhizomorph_proto::session::{Target, Transmit};

/// One direction of a link: a bottleneck that serializes bytes at `bytes_per_sec` behind a
/// queue of at most `queue_limit` bytes, then `latency` of propagation.
#[derive(Debug)]
pub struct Link {
    pub bytes_per_sec: Option<f64>,
    pub latency: Duration,
    pub queue_limit: usize,
    busy_until: Instant,
    in_flight: VecDeque<(Instant, Bytes)>,
    pub bytes_carried: u64,
}

impl Link {
    pub fn new(
        now: Instant,
        bytes_per_sec: Option<f64>,
        latency: Duration,
        queue_limit: usize,
    ) -> Self {
        Link {
            bytes_per_sec,
            latency,
            queue_limit,
            busy_until: now,
            in_flight: VecDeque::new(),
            bytes_carried: 0,
        }
    }

    /// Bytes still waiting at the bottleneck at `now`.
    pub fn queued(&self, now: Instant) -> usize {
        match self.bytes_per_sec {
            None => 0,
            Some(bw) => {
                (self.busy_until.saturating_duration_since(now).as_secs_f64() * bw) as usize
            }
        }
    }

    pub fn has_room(&self, now: Instant) -> bool {
        self.queued(now) < self.queue_limit
    }

    /// When the queue will next have room.
    pub fn room_at(&self) -> Instant {
        match self.bytes_per_sec {
            None => self.busy_until,
            Some(bw) => self.busy_until - Duration::from_secs_f64(self.queue_limit as f64 / bw),
        }
    }

    pub fn push(&mut self, now: Instant, batch: Bytes) {
        let start = self.busy_until.max(now);
        let done = match self.bytes_per_sec {
            None => start,
            Some(bw) => start + Duration::from_secs_f64(batch.len() as f64 / bw),
        };
        self.busy_until = done;
        self.bytes_carried += batch.len() as u64;
        self.in_flight.push_back((done + self.latency, batch));
    }

    pub fn pop_arrived(&mut self, now: Instant) -> Option<Bytes> {
        match self.in_flight.front() {
            Some((at, _)) if *at <= now => self.in_flight.pop_front().map(|(_, b)| b),
            _ => None,
        }
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

pub struct Sim {
    pub now: Instant,
    pub client: Session,
    pub server: Session,
    pub to_server: Link,
    pub to_client: Link,
    /// Accept the client's HELLO automatically.
    pub auto_accept: bool,
}

impl Sim {
    /// Two sessions over ideal links (instant, unbounded).
    pub fn new(client: SessionConfig, server: SessionConfig) -> Sim {
        Sim::with_links(client, server, None, Duration::ZERO, usize::MAX)
    }

    pub fn with_links(
        client: SessionConfig,
        server: SessionConfig,
        bytes_per_sec: Option<f64>,
        latency: Duration,
        queue_limit: usize,
    ) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            client: Session::client(client, now),
            server: Session::server(server, now),
            to_server: Link::new(now, bytes_per_sec, latency, queue_limit),
            to_client: Link::new(now, bytes_per_sec, latency, queue_limit),
            auto_accept: true,
        }
    }

    pub fn session(&mut self, side: Side) -> &mut Session {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// One pass at the current time: senders write while their bottleneck queue has room
    /// (a bounded send queue, wire.md §16.4), arrivals are handled, due timers run. Returns
    /// whether anything moved, and the events (auto-accepting HELLOs if asked to).
    fn pump(&mut self) -> (bool, Vec<(Side, Event)>) {
        let mut progressed = false;
        while self.to_server.has_room(self.now) {
            let Some(b) = self
                .client
                .poll_transmit(self.now, Target::Batch, usize::MAX)
                .map(Transmit::into_bytes)
            else {
                break;
            };
            self.to_server.push(self.now, b);
            progressed = true;
        }
        while self.to_client.has_room(self.now) {
            let Some(b) = self
                .server
                .poll_transmit(self.now, Target::Batch, usize::MAX)
                .map(Transmit::into_bytes)
            else {
                break;
            };
            self.to_client.push(self.now, b);
            progressed = true;
        }
        while let Some(b) = self.to_server.pop_arrived(self.now) {
            self.server.handle_batch(self.now, b);
            progressed = true;
        }
        while let Some(b) = self.to_client.pop_arrived(self.now) {
            self.client.handle_batch(self.now, b);
            progressed = true;
        }
        for side in [Side::Client, Side::Server] {
            let now = self.now;
            let s = self.session(side);
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
                progressed = true;
            }
        }
        let mut events = Vec::new();
        while let Some(e) = self.client.poll_event() {
            events.push((Side::Client, e));
        }
        while let Some(e) = self.server.poll_event() {
            if self.auto_accept && matches!(e, Event::HelloReceived { .. }) {
                self.server.accept(Bytes::new());
            }
            events.push((Side::Server, e));
        }
        (progressed, events)
    }

    /// Moves bytes and time until something happens; returns the events (both sides), or an
    /// empty list when nothing at all is pending (idle).
    pub fn step(&mut self) -> Vec<(Side, Event)> {
        loop {
            let (progressed, events) = self.pump();
            if !events.is_empty() {
                return events;
            }
            if progressed {
                continue;
            }
            // Advance the clock to the next thing that can happen.
            let mut next: Option<Instant> = None;
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            };
            consider(self.to_server.next_arrival());
            consider(self.to_client.next_arrival());
            if !self.to_server.has_room(self.now) {
                consider(Some(self.to_server.room_at()));
            }
            if !self.to_client.has_room(self.now) {
                consider(Some(self.to_client.room_at()));
            }
            let arrivals_pending =
                self.to_server.next_arrival().is_some() || self.to_client.next_arrival().is_some();
            if arrivals_pending
                || !self.to_server.has_room(self.now)
                || !self.to_client.has_room(self.now)
            {
                // Timers only matter while nothing else is pending, or if they come first.
                consider(self.client.poll_timeout());
                consider(self.server.poll_timeout());
            }
            match next {
                Some(t) if t > self.now => self.now = t,
                Some(_) => self.now += Duration::from_micros(1),
                None => return Vec::new(),
            }
        }
    }

    /// Steps until both sessions are connected; panics if they fail.
    pub fn connect(&mut self) {
        let mut connected = 0;
        while connected < 2 {
            let events = self.step();
            assert!(!events.is_empty(), "stalled before connecting");
            for (_, e) in events {
                match e {
                    Event::Connected { .. } => connected += 1,
                    Event::HelloReceived { .. } => {}
                    other => panic!("unexpected event while connecting: {other:?}"),
                }
            }
        }
    }

    /// Advances the clock by `d`, running timers and links; returns the events on the way.
    pub fn advance(&mut self, d: Duration) -> Vec<(Side, Event)> {
        let until = self.now + d;
        let mut all = Vec::new();
        loop {
            all.append(&mut self.step_now());
            if self.now >= until {
                return all;
            }
            let next = [
                self.to_server.next_arrival(),
                self.to_client.next_arrival(),
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                (!self.to_server.has_room(self.now)).then(|| self.to_server.room_at()),
                (!self.to_client.has_room(self.now)).then(|| self.to_client.room_at()),
            ]
            .into_iter()
            .flatten()
            .filter(|&t| t > self.now)
            .min()
            .unwrap_or(until);
            self.now = next.min(until);
        }
    }

    /// Runs everything due at the current time until nothing more happens, without advancing
    /// the clock; returns the events.
    pub fn step_now(&mut self) -> Vec<(Side, Event)> {
        let mut all = Vec::new();
        loop {
            let (progressed, mut events) = self.pump();
            all.append(&mut events);
            if !progressed {
                return all;
            }
        }
    }
}
