//! What the tarpc adapter puts in a rhizomorph message: the request or response body as
//! bincode, and tarpc's context (deadline, trace) as header fields a router can read without
//! decoding the payload.
//!
//! Owns the bincode options (bounded by the payload's own length, so a hostile length prefix
//! cannot make the decoder allocate past what arrived) and the header names. Never touches a
//! connection.

use std::time::{Duration, Instant};

use bincode::Options;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::header::RoutingHeader;
use rhizomorph_proto::hex::push_hex;

/// The service a request is for (one rhizomorph connection carries many).
pub const SERVICE: &str = "service";
/// The tarpc method (`RequestName::name`), for routers and logs.
pub const METHOD: &str = "method";
/// Milliseconds the caller still waits (tarpc's deadline, relative as tarpc sends it).
pub const DEADLINE: &str = "deadline";
/// tarpc's trace context as `<trace id, 32 hex>-<span id, 16 hex>-<01 sampled | 00>`;
/// absent when the caller has no trace: a trace id of zero (an invalid id in W3C trace
/// context). tarpc gives every call a random span id even then, which identifies nothing.
pub const TRACE: &str = "trace-id";

/// The bincode configuration on both sides: fixed-width little-endian integers (bincode 1's
/// classic layout, as `bincode::serialize` writes), no trailing bytes, and no read past
/// `limit` bytes (a length prefix larger than what is left fails before anything is allocated
/// for it).
///
/// Fixed-width, not varint: tarpc writes `ServerError::kind` as an `i32` and reads it as a
/// `u32` (`tarpc/src/util/serde.rs`), which only round-trips when both are four bytes.
fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(limit)
}

/// `value` as bincode.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, bincode::Error> {
    options(u64::MAX).serialize(value).map(Bytes::from)
}

/// `payload` as a `T`, reading nothing beyond it and refusing trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, bincode::Error> {
    options(payload.len() as u64).deserialize(payload)
}

/// The `deadline` header value of the last request, kept while the next one's is the same
/// number of milliseconds (most are, at any call rate worth measuring), so that most requests
/// allocate no text for it.
#[derive(Debug, Default)]
pub(crate) struct DeadlineText {
    millis: u128,
    text: Bytes,
}

impl DeadlineText {
    fn of(&mut self, left: Duration) -> Bytes {
        let millis = left.as_millis();
        if self.text.is_empty() || millis != self.millis {
            self.millis = millis;
            self.text = Bytes::from(millis.to_string());
        }
        self.text.clone()
    }
}

/// Adds tarpc's context to a request header.
pub(crate) fn put_context(
    header: &mut RoutingHeader,
    context: &::tarpc::context::Context,
    deadline: &mut DeadlineText,
) {
    let left = context.deadline.saturating_duration_since(Instant::now());
    header.set(DEADLINE, deadline.of(left));
    let t = &context.trace_context;
    let trace_id = u128::from(t.trace_id);
    if trace_id == 0 {
        return; // no trace: nothing to carry (the server starts its own)
    }
    let sampled = matches!(
        t.sampling_decision,
        ::tarpc::trace::SamplingDecision::Sampled
    );
    let mut text = String::with_capacity(52);
    push_hex(&mut text, &trace_id.to_be_bytes());
    text.push('-');
    push_hex(&mut text, &u64::from(t.span_id).to_be_bytes());
    text.push_str(if sampled { "-01" } else { "-00" });
    header.set(TRACE, text);
}

/// The time a caller still waits, from a request header (tarpc's default, 10 s, if absent or
/// malformed; at most [`MAX_DEADLINE`]).
pub(crate) fn deadline_of(header: &RoutingHeader) -> Duration {
    header
        .get_str(DEADLINE)
        .and_then(|s| s.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
        .min(MAX_DEADLINE)
}

/// The longest deadline a request may claim: what the peer writes is added to `now`, and a
/// number near `u64::MAX` must not overflow the clock.
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// tarpc's context from a request header (`template`'s trace if absent or malformed).
/// `template` is a context made once (`tarpc::context::current()` looks up the tracing span
/// each time: too dear per request); a `Context` cannot be built field by field.
pub(crate) fn context_of(
    header: &RoutingHeader,
    template: &::tarpc::context::Context,
) -> ::tarpc::context::Context {
    let mut context = *template;
    context.deadline = Instant::now() + deadline_of(header);
    if let Some(trace) = header.get_str(TRACE).and_then(parse_trace) {
        context.trace_context = trace;
    }
    context
}

fn parse_trace(s: &str) -> Option<::tarpc::trace::Context> {
    let mut parts = s.split('-');
    let trace_id = u128::from_str_radix(parts.next()?, 16).ok()?;
    let span_id = u64::from_str_radix(parts.next()?, 16).ok()?;
    let sampling_decision = match parts.next()? {
        "01" => ::tarpc::trace::SamplingDecision::Sampled,
        "00" => ::tarpc::trace::SamplingDecision::Unsampled,
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(::tarpc::trace::Context {
        trace_id: trace_id.into(),
        span_id: span_id.into(),
        sampling_decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_survives_the_header() {
        let mut context = ::tarpc::context::current();
        context.deadline = Instant::now() + Duration::from_secs(3);
        context.trace_context = ::tarpc::trace::Context {
            trace_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128.into(),
            span_id: 0xfeed_beef_u64.into(),
            sampling_decision: ::tarpc::trace::SamplingDecision::Sampled,
        };
        let mut header = RoutingHeader::new();
        put_context(&mut header, &context, &mut DeadlineText::default());
        let back = context_of(&header, &::tarpc::context::current());
        assert_eq!(back.trace_context, context.trace_context);
        let left = back.deadline.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_millis(2900) && left <= Duration::from_secs(3));
        assert_eq!(
            header.get_str(TRACE),
            Some("0123456789abcdef0011223344556677-00000000feedbeef-01")
        );
    }

    #[test]
    fn a_call_without_a_trace_carries_no_trace_field_and_reuses_its_deadline_text() {
        let mut context = ::tarpc::context::current();
        context.deadline = Instant::now() + Duration::from_secs(600);
        context.trace_context.span_id = 0x1234_u64.into(); // what tarpc's client does
        let mut deadline = DeadlineText::default();
        let (mut first, mut second) = (RoutingHeader::new(), RoutingHeader::new());
        put_context(&mut first, &context, &mut deadline);
        put_context(&mut second, &context, &mut deadline);
        assert_eq!(first.get_str(TRACE), None);
        let (a, b) = (first.get(DEADLINE).unwrap(), second.get(DEADLINE).unwrap());
        let left: u64 = std::str::from_utf8(b).unwrap().parse().unwrap();
        assert!((599_000..=600_000).contains(&left), "{left}");
        // The same text (one allocation) unless a millisecond passed in between.
        assert!(a.as_ptr() == b.as_ptr() || a != b);
    }

    #[test]
    fn a_huge_deadline_is_capped_not_overflowed() {
        let header = RoutingHeader::new().with(DEADLINE, u64::MAX.to_string());
        assert_eq!(deadline_of(&header), MAX_DEADLINE);
        let context = context_of(&header, &::tarpc::context::current());
        assert!(context.deadline > Instant::now());
    }

    #[test]
    fn a_length_prefix_past_the_payload_fails_without_allocating() {
        // A Vec<u8> and a String claiming 2^62 bytes in an 8-byte payload.
        let hostile = (1u64 << 62).to_le_bytes();
        assert!(decode::<Vec<u8>>(&hostile).is_err());
        assert!(decode::<String>(&hostile).is_err());
        // Trailing bytes.
        assert!(decode::<u32>(&[1, 0, 0, 0, 9]).is_err());
        assert_eq!(
            decode::<Vec<u8>>(&encode(&vec![1u8, 2, 3]).unwrap()).unwrap(),
            [1, 2, 3]
        );
    }
}
