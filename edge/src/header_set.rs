//! Setting a header on Pingora's request and response headers without one per-call cost of
//! `insert_header` (measured with callgrind, perf/README.md "Profiling"): for a name that is
//! not a `&'static str` it allocates a copy of the name for the case map. (It parses the
//! name back from bytes either way; that part cannot be avoided from outside Pingora.) The edge sets a handful of headers on every request (request id, trace
//! context, `x-forwarded-*`, `alt-svc`, HSTS), all known in advance.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::HeaderValue;
use pingora_http::{RequestHeader, ResponseHeader};

/// Pingora's two header types, which keep header case for HTTP/1.x in a second map that
/// must stay in step with the header map (so `insert_header` it is: Pingora gives no
/// mutable access to the header map alone). `set` replaces every earlier value of the name.
pub trait SetHeader {
    fn set(&mut self, name: &HeaderName, value: HeaderValue) -> pingora_error::Result<()>;
}

macro_rules! set_header_impl {
    ($type:ty) => {
        impl SetHeader for $type {
            fn set(&mut self, name: &HeaderName, value: HeaderValue) -> pingora_error::Result<()> {
                match static_name(name) {
                    Some(name) => self.insert_header(name, value),
                    None => self.insert_header(name.clone(), value),
                }
            }
        }
    };
}

set_header_impl!(RequestHeader);
set_header_impl!(ResponseHeader);

/// The `&'static str` of a name the edge sets, so the case map borrows it instead of
/// copying it (the spelling is the lower-case one HTTP/2 and HTTP/3 require anyway).
fn static_name(name: &HeaderName) -> Option<&'static str> {
    Some(match name.as_str() {
        "x-request-id" => "x-request-id",
        "traceparent" => "traceparent",
        "tracestate" => "tracestate",
        "x-forwarded-for" => "x-forwarded-for",
        "x-forwarded-proto" => "x-forwarded-proto",
        "alt-svc" => "alt-svc",
        "strict-transport-security" => "strict-transport-security",
        "x-cache-status" => "x-cache-status",
        "ratelimit-limit" => "ratelimit-limit",
        "ratelimit-remaining" => "ratelimit-remaining",
        "ratelimit-reset" => "ratelimit-reset",
        "retry-after" => "retry-after",
        "early-data" => "early-data",
        "x-content-type-options" => "x-content-type-options",
        "x-frame-options" => "x-frame-options",
        "referrer-policy" => "referrer-policy",
        "content-security-policy" => "content-security-policy",
        "permissions-policy" => "permissions-policy",
        "cross-origin-opener-policy" => "cross-origin-opener-policy",
        "cross-origin-resource-policy" => "cross-origin-resource-policy",
        _ => return None,
    })
}

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const ALT_SVC: HeaderName = header::ALT_SVC;
pub const STRICT_TRANSPORT_SECURITY: HeaderName = header::STRICT_TRANSPORT_SECURITY;

/// `ip` as a header value. IPv4, the common case, without `fmt` (its machinery cost more
/// than the rest of the `x-forwarded-for` handling together).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&text[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_values_read_as_the_standard_text_forms() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.255",
            "255.255.255.255",
            "8.8.8.8",
            "::1",
            "2001:db8::42",
        ] {
            let parsed: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_value(parsed), ip, "{ip}");
        }
    }

    #[test]
    fn headers_set_on_h1_headers_keep_the_case_map_in_step() {
        let mut response = ResponseHeader::build(200, None).expect("response");
        assert!(response.has_case());
        response
            .set(&header::ALT_SVC, HeaderValue::from_static("h3=\":443\""))
            .expect("set");
        let custom = HeaderName::from_static("x-something-else");
        response
            .set(&custom, HeaderValue::from_static("1"))
            .expect("set");
        let mut wire = Vec::new();
        response.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).expect("utf8");
        assert!(wire.contains("alt-svc: h3=\":443\"\r\n"), "{wire}");
        assert!(wire.contains("x-something-else: 1\r\n"), "{wire}");

        let mut no_case = ResponseHeader::build_no_case(200, None).expect("response");
        no_case
            .set(&header::ALT_SVC, HeaderValue::from_static("x"))
            .expect("set");
        no_case
            .set(&header::ALT_SVC, HeaderValue::from_static("y"))
            .expect("set");
        assert_eq!(no_case.headers.get_all("alt-svc").iter().count(), 1);
        assert_eq!(no_case.headers["alt-svc"], "y");
        assert!(!no_case.has_case());
    }

    #[test]
    fn a_header_set_over_a_client_spelling_is_one_line_in_the_edge_spelling() {
        // The client's spelling is in the case map; `set` must replace it there as well as
        // the value, whether the name is one the edge spells statically (`static_name`) or not.
        let mut request = RequestHeader::build("GET", b"/", None).expect("request");
        let names = [
            ("X-Request-Id", "x-request-id"),
            ("X-Other-Thing", "x-other-thing"),
        ];
        for (client_spelling, _) in names {
            request
                .insert_header(client_spelling, "from-the-client")
                .expect("client header");
        }
        for (_, name) in names {
            request
                .set(
                    &HeaderName::from_static(name),
                    HeaderValue::from_static("ours"),
                )
                .expect("set");
        }
        request
            .set(&X_FORWARDED_PROTO, HeaderValue::from_static("https"))
            .expect("set");
        let mut wire = Vec::new();
        request.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).expect("utf8");
        assert!(wire.contains("x-request-id: ours\r\n"), "{wire}");
        assert!(wire.contains("x-forwarded-proto: https\r\n"), "{wire}");
        assert!(
            !wire.to_ascii_lowercase().contains("from-the-client"),
            "{wire}"
        );
        for (_, name) in names {
            assert_eq!(wire.to_ascii_lowercase().matches(name).count(), 1, "{wire}");
        }
        assert_eq!(request.headers.len(), 3);
    }
}
