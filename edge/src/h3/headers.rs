//! HTTP/3 field sections <-> Pingora's request and response headers (RFC 9114 section 4).
//! Pure functions: no I/O, no state.

use http::{HeaderMap, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use quiche::h3::{Header, NameValue};

/// Header fields that are connection-specific and forbidden in HTTP/3 (RFC 9114
/// section 4.2).
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Room in a request's header map beyond its own fields: `host` (from `:authority`) and the
/// headers the edge adds upstream (request id, trace context, `x-forwarded-*`, ...), so
/// they do not grow and rehash it (as the vendored Pingora sizes h1 and h2 headers,
/// vendor/README.md patch 9).
const HEADROOM: usize = 9;

/// HTTP/3 request headers -> a Pingora request header (RFC 9114 section 4.3.1). `Host`
/// is filled from `:authority` so routing and h1 upstreams see the same thing on every
/// protocol. A malformed request (section 4.1.2) is an `Err` naming the rule it breaks.
pub fn request_from_h3(headers: &[Header]) -> Result<RequestHeader, &'static str> {
    let mut method = None;
    let mut path = None;
    let mut authority = None;
    let mut scheme = None;
    let mut regular = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name();
        if !name.starts_with(b":") {
            regular.push((name, header.value()));
            continue;
        }
        // Section 4.3: pseudo-header fields come before every regular field, each once;
        // a second `:path` would leave "which one was routed" to the implementation.
        if !regular.is_empty() {
            return Err("pseudo-header after a regular header");
        }
        let slot = match name {
            b":method" => &mut method,
            b":path" => &mut path,
            b":authority" => &mut authority,
            b":scheme" => &mut scheme,
            _ => return Err("unknown pseudo-header"),
        };
        if slot.replace(header.value()).is_some() {
            return Err("duplicate pseudo-header");
        }
    }
    let method = method.ok_or("missing :method")?;
    let path = path.ok_or("missing :path")?;
    if scheme.is_none() {
        return Err("missing :scheme");
    }
    if path.first() != Some(&b'/') {
        return Err(":path must start with '/'");
    }
    // No case map: HTTP/3 names are lower-case on the wire, so there is no case to keep,
    // and Pingora's `append_header` would copy and re-parse every name for one.
    let request = RequestHeader::build_no_case(method, path, Some(regular.len() + HEADROOM))
        .map_err(|_| "invalid :method or :path")?;
    // The fields go straight into the header map of the request's parts. The round trip
    // through `Parts` keeps the target only when it is the URI's own (origin-form, what an
    // h3 `:path` is; anything else takes Pingora's slower path, which keeps it verbatim).
    let origin_form = request
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().as_bytes())
        == Some(request.raw_path());
    let mut fields = RequestFields::new(request, origin_form);
    let mut host = None;
    for (name, value) in regular {
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("upper-case header name");
        }
        // `te: trailers` is the one connection-ish field HTTP/3 allows (section 4.2).
        let text = std::str::from_utf8(name).unwrap_or("");
        if CONNECTION_SPECIFIC.contains(&text) && !(name == b"te" && value == b"trailers") {
            return Err("connection-specific header");
        }
        if name == b"host" && host.replace(value).is_some() {
            return Err("more than one host header");
        }
        let name = http::HeaderName::from_bytes(name).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid header value")?;
        fields.append(name, value)?;
    }
    // Section 4.3.1: an http(s) request names its authority in `:authority` or `Host`,
    // neither empty, and the same one when both are given: otherwise the route (chosen
    // by `Host`) and the authority the client meant could differ.
    match (authority, host) {
        (None, None) => return Err("missing :authority and host"),
        (Some(b""), _) | (_, Some(b"")) => return Err("empty :authority or host"),
        (Some(authority), Some(host)) if authority != host => {
            return Err(":authority and host differ")
        }
        (Some(authority), None) => {
            let value = HeaderValue::from_bytes(authority).map_err(|_| "invalid :authority")?;
            fields.append(http::header::HOST, value)?;
        }
        _ => {}
    }
    let mut request = fields.finish();
    request.set_version(http::Version::HTTP_3);
    Ok(request)
}

/// The request being filled: its parts (the fast path) or, for a target the URI does not
/// reproduce, the Pingora header itself.
enum RequestFields {
    Parts(http::request::Parts),
    Header(RequestHeader),
}

impl RequestFields {
    fn new(request: RequestHeader, origin_form: bool) -> Self {
        if origin_form {
            Self::Parts(request.into())
        } else {
            Self::Header(request)
        }
    }

    fn append(&mut self, name: http::HeaderName, value: HeaderValue) -> Result<(), &'static str> {
        match self {
            Self::Parts(parts) => {
                parts.headers.append(name, value);
                Ok(())
            }
            Self::Header(request) => request
                .append_header(name, value)
                .map(|_| ())
                .map_err(|_| "invalid header"),
        }
    }

    fn finish(self) -> RequestHeader {
        match self {
            Self::Parts(parts) => RequestHeader::from(parts),
            Self::Header(request) => request,
        }
    }
}

/// A response header as an HTTP/3 field section: `:status` first, connection-specific
/// fields dropped.
pub fn h3_response_headers(response: &ResponseHeader) -> Vec<Header> {
    let mut out = Vec::with_capacity(response.headers.len() + 1);
    out.push(Header::new(b":status", response.status.as_str().as_bytes()));
    push_fields(&mut out, &response.headers);
    out
}

/// Trailers as an HTTP/3 field section.
pub fn h3_fields(headers: &HeaderMap) -> Vec<Header> {
    let mut out = Vec::with_capacity(headers.len());
    push_fields(&mut out, headers);
    out
}

fn push_fields(out: &mut Vec<Header>, headers: &HeaderMap) {
    for (name, value) in headers {
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        out.push(Header::new(name.as_str().as_bytes(), value.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header::new(name.as_bytes(), value.as_bytes())
    }

    #[test]
    fn converts_pseudo_headers_and_sets_host() {
        let request = request_from_h3(&[
            h(":method", "POST"),
            h(":scheme", "https"),
            h(":authority", "record.local:8443"),
            h(":path", "/api/records?x=1"),
            h("content-type", "application/json"),
        ])
        .expect("valid");
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri.path(), "/api/records");
        assert_eq!(request.uri.query(), Some("x=1"));
        assert_eq!(request.headers["host"], "record.local:8443");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.version, http::Version::HTTP_3);
    }

    /// The headers the edge sets upstream (request id, trace context, `x-forwarded-for`,
    /// `-proto`, ...) fit in the map the request arrives in: no rehash per request.
    #[test]
    fn a_request_has_room_for_the_headers_the_edge_adds() {
        let mut request = request_from_h3(&[
            h(":method", "GET"),
            h(":scheme", "https"),
            h(":authority", "record.local"),
            h(":path", "/"),
            h("accept", "*/*"),
            h("user-agent", "test"),
        ])
        .expect("valid");
        let room = request.headers.capacity();
        for name in [
            "x-request-id",
            "traceparent",
            "x-forwarded-for",
            "x-forwarded-proto",
            "early-data",
            "x-identity-assertion",
            "ratelimit-limit",
        ] {
            request.insert_header(name, "v").expect("insert");
        }
        assert_eq!(request.headers.capacity(), room, "the header map grew");
    }

    #[test]
    fn a_host_header_must_agree_with_the_authority() {
        let request = |host: &str| {
            request_from_h3(&[
                h(":method", "GET"),
                h(":scheme", "https"),
                h(":authority", "a.example"),
                h(":path", "/"),
                h("host", host),
            ])
        };
        let same = request("a.example").expect("valid");
        assert_eq!(same.headers.get_all("host").iter().count(), 1);
        assert_eq!(same.headers["host"], "a.example");
        // `Host` used to win silently: the route followed b.example while the client's
        // authority was a.example (RFC 9114 section 4.3.1 makes that request malformed).
        assert_eq!(
            request("b.example").err(),
            Some(":authority and host differ")
        );
    }

    /// Requests RFC 9114 section 4.3 makes malformed that the conversion used to accept
    /// (the h3_request property's oracle refuses them too).
    #[test]
    fn repeated_late_and_missing_pseudo_headers_are_refused() {
        let refused = |fields: &[(&str, &str)]| {
            let fields: Vec<Header> = fields.iter().map(|(n, v)| h(n, v)).collect();
            request_from_h3(&fields).err()
        };
        assert_eq!(
            refused(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/public"),
                (":path", "/admin")
            ]),
            Some("duplicate pseudo-header")
        );
        assert_eq!(
            refused(&[
                (":method", "GET"),
                (":scheme", "https"),
                ("accept", "*/*"),
                (":authority", "a"),
                (":path", "/")
            ]),
            Some("pseudo-header after a regular header")
        );
        assert_eq!(
            refused(&[(":method", "GET"), (":scheme", "https"), (":path", "/")]),
            Some("missing :authority and host")
        );
        assert_eq!(
            refused(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", ""),
                (":path", "/")
            ]),
            Some("empty :authority or host")
        );
        assert_eq!(
            refused(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("host", "a"),
                ("host", "b")
            ]),
            Some("more than one host header")
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let base = [
            h(":method", "GET"),
            h(":scheme", "https"),
            h(":authority", "a.example"),
            h(":path", "/"),
        ];
        let with = |extra: Header| {
            let mut all = base.to_vec();
            all.push(extra);
            request_from_h3(&all).err()
        };
        assert_eq!(
            request_from_h3(&[h(":scheme", "https"), h(":path", "/")]).err(),
            Some("missing :method")
        );
        assert_eq!(
            request_from_h3(&[h(":method", "GET"), h(":scheme", "https")]).err(),
            Some("missing :path")
        );
        assert_eq!(
            request_from_h3(&[h(":method", "GET"), h(":path", "/")]).err(),
            Some("missing :scheme")
        );
        assert_eq!(
            request_from_h3(&[h(":method", "GET"), h(":scheme", "https"), h(":path", "x")]).err(),
            Some(":path must start with '/'")
        );
        assert_eq!(with(h(":protocol", "x")), Some("unknown pseudo-header"));
        assert_eq!(
            with(h("connection", "close")),
            Some("connection-specific header")
        );
        assert_eq!(with(h("te", "gzip")), Some("connection-specific header"));
        assert_eq!(with(h("te", "trailers")), None);
        assert_eq!(with(h("X-Upper", "1")), Some("upper-case header name"));
        assert_eq!(with(h("bad\u{1}name", "1")), Some("invalid header name"));
    }

    #[test]
    fn connection_specific_response_fields_are_dropped() {
        let mut response = ResponseHeader::build(200, None).expect("response");
        response
            .insert_header("transfer-encoding", "chunked")
            .expect("header");
        response
            .insert_header("content-type", "text/plain")
            .expect("header");
        let h3 = h3_response_headers(&response);
        let names: Vec<&[u8]> = h3.iter().map(|h| h.name()).collect();
        assert_eq!(names, [&b":status"[..], b"content-type"]);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("connection", HeaderValue::from_static("close"));
        let fields = h3_fields(&trailers);
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].name(), b"grpc-status");
    }
}
