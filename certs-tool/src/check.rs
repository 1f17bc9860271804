//! `certs-tool check`: one verdict for cron jobs and probes — ok (0), expiring (1), invalid (2).
//!
//! A serving directory (`tls.crt` present) is checked the way the edge will load it: files
//! present and parseable, key matches the leaf, the chain verifies against the `ca.crt` beside
//! it, nothing expired, and the requested hosts covered. The expiry that counts is the earliest
//! `not after` on the verified path (leaf, intermediates, anchor): a cross certificate or CA
//! that expires first breaks clients just the same. A CA directory (`ca.key`, no `tls.crt`) is
//! checked for key match and the CA's own expiry.

use std::path::{Path, PathBuf};

use boring::x509::X509;
use time::{Duration, OffsetDateTime};

use crate::ca::{CertificateAuthority, CA_KEY};
use crate::certinfo::{format_time, CertInfo};
use crate::error::{CertsError, Result};
use crate::layout::{read_cert_set, CA_CRT, TLS_CRT, TLS_KEY};
use crate::pem::PemFile;
use crate::verify::{key_matches, verify_chain, ChainVerdict};

#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub warn_days: u32,
    /// Host names / IPs the leaf must cover (as the edge's configured hosts).
    pub hosts: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Expiring,
    Invalid,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Expiring => 1,
            Status::Invalid => 2,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    pub dir: PathBuf,
    pub status: Status,
    /// One line, what an operator needs to know.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Earliest expiry on the verified path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
}

/// Checks `dir`; never fails — every problem becomes an `invalid` report.
pub fn check(dir: &Path, opts: &CheckOptions, now: OffsetDateTime) -> CheckReport {
    let is_ca_dir = !dir.join(TLS_CRT).exists() && dir.join(CA_KEY).exists();
    let result = if is_ca_dir {
        check_ca(dir, opts, now)
    } else {
        check_serving(dir, opts, now)
    };
    result.unwrap_or_else(|e| CheckReport {
        dir: dir.to_owned(),
        status: Status::Invalid,
        message: e.to_string(),
        subject: None,
        serial: None,
        expires: None,
        days_left: None,
    })
}

fn check_serving(dir: &Path, opts: &CheckOptions, now: OffsetDateTime) -> Result<CheckReport> {
    let set = read_cert_set(dir)?;
    let crt_path = dir.join(TLS_CRT);
    let key_path = dir.join(TLS_KEY);
    let ca_path = dir.join(CA_CRT);
    let chain = PemFile::parse(&crt_path, &set.tls_crt)?;
    let Some(leaf_der) = chain.certs.first() else {
        return Err(CertsError::bad_file(&crt_path, "no certificate found"));
    };
    let mut key_file = PemFile::parse(&key_path, &set.tls_key)?;
    if key_file.keys.len() != 1 {
        return Err(CertsError::bad_file(
            &key_path,
            "expected exactly one private key",
        ));
    }
    let key = key_file.keys.remove(0);
    let anchors_file = PemFile::parse(&ca_path, &set.ca_crt)?;
    let anchors = anchors_file.x509s()?;
    if anchors.is_empty() {
        return Err(CertsError::bad_file(&ca_path, "no CA certificate found"));
    }

    let x509s = chain.x509s()?;
    let leaf = &x509s[0];
    let info = CertInfo::from_der(leaf_der)?;
    if !key_matches(leaf, &key)? {
        return Err(CertsError::KeyMismatch {
            cert: crt_path,
            key: key_path,
        });
    }
    if info.not_after <= now {
        return Err(CertsError::Invalid(format!(
            "{}: expired {} (serial {})",
            crt_path.display(),
            format_time(info.not_after),
            info.serial
        )));
    }
    let path = match verify_chain(leaf, &x509s[1..], &anchors)? {
        ChainVerdict::Verified { path } => path,
        ChainVerdict::Failed { reason, depth } => {
            return Err(CertsError::ChainInvalid {
                cert: crt_path,
                anchors: ca_path,
                reason: format!("{reason} (at depth {depth})"),
            })
        }
    };
    for host in &opts.hosts {
        if !info.sans.iter().any(|san| san.covers(host)) {
            return Err(CertsError::Invalid(format!(
                "{}: does not cover {host:?} (SANs: {})",
                crt_path.display(),
                info.sans
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let earliest = earliest_expiry(&path)?.unwrap_or_else(|| info.clone());
    Ok(verdict(dir, &info, &earliest, opts, now))
}

fn check_ca(dir: &Path, opts: &CheckOptions, now: OffsetDateTime) -> Result<CheckReport> {
    let ca = CertificateAuthority::load(dir, now)?;
    Ok(verdict(dir, &ca.current.info, &ca.current.info, opts, now))
}

/// The certificate on the path that expires first.
fn earliest_expiry(path: &[X509]) -> Result<Option<CertInfo>> {
    let mut earliest: Option<CertInfo> = None;
    for cert in path {
        let info = CertInfo::from_der(&cert.to_der()?)?;
        if earliest
            .as_ref()
            .is_none_or(|e| info.not_after < e.not_after)
        {
            earliest = Some(info);
        }
    }
    Ok(earliest)
}

fn verdict(
    dir: &Path,
    subject: &CertInfo,
    earliest: &CertInfo,
    opts: &CheckOptions,
    now: OffsetDateTime,
) -> CheckReport {
    let days_left = earliest.days_left(now);
    let expiring = earliest.not_after - now < Duration::days(i64::from(opts.warn_days));
    let which = if earliest.serial == subject.serial {
        String::new()
    } else {
        format!(" via {} (serial {})", earliest.subject, earliest.serial)
    };
    let (status, message) = if expiring {
        (
            Status::Expiring,
            format!(
                "{}: {} expires in {days_left} days{which}, on {} (warn at {} days); rotate it",
                dir.display(),
                subject.subject,
                format_time(earliest.not_after),
                opts.warn_days
            ),
        )
    } else {
        (
            Status::Ok,
            format!(
                "{}: {} serial {} valid until {}{which} ({days_left} days)",
                dir.display(),
                subject.subject,
                subject.serial,
                format_time(earliest.not_after)
            ),
        )
    };
    CheckReport {
        dir: dir.to_owned(),
        status,
        message,
        subject: Some(subject.subject.clone()),
        serial: Some(subject.serial.clone()),
        expires: Some(format_time(earliest.not_after)),
        days_left: Some(days_left),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{cert_set, issue_leaf, LeafRequest};
    use crate::keys::KeyAlgorithm;
    use crate::layout::{write_cert_set, Layout, LayoutChoice};
    use crate::test_support::{fixture_with_ca, leaf_request, Fixture};

    fn fixture(leaf_days: u32) -> Fixture {
        fixture_with_ca(365).with_leaf(&request(leaf_days), LayoutChoice::K8s)
    }

    fn request(days: u32) -> LeafRequest {
        leaf_request(&["localhost", "127.0.0.1"], days, KeyAlgorithm::EcdsaP256)
    }

    fn opts(warn_days: u32, hosts: &[&str]) -> CheckOptions {
        CheckOptions {
            warn_days,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn statuses_follow_expiry_and_hosts() {
        let f = fixture(90);
        let now = OffsetDateTime::now_utc();
        let ok = check(&f.out, &opts(30, &["localhost", "127.0.0.1"]), now);
        assert_eq!(ok.status, Status::Ok, "{}", ok.message);
        let warn = check(&f.out, &opts(120, &[]), now);
        assert_eq!(warn.status, Status::Expiring, "{}", warn.message);
        let uncovered = check(&f.out, &opts(30, &["other.local"]), now);
        assert_eq!(uncovered.status, Status::Invalid);
        assert!(uncovered.message.contains("other.local"));
        let ca = check(&f.ca_dir, &opts(30, &[]), now);
        assert_eq!(ca.status, Status::Ok, "{}", ca.message);
        assert_eq!(
            check(&f.ca_dir, &opts(400, &[]), now).status,
            Status::Expiring
        );
    }

    #[test]
    fn an_expired_leaf_is_invalid() {
        let f = fixture(90);
        let ca = CertificateAuthority::load(&f.ca_dir, OffsetDateTime::now_utc()).expect("ca");
        // Issued "40 days ago" for 30 days: expired 10 days ago.
        let then = OffsetDateTime::now_utc() - Duration::days(40);
        let leaf = issue_leaf(&ca, &request(30), then).expect("leaf");
        write_cert_set(&f.out, &cert_set(&ca, &leaf), Layout::K8s).expect("write");
        let report = check(&f.out, &opts(30, &[]), OffsetDateTime::now_utc());
        assert_eq!(report.status, Status::Invalid);
        assert!(report.message.contains("expired"), "{}", report.message);
    }

    #[test]
    fn missing_and_mismatched_files_are_invalid() {
        let f = fixture(90);
        let now = OffsetDateTime::now_utc();
        std::fs::write(
            f.out.join("..data").join(TLS_KEY),
            rcgen::KeyPair::generate().expect("keygen").serialize_pem(),
        )
        .expect("write");
        let report = check(&f.out, &opts(30, &[]), now);
        assert_eq!(report.status, Status::Invalid);
        assert!(
            report.message.contains("key mismatch"),
            "{}",
            report.message
        );

        let empty = tempfile::tempdir().expect("tempdir");
        let report = check(empty.path(), &opts(30, &[]), now);
        assert_eq!(report.status, Status::Invalid);
        assert!(report.message.starts_with("missing"), "{}", report.message);
    }
}
