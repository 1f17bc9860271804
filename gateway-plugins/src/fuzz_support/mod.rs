//! Bodies of the fuzz targets in `gateway-plugins/fuzz/` (cargo-fuzz, nightly) and of the
//! property tests that run the same code on stable in `make test` (docs/fuzzing.md).
//!
//! Every parser here reads something a client or a config file controls: the
//! `Authorization` header, the JWT inside it, the JWKS document, `X-Forwarded-For`, the
//! `[plugins]` config and the URLs it prints. A `fuzz_*` function takes raw bytes (what a
//! fuzzer produces); a `check_*` function takes structured input (what the property tests
//! generate) and asserts what the parser promises. Not part of the crate's API.

#[cfg(test)]
mod properties;

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use crate::client_ip::ClientIpResolver;
use crate::config::{redact_url, ClientIpConfig, PluginsConfig, RoutePolicy};

pub use crate::jwt::fuzz_support::{
    check_authorization, check_jwks, check_token, fuzz_jwks, fuzz_jwt, kept_kids, verifier,
    ALL_ALGORITHMS, AUDIENCE, ISSUER,
};

/// Fuzz body for the client-IP resolver. Line 1: trusted networks, comma-separated;
/// line 2: the peer address; every further line: one `X-Forwarded-For` value.
pub fn fuzz_client_ip(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let trusted: Vec<IpNet> = lines
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .map(|text| {
            text.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let peer = lines
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .and_then(|text| {
            text.parse::<SocketAddr>()
                .ok()
                .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 1)))
        });
    let xff: Vec<&[u8]> = lines.collect();
    check_client_ip(&trusted, peer, &xff);
}

/// Resolves the client address of a request from `peer` carrying the `xff` lines, and
/// checks the resolver's promises:
/// - the answer is the peer or an address written in the chain;
/// - an untrusted peer is the client, whatever the header says;
/// - an answer taken from the chain has only trusted hops (or empty list elements) to its
///   right, and an untrusted answer is the rightmost untrusted entry;
/// - what the client wrote left of an untrusted answer can never change it (anything
///   prepended to the first line leaves it as it is).
///
/// Returns the answer.
pub fn check_client_ip(trusted: &[IpNet], peer: Option<SocketAddr>, xff: &[&[u8]]) -> IpAddr {
    let resolver = ClientIpResolver::new(&ClientIpConfig {
        trusted_proxies: trusted.to_vec(),
    });
    let headers = xff_headers(xff.iter().copied());
    let client = resolver.resolve(peer, &headers);
    let Some(peer) = peer else {
        assert!(client.is_unspecified(), "no peer: one shared bucket");
        return client;
    };
    let peer_ip = peer.ip().to_canonical();
    if !resolver.is_trusted(peer_ip) {
        assert_eq!(client, peer_ip, "an untrusted peer is the client");
        return client;
    }
    // The chain as the resolver reads it: lines that are header values, right to left.
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().split(|b| *b == b',').rev())
        .collect();
    let parsed = |entry: &[u8]| -> Option<IpAddr> {
        let text = std::str::from_utf8(entry).ok()?.trim();
        text.parse::<IpAddr>()
            .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
            .ok()
            .map(|ip| ip.to_canonical())
    };
    if client != peer_ip {
        let position = entries
            .iter()
            .position(|e| parsed(e) == Some(client))
            .unwrap_or_else(|| panic!("{client} is neither the peer nor in the chain"));
        for right in &entries[..position] {
            let empty = right.iter().all(|b| *b == b' ' || *b == b'\t');
            assert!(
                empty || parsed(right).is_some_and(|ip| resolver.is_trusted(ip)),
                "{client} was taken past the untrusted or garbage hop {right:?}"
            );
        }
    }
    if !resolver.is_trusted(client) {
        // The client can prepend whatever it likes; the answer must not move.
        let mut forged: Vec<Vec<u8>> = xff.iter().map(|line| line.to_vec()).collect();
        if let Some(first) = forged.first_mut() {
            first.splice(0..0, b"198.51.100.99, garbage, 10.0.0.1, ".iter().copied());
        }
        let forged_headers = xff_headers(forged.iter().map(Vec::as_slice));
        assert_eq!(
            resolver.resolve(Some(peer), &forged_headers),
            client,
            "entries left of the client changed the answer"
        );
    }
    client
}

/// The `X-Forwarded-For` lines that are header values (the codecs refuse the others).
fn xff_headers<'a>(lines: impl Iterator<Item = &'a [u8]>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", value);
        }
    }
    headers
}

/// Fuzz body for the `[plugins]` and `[routes.plugins]` config: `data` as JSON for both
/// (the edge's own target covers the TOML around them), then validation and redaction.
pub fn fuzz_plugins_config(data: &[u8]) {
    let global = serde_json::from_slice::<PluginsConfig>(data).ok();
    if let Some(global) = &global {
        check_plugins_config(global);
    }
    if let Ok(route) = serde_json::from_slice::<RoutePolicy>(data) {
        check_route_policy(&route, global.as_ref().unwrap_or(&PluginsConfig::default()));
    }
    if let Ok(url) = std::str::from_utf8(data) {
        check_redact_url(url);
    }
}

/// Validation names every problem at a path the edge can locate, and the printable copy
/// carries no credential.
pub fn check_plugins_config(config: &PluginsConfig) {
    for issue in config.validate() {
        assert_locatable(&issue.path);
    }
    let printed = config.redacted();
    if let Some(redis) = &printed.redis {
        assert_eq!(
            redis.url,
            check_redact_url(&config.redis.as_ref().expect("same").url)
        );
    }
    assert_eq!(printed.redacted(), printed, "redaction is idempotent");
}

/// A route's policy problems are located under the route.
pub fn check_route_policy(route: &RoutePolicy, global: &PluginsConfig) {
    for issue in route.validate(global) {
        assert_locatable(&issue.path);
    }
}

/// `redact_url` keeps everything but the userinfo and secret query values, and applying
/// it twice changes nothing more. Returns the redacted URL.
pub fn check_redact_url(url: &str) -> String {
    let redacted = redact_url(url);
    assert_eq!(redact_url(&redacted), redacted, "redaction is idempotent");
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if let Some(at) = authority.rfind('@') {
        let host = &authority[at + 1..];
        assert!(
            redacted.contains(&format!("***@{host}")),
            "{redacted:?} lost the host of {url:?}"
        );
    }
    redacted
}

/// A config-issue path as the edge's `KeyPath::join_dotted` reads it: `name`, `name[i]`,
/// joined by dots.
fn assert_locatable(path: &str) {
    let well_formed = !path.is_empty()
        && path.split('.').all(|part| {
            let (name, indices) = part.split_at(part.find('[').unwrap_or(part.len()));
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && indices.split_terminator(']').all(|index| {
                    index
                        .strip_prefix('[')
                        .is_some_and(|i| i.parse::<usize>().is_ok())
                })
                && (indices.is_empty() || indices.ends_with(']'))
        });
    assert!(well_formed, "config issue path {path:?} cannot be located");
}
