//! Issuing serving (leaf) certificates and publishing them as a certificate set.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::atomic_write::{ensure_dir, lock_dirs};
use crate::ca::{CertificateAuthority, BACKDATE, CA_KEY};
use crate::certinfo::{random_serial, CertInfo};
use crate::error::{CertsError, Result};
use crate::keys::KeyAlgorithm;
use crate::layout::{write_cert_set, CertSet, Layout, LayoutChoice, CA_CRT};
use crate::san::SubjectAltName;

pub const DEFAULT_LEAF_DAYS: u32 = 90;

/// RFC 5280 upper bound for a CommonName (ub-common-name).
const MAX_CN_LEN: usize = 64;

/// What to put in a leaf.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    pub sans: Vec<SubjectAltName>,
    pub days: u32,
    pub key: KeyAlgorithm,
}

/// A freshly signed leaf and its key.
pub struct IssuedLeaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
    /// The requested lifetime ran past the CA's expiry and was cut to it.
    pub clamped_to_ca: bool,
}

/// What `issue` and `rotate` report.
#[derive(Debug, serde::Serialize)]
pub struct IssueReport {
    pub out: PathBuf,
    pub layout: Layout,
    pub leaf: CertInfo,
    pub ca_subject: String,
    /// Whether the set carries a CA-rotation overlap (cross certificate + two-CA bundle).
    pub overlap: bool,
    pub clamped_to_ca: bool,
}

/// Signs a leaf for `req` with `ca`.
pub fn issue_leaf(
    ca: &CertificateAuthority,
    req: &LeafRequest,
    now: OffsetDateTime,
) -> Result<IssuedLeaf> {
    let key = req.key.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    // Clients match on SANs only, but humans read the CN in logs and dashboards: use the first
    // SAN that fits (a subject left empty makes rcgen mark the SAN critical, per RFC 5280).
    if let Some(cn) = req
        .sans
        .iter()
        .map(|san| match san {
            SubjectAltName::Dns(name) => name.clone(),
            SubjectAltName::Ip(ip) => ip.to_string(),
        })
        .find(|cn| cn.len() <= MAX_CN_LEN)
    {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.subject_alt_names = req
        .sans
        .iter()
        .map(SubjectAltName::to_rcgen)
        .collect::<Result<_>>()?;
    // ExplicitNoCa writes basicConstraints CA:FALSE and a subject key identifier.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if req.key.is_rsa() {
        // TLS 1.2 RSA key exchange encrypts to the certificate key (RFC 5246 §7.4.2).
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - BACKDATE;
    let wanted = now + Duration::days(i64::from(req.days));
    let ca_end = ca.current.info.not_after;
    params.not_after = wanted.min(ca_end);

    let cert = params.signed_by(&key, &ca.issuer()?)?;
    Ok(IssuedLeaf {
        info: CertInfo::from_der(cert.der())?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        clamped_to_ca: wanted > ca_end,
    })
}

/// The three files for `leaf` issued by `ca`: `tls.crt` = leaf + intermediates (the cross
/// certificate during a CA overlap), `ca.crt` = the trust bundle.
pub fn cert_set(ca: &CertificateAuthority, leaf: &IssuedLeaf) -> CertSet {
    CertSet {
        tls_crt: format!("{}{}", leaf.cert_pem, ca.chain_pem()).into_bytes(),
        tls_key: leaf.key_pem.clone().into_bytes(),
        ca_crt: ca.bundle_pem().into_bytes(),
    }
}

/// `certs-tool issue`.
pub fn issue(
    ca_dir: &Path,
    out_dir: &Path,
    req: &LeafRequest,
    layout: LayoutChoice,
    now: OffsetDateTime,
) -> Result<IssueReport> {
    prepare_dirs(ca_dir, out_dir)?;
    let _locks = lock_dirs(&[ca_dir, out_dir])?;
    let ca = CertificateAuthority::load(ca_dir, now)?;
    publish(&ca, out_dir, req, layout.resolve(out_dir), now)
}

/// Issues a leaf and writes it; shared by `issue` and `rotate` (the caller holds the locks).
pub(crate) fn publish(
    ca: &CertificateAuthority,
    out_dir: &Path,
    req: &LeafRequest,
    layout: Layout,
    now: OffsetDateTime,
) -> Result<IssueReport> {
    let leaf = issue_leaf(ca, req, now)?;
    write_cert_set(out_dir, &cert_set(ca, &leaf), layout)?;
    Ok(IssueReport {
        out: out_dir.to_owned(),
        layout,
        ca_subject: ca.current.info.subject.clone(),
        overlap: ca.in_overlap(),
        clamped_to_ca: leaf.clamped_to_ca,
        leaf: leaf.info,
    })
}

/// Checks the CA exists and `out_dir` is not a CA directory, then creates `out_dir`.
pub(crate) fn prepare_dirs(ca_dir: &Path, out_dir: &Path) -> Result<()> {
    if !ca_dir.join(CA_CRT).exists() {
        return Err(CertsError::Missing {
            path: ca_dir.join(CA_CRT),
            hint: format!(
                "no CA there; create one with `certs-tool ca init --dir {}`",
                ca_dir.display()
            ),
        });
    }
    let same_dir = match (ca_dir.canonicalize(), out_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same_dir || out_dir.join(CA_KEY).exists() {
        // ca.crt in an output directory is the client bundle and would overwrite the CA, and
        // the CA key must never sit beside a serving key.
        return Err(CertsError::Usage(format!(
            "--out {} is a CA directory; write leaves to a separate directory",
            out_dir.display()
        )));
    }
    ensure_dir(out_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{init_test_ca as ca, leaf_request};
    use crate::verify::verify_chain;
    use boring::x509::X509;

    fn request(days: u32) -> LeafRequest {
        leaf_request(
            &["localhost", "127.0.0.1", "*.record.local"],
            days,
            KeyAlgorithm::EcdsaP256,
        )
    }

    #[test]
    fn leaves_carry_sans_validity_and_verify_under_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca(dir.path(), 365);
        let now = OffsetDateTime::now_utc();
        let leaf = issue_leaf(&ca, &request(90), now).expect("issue");
        assert_eq!(leaf.info.sans, request(90).sans);
        assert_eq!(leaf.info.common_name.as_deref(), Some("localhost"));
        assert!(!leaf.info.is_ca);
        assert!(leaf.info.not_before < now, "backdated for clock skew");
        // Certificate times have whole seconds, so "90 days from now" may read as 89 whole days.
        assert!((89..=90).contains(&leaf.info.days_left(now)));
        assert_eq!(leaf.info.authority_key_id, ca.current.info.subject_key_id);
        assert!(leaf.info.subject_key_id.is_some());
        assert!(!leaf.clamped_to_ca);

        let x509 = X509::from_pem(leaf.cert_pem.as_bytes()).expect("pem");
        assert!(
            verify_chain(&x509, &[], std::slice::from_ref(&ca.current.x509))
                .expect("verify")
                .is_verified()
        );
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca(dir.path(), 10);
        let leaf = issue_leaf(&ca, &request(90), OffsetDateTime::now_utc()).expect("issue");
        assert!(leaf.clamped_to_ca);
        assert_eq!(leaf.info.not_after, ca.current.info.not_after);
    }

    #[test]
    fn the_ca_directory_is_refused_as_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        ca(dir.path(), 10);
        let err = prepare_dirs(dir.path(), dir.path()).expect_err("same dir");
        assert!(err.to_string().contains("is a CA directory"), "{err}");
        let missing = prepare_dirs(&dir.path().join("nope"), &dir.path().join("out"))
            .expect_err("missing CA");
        assert!(err_mentions(&missing, "ca init"), "{missing}");
    }

    fn err_mentions(err: &CertsError, what: &str) -> bool {
        err.to_string().contains(what)
    }
}
