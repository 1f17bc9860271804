//! What a bucket is keyed by: the client IP (IPv6 by /64), the verified user, or both.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::RateLimitKey;

/// What a bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// An IPv4 address, or an IPv6 address masked to its /64.
    Ip(IpAddr),
    /// A token's `sub`.
    User(Arc<str>),
    /// The shared bucket of keys that arrived while the table was full.
    Overflow,
}

impl LimitKey {
    pub fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let masked = u128::from(v6) & !((1u128 << 64) - 1);
                LimitKey::Ip(IpAddr::V6(masked.into()))
            }
            v4 => LimitKey::Ip(v4),
        }
    }

    /// The key a rule uses for a request, if the rule applies to it.
    pub fn for_rule(key: RateLimitKey, client_ip: IpAddr, user: Option<&str>) -> Option<Self> {
        match (key, user) {
            (RateLimitKey::Ip, _) => Some(Self::ip(client_ip)),
            (RateLimitKey::User, Some(sub)) => Some(LimitKey::User(Arc::from(sub))),
            // Documented in config.rs: requests without identity are not limited by a
            // `user` rule.
            (RateLimitKey::User, None) => None,
            (RateLimitKey::UserOrIp, Some(sub)) => Some(LimitKey::User(Arc::from(sub))),
            (RateLimitKey::UserOrIp, None) => Some(Self::ip(client_ip)),
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Ip(IpAddr::V6(v6)) => write!(f, "ip:{v6}/64"),
            LimitKey::Ip(ip) => write!(f, "ip:{ip}"),
            LimitKey::User(sub) => write!(f, "user:{sub}"),
            LimitKey::Overflow => f.write_str("overflow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(LimitKey::ip(a), LimitKey::ip(b));
        assert_ne!(LimitKey::ip(a), LimitKey::ip(c));
        assert_eq!(LimitKey::ip(a).to_string(), "ip:2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(
            LimitKey::ip(mapped),
            LimitKey::ip("192.0.2.1".parse().expect("ip"))
        );
    }

    #[test]
    fn rule_keys_follow_identity() {
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(LimitKey::for_rule(RateLimitKey::User, ip, None), None);
        assert_eq!(
            LimitKey::for_rule(RateLimitKey::UserOrIp, ip, None),
            Some(LimitKey::ip(ip))
        );
        assert_eq!(
            LimitKey::for_rule(RateLimitKey::UserOrIp, ip, Some("u1")),
            Some(LimitKey::User(Arc::from("u1")))
        );
    }
}
