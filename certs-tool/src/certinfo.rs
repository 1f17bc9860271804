//! What a certificate says about itself, extracted once so `inspect`, `check` and `rotate`
//! describe certificates the same way.

use std::net::IpAddr;

use boring::x509::X509;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::error::{CertsError, Result};
use crate::keys;
use crate::san::SubjectAltName;

/// The fields SREs ask about, in display-ready form.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Upper-case hex without separators: the same spelling as `openssl x509 -noout -serial`.
    pub serial: String,
    pub sans: Vec<SubjectAltName>,
    /// SAN kinds certs-tool does not issue (URI, e-mail, ...), shown so nothing is hidden.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_sans: Vec<String>,
    #[serde(with = "rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub not_after: OffsetDateTime,
    pub key_type: String,
    pub is_ca: bool,
    pub self_signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_key_id: Option<String>,
    pub sha256_fingerprint: String,
    /// The subject CN, kept separately because DN strings cannot be split back reliably.
    #[serde(skip)]
    pub common_name: Option<String>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertsError::Usage(format!("certificate does not parse: {e}")))?;
        let boring_cert = X509::from_der(der)?;
        let mut sans = Vec::new();
        let mut other_sans = Vec::new();
        let mut subject_key_id = None;
        let mut authority_key_id = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(dns) => {
                                sans.push(SubjectAltName::Dns(dns.to_ascii_lowercase()))
                            }
                            GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                                Some(ip) => sans.push(SubjectAltName::Ip(ip)),
                                None => other_sans.push(format!("IP:<{} bytes>", bytes.len())),
                            },
                            other => other_sans.push(other.to_string()),
                        }
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(hex(id.0)),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|id| hex(id.0));
                }
                _ => {}
            }
        }
        let fingerprint = boring_cert.digest(boring::hash::MessageDigest::sha256())?;
        let public_key = boring_cert.public_key()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: serial_hex(cert.raw_serial()),
            sans,
            other_sans,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            key_type: keys::describe(&public_key),
            is_ca: cert.is_ca(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            subject_key_id,
            authority_key_id,
            sha256_fingerprint: hex(&fingerprint),
            common_name,
        })
    }

    /// Whole days from `now` until expiry; negative once expired.
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Upper-case hex of a DER INTEGER's magnitude: the sign-padding zero byte is dropped, as
/// OpenSSL does when it prints serials.
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw.iter().position(|b| *b != 0) {
        Some(first) => &raw[first..],
        None => &[0u8][..],
    };
    hex(trimmed)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// A fresh random positive 128-bit serial from BoringSSL's CSPRNG (CA/B BR 7.1 asks for at
/// least 64 bits of entropy; 128 makes collisions across rotations a non-question).
pub fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut bytes = [0u8; 16];
    // An all-zero draw would encode as serial 0, which RFC 5280 §4.1.2.2 forbids.
    while bytes.iter().all(|b| *b == 0) {
        boring::rand::rand_bytes(&mut bytes)?;
    }
    // rcgen encodes the bytes as a positive INTEGER, adding a 0x00 pad when the top bit is set.
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// RFC 3339 in UTC with second precision, e.g. `2025-01-31T12:00:00Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

mod rfc3339 {
    use time::OffsetDateTime;

    pub fn serialize<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_drops_sign_padding_like_openssl() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8F01");
        assert_eq!(serial_hex(&[0x7f]), "7F");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn random_serials_are_sixteen_bytes_and_differ() {
        let a = random_serial().expect("rng");
        let b = random_serial().expect("rng");
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn times_format_as_rfc3339_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
        assert_eq!(format_time(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn reads_sans_and_key_type_of_a_generated_cert() {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let mut params =
            rcgen::CertificateParams::new(vec!["a.test".to_owned(), "10.0.0.1".to_owned()])
                .expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x80, 1]));
        let cert = params.self_signed(&key).expect("sign");
        let info = CertInfo::from_der(cert.der()).expect("parse");
        assert_eq!(info.key_type, "ECDSA P-256");
        assert_eq!(info.serial, "8001");
        let sans: Vec<String> = info.sans.iter().map(ToString::to_string).collect();
        assert_eq!(sans, ["DNS:a.test", "IP:10.0.0.1"]);
        assert!(info.self_signed);
        assert_eq!(info.common_name.as_deref(), Some("rcgen self signed cert"));
    }
}
