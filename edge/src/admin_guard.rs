//! Who may use the admin listener, decided before any admin endpoint runs.
//!
//! - `Host` must be `localhost`, an IP literal or one of `admin.allowed_hosts`. A page on
//!   `evil.example` whose name an attacker re-points at 127.0.0.1 (DNS rebinding) still
//!   sends `Host: evil.example`; an IP literal cannot be an attacker's name.
//! - State-changing requests (`POST`) must not carry `Origin` (a browser adds it to every
//!   cross-site POST; curl and operators' tools do not), must say `Content-Type:
//!   application/json` (a cross-site form cannot, without a CORS preflight we never grant)
//!   and must present `Authorization: Bearer <admin.token_file>`.
//! - When the listener is not on a loopback address, every endpoint needs the token, except
//!   that `/healthz` and `/readyz` answer their status alone without it (kubelet probes carry
//!   no secret).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use http::{header, HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq;

use crate::config::AdminSection;

/// The shortest token accepted: 32 characters of a random string is beyond guessing.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Longest token file read: a token is one line, not a device or a log file.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Reads the token file (surrounding whitespace trimmed).
pub fn read_token(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "{} is longer than {MAX_TOKEN_FILE_BYTES} bytes; it must hold the token alone",
            path.display()
        ));
    }
    let token = text.trim();
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "{} holds {} characters; at least {MIN_TOKEN_CHARS} are required",
            path.display(),
            token.chars().count()
        ));
    }
    Ok(token.to_string())
}

/// What a request that passed may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything the endpoint has.
    Full,
    /// `/healthz` and `/readyz` without a token on a non-loopback listener: status only.
    StatusOnly,
}

/// Why a request was refused: the status and the JSON error's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// The checks of the module doc, in that order. `bound` is the address the listener really
/// has (a reload may name another one, which applies only after a restart).
pub fn check(
    config: &AdminSection,
    bound: SocketAddr,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Access, Refusal> {
    check_host(config, headers)?;
    let token = || bearer_matches(config, headers);
    if method == Method::POST {
        if headers.contains_key(header::ORIGIN) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "cross_origin_refused",
                "admin changes are not accepted from a web page (the request carries Origin)",
            ));
        }
        if !is_json(headers) {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_required",
                "send admin changes with Content-Type: application/json",
            ));
        }
        token()?;
        return Ok(Access::Full);
    }
    if bound.ip().is_loopback() {
        return Ok(Access::Full);
    }
    match token() {
        Ok(()) => Ok(Access::Full),
        Err(_) if matches!(path, "/healthz" | "/readyz") => Ok(Access::StatusOnly),
        Err(refusal) => Err(refusal),
    }
}

fn check_host(config: &AdminSection, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing_host",
            "a Host header is required",
        ));
    };
    let name = host_name(host);
    let allowed = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok()
        || config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name));
    if allowed {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!("Host '{name}' is not an admin address (admin.allowed_hosts)"),
        ))
    }
}

/// `host[:port]` or `[v6][:port]` → the name or address alone.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn bearer_matches(config: &AdminSection, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(path) = &config.token_file else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "admin_token_not_configured",
            "set admin.token_file to allow admin changes (or use SIGHUP / the file watch)",
        ));
    };
    let expected = read_token(path).map_err(|problem| {
        tracing::error!(%problem, "admin.token_file");
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_token_unreadable",
            "the admin token file cannot be read; see the edge log",
        )
    })?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <the token in admin.token_file>",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn admin(address: &str, token: Option<&Path>) -> AdminSection {
        AdminSection {
            address: address.parse::<SocketAddr>().expect("addr"),
            allowed_hosts: vec!["edge-admin.record-platform.svc".into()],
            token_file: token.map(Path::to_path_buf),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    fn token_file() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), format!("{TOKEN}\n")).expect("write");
        file
    }

    #[test]
    fn hosts_other_than_local_names_ip_literals_and_the_allow_list_are_refused() {
        let config = admin("127.0.0.1:9000", None);
        for host in [
            "localhost:9000",
            "127.0.0.1:9000",
            "[::1]:9000",
            "10.1.2.3",
            "EDGE-ADMIN.record-platform.svc:9000",
        ] {
            let got = check(
                &config,
                config.address,
                &Method::GET,
                "/metrics",
                &headers(&[("host", host)]),
            );
            assert_eq!(got, Ok(Access::Full), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9000",
            "localhost.evil.example",
        ] {
            let got = check(
                &config,
                config.address,
                &Method::GET,
                "/metrics",
                &headers(&[("host", host)]),
            );
            assert_eq!(got.map_err(|r| r.code), Err("host_not_allowed"), "{host}");
        }
        let got = check(
            &config,
            config.address,
            &Method::GET,
            "/metrics",
            &HeaderMap::new(),
        );
        assert_eq!(got.map_err(|r| r.code), Err("missing_host"));
    }

    #[test]
    fn a_post_needs_no_origin_a_json_content_type_and_the_token() {
        let file = token_file();
        let config = admin("127.0.0.1:9000", Some(file.path()));
        let good = [
            ("host", "localhost"),
            ("content-type", "application/json; charset=utf-8"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ];
        assert_eq!(
            check(
                &config,
                config.address,
                &Method::POST,
                "/config/reload",
                &headers(&good)
            ),
            Ok(Access::Full)
        );
        let mut with_origin = good.to_vec();
        with_origin.push(("origin", "https://evil.example"));
        let code = |pairs: &[(&str, &str)]| {
            check(
                &config,
                config.address,
                &Method::POST,
                "/config/reload",
                &headers(pairs),
            )
            .map_err(|r| r.code)
        };
        assert_eq!(code(&with_origin), Err("cross_origin_refused"));
        assert_eq!(
            code(&[good[0], ("content-type", "text/plain"), good[2]]),
            Err("json_required")
        );
        assert_eq!(code(&[good[0], good[2]]), Err("json_required"));
        assert_eq!(code(&[good[0], good[1]]), Err("unauthorized"));
        assert_eq!(
            code(&[good[0], good[1], ("authorization", "Bearer wrong")]),
            Err("unauthorized")
        );
    }

    #[test]
    fn without_a_token_file_posts_are_refused() {
        let config = admin("127.0.0.1:9000", None);
        let got = check(
            &config,
            config.address,
            &Method::POST,
            "/certs/reload",
            &headers(&[("host", "localhost"), ("content-type", "application/json")]),
        );
        assert_eq!(got.map_err(|r| r.code), Err("admin_token_not_configured"));
    }

    #[test]
    fn off_loopback_every_get_needs_the_token_but_probes_get_status_only() {
        let file = token_file();
        let config = admin("0.0.0.0:9000", Some(file.path()));
        let anonymous = headers(&[("host", "10.0.0.7:9000")]);
        for path in ["/metrics", "/config", "/certs"] {
            let got = check(&config, config.address, &Method::GET, path, &anonymous);
            assert_eq!(
                got.map_err(|r| r.status),
                Err(StatusCode::UNAUTHORIZED),
                "{path}"
            );
        }
        for path in ["/healthz", "/readyz"] {
            let got = check(&config, config.address, &Method::GET, path, &anonymous);
            assert_eq!(got, Ok(Access::StatusOnly), "{path}");
        }
        let bearer = format!("bearer {TOKEN}");
        let authorized = headers(&[("host", "10.0.0.7:9000"), ("authorization", &bearer)]);
        assert_eq!(
            check(
                &config,
                config.address,
                &Method::GET,
                "/config",
                &authorized
            ),
            Ok(Access::Full)
        );
    }

    #[test]
    fn the_bound_address_decides_not_a_reloaded_one() {
        let file = token_file();
        // Bound on all interfaces; a reload that says 127.0.0.1 must not open the GETs.
        let config = admin("127.0.0.1:9000", Some(file.path()));
        let bound: SocketAddr = "0.0.0.0:9000".parse().expect("addr");
        let got = check(
            &config,
            bound,
            &Method::GET,
            "/config",
            &headers(&[("host", "10.0.0.7")]),
        );
        assert_eq!(got.map_err(|r| r.code), Err("unauthorized"));
    }

    #[test]
    fn short_or_missing_token_files_are_rejected_with_the_reason() {
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), "short").expect("write");
        let problem = read_token(file.path()).expect_err("short");
        assert!(problem.contains("at least 32"), "{problem}");
        let problem = read_token(Path::new("/nonexistent/admin-token")).expect_err("missing");
        assert!(problem.contains("cannot read"), "{problem}");
    }

    /// `token_file = "/dev/zero"` (or any endless or huge file) in a config, an input of the
    /// `config` fuzz target, made loading read until memory ran out.
    #[test]
    fn a_token_file_that_never_ends_is_refused() {
        let problem = read_token(Path::new("/dev/zero")).expect_err("endless");
        assert!(problem.contains("longer than"), "{problem}");
    }
}
