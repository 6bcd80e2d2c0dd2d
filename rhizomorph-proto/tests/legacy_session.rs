//! The sans-IO legacy session (legacy.md §L3.3, §L4): handshakes on both sides, keepalive and
//! token replies from one slot each, the send buffer and receive window in bytes, the timers,
//! rate-limited reports of messages that do not decode, and how it ends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rhizomorph_proto::header::RoutingHeader;
use rhizomorph_proto::legacy::handshake::AuthInfo;
use rhizomorph_proto::legacy::session::{close_code, MESSAGE_OVERHEAD};
use rhizomorph_proto::legacy::{
    Initiator, LegacyConfig, LegacyEvent, LegacySendError, LegacySession, LegacyTransmit, Side,
};
use rhizomorph_proto::websocket::{CloseFrame, WsEvent};

const AUTH: &str =
    r#"{"client_id": "a", "workspace": "w", "token": null, "reconnection_token": null}"#;
const INFO: &str = r#"{"type": "connection_info", "workspace": "w", "client_id": "a"}"#;

fn text(s: &str) -> WsEvent {
    WsEvent::Text(Bytes::copy_from_slice(s.as_bytes()))
}

/// `{"to": "x"}` and a nil payload.
fn message() -> Bytes {
    let mut m = vec![0x81, 0xa2, b't', b'o', 0xa1, b'x'];
    m.push(0xc0);
    Bytes::from(m)
}

fn events(s: &mut LegacySession) -> Vec<LegacyEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn transmits(s: &mut LegacySession, now: Instant) -> Vec<LegacyTransmit> {
    std::iter::from_fn(|| s.poll_transmit(now)).collect()
}

/// A server that accepted the client and is ready.
fn open_server(config: LegacyConfig, now: Instant) -> LegacySession {
    let mut s = LegacySession::new(Side::Server, config, now);
    s.handle_message(now, text(AUTH));
    assert!(matches!(events(&mut s)[..], [LegacyEvent::Authenticate(_)]));
    s.accept(INFO.into());
    s.mark_ready();
    assert_eq!(
        transmits(&mut s, now),
        vec![LegacyTransmit::Text(INFO.into())]
    );
    s
}

#[test]
fn l4_1_client_sends_auth_skips_binary_and_opens_on_connection_info() {
    let now = Instant::now();
    let auth = AuthInfo {
        client_id: Some("a".into()),
        ..AuthInfo::default()
    };
    let mut c = LegacySession::new(
        Side::Client { auth: auth.clone() },
        LegacyConfig::default(),
        now,
    );
    assert_eq!(
        transmits(&mut c, now),
        vec![LegacyTransmit::Text(auth.to_text().into())]
    );
    // spec: §L4.2 — BINARY before connection_info is skipped.
    c.handle_message(now, WsEvent::Binary(message()));
    assert!(events(&mut c).is_empty());
    assert!(!c.is_open());
    c.handle_message(now, text(INFO));
    match &events(&mut c)[..] {
        [LegacyEvent::Connected(info)] => assert_eq!(info.full_id(), "w/a"),
        other => panic!("{other:?}"),
    }
    assert!(c.is_open());
}

#[test]
fn l4_2_server_sends_connection_info_only_once_ready_and_before_anything_else() {
    let now = Instant::now();
    let mut s = LegacySession::new(Side::Server, LegacyConfig::default(), now);
    s.handle_message(now, text(AUTH));
    match &events(&mut s)[..] {
        [LegacyEvent::Authenticate(a)] => assert_eq!(a.client_id.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    s.accept(INFO.into());
    s.handle_message(now, text(r#"{"type": "ping"}"#));
    assert!(transmits(&mut s, now).is_empty(), "nothing before ready");
    s.send(&RoutingHeader::new().with("to", "w/a"), Bytes::new())
        .unwrap();
    let out = transmits(&mut s, now);
    assert_eq!(out[0], LegacyTransmit::Text(INFO.into()));
    assert_eq!(out[1], LegacyTransmit::Text(r#"{"type": "pong"}"#.into()));
    assert!(matches!(out[2], LegacyTransmit::Binary(_)));
}

#[test]
fn l4_2_a_refused_client_gets_the_error_then_close_1008() {
    let now = Instant::now();
    let mut s = LegacySession::new(Side::Server, LegacyConfig::default(), now);
    s.handle_message(now, text(AUTH));
    events(&mut s);
    s.refuse("not you");
    let out = transmits(&mut s, now);
    assert_eq!(
        out,
        vec![
            LegacyTransmit::Text(r#"{"type": "error", "message": "not you"}"#.into()),
            LegacyTransmit::Close {
                code: close_code::POLICY,
                reason: "not you".into()
            },
        ]
    );
    assert!(s.is_closed());
}

#[test]
fn l4_1_a_binary_first_message_or_bad_json_closes_1003() {
    let now = Instant::now();
    for first in [WsEvent::Binary(message()), text("{not json")] {
        let mut s = LegacySession::new(Side::Server, LegacyConfig::default(), now);
        s.handle_message(now, first);
        match &transmits(&mut s, now)[..] {
            [LegacyTransmit::Close { code, .. }] => assert_eq!(*code, close_code::UNSUPPORTED_DATA),
            other => panic!("{other:?}"),
        }
        assert!(s.is_closed());
    }
}

#[test]
fn l4_1_no_authentication_within_the_timeout_closes_1008() {
    let now = Instant::now();
    let mut s = LegacySession::new(Side::Server, LegacyConfig::default(), now);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(5));
    s.handle_timeout(deadline - Duration::from_millis(1));
    assert!(transmits(&mut s, now).is_empty());
    s.handle_timeout(deadline);
    match &transmits(&mut s, deadline)[..] {
        [LegacyTransmit::Close { code, reason }] => {
            assert_eq!(*code, close_code::POLICY);
            assert!(reason.contains("no authentication within 5 s"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn l4_3_a_ping_flood_is_answered_from_one_slot() {
    let now = Instant::now();
    let mut s = open_server(LegacyConfig::default(), now);
    for _ in 0..100_000 {
        s.handle_message(now, text(r#"{"type": "ping"}"#));
        s.handle_message(now, text(r#"{"type": "refresh_token"}"#));
    }
    // One token request until it is answered, no matter how many arrived.
    assert_eq!(events(&mut s), vec![LegacyEvent::TokenRequested]);
    s.send_reconnection_token("t1");
    s.handle_message(now, text(r#"{"type": "refresh_token"}"#));
    assert_eq!(events(&mut s), vec![LegacyEvent::TokenRequested]);
    s.send_reconnection_token("t2");
    let out = transmits(&mut s, now);
    assert_eq!(
        out,
        vec![
            LegacyTransmit::Text(r#"{"type": "pong"}"#.into()),
            LegacyTransmit::Text(
                r#"{"type": "reconnection_token", "reconnection_token": "t2"}"#.into()
            ),
        ]
    );
}

#[test]
fn l4_3_client_pings_after_2_s_then_every_interval_and_measures_the_round_trip() {
    let now = Instant::now();
    let config = LegacyConfig {
        ping_interval: Some(Duration::from_secs(20)),
        idle_timeout: None,
        ..LegacyConfig::default()
    };
    let mut c = LegacySession::new(
        Side::Client {
            auth: AuthInfo::default(),
        },
        config,
        now,
    );
    transmits(&mut c, now);
    c.handle_message(now, text(INFO));
    events(&mut c);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(2)));
    let t = now + Duration::from_secs(2);
    c.handle_timeout(t);
    assert_eq!(
        transmits(&mut c, t),
        vec![LegacyTransmit::Text(r#"{"type": "ping"}"#.into())]
    );
    c.handle_message(t + Duration::from_millis(7), text(r#"{"type": "pong"}"#));
    assert_eq!(c.rtt(), Some(Duration::from_millis(7)));
    assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(20)));
}

#[test]
fn l4_3_a_silent_peer_is_closed_after_the_idle_timeout() {
    let now = Instant::now();
    let config = LegacyConfig {
        idle_timeout: Some(Duration::from_secs(60)),
        ..LegacyConfig::default()
    };
    let mut s = open_server(config, now);
    let t = now + Duration::from_secs(30);
    s.handle_message(t, text(r#"{"type": "ping"}"#));
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(60)));
    s.handle_timeout(t + Duration::from_secs(59));
    assert!(s.is_open());
    s.handle_timeout(t + Duration::from_secs(60));
    let out = transmits(&mut s, t);
    assert!(
        matches!(&out[..], [LegacyTransmit::Close { code, .. }] if *code == close_code::GOING_AWAY),
        "{out:?}"
    );
    match &events(&mut s)[..] {
        [LegacyEvent::Closed(c)] => assert_eq!(c.initiator, Initiator::Local),
        other => panic!("{other:?}"),
    }
}

#[test]
fn l3_3_the_receive_window_counts_bytes_and_a_fixed_cost_per_message() {
    let now = Instant::now();
    let window = 64 * 1024;
    let config = LegacyConfig {
        receive_window: window,
        ..LegacyConfig::default()
    };
    let mut s = open_server(config, now);
    let mut taken = Vec::new();
    // Empty-payload messages of 7 bytes: bounded by the per-message cost, not their bytes.
    while s.wants_read() {
        s.handle_message(now, WsEvent::Binary(message()));
        for e in events(&mut s) {
            if let LegacyEvent::Message(m) = e {
                assert_eq!(m.credit, (7 + MESSAGE_OVERHEAD) as u64);
                taken.push(m);
            }
        }
    }
    assert_eq!(taken.len(), window.div_ceil(7 + MESSAGE_OVERHEAD));
    s.release(taken.pop().unwrap().credit);
    assert!(s.wants_read());
}

#[test]
fn l3_3_send_waits_while_the_send_buffer_is_full_and_a_large_message_goes_alone() {
    let now = Instant::now();
    let config = LegacyConfig {
        send_buffer: 1000,
        ..LegacyConfig::default()
    };
    let mut s = open_server(config, now);
    let to = RoutingHeader::new().with("to", "w/a");
    // bin8 of 600 bytes: one msgpack value.
    let payload = |n: usize| {
        let mut p = vec![0xc5, (n >> 8) as u8, n as u8];
        p.resize(n + 3, 7);
        Bytes::from(p)
    };
    s.send(&to, payload(600)).unwrap();
    assert!(matches!(
        s.send(&to, payload(600)),
        Err(LegacySendError::Full { .. })
    ));
    transmits(&mut s, now);
    assert_eq!(s.queued_bytes(), 0);
    // Larger than the whole buffer: taken when nothing else is queued.
    s.send(&to, payload(5000)).unwrap();
    assert!(matches!(
        s.send(&to, Bytes::new()),
        Err(LegacySendError::Full { .. })
    ));
    // spec: §L3.1 — a payload that is not one msgpack value is refused.
    transmits(&mut s, now);
    assert!(matches!(
        s.send(&to, Bytes::from_static(b"\xc0\xc0")),
        Err(LegacySendError::Encode(_))
    ));
}

#[test]
fn l3_3_messages_that_do_not_decode_are_reported_at_most_once_per_interval() {
    let now = Instant::now();
    let mut s = open_server(LegacyConfig::default(), now);
    for _ in 0..1000 {
        s.handle_message(now, WsEvent::Binary(Bytes::from_static(b"\xc1")));
    }
    let reports = events(&mut s);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let later = now + Duration::from_secs(1);
    s.handle_message(later, WsEvent::Binary(Bytes::from_static(b"\x90")));
    match &events(&mut s)[..] {
        [LegacyEvent::Malformed { suppressed, .. }] => assert_eq!(*suppressed, 999),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.malformed_count(), 1001);
    assert!(s.is_open(), "bad messages never close the connection");
}

#[test]
fn a_graceful_close_sends_what_is_queued_first_and_a_close_at_once_drops_it() {
    let now = Instant::now();
    let to = RoutingHeader::new().with("to", "w/a");
    let mut s = open_server(LegacyConfig::default(), now);
    s.send(&to, Bytes::new()).unwrap();
    s.close(close_code::NORMAL, "bye", true);
    assert!(matches!(
        s.send(&to, Bytes::new()),
        Err(LegacySendError::Closed)
    ));
    let out = transmits(&mut s, now);
    assert!(matches!(out[0], LegacyTransmit::Binary(_)));
    assert_eq!(
        out[1],
        LegacyTransmit::Close {
            code: close_code::NORMAL,
            reason: "bye".into()
        }
    );
    let mut s = open_server(LegacyConfig::default(), now);
    s.send(&to, Bytes::new()).unwrap();
    s.close(close_code::NORMAL, "bye", true);
    s.close(close_code::INTERNAL, "now", false);
    assert_eq!(
        transmits(&mut s, now),
        vec![LegacyTransmit::Close {
            code: close_code::INTERNAL,
            reason: "now".into()
        }]
    );
}

#[test]
fn the_peers_close_ends_the_session_once_and_nothing_leaves_after() {
    let now = Instant::now();
    let mut s = open_server(LegacyConfig::default(), now);
    s.send(&RoutingHeader::new().with("to", "w/a"), Bytes::new())
        .unwrap();
    s.handle_message(
        now,
        WsEvent::Close(CloseFrame {
            code: Some(1001),
            reason: "away".into(),
        }),
    );
    s.handle_transport_end(None);
    match &events(&mut s)[..] {
        [LegacyEvent::Closed(c)] => {
            assert_eq!((c.initiator, c.code), (Initiator::Peer, Some(1001)));
        }
        other => panic!("{other:?}"),
    }
    assert!(transmits(&mut s, now).is_empty());
    assert!(!s.wants_read());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_client_refused_by_the_server_reports_the_refusal() {
    let now = Instant::now();
    let mut c = LegacySession::new(
        Side::Client {
            auth: AuthInfo::default(),
        },
        LegacyConfig::default(),
        now,
    );
    transmits(&mut c, now);
    c.handle_message(now, text(r#"{"type": "error", "message": "bad token"}"#));
    match &events(&mut c)[..] {
        [LegacyEvent::Closed(close)] => {
            assert!(close.refused);
            assert_eq!(close.reason, "bad token");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn l4_2_a_server_that_closes_before_it_is_ready_never_sends_connection_info() {
    let now = Instant::now();
    let mut s = LegacySession::new(Side::Server, LegacyConfig::default(), now);
    s.handle_message(now, text(AUTH));
    events(&mut s);
    s.accept(INFO.into());
    // The application refuses the client after accepting it (an identity already connected).
    s.close(close_code::POLICY, "w/a is already connected", true);
    assert_eq!(
        transmits(&mut s, now),
        vec![
            LegacyTransmit::Text(
                r#"{"type": "error", "message": "w/a is already connected"}"#.into()
            ),
            LegacyTransmit::Close {
                code: close_code::POLICY,
                reason: "w/a is already connected".into()
            },
        ]
    );
}
