//! What a request sent in TLS 1.3 / QUIC early data (0-RTT) may do (RFC 8470).
//!
//! Early data can be captured and replayed by an attacker, so the edge serves it only
//! where a route opted in (`routes[].early_data`), only for safe methods (RFC 9110
//! section 9.2.1), and only on a connection whose ClientHello is new to the listener's
//! replay record. Everything else gets `425 Too Early` and the client sends the request
//! again after the handshake (RFC 8470 section 5.2). A forwarded early request carries
//! `Early-Data: 1` so the origin knows it may be a replay (section 5.1); a client's own
//! `Early-Data` header is never believed.

use http::{HeaderName, HeaderValue, Method};

use crate::decision::HeaderEdits;

/// `Early-Data` (RFC 8470 section 5.1).
pub const EARLY_DATA_HEADER: HeaderName = HeaderName::from_static("early-data");

/// How a request relates to 0-RTT, as the transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyData {
    /// Sent after the handshake completed (or on a transport without 0-RTT).
    #[default]
    No,
    /// In early data, on a connection whose ClientHello the replay record had not seen.
    Fresh,
    /// In early data, on a connection whose ClientHello the replay record saw before: a
    /// captured flight sent again.
    Replayed,
    /// In early data, but the replay record could not vouch for it (full, or the
    /// ClientHello was not captured): refused like a replay (fail closed).
    Unchecked,
}

impl EarlyData {
    /// Whether the request came in 0-RTT at all.
    pub fn is_early(self) -> bool {
        self != EarlyData::No
    }
}

/// The decision for one early request (`edge_quic_early_data_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyDataOutcome {
    /// Served from early data; forwarded with `Early-Data: 1`.
    Accepted,
    /// `425`: the route does not take early data, or the method is not safe.
    TooEarly,
    /// `425`: the connection's ClientHello was seen before.
    Replayed,
    /// `425`: the replay record was full or had no ClientHello for the connection.
    Unchecked,
}

impl EarlyDataOutcome {
    /// The metric label, and the access log's `answered_by_edge` reason for a `425`.
    pub fn as_str(self) -> &'static str {
        match self {
            EarlyDataOutcome::Accepted => "accepted",
            EarlyDataOutcome::TooEarly => "too_early",
            EarlyDataOutcome::Replayed => "replayed",
            EarlyDataOutcome::Unchecked => "unchecked",
        }
    }
}

/// GET, HEAD and OPTIONS: the methods RFC 9110 section 9.2.1 calls safe, the only ones
/// RFC 8470 section 4 lets a server consider answering from early data.
pub fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Decides an early request; `None` when the request was not sent in early data.
pub fn decide(early: EarlyData, route_allows: bool, method: &Method) -> Option<EarlyDataOutcome> {
    match early {
        EarlyData::No => None,
        EarlyData::Replayed => Some(EarlyDataOutcome::Replayed),
        EarlyData::Unchecked => Some(EarlyDataOutcome::Unchecked),
        EarlyData::Fresh if route_allows && is_safe_method(method) => {
            Some(EarlyDataOutcome::Accepted)
        }
        EarlyData::Fresh => Some(EarlyDataOutcome::TooEarly),
    }
}

/// The upstream edits every forwarded request gets: an inbound `Early-Data` is removed
/// (only the edge knows whether the request really came in 0-RTT), and `Early-Data: 1`
/// is set on a request served from early data.
pub fn add_upstream_edits(edits: &mut HeaderEdits, served_early: bool) {
    edits.remove.push(EARLY_DATA_HEADER);
    if served_early {
        edits
            .set
            .push((EARLY_DATA_HEADER, HeaderValue::from_static("1")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_on_an_opted_in_route_are_served_from_fresh_early_data() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(
                decide(EarlyData::Fresh, true, &method),
                Some(EarlyDataOutcome::Accepted),
                "{method}"
            );
            assert_eq!(
                decide(EarlyData::Fresh, false, &method),
                Some(EarlyDataOutcome::TooEarly),
                "{method} on a route without early_data"
            );
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(
                decide(EarlyData::Fresh, true, &method),
                Some(EarlyDataOutcome::TooEarly),
                "{method}"
            );
        }
    }

    #[test]
    fn replayed_or_unchecked_early_data_is_refused_even_for_a_safe_get() {
        assert_eq!(
            decide(EarlyData::Replayed, true, &Method::GET),
            Some(EarlyDataOutcome::Replayed)
        );
        assert_eq!(
            decide(EarlyData::Unchecked, true, &Method::GET),
            Some(EarlyDataOutcome::Unchecked)
        );
        assert_eq!(decide(EarlyData::No, false, &Method::POST), None);
    }

    #[test]
    fn the_inbound_header_is_always_removed_and_set_only_for_early_requests() {
        let mut after_handshake = HeaderEdits::default();
        add_upstream_edits(&mut after_handshake, false);
        assert_eq!(after_handshake.remove, vec![EARLY_DATA_HEADER]);
        assert!(after_handshake.set.is_empty());

        let mut early = HeaderEdits::default();
        add_upstream_edits(&mut early, true);
        let mut headers = http::HeaderMap::new();
        headers.insert(EARLY_DATA_HEADER, HeaderValue::from_static("spoofed"));
        early.apply_to(&mut headers);
        assert_eq!(headers.get_all(EARLY_DATA_HEADER).iter().count(), 1);
        assert_eq!(headers[EARLY_DATA_HEADER], "1");
    }
}
