//! `certs-tool inspect`: what is in a PEM file, whether its key matches, whether it verifies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use boring::pkey::{PKey, Private};
use time::OffsetDateTime;

use crate::ca::CA_PREVIOUS;
use crate::certinfo::{format_time, CertInfo};
use crate::error::{CertsError, Result};
use crate::keys;
use crate::layout::CA_CRT;
use crate::pem::PemFile;
use crate::verify::{key_matches, verify_chain, ChainVerdict};

/// Where to look for the key and the trust anchors when the file itself does not say.
#[derive(Clone, Debug, Default)]
pub struct InspectOptions {
    /// Private key to match against each certificate file (default: the `.key` beside it).
    pub key: Option<PathBuf>,
    /// CA bundle to verify against (default: `ca.crt` beside the file).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    /// File order; the first is the subject of the key and chain checks.
    pub certificates: Vec<CertInfo>,
    /// `null` when no key was found to compare.
    pub key: Option<KeyReport>,
    /// `null` when the file holds no certificate.
    pub chain: Option<ChainReport>,
}

#[derive(Debug, serde::Serialize)]
pub struct KeyReport {
    pub path: PathBuf,
    pub key_type: String,
    /// `null` when there was no certificate to compare with.
    pub matches_certificate: Option<bool>,
    pub certificate_path: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct ChainReport {
    /// Files the trust anchors came from; empty when none were found.
    pub trust_anchors: Vec<PathBuf>,
    pub verified: bool,
    /// Subjects from the certificate up to the anchor, when verified.
    pub path: Vec<String>,
    pub error: Option<String>,
}

impl FileReport {
    /// The first problem, as the one-line error the CLI exits 2 with.
    pub fn problem(&self) -> Option<CertsError> {
        if let Some(key) = &self.key {
            if key.matches_certificate == Some(false) {
                return Some(CertsError::KeyMismatch {
                    cert: key
                        .certificate_path
                        .clone()
                        .unwrap_or_else(|| self.path.clone()),
                    key: key.path.clone(),
                });
            }
        }
        let chain = self.chain.as_ref()?;
        match (chain.trust_anchors.first(), &chain.error) {
            (Some(anchors), Some(reason)) if !chain.verified => Some(CertsError::ChainInvalid {
                cert: self.path.clone(),
                anchors: anchors.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        }
    }
}

/// Inspects each file. Unreadable or unparseable input is an error (nothing is reported);
/// mismatches and broken chains are findings in the reports.
pub fn inspect(paths: &[PathBuf], opts: &InspectOptions) -> Result<Vec<FileReport>> {
    paths.iter().map(|p| inspect_file(p, opts)).collect()
}

fn inspect_file(path: &Path, opts: &InspectOptions) -> Result<FileReport> {
    let file = PemFile::load(path)?;
    let certificates = file
        .certs
        .iter()
        .map(|der| CertInfo::from_der(der))
        .collect::<Result<Vec<_>>>()?;
    let x509s = file.x509s()?;

    // The key to compare: one in the file itself, else --key, else `<stem>.key` beside it.
    let key: Option<(PathBuf, PKey<Private>)> = match file.keys.first() {
        Some(k) => Some((path.to_owned(), k.clone())),
        None if !x509s.is_empty() => match &opts.key {
            Some(p) => Some((p.clone(), PemFile::load_key(p)?)),
            None => {
                let beside = path.with_extension("key");
                if beside.exists() {
                    Some((beside.clone(), PemFile::load_key(&beside)?))
                } else {
                    None
                }
            }
        },
        None => None,
    };

    let key = match key {
        None => None,
        Some((key_path, pkey)) => {
            // A key-only file is compared with the certificate beside it (`tls.key` ->
            // `tls.crt`), so `inspect tls.key` answers "does this key belong here?".
            let (cert, cert_path) = match x509s.first() {
                Some(c) => (Some(c.clone()), Some(path.to_owned())),
                None => {
                    let beside = path.with_extension("crt");
                    if beside.exists() {
                        let f = PemFile::load_certs(&beside)?;
                        (f.x509s()?.into_iter().next(), Some(beside))
                    } else {
                        (None, None)
                    }
                }
            };
            let matches_certificate = match &cert {
                Some(c) => Some(key_matches(c, &pkey)?),
                None => None,
            };
            Some(KeyReport {
                path: key_path,
                key_type: keys::describe(&pkey),
                matches_certificate,
                certificate_path: cert_path,
            })
        }
    };

    let chain = match x509s.split_first() {
        None => None,
        Some((first, rest)) => {
            let beside = path.with_file_name(CA_CRT);
            let anchors_path = opts
                .ca_file
                .clone()
                .or_else(|| beside.exists().then_some(beside));
            let mut anchors = match &anchors_path {
                Some(p) if p == path => x509s.clone(),
                Some(p) => PemFile::load_certs(p)?.x509s()?,
                // Nothing to trust but itself: a self-signed certificate still gets its
                // validity period checked.
                None if certificates.first().is_some_and(|c| c.self_signed) => {
                    vec![first.clone()]
                }
                None => Vec::new(),
            };
            let mut trust_anchors: Vec<PathBuf> = match (&anchors_path, anchors.is_empty()) {
                (Some(p), _) => vec![p.clone()],
                (None, false) => vec![path.to_owned()],
                (None, true) => Vec::new(),
            };
            // In a CA directory mid-overlap, `ca-cross.crt` is issued by the previous CA.
            let previous = path.with_file_name(CA_PREVIOUS);
            if opts.ca_file.is_none() && previous.exists() {
                anchors.extend(PemFile::load_certs(&previous)?.x509s()?);
                trust_anchors.push(previous);
            }
            Some(match verify_chain(first, rest, &anchors)? {
                ChainVerdict::Verified { path } => ChainReport {
                    trust_anchors,
                    verified: true,
                    path: path
                        .iter()
                        .map(|c| {
                            c.to_der()
                                .map_err(CertsError::from)
                                .and_then(|d| CertInfo::from_der(&d))
                                .map(|i| i.subject)
                        })
                        .collect::<Result<_>>()?,
                    error: None,
                },
                ChainVerdict::Failed { reason, depth } => ChainReport {
                    verified: false,
                    path: Vec::new(),
                    error: Some(if trust_anchors.is_empty() {
                        format!(
                            "not checked: no {CA_CRT} beside the file; pass --ca-file to choose one"
                        )
                    } else {
                        format!("{reason} (at depth {depth})")
                    }),
                    trust_anchors,
                },
            })
        }
    };

    Ok(FileReport {
        path: path.to_owned(),
        certificates,
        key,
        chain,
    })
}

/// The human-readable form of the reports.
pub fn render_text(reports: &[FileReport], now: OffsetDateTime) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(out, "{}", report.path.display());
        let count = report.certificates.len();
        for (i, cert) in report.certificates.iter().enumerate() {
            let _ = writeln!(out, "  certificate {} of {count}", i + 1);
            render_cert(&mut out, cert, now);
        }
        if let Some(key) = &report.key {
            let verdict = match (key.matches_certificate, &key.certificate_path) {
                (Some(true), Some(c)) => format!("matches {}", c.display()),
                (Some(false), Some(c)) => format!("DOES NOT MATCH {}", c.display()),
                _ => "no certificate to compare with".to_owned(),
            };
            let _ = writeln!(
                out,
                "  key:          {} ({}) {verdict}",
                key.path.display(),
                key.key_type
            );
        } else if count > 0 {
            let _ = writeln!(
                out,
                "  key:          none found (no key in the file or beside it; pass --key)"
            );
        }
        if let Some(chain) = &report.chain {
            let anchors = chain
                .trust_anchors
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" + ");
            if chain.verified {
                let _ = writeln!(
                    out,
                    "  chain:        verifies against {anchors}: {}",
                    chain.path.join(" -> ")
                );
            } else {
                let _ = writeln!(
                    out,
                    "  chain:        DOES NOT VERIFY against {anchors}: {}",
                    chain.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    out
}

fn render_cert(out: &mut String, cert: &CertInfo, now: OffsetDateTime) {
    let sans: Vec<String> = cert
        .sans
        .iter()
        .map(ToString::to_string)
        .chain(cert.other_sans.iter().cloned())
        .collect();
    let days = cert.days_left(now);
    let remaining = if cert.not_after <= now {
        "EXPIRED".to_owned()
    } else {
        format!("{days} days left")
    };
    let _ = writeln!(out, "    subject:    {}", cert.subject);
    let _ = writeln!(out, "    issuer:     {}", cert.issuer);
    let _ = writeln!(out, "    serial:     {}", cert.serial);
    if !sans.is_empty() {
        let _ = writeln!(out, "    SANs:       {}", sans.join(", "));
    }
    let _ = writeln!(out, "    not before: {}", format_time(cert.not_before));
    let _ = writeln!(
        out,
        "    not after:  {} ({remaining})",
        format_time(cert.not_after)
    );
    let _ = writeln!(out, "    key type:   {}", cert.key_type);
    let role = match (cert.is_ca, cert.self_signed) {
        (true, true) => "CA (self-signed root)",
        (true, false) => "CA (intermediate / cross-signed)",
        (false, _) => "end entity",
    };
    let _ = writeln!(out, "    role:       {role}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;
    use crate::layout::{LayoutChoice, TLS_CRT, TLS_KEY};
    use crate::test_support::{fixture_with_ca, leaf_request};

    fn issued() -> (tempfile::TempDir, PathBuf) {
        let req = leaf_request(&["localhost"], 30, KeyAlgorithm::EcdsaP256);
        let f = fixture_with_ca(365).with_leaf(&req, LayoutChoice::Flat);
        (f.root, f.out)
    }

    #[test]
    fn a_fresh_set_inspects_clean() {
        let (_root, out) = issued();
        let reports = inspect(
            &[out.join(TLS_CRT), out.join(CA_CRT), out.join(TLS_KEY)],
            &InspectOptions::default(),
        )
        .expect("inspect");
        for r in &reports {
            assert!(r.problem().is_none(), "{:?}", r.problem());
        }
        let leaf = &reports[0];
        assert_eq!(
            leaf.key.as_ref().and_then(|k| k.matches_certificate),
            Some(true)
        );
        assert!(leaf.chain.as_ref().is_some_and(|c| c.verified));
        assert_eq!(
            reports[2].key.as_ref().and_then(|k| k.matches_certificate),
            Some(true),
            "a key file is compared with the certificate beside it"
        );
        let text = render_text(&reports, OffsetDateTime::now_utc());
        assert!(text.contains("DNS:localhost"), "{text}");
    }

    #[test]
    fn a_foreign_key_is_reported_as_a_mismatch() {
        let (root, out) = issued();
        let stranger = root.path().join("stranger.key");
        std::fs::write(
            &stranger,
            rcgen::KeyPair::generate().expect("keygen").serialize_pem(),
        )
        .expect("write");
        let reports = inspect(
            &[out.join(TLS_CRT)],
            &InspectOptions {
                key: Some(stranger),
                ca_file: None,
            },
        )
        .expect("inspect");
        assert!(matches!(
            reports[0].problem(),
            Some(CertsError::KeyMismatch { .. })
        ));
    }
}
