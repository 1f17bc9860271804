//! Who the client is, address-wise.
//!
//! The transport peer is the client unless the peer is one of the configured trusted
//! proxies; then `X-Forwarded-For` is read from the right (the entry the trusted proxy
//! appended) leftwards, skipping further trusted proxies, and the first untrusted address
//! is the client. Entries left of it were written by the client itself and are never
//! believed. The edge calls [`ClientIpResolver::resolve`] to fill
//! [`RequestContext::client_ip`](crate::RequestContext::client_ip); PROXY protocol is
//! handled by the edge before this (it replaces the peer address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::ClientIpConfig;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Resolves the client address from the peer address and `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
}

impl ClientIpResolver {
    pub fn new(config: &ClientIpConfig) -> Self {
        Self {
            trusted: config.trusted_proxies.clone(),
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address. Without a peer (not expected from a socket) the answer is
    /// `0.0.0.0`, which shares one rate-limit bucket rather than escaping limits.
    pub fn resolve(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        let Some(peer) = peer else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        let mut client = peer.ip().to_canonical();
        if self.trusted.is_empty() || !self.is_trusted(client) {
            return client;
        }
        // Several X-Forwarded-For lines are one comma-separated list in order
        // (RFC 9110 §5.3), so walk the lines last to first and each line right to left.
        let lines: Vec<&[u8]> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        for line in lines.iter().rev() {
            for entry in line.split(|b| *b == b',').rev() {
                // RFC 9110 §5.6.1.2: empty list elements are ignored, not garbage.
                if entry.iter().all(|b| *b == b' ' || *b == b'\t') {
                    continue;
                }
                match parse_forwarded_ip(entry) {
                    Some(ip) => {
                        client = ip;
                        if !self.is_trusted(ip) {
                            return client;
                        }
                    }
                    // Garbage where a hop should be: nothing left of it can be trusted,
                    // so the nearest trusted hop is the best answer we have.
                    None => return client,
                }
            }
        }
        client
    }
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:4711`, `203.0.113.7:4711`.
fn parse_forwarded_ip(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolver(trusted: &[&str]) -> ClientIpResolver {
        ClientIpResolver::new(&ClientIpConfig {
            trusted_proxies: trusted
                .iter()
                .map(|n| n.parse().expect("test network"))
                .collect(),
        })
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(v).expect("ascii"));
        }
        headers
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().expect("ip"), 40000))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn xff_from_an_untrusted_peer_is_ignored() {
        let r = resolver(&["10.0.0.0/8"]);
        let headers = xff(&["198.51.100.1"]);
        assert_eq!(r.resolve(peer("203.0.113.9"), &headers), ip("203.0.113.9"));
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_always_the_client() {
        let r = resolver(&[]);
        let headers = xff(&["198.51.100.1"]);
        assert_eq!(r.resolve(peer("10.1.2.3"), &headers), ip("10.1.2.3"));
    }

    #[test]
    fn trusted_peer_yields_the_rightmost_untrusted_entry() {
        let r = resolver(&["10.0.0.0/8"]);
        // The client forged the first entry; the trusted proxy appended the real one.
        let headers = xff(&["1.1.1.1, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(r.resolve(peer("10.0.0.1"), &headers), ip("198.51.100.7"));
    }

    #[test]
    fn several_header_lines_form_one_list() {
        let r = resolver(&["10.0.0.0/8"]);
        let headers = xff(&["1.1.1.1", "198.51.100.7"]);
        assert_eq!(r.resolve(peer("10.0.0.1"), &headers), ip("198.51.100.7"));
    }

    #[test]
    fn trusted_peer_without_xff_is_the_client() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(peer("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn garbage_entry_stops_the_walk_at_the_nearest_trusted_hop() {
        let r = resolver(&["10.0.0.0/8"]);
        let headers = xff(&["198.51.100.7, not-an-ip, 10.0.0.9"]);
        assert_eq!(r.resolve(peer("10.0.0.1"), &headers), ip("10.0.0.9"));
    }

    #[test]
    fn empty_list_elements_are_skipped_not_garbage() {
        let r = resolver(&["10.0.0.0/8"]);
        let headers = xff(&["198.51.100.7, ,10.0.0.5,", ""]);
        assert_eq!(r.resolve(peer("10.0.0.1"), &headers), ip("198.51.100.7"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let r = resolver(&["10.0.0.0/8", "::ffff:0:0/96"]);
        let headers = xff(&["[2001:db8::1]:4711"]);
        assert_eq!(r.resolve(peer("10.0.0.1"), &headers), ip("2001:db8::1"));
        let headers = xff(&["198.51.100.7:4711"]);
        // An IPv4-mapped IPv6 peer is the IPv4 address it carries.
        assert_eq!(
            r.resolve(peer("::ffff:10.0.0.1"), &headers),
            ip("198.51.100.7")
        );
        assert_eq!(
            r.resolve(peer("::ffff:203.0.113.1"), &HeaderMap::new()),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn all_entries_trusted_yields_the_leftmost() {
        let r = resolver(&["10.0.0.0/8"]);
        let headers = xff(&["10.9.9.9, 10.0.0.5"]);
        assert_eq!(r.resolve(peer("10.0.0.1"), &headers), ip("10.9.9.9"));
    }
}
