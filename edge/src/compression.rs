//! Response compression on the one proxy path: Pingora's `ResponseCompression` module
//! (gzip, brotli, zstd; it adds `Vary: Accept-Encoding` and never re-encodes an encoded
//! body) under the route's policy.
//!
//! - The module starts off (level 0) for every request, so routes without compression pay
//!   nothing beyond its per-request context, not even parsing `Accept-Encoding`.
//! - `request_filter`: [`for_route`] turns it on when the route asks for it (never for gRPC,
//!   which frames and compresses its own messages): [`order_accept_encoding`] first rewrites
//!   `Accept-Encoding` into the order the client prefers by q-value (q=0 removed), because
//!   the module takes the first coding it knows and ignores q-values; then the levels are set
//!   and the module reads the header.
//! - `response_filter`: [`for_response`] turns it off for a reply too small, of a type the
//!   route does not list, or a `206` range reply (its byte offsets are of the identity body).

use http::{header, HeaderValue, StatusCode};
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_core::protocols::http::compression::Algorithm;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::config::CompressionConfig;

/// Levels that cost little CPU per byte for most of the gain (brotli 11 is for static
/// pre-compression, not for every response).
const LEVELS: [(Algorithm, u32); 3] = [
    (Algorithm::Gzip, 5),
    (Algorithm::Brotli, 4),
    (Algorithm::Zstd, 3),
];

/// The module's own default: off; `for_route` turns it on per route.
pub const MODULE_LEVEL: u32 = 0;

fn module(session: &mut Session) -> Option<&mut ResponseCompression> {
    session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
}

/// Turns compression on with the route's levels when the route has a policy.
pub fn for_route(
    session: &mut Session,
    policy: Option<&CompressionConfig>,
    grpc: bool,
) -> pingora_error::Result<()> {
    if policy.is_none() || grpc {
        return Ok(());
    }
    let accept = session
        .req_header()
        .headers
        .get(header::ACCEPT_ENCODING)
        .cloned();
    let Some(accept) = accept else {
        // No Accept-Encoding: identity it is (RFC 9110 section 12.5.3 allows any coding,
        // but an uncompressed body is what such clients expect).
        return Ok(());
    };
    let accept = order_accept_encoding(&accept).unwrap_or(accept);
    session
        .req_header_mut()
        .insert_header(header::ACCEPT_ENCODING, accept.clone())?;
    // What the module reads: just the header it looks at.
    let mut seen = RequestHeader::build("GET", b"/", Some(1))?;
    seen.insert_header(header::ACCEPT_ENCODING, accept)?;
    if let Some(module) = module(session) {
        for (algorithm, level) in LEVELS {
            module.adjust_algorithm_level(algorithm, level);
        }
        module.request_filter(&seen);
    }
    Ok(())
}

/// Counts what the compressor did for this response (after it ended).
pub fn observe(session: &Session, metrics: &crate::metrics::EdgeMetrics) {
    let info = session
        .downstream_modules_ctx
        .get::<ResponseCompression>()
        .and_then(|module| module.get_info());
    if let Some((algorithm, bytes_in, bytes_out, _)) = info {
        let counter = &metrics.compression_bytes;
        counter
            .with_label_values(&[algorithm, "in"])
            .inc_by(bytes_in as u64);
        counter
            .with_label_values(&[algorithm, "out"])
            .inc_by(bytes_out as u64);
    }
}

/// Off for this response when the route's policy says it must not be compressed.
pub fn for_response(
    session: &mut Session,
    policy: Option<&CompressionConfig>,
    response: &ResponseHeader,
) {
    let Some(policy) = policy else {
        return;
    };
    if !response_qualifies(policy, response) {
        if let Some(module) = module(session) {
            if module.is_header_phase() {
                module.adjust_level(0);
            }
        }
    }
}

fn response_qualifies(policy: &CompressionConfig, response: &ResponseHeader) -> bool {
    let headers = &response.headers;
    if response.status == StatusCode::PARTIAL_CONTENT || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let too_small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|length| length < policy.min_size);
    let listed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| policy.compresses(ct));
    !too_small && listed
}

/// `Accept-Encoding` reordered by q-value, highest first (ties: brotli, zstd, gzip, then as
/// sent), codings with q=0 dropped. `None` when the value needs no change.
pub fn order_accept_encoding(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    if !text.contains(';') && !text.contains(',') {
        return None;
    }
    let mut codings: Vec<(u16, u8, usize, &str)> = Vec::new();
    for (position, item) in text.split(',').enumerate() {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let mut quality = 1000u16;
        for param in parts {
            if let Some((name, q)) = param.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    quality = parse_quality(q.trim()).unwrap_or(0);
                }
            }
        }
        if quality == 0 {
            continue;
        }
        let preference = match coding.to_ascii_lowercase().as_str() {
            "br" => 0,
            "zstd" => 1,
            "gzip" => 2,
            _ => 3,
        };
        codings.push((quality, preference, position, coding));
    }
    codings.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let ordered: Vec<&str> = codings.iter().map(|c| c.3).collect();
    HeaderValue::from_str(&ordered.join(", ")).ok()
}

/// RFC 9110 section 12.4.2 qvalue: `0`, `1` or up to three decimals; in thousandths.
fn parse_quality(q: &str) -> Option<u16> {
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction_value: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(fraction_value),
        "1" if fraction_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(value: &str) -> Option<String> {
        order_accept_encoding(&HeaderValue::from_str(value).expect("value"))
            .map(|v| v.to_str().expect("ascii").to_string())
    }

    #[test]
    fn q_values_order_the_codings_and_zero_removes_one() {
        assert_eq!(order("gzip;q=0.5, br;q=1.0").as_deref(), Some("br, gzip"));
        assert_eq!(
            order("gzip, deflate, br, zstd").as_deref(),
            Some("br, zstd, gzip, deflate")
        );
        assert_eq!(order("br;q=0, gzip").as_deref(), Some("gzip"));
        assert_eq!(
            order("zstd;q=0.9, gzip;q=0.95").as_deref(),
            Some("gzip, zstd")
        );
        assert_eq!(
            order("gzip;q=1.5, br").as_deref(),
            Some("br"),
            "invalid q is 0"
        );
        assert_eq!(order("gzip"), None, "nothing to reorder");
    }

    #[test]
    fn qvalues_parse_as_rfc_9110_says() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("0.05"), Some(50));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("1.1"), None);
        assert_eq!(parse_quality("0.1234"), None);
        assert_eq!(parse_quality("x"), None);
    }

    #[test]
    fn small_unlisted_and_range_replies_are_not_compressed() {
        let policy: CompressionConfig = toml::from_str("").expect("defaults");
        let reply = |status: u16, pairs: &[(&str, &str)]| {
            let mut r = ResponseHeader::build(status, None).expect("header");
            for (k, v) in pairs {
                r.insert_header(k.to_string(), v.to_string())
                    .expect("insert");
            }
            r
        };
        let json = ("content-type", "application/json; charset=utf-8");
        assert!(response_qualifies(
            &policy,
            &reply(200, &[json, ("content-length", "5000")])
        ));
        assert!(response_qualifies(&policy, &reply(200, &[json])), "chunked");
        assert!(!response_qualifies(
            &policy,
            &reply(200, &[json, ("content-length", "100")])
        ));
        assert!(!response_qualifies(
            &policy,
            &reply(200, &[("content-type", "image/png")])
        ));
        assert!(!response_qualifies(&policy, &reply(206, &[json])));
        assert!(!response_qualifies(&policy, &reply(200, &[])), "no type");
        assert!(response_qualifies(
            &policy,
            &reply(200, &[("content-type", "text/css")])
        ));
    }
}
