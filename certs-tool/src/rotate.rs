//! `certs-tool rotate`: re-issue the serving certificate with the same names, a new key and a new
//! serial, optionally moving to a new CA (see [`crate::ca`] for the overlap design).

use std::path::{Path, PathBuf};

use boring::x509::X509;
use time::OffsetDateTime;

use crate::atomic_write::lock_dirs;
use crate::ca::{CertificateAuthority, NewCa};
use crate::certinfo::CertInfo;
use crate::error::{CertsError, Result};
use crate::issue::{prepare_dirs, publish, IssueReport, LeafRequest};
use crate::keys::KeyAlgorithm;
use crate::layout::{LayoutChoice, TLS_CRT};
use crate::pem::PemFile;

/// What to change besides key and serial.
#[derive(Clone, Debug)]
pub struct RotateOptions {
    pub days: u32,
    /// Defaults to the current leaf's algorithm.
    pub key: Option<KeyAlgorithm>,
    pub layout: LayoutChoice,
    pub ca_change: CaChange,
}

/// What happens to the CA during a rotation.
#[derive(Clone, Debug, Default)]
pub enum CaChange {
    /// Same CA (an overlap in progress stays in place).
    #[default]
    Keep,
    /// New CA, cross-signed by the current one; starts an overlap.
    New(NewCa),
    /// End the overlap: drop the cross certificate and the previous CA.
    FinishOverlap,
}

#[derive(Debug, serde::Serialize)]
pub struct RotateReport {
    pub previous_serial: String,
    #[serde(flatten)]
    pub issued: IssueReport,
    /// The new CA when `--new-ca` made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_ca: Option<CertInfo>,
    pub finished_overlap: bool,
}

/// The parts of the serving certificate that a rotation carries over.
#[derive(Debug)]
pub struct CurrentLeaf {
    pub path: PathBuf,
    pub info: CertInfo,
    pub key: Option<KeyAlgorithm>,
}

/// Reads `<out>/tls.crt` and extracts what to carry over. Only the certificate is needed, so a
/// directory whose key or bundle is lost or damaged can be repaired by rotating it.
pub fn current_leaf(out_dir: &Path) -> Result<CurrentLeaf> {
    let path = out_dir.join(TLS_CRT);
    let hint = |e: CertsError| match e {
        CertsError::Missing { path, .. } => CertsError::Missing {
            path,
            hint: "nothing to rotate; issue a certificate first with `certs-tool issue`".into(),
        },
        CertsError::BadFile { path, reason } => CertsError::BadFile {
            path,
            reason: format!("{reason}; re-create it with `certs-tool issue`"),
        },
        other => other,
    };
    let file = PemFile::load(&path).map_err(hint)?;
    let Some(der) = file.certs.first() else {
        return Err(hint(CertsError::bad_file(&path, "no certificate found")));
    };
    let info = CertInfo::from_der(der)?;
    if info.sans.is_empty() {
        return Err(CertsError::bad_file(
            &path,
            "the certificate has no DNS or IP SANs to carry over; use `certs-tool issue --san ...`",
        ));
    }
    let public_key = X509::from_der(der)?.public_key()?;
    let key = KeyAlgorithm::of(&public_key);
    Ok(CurrentLeaf { path, info, key })
}

/// `certs-tool rotate`.
pub fn rotate(
    ca_dir: &Path,
    out_dir: &Path,
    opts: &RotateOptions,
    now: OffsetDateTime,
) -> Result<RotateReport> {
    prepare_dirs(ca_dir, out_dir)?;
    let _locks = lock_dirs(&[ca_dir, out_dir])?;
    let current = current_leaf(out_dir)?;
    let ca = CertificateAuthority::load(ca_dir, now)?;
    let (ca, new_ca, finished_overlap) = match &opts.ca_change {
        CaChange::Keep => (ca, None, false),
        CaChange::New(new) => {
            let ca = ca.rotate(new, now)?;
            let info = ca.current.info.clone();
            (ca, Some(info), false)
        }
        CaChange::FinishOverlap => {
            let was_overlapping = ca.in_overlap();
            (ca.finish_rotation(now)?, None, was_overlapping)
        }
    };
    let request = LeafRequest {
        sans: current.info.sans.clone(),
        days: opts.days,
        key: opts.key.or(current.key).unwrap_or_default(),
    };
    let issued = publish(&ca, out_dir, &request, opts.layout.resolve(out_dir), now)?;
    Ok(RotateReport {
        previous_serial: current.info.serial,
        issued,
        new_ca,
        finished_overlap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{read_cert_set, TLS_KEY};
    use crate::test_support::{fixture_with_ca, leaf_request};

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let req = leaf_request(&["localhost", "::1"], 30, KeyAlgorithm::Rsa2048);
        let f = fixture_with_ca(365).with_leaf(&req, LayoutChoice::Auto);
        (f.root, f.ca_dir, f.out)
    }

    fn opts(ca_change: CaChange) -> RotateOptions {
        RotateOptions {
            days: 90,
            key: None,
            layout: LayoutChoice::Auto,
            ca_change,
        }
    }

    #[test]
    fn rotation_keeps_names_and_key_type_and_changes_serial() {
        let (_root, ca, out) = setup();
        let before = current_leaf(&out).expect("leaf");
        let report =
            rotate(&ca, &out, &opts(CaChange::Keep), OffsetDateTime::now_utc()).expect("rotate");
        let after = current_leaf(&out).expect("leaf");
        assert_eq!(report.previous_serial, before.info.serial);
        assert_ne!(after.info.serial, before.info.serial);
        assert_eq!(after.info.sans, before.info.sans);
        assert_eq!(after.key, Some(KeyAlgorithm::Rsa2048));
    }

    #[test]
    fn new_ca_starts_an_overlap_and_finish_ends_it() {
        let (_root, ca, out) = setup();
        let now = OffsetDateTime::now_utc();
        let report =
            rotate(&ca, &out, &opts(CaChange::New(NewCa::default())), now).expect("new ca");
        assert!(report.issued.overlap);
        assert!(report.new_ca.is_some());
        let set = read_cert_set(&out).expect("set");
        let chain = PemFile::parse(Path::new("tls.crt"), &set.tls_crt).expect("pem");
        assert_eq!(chain.certs.len(), 2, "leaf + cross");
        let bundle = PemFile::parse(Path::new("ca.crt"), &set.ca_crt).expect("pem");
        assert_eq!(bundle.certs.len(), 2, "new + old CA");

        let report = rotate(&ca, &out, &opts(CaChange::FinishOverlap), now).expect("finish");
        assert!(report.finished_overlap && !report.issued.overlap);
        let set = read_cert_set(&out).expect("set");
        let chain = PemFile::parse(Path::new("tls.crt"), &set.tls_crt).expect("pem");
        assert_eq!(chain.certs.len(), 1);
    }

    #[test]
    fn rotation_repairs_a_directory_whose_key_was_lost() {
        let (_root, ca, out) = setup();
        std::fs::remove_file(out.join(TLS_KEY)).expect("lose the key");
        rotate(&ca, &out, &opts(CaChange::Keep), OffsetDateTime::now_utc()).expect("rotate");
        assert!(out.join(TLS_KEY).exists());
    }

    #[test]
    fn rotating_an_empty_directory_says_to_issue_first() {
        let (_root, ca, out) = setup();
        let empty = out.with_file_name("empty");
        let err = rotate(
            &ca,
            &empty,
            &opts(CaChange::Keep),
            OffsetDateTime::now_utc(),
        )
        .expect_err("nothing to rotate");
        assert!(err.to_string().contains("certs-tool issue"), "{err}");
    }
}
