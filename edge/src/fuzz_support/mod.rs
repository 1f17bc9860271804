//! Bodies of the fuzz targets in `edge/fuzz/` (cargo-fuzz, nightly) and of the property
//! tests that run the same code on stable in `make test` (docs/fuzzing.md).
//!
//! The parsers here read what a client, a backend or an operator's file controls: HTTP/3
//! field sections (`h3::headers`), the config file (`config::load`), the request's host and
//! path against the route table (`routes`), and a backend's gRPC health reply
//! (`upstream`). A `fuzz_*` function takes raw bytes (what a fuzzer produces); a `check_*`
//! function takes structured input (what the property tests generate) and asserts what the
//! parser promises, so a broken promise is a panic the fuzzer reports. Not an API.

#[cfg(test)]
mod properties;
mod routes;

use std::path::Path;

use pingora_http::{RequestHeader, ResponseHeader};
use quiche::h3::{Header, NameValue};

use crate::config::{load_str, ConfigError, LoadedConfig};
use crate::h3::headers::{h3_response_headers, request_from_h3};

pub use routes::{check_route_lookup, fuzz_route_lookup, RouteSpec};

/// Header fields HTTP/3 forbids (RFC 9114 section 4.2), `te` aside.
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// Fuzz body for the HTTP/3 request conversion: one field per line, the name up to the
/// first space, the value after it.
pub fn fuzz_h3_request(data: &[u8]) {
    let fields: Vec<Header> = data
        .split(|b| *b == b'\n')
        .map(|line| {
            let (name, value) = match line.iter().position(|b| *b == b' ') {
                Some(space) => (&line[..space], &line[space + 1..]),
                None => (line, &[][..]),
            };
            Header::new(name, value)
        })
        .collect();
    let _ = check_h3_request(&fields);
}

/// Converts an HTTP/3 request field section and checks the result against RFC 9114
/// section 4.3: an accepted request had each of `:method`, `:scheme`, `:path` once and
/// first, only lower-case non-connection-specific regular fields, a `Host` that agrees
/// with `:authority`; and it carries them all: the method, the path (less any fragment),
/// every regular field in order, and the authority as `Host`.
pub fn check_h3_request(fields: &[Header]) -> Result<RequestHeader, &'static str> {
    let result = request_from_h3(fields);
    let Ok(request) = &result else {
        return result;
    };
    let pseudo: Vec<&Header> = fields
        .iter()
        .take_while(|f| f.name().starts_with(b":"))
        .collect();
    let regular = &fields[pseudo.len()..];
    assert!(
        regular.iter().all(|f| !f.name().starts_with(b":")),
        "pseudo-header after a regular one accepted"
    );
    let only = |name: &[u8]| -> Option<&[u8]> {
        let mut values = pseudo
            .iter()
            .filter(|f| f.name() == name)
            .map(|f| f.value());
        let first = values.next();
        assert!(values.next().is_none(), "{name:?} twice accepted");
        first
    };
    let method = only(b":method").expect("accepted without :method");
    let path = only(b":path").expect("accepted without :path");
    only(b":scheme").expect("accepted without :scheme");
    let authority = only(b":authority");
    assert_eq!(request.method.as_str().as_bytes(), method);
    let target = &path[..path.iter().position(|b| *b == b'#').unwrap_or(path.len())];
    assert_eq!(
        request.raw_path(),
        target,
        "the path reaches the proxy as sent"
    );
    assert_eq!(request.version, http::Version::HTTP_3);
    for field in regular {
        let name = field.name();
        assert!(
            !name.iter().any(u8::is_ascii_uppercase),
            "upper-case name accepted"
        );
        assert!(!CONNECTION_SPECIFIC.contains(&name), "{name:?} accepted");
        assert!(
            name != b"te" || field.value() == b"trailers",
            "te other than trailers accepted"
        );
        if name == b"host" {
            continue;
        }
        // Every field reaches the proxy, the values of one name in the order sent.
        let sent: Vec<&[u8]> = regular
            .iter()
            .filter(|f| f.name() == name)
            .map(|f| f.value())
            .collect();
        let forwarded: Vec<&[u8]> = request
            .headers
            .get_all(std::str::from_utf8(name).expect("an accepted name is ASCII"))
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(forwarded, sent, "{name:?}");
    }
    let hosts: Vec<&[u8]> = request
        .headers
        .get_all("host")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match authority {
        Some(authority) => assert_eq!(hosts, [authority], ":authority is the Host"),
        None => assert_eq!(hosts.len(), 1, "exactly one Host"),
    }
    assert!(!hosts[0].is_empty(), "empty authority accepted");
    result
}

/// A response as an HTTP/3 field section: `:status` first and once, no connection-specific
/// field, every other field kept in order.
pub fn check_h3_response(response: &ResponseHeader) -> Vec<Header> {
    let fields = h3_response_headers(response);
    assert_eq!(fields[0].name(), b":status");
    assert_eq!(fields[0].value(), response.status.as_str().as_bytes());
    let kept: Vec<(&[u8], &[u8])> = response
        .headers
        .iter()
        .filter(|(name, _)| {
            !CONNECTION_SPECIFIC.contains(&name.as_str().as_bytes()) && name.as_str() != "te"
        })
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        .collect();
    let sent: Vec<(&[u8], &[u8])> = fields[1..].iter().map(|f| (f.name(), f.value())).collect();
    assert_eq!(sent, kept);
    fields
}

/// Fuzz body for the config loader: `data` as the text of an `edge.toml`.
pub fn fuzz_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check_config(text);
    }
}

/// Loads `text` as `/fuzz/edge.toml` and checks the loader's promises: an error names the
/// file, a key and (when given) a line that exists; an accepted config prints (secrets
/// redacted) and, printed in full, loads again as the same config.
pub fn check_config(text: &str) -> Result<LoadedConfig, ConfigError> {
    let result = load_str(text, Some(Path::new("/fuzz/edge.toml")), Path::new("/fuzz"));
    match &result {
        Err(err) => {
            assert!(!err.problems.is_empty(), "an error without a problem");
            let lines = text.lines().count().max(1) + 1;
            for problem in &err.problems {
                assert_eq!(problem.file, "/fuzz/edge.toml");
                assert!(
                    !problem.key.is_empty() && !problem.message.is_empty(),
                    "{problem:?}"
                );
                if let Some(line) = problem.line {
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} of {lines}: {problem}"
                    );
                }
            }
            let _ = err.to_string();
        }
        Ok(loaded) => {
            toml::to_string(&loaded.config.redacted()).expect("the printable config prints");
            let printed = toml::to_string(&loaded.config).expect("the config prints");
            let again = load_str(&printed, None, Path::new("/fuzz"))
                .unwrap_or_else(|e| panic!("the printed config does not load:\n{e}\n{printed}"));
            assert_eq!(
                again.config, loaded.config,
                "printing lost something:\n{printed}"
            );
        }
    }
    result
}

/// Fuzz body for the gRPC health reply parser: `data` as a backend's response body.
pub fn fuzz_health_reply(data: &[u8]) {
    let _ = check_health_reply(data);
}

/// Parses a gRPC-framed `HealthCheckResponse`: no panic, and a status only from a frame
/// that is uncompressed and as long as it says.
pub fn check_health_reply(framed: &[u8]) -> Option<u64> {
    let status = crate::health_check::grpc_health_status(framed);
    if status.is_some() {
        assert_eq!(framed[0], 0, "compressed frames are not read");
        let declared = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]);
        assert!(
            declared as usize <= framed.len() - 5,
            "status from a truncated frame"
        );
    }
    status
}
