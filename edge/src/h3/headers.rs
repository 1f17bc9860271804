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

/// HTTP/3 request headers -> a Pingora request header (RFC 9114 section 4.3.1). `Host`
/// is filled from `:authority` so routing and h1 upstreams see the same thing on every
/// protocol.
pub fn request_from_h3(headers: &[Header]) -> Result<RequestHeader, &'static str> {
    let mut method = None;
    let mut path = None;
    let mut authority = None;
    let mut scheme = None;
    let mut regular = Vec::with_capacity(headers.len());
    for header in headers {
        match header.name() {
            b":method" => method = Some(header.value()),
            b":path" => path = Some(header.value()),
            b":authority" => authority = Some(header.value()),
            b":scheme" => scheme = Some(header.value()),
            name if name.starts_with(b":") => return Err("unknown pseudo-header"),
            name => regular.push((name, header.value())),
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
    let mut request = RequestHeader::build(method, path, Some(regular.len() + 1))
        .map_err(|_| "invalid :method or :path")?;
    request.set_version(http::Version::HTTP_3);
    let mut has_host = false;
    for (name, value) in regular {
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("upper-case header name");
        }
        // `te: trailers` is the one connection-ish field HTTP/3 allows (section 4.2).
        let text = std::str::from_utf8(name).unwrap_or("");
        if CONNECTION_SPECIFIC.contains(&text) && !(name == b"te" && value == b"trailers") {
            return Err("connection-specific header");
        }
        has_host |= name == b"host";
        let name = http::HeaderName::from_bytes(name).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid header value")?;
        request
            .append_header(name, value)
            .map_err(|_| "invalid header")?;
    }
    if let Some(authority) = authority {
        if !has_host {
            let value = HeaderValue::from_bytes(authority).map_err(|_| "invalid :authority")?;
            request
                .insert_header(http::header::HOST, value)
                .map_err(|_| "invalid :authority")?;
        }
    }
    Ok(request)
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

    #[test]
    fn an_explicit_host_wins_over_authority() {
        let request = request_from_h3(&[
            h(":method", "GET"),
            h(":scheme", "https"),
            h(":authority", "a.example"),
            h(":path", "/"),
            h("host", "b.example"),
        ])
        .expect("valid");
        assert_eq!(request.headers.get_all("host").iter().count(), 1);
        assert_eq!(request.headers["host"], "b.example");
    }

    #[test]
    fn malformed_requests_are_refused() {
        let base = [h(":method", "GET"), h(":scheme", "https"), h(":path", "/")];
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
