//! Subject alternative names: parsing operator input and matching hosts against a certificate.
//!
//! Clients match names only against SANs (RFC 6125 §6.4.4 deprecates the CN fallback), so a SAN
//! that is syntactically wrong is a certificate that silently matches nothing. We reject such
//! input up front instead of minting it.

use std::fmt;
use std::net::IpAddr;

use crate::error::{CertsError, Result};

/// One SAN entry as certs-tool issues them: a DNS name (possibly `*.` wildcard) or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum SubjectAltName {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(name) => write!(f, "DNS:{name}"),
            SubjectAltName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

impl SubjectAltName {
    /// Parses one `--san` value: anything that parses as an IP address is an IP SAN, everything
    /// else must be a valid DNS name.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| CertsError::InvalidSan {
            san: input.to_owned(),
            reason: reason.to_owned(),
        };
        if let Ok(ip) = input.parse::<IpAddr>() {
            return Ok(SubjectAltName::Ip(ip));
        }
        if input.is_empty() {
            return Err(invalid("empty name"));
        }
        if !input.is_ascii() {
            return Err(invalid(
                "non-ASCII name; use the punycode form (xn--...) of internationalised names",
            ));
        }
        // DNS names compare case-insensitively (RFC 4343); store one canonical spelling so
        // de-duplication and `rotate` see equal names as equal.
        let name = input.to_ascii_lowercase();
        if name.ends_with('.') {
            return Err(invalid("trailing dot; certificates carry names without it"));
        }
        if name.len() > 253 {
            return Err(invalid("longer than 253 characters"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for (i, label) in labels.iter().enumerate() {
            if *label == "*" {
                // RFC 6125 §6.4.3: only a whole left-most label may be a wildcard, and browsers
                // refuse wildcards directly under a single label (`*.com`, `*.local`).
                if i != 0 {
                    return Err(invalid("a wildcard may only be the whole left-most label"));
                }
                if labels.len() < 3 {
                    return Err(invalid(
                        "a wildcard needs at least two labels after it (*.example.com)",
                    ));
                }
                continue;
            }
            check_label(label).map_err(invalid)?;
        }
        // `256.1.1.1` or `10.0.0` are typos of addresses, not host names (RFC 1123 §2.1: a
        // top-level label is never all-numeric).
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                "looks like an IP address but does not parse as one",
            ));
        }
        Ok(SubjectAltName::Dns(name))
    }

    /// Parses and de-duplicates a list of `--san` values, keeping first-seen order (the first
    /// SAN also becomes the subject CN).
    pub fn parse_all<S: AsRef<str>>(inputs: &[S]) -> Result<Vec<Self>> {
        if inputs.is_empty() {
            return Err(CertsError::Usage(
                "at least one --san is required (e.g. --san localhost --san 127.0.0.1)".to_owned(),
            ));
        }
        let mut out: Vec<Self> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let san = Self::parse(input.as_ref())?;
            if !out.contains(&san) {
                out.push(san);
            }
        }
        Ok(out)
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType> {
        Ok(match self {
            SubjectAltName::Dns(name) => {
                rcgen::SanType::DnsName(name.clone().try_into().map_err(CertsError::Generate)?)
            }
            SubjectAltName::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        })
    }

    /// Whether this SAN covers `host` (a DNS name or an IP literal), with RFC 6125 §6.4.3
    /// wildcard rules: `*` matches exactly one whole label.
    pub fn covers(&self, host: &str) -> bool {
        match self {
            SubjectAltName::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            SubjectAltName::Dns(name) => {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => host
                        .split_once('.')
                        .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                    None => host == *name,
                }
            }
        }
    }
}

/// RFC 1123 §2.1 host-name label: letters, digits and hyphens, 1-63 characters, no hyphen at
/// either end. Underscores are refused because public CAs refuse them (CA/B BR 7.1.4.2).
fn check_label(label: &str) -> std::result::Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label (two dots in a row or a leading dot)");
    }
    if label.len() > 63 {
        return Err("a label is longer than 63 characters");
    }
    if label.contains('*') {
        return Err("a wildcard may only be the whole left-most label (*.example.com)");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("only letters, digits, '-' and '.' are allowed in DNS names");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("a label may not start or end with '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> SubjectAltName {
        SubjectAltName::parse(s).expect("valid SAN")
    }

    fn reason(s: &str) -> String {
        match SubjectAltName::parse(s) {
            Err(CertsError::InvalidSan { reason, .. }) => reason,
            other => panic!("{s:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn ip_literals_become_ip_sans() {
        assert_eq!(
            ok("127.0.0.1"),
            SubjectAltName::Ip("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(ok("::1"), SubjectAltName::Ip("::1".parse().expect("ip")));
    }

    #[test]
    fn host_names_become_lowercase_dns_sans() {
        assert_eq!(ok("localhost"), SubjectAltName::Dns("localhost".into()));
        assert_eq!(
            ok("Record.Local"),
            SubjectAltName::Dns("record.local".into())
        );
        assert_eq!(
            ok("*.example.com"),
            SubjectAltName::Dns("*.example.com".into())
        );
        assert_eq!(ok("xn--bcher-kva.de").to_string(), "DNS:xn--bcher-kva.de");
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        assert!(reason("a..b").contains("empty label"));
        assert!(reason(".a").contains("empty label"));
        assert!(reason("a.").contains("trailing dot"));
        assert!(reason("foo_bar.com").contains("only letters"));
        assert!(reason("-a.com").contains("start or end"));
        assert!(reason("a.*.com").contains("left-most"));
        assert!(reason("f*.example.com").contains("left-most"));
        assert!(reason("*.com").contains("two labels"));
        assert!(reason("256.1.1.1").contains("IP address"));
        assert!(reason("bücher.de").contains("punycode"));
        assert!(reason("").contains("empty"));
        assert!(reason(&"a".repeat(64)).contains("63"));
        assert!(reason("fe80::1%eth0").contains("only letters"));
    }

    #[test]
    fn parse_all_dedupes_and_keeps_order() {
        let sans = SubjectAltName::parse_all(&["b.local", "127.0.0.1", "B.local", "a.local"])
            .expect("valid");
        let shown: Vec<String> = sans.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["DNS:b.local", "IP:127.0.0.1", "DNS:a.local"]);
        assert!(SubjectAltName::parse_all::<&str>(&[]).is_err());
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let w = ok("*.example.com");
        assert!(w.covers("api.example.com"));
        assert!(w.covers("API.example.com."));
        assert!(!w.covers("example.com"));
        assert!(!w.covers("a.b.example.com"));
        assert!(ok("localhost").covers("LOCALHOST"));
        assert!(ok("::1").covers("::1"));
        assert!(!ok("::1").covers("127.0.0.1"));
    }
}
