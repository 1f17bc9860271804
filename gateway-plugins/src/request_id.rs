//! Request ids and W3C trace context.
//!
//! `x-request-id`: an inbound id is kept when it is sane (1..=128 visible ASCII
//! characters), because callers use it to correlate their own logs; otherwise the edge
//! mints a UUIDv7 (time-ordered, so ids sort by arrival in logs). It goes upstream and
//! back to the client.
//!
//! `traceparent` (W3C Trace Context, §3.2): a valid inbound header is passed through
//! unchanged; a missing or invalid one is replaced by a fresh root context, so every
//! service sees one well-formed trace id.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use crate::decision::ChainOutcome;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest inbound request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Fills `x-request-id` and `traceparent` into the outcome.
///
/// Both values are marked sensitive, which only tells HTTP/2's HPACK to send them as literals
/// that are never indexed. They differ on every request, so indexing them gains nothing: each
/// one would be inserted into the connection's dynamic table, evict an entry that does repeat,
/// and first be compared with every earlier value of the same name still in the table
/// (callgrind: ≈ 3 000 instructions per h2 response for `x-request-id` alone, perf/README.md
/// "Profiling").
pub fn apply(headers: &HeaderMap, outcome: &mut ChainOutcome) {
    let mut request_id = headers
        .get(&X_REQUEST_ID)
        .filter(|v| is_sane_request_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(generate_request_id);
    request_id.set_sensitive(true);
    outcome
        .upstream_edits
        .set
        .push((X_REQUEST_ID, request_id.clone()));
    outcome.response_headers.insert(X_REQUEST_ID, request_id);

    let mut traceparent = headers
        .get(&TRACEPARENT)
        .filter(|v| is_valid_traceparent(v.as_bytes()))
        .cloned()
        .unwrap_or_else(generate_traceparent);
    traceparent.set_sensitive(true);
    outcome.upstream_edits.set.push((TRACEPARENT, traceparent));
}

/// 1..=128 bytes of visible ASCII (0x21..=0x7e): no spaces or control characters that
/// could split log lines or smuggle header syntax.
pub fn is_sane_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A UUIDv7 from the wall clock's milliseconds and 74 random bits. Built directly rather
/// than with `Uuid::now_v7`, whose process-wide counter context (behind a `Mutex`) cost
/// more than the rest of the request id handling (callgrind, perf/README "Profiling"); ids
/// still sort by the millisecond they were minted in, not within it.
pub fn generate_request_id() -> HeaderValue {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let random: [u8; 10] = rand::random();
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `version-traceid-parentid-flags`, lower-case hex (Trace Context §3.2.2). Version `ff`
/// is forbidden; all-zero trace or parent ids are invalid. A future version may append
/// fields after a `-`, which we accept and pass on (§3.2.4).
pub fn is_valid_traceparent(value: &[u8]) -> bool {
    const LEN_V00: usize = 55;
    if value.len() < LEN_V00 {
        return false;
    }
    let version = &value[0..2];
    if !is_lower_hex(version) || version == b"ff" {
        return false;
    }
    if version == b"00" && value.len() != LEN_V00 {
        return false;
    }
    if value.len() > LEN_V00 && value[LEN_V00] != b'-' {
        return false;
    }
    let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    value[2] == b'-'
        && value[35] == b'-'
        && value[52] == b'-'
        && is_lower_hex(trace_id)
        && is_lower_hex(parent_id)
        && is_lower_hex(flags)
        && trace_id.iter().any(|b| *b != b'0')
        && parent_id.iter().any(|b| *b != b'0')
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// A new root trace context. Flags `00` (not sampled): the edge records no spans, and a
/// sampling decision belongs to whoever does.
pub fn generate_traceparent() -> HeaderValue {
    // 16 bytes of trace id, 8 of parent id; neither may be all zero.
    let ids = loop {
        let ids: [u8; 24] = rand::random();
        if ids[..16].iter().any(|b| *b != 0) && ids[16..].iter().any(|b| *b != 0) {
            break ids;
        }
    };
    // Written into a fixed buffer: `00-` + 32 hex + `-` + 16 hex + `-00`.
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(&mut text[3..35], &ids[..16]);
    write_hex(&mut text[36..52], &ids[16..]);
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(outcome: &ChainOutcome, name: &HeaderName) -> HeaderValue {
        outcome
            .upstream_edits
            .set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect("header set upstream")
    }

    #[test]
    fn sane_inbound_request_id_is_kept_up_and_downstream() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("client-abc-123"));
        let mut outcome = ChainOutcome::proceed();
        apply(&headers, &mut outcome);
        assert_eq!(upstream(&outcome, &X_REQUEST_ID), "client-abc-123");
        assert_eq!(outcome.response_headers[&X_REQUEST_ID], "client-abc-123");
    }

    #[test]
    fn missing_or_insane_request_id_is_replaced_by_a_uuid_v7() {
        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for inbound in [None, Some("has space"), Some(too_long.as_str()), Some("")] {
            let mut headers = HeaderMap::new();
            if let Some(value) = inbound {
                headers.insert(X_REQUEST_ID, HeaderValue::from_str(value).expect("header"));
            }
            let mut outcome = ChainOutcome::proceed();
            apply(&headers, &mut outcome);
            let id = upstream(&outcome, &X_REQUEST_ID);
            let parsed = uuid::Uuid::parse_str(id.to_str().expect("ascii")).expect("uuid");
            assert_eq!(parsed.get_version_num(), 7, "{inbound:?}");
            assert_eq!(outcome.response_headers[&X_REQUEST_ID], id);
        }
    }

    /// HTTP/2's HPACK reads the flag: a value marked sensitive is sent as a literal that is
    /// never indexed, so per-request values do not churn the connection's dynamic table.
    #[test]
    fn per_request_values_are_never_indexed_by_hpack() {
        for inbound in [None, Some("client-abc-123")] {
            let mut headers = HeaderMap::new();
            if let Some(value) = inbound {
                headers.insert(X_REQUEST_ID, HeaderValue::from_static(value));
            }
            let mut outcome = ChainOutcome::proceed();
            apply(&headers, &mut outcome);
            assert!(
                upstream(&outcome, &X_REQUEST_ID).is_sensitive(),
                "{inbound:?}"
            );
            assert!(
                upstream(&outcome, &TRACEPARENT).is_sensitive(),
                "{inbound:?}"
            );
            assert!(
                outcome.response_headers[&X_REQUEST_ID].is_sensitive(),
                "{inbound:?}"
            );
        }
    }

    #[test]
    fn valid_traceparent_passes_through() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(value));
        let mut outcome = ChainOutcome::proceed();
        apply(&headers, &mut outcome);
        assert_eq!(upstream(&outcome, &TRACEPARENT), value);
        // traceparent is request-only; it is not echoed to the client.
        assert!(outcome.response_headers.get(&TRACEPARENT).is_none());
    }

    #[test]
    fn invalid_or_missing_traceparent_is_generated() {
        for inbound in [
            None,
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            Some("garbage"),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(value) = inbound {
                headers.insert(TRACEPARENT, HeaderValue::from_str(value).expect("header"));
            }
            let mut outcome = ChainOutcome::proceed();
            apply(&headers, &mut outcome);
            let generated = upstream(&outcome, &TRACEPARENT);
            assert!(is_valid_traceparent(generated.as_bytes()), "{generated:?}");
            assert_ne!(Some(generated.to_str().expect("ascii")), inbound);
        }
    }

    #[test]
    fn future_versions_may_carry_extra_fields() {
        assert!(is_valid_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        ));
        assert!(!is_valid_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01future"
        ));
    }

    #[test]
    fn minted_request_ids_carry_the_millisecond_they_were_made_in_and_differ() {
        let millis = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_millis()
        };
        let before = millis();
        let ids = [generate_request_id(), generate_request_id()];
        let after = millis();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id.to_str().expect("ascii")).expect("uuid");
            assert_eq!(uuid.get_version_num(), 7);
            let (secs, nanos) = uuid.get_timestamp().expect("v7 timestamp").to_unix();
            let minted = u128::from(secs) * 1000 + u128::from(nanos / 1_000_000);
            assert!(
                before <= minted && minted <= after,
                "{before} <= {minted} <= {after}"
            );
        }
        assert_ne!(ids[0], ids[1]);
        assert_ne!(generate_traceparent(), generate_traceparent());
    }
}
