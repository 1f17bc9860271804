//! The CA directory: creating a CA, loading it to sign, and rotating to a new one with an
//! overlap during which clients that trust either CA keep working.
//!
//! Files in a CA directory:
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.crt` | the current CA, self-signed | 0644 |
//! | `ca.key` | its key; never copied anywhere else | 0600 |
//! | `ca-cross.crt` | during an overlap: the current CA's key and name, certified by the previous CA | 0644 |
//! | `ca-previous.crt` | during an overlap: the previous CA, self-signed | 0644 |
//!
//! CA rotation design (`rotate --new-ca`): the new CA gets a new key and a new name (` G2`,
//! ` G3`, ...). Two certificates are made for it with the same subject, key and subject key id:
//! a self-signed one (`ca.crt`) and one signed by the previous CA (`ca-cross.crt`). Leaves are
//! issued by the new CA and served as `leaf, cross` while the overlap lasts, so:
//!
//! * a client trusting only the OLD CA builds `leaf -> cross -> old CA`;
//! * a client trusting only the NEW CA finds the leaf's issuer in its trust store and stops
//!   there (`leaf -> new CA`; OpenSSL >= 1.1 and BoringSSL try trusted issuers first, and path
//!   builders such as Go's and rustls' try both);
//! * the `ca.crt` written next to leaves is the bundle `new CA + old CA`, so clients that reload
//!   it trust both.
//!
//! The overlap lasts until `rotate --finish-ca-rotation` drops the cross certificate and the
//! previous CA; a second `--new-ca` also ends it (only one previous generation is kept).

use std::fs;
use std::path::{Path, PathBuf};

use boring::pkey::PKey;
use boring::x509::X509;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::atomic_write::{sync_dir, write_atomic, DirLock, CERT_MODE, KEY_MODE};
use crate::certinfo::{format_time, random_serial, CertInfo};
use crate::error::{CertsError, Result};
use crate::keys::{self, KeyAlgorithm};
use crate::layout::CA_CRT;
use crate::pem::PemFile;
use crate::verify::{key_matches, verify_chain};

pub const CA_KEY: &str = "ca.key";
pub const CA_CROSS: &str = "ca-cross.crt";
pub const CA_PREVIOUS: &str = "ca-previous.crt";

pub const DEFAULT_CA_NAME: &str = "Record Platform Dev CA";
pub const DEFAULT_CA_DAYS: u32 = 3650;

/// How far not-before is set in the past, so a peer whose clock is a little behind ours does
/// not reject a certificate made a moment ago ("not yet valid"). One hour matches common CA
/// practice and covers any sane NTP drift.
pub const BACKDATE: Duration = Duration::hours(1);

/// What `ca init` does when the directory already holds a CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Keep,
    Replace,
}

#[derive(Clone, Debug)]
pub struct CaInit {
    pub name: String,
    pub days: u32,
    pub key: KeyAlgorithm,
    pub if_exists: IfExists,
}

/// Options for the new CA of a `rotate --new-ca`.
#[derive(Clone, Debug, Default)]
pub struct NewCa {
    /// Subject CN; defaults to the current name with the generation suffix bumped.
    pub name: Option<String>,
    pub days: Option<u32>,
    /// Defaults to the current CA's algorithm.
    pub key: Option<KeyAlgorithm>,
}

/// A certificate with its PEM text and parsed fields.
#[derive(Clone, Debug)]
pub struct CaCert {
    pub pem: String,
    pub x509: X509,
    pub info: CertInfo,
}

impl CaCert {
    fn from_der(der: &[u8]) -> Result<Self> {
        let x509 = X509::from_der(der)?;
        Ok(CaCert {
            pem: String::from_utf8_lossy(&x509.to_pem()?).into_owned(),
            info: CertInfo::from_der(der)?,
            x509,
        })
    }
}

/// A loaded, validated CA directory.
pub struct CertificateAuthority {
    pub dir: PathBuf,
    pub current: CaCert,
    key: KeyPair,
    /// The current CA certified by the previous one; present only during an overlap.
    pub cross: Option<CaCert>,
    /// The previous CA; present only during an overlap.
    pub previous: Option<CaCert>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("current", &self.current.info.subject)
            .field("cross", &self.cross.as_ref().map(|c| &c.info.serial))
            .field("previous", &self.previous.as_ref().map(|c| &c.info.subject))
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// `ca init`: creates a self-signed CA in `dir`. Returns the CA and whether it was created
    /// (false when `IfExists::Keep` found a valid one).
    pub fn init(dir: &Path, opts: &CaInit, now: OffsetDateTime) -> Result<(Self, bool)> {
        let _lock = DirLock::acquire(dir)?;
        let exists = dir.join(CA_CRT).exists() || dir.join(CA_KEY).exists();
        if exists {
            match opts.if_exists {
                IfExists::Fail => {
                    return Err(CertsError::CaExists {
                        dir: dir.to_owned(),
                    })
                }
                IfExists::Keep => return Ok((Self::load(dir, now)?, false)),
                IfExists::Replace => {}
            }
        }
        let key = opts.key.generate()?;
        let params = ca_params(&opts.name, now, opts.days)?;
        let cert = params.self_signed(&key)?;
        // Leftovers of an earlier CA's overlap belong to a different key; drop them first so
        // a crash part-way never pairs them with the new CA.
        remove_if_present(&dir.join(CA_CROSS))?;
        remove_if_present(&dir.join(CA_PREVIOUS))?;
        write_atomic(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), KEY_MODE)?;
        write_atomic(&dir.join(CA_CRT), cert.pem().as_bytes(), CERT_MODE)?;
        Ok((Self::load(dir, now)?, true))
    }

    /// Loads and validates `dir`: the CA certificate must be a CA, valid now, and match its key.
    pub fn load(dir: &Path, now: OffsetDateTime) -> Result<Self> {
        let crt_path = dir.join(CA_CRT);
        let key_path = dir.join(CA_KEY);
        if !crt_path.exists() {
            return Err(CertsError::Missing {
                path: crt_path,
                hint: format!(
                    "no CA there; create one with `certs-tool ca init --dir {}`",
                    dir.display()
                ),
            });
        }
        let crt_file = PemFile::load_certs(&crt_path)?;
        let current = CaCert::from_der(&crt_file.certs[0])?;
        if !current.info.is_ca {
            return Err(CertsError::bad_file(
                &crt_path,
                "not a CA certificate (basicConstraints CA:TRUE missing)",
            ));
        }
        if current.info.not_after <= now {
            return Err(CertsError::CaNotValid {
                path: crt_path,
                reason: format!("expired {}", format_time(current.info.not_after)),
            });
        }
        let key_pem = fs::read_to_string(&key_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CertsError::Missing {
                path: key_path.clone(),
                hint: "the CA key must sit beside ca.crt".to_owned(),
            },
            _ => CertsError::read(&key_path, e),
        })?;
        let boring_key = PKey::private_key_from_pem(key_pem.as_bytes())
            .map_err(|_| CertsError::bad_file(&key_path, "not a PEM private key"))?;
        if !key_matches(&current.x509, &boring_key)? {
            return Err(CertsError::KeyMismatch {
                cert: crt_path,
                key: key_path,
            });
        }
        let key = keys::signing_key_from_pem(&key_path, &key_pem)?;

        let previous = load_optional(&dir.join(CA_PREVIOUS))?.filter(|prev| {
            // A copy of the current CA (an interrupted rotation) or an expired one adds nothing.
            prev.pem != current.pem && prev.info.not_after > now
        });
        let cross = match (&previous, load_optional(&dir.join(CA_CROSS))?) {
            (Some(prev), Some(cross)) if certifies_current(&cross, &current, prev, now)? => {
                Some(cross)
            }
            _ => None,
        };
        Ok(CertificateAuthority {
            dir: dir.to_owned(),
            current,
            key,
            cross,
            previous,
        })
    }

    /// An rcgen issuer for signing with this CA (name and key id taken from `ca.crt`).
    pub fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Ok(Issuer::from_ca_cert_pem(&self.current.pem, &self.key)?)
    }

    pub fn key_algorithm(&self) -> KeyAlgorithm {
        PKey::private_key_from_der(self.key.serialized_der())
            .ok()
            .and_then(|k| KeyAlgorithm::of(&k))
            .unwrap_or_default()
    }

    /// Intermediates to serve after a leaf: the cross certificate during an overlap, else none
    /// (the root itself is never sent; clients must already trust it).
    pub fn chain_pem(&self) -> String {
        self.cross
            .as_ref()
            .map(|c| c.pem.clone())
            .unwrap_or_default()
    }

    /// The trust bundle written as `ca.crt` next to leaves: current CA, then the previous one.
    pub fn bundle_pem(&self) -> String {
        let mut out = self.current.pem.clone();
        if let Some(prev) = &self.previous {
            out.push_str(&prev.pem);
        }
        out
    }

    pub fn in_overlap(&self) -> bool {
        self.cross.is_some()
    }

    /// `rotate --new-ca`: makes a new CA, cross-signed by this one, and rewrites the directory.
    /// The caller holds the directory lock.
    pub fn rotate(self, opts: &NewCa, now: OffsetDateTime) -> Result<Self> {
        let name = match &opts.name {
            Some(name) => name.clone(),
            None => next_generation_name(
                self.current
                    .info
                    .common_name
                    .as_deref()
                    .unwrap_or(DEFAULT_CA_NAME),
            ),
        };
        if Some(name.as_str()) == self.current.info.common_name.as_deref() {
            // Two CAs with one name make path building pick by key id alone; many clients
            // then fail in confusing ways.
            return Err(CertsError::Usage(format!(
                "the new CA needs a name different from the current one ({name:?})"
            )));
        }
        let key = opts
            .key
            .unwrap_or_else(|| self.key_algorithm())
            .generate()?;
        let params = ca_params(&name, now, opts.days.unwrap_or(DEFAULT_CA_DAYS))?;
        let self_signed = params.self_signed(&key)?;

        // Same subject, key and key id as the self-signed one; issued by the current CA. It
        // cannot outlive its issuer, so it ends when the current CA does.
        let mut cross_params = params.clone();
        cross_params.serial_number = Some(random_serial()?);
        cross_params.not_after = params.not_after.min(self.current.info.not_after);
        let cross = cross_params.signed_by(&key, &self.issuer()?)?;

        // Order: the two new public files first, so a crash before the key+cert pair changes
        // leaves the current CA fully usable (load() ignores a cross that does not certify it).
        write_atomic(
            &self.dir.join(CA_PREVIOUS),
            self.current.pem.as_bytes(),
            CERT_MODE,
        )?;
        write_atomic(&self.dir.join(CA_CROSS), cross.pem().as_bytes(), CERT_MODE)?;
        write_atomic(
            &self.dir.join(CA_KEY),
            key.serialize_pem().as_bytes(),
            KEY_MODE,
        )?;
        write_atomic(
            &self.dir.join(CA_CRT),
            self_signed.pem().as_bytes(),
            CERT_MODE,
        )?;
        Self::load(&self.dir, now)
    }

    /// `rotate --finish-ca-rotation`: ends the overlap; only the current CA remains.
    pub fn finish_rotation(self, now: OffsetDateTime) -> Result<Self> {
        remove_if_present(&self.dir.join(CA_CROSS))?;
        remove_if_present(&self.dir.join(CA_PREVIOUS))?;
        sync_dir(&self.dir)?;
        Self::load(&self.dir, now)
    }
}

/// Parameters of a CA certificate valid from `now - BACKDATE` for `days`.
fn ca_params(name: &str, now: OffsetDateTime, days: u32) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    // No pathLenConstraint: during an overlap the cross certificate is an intermediate below
    // the previous root, which a pathlen:0 on that root would forbid (RFC 5280 §4.2.1.9).
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    Ok(params)
}

/// `Name` -> `Name G2`, `Name G2` -> `Name G3`.
pub fn next_generation_name(current: &str) -> String {
    if let Some((base, generation)) = current.rsplit_once(" G") {
        if let Ok(n) = generation.parse::<u32>() {
            return format!("{base} G{}", n.saturating_add(1));
        }
    }
    format!("{current} G2")
}

/// Whether `cross` is the current CA (same name and key) certified by `previous`, valid now.
fn certifies_current(
    cross: &CaCert,
    current: &CaCert,
    previous: &CaCert,
    now: OffsetDateTime,
) -> Result<bool> {
    let current_key = current.x509.public_key()?;
    let same_key = cross.x509.public_key()?.public_eq(&current_key);
    Ok(same_key
        && cross.info.subject == current.info.subject
        && cross.info.not_after > now
        && verify_chain(&cross.x509, &[], std::slice::from_ref(&previous.x509))?.is_verified())
}

fn load_optional(path: &Path) -> Result<Option<CaCert>> {
    if !path.exists() {
        return Ok(None);
    }
    let file = PemFile::load_certs(path)?;
    Ok(Some(CaCert::from_der(&file.certs[0])?))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CertsError::write(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn init(dir: &Path, if_exists: IfExists) -> Result<(CertificateAuthority, bool)> {
        CertificateAuthority::init(
            dir,
            &CaInit {
                name: "Test CA".into(),
                days: 30,
                key: KeyAlgorithm::EcdsaP256,
                if_exists,
            },
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn init_writes_a_valid_ca_with_private_key_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, created) = init(dir.path(), IfExists::Fail).expect("init");
        assert!(created);
        assert!(ca.current.info.is_ca && ca.current.info.self_signed);
        assert_eq!(ca.current.info.common_name.as_deref(), Some("Test CA"));
        assert_eq!(
            ca.current.info.subject_key_id,
            ca.current.info.authority_key_id
        );
        let mode = fs::metadata(dir.path().join(CA_KEY))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!ca.in_overlap());
    }

    #[test]
    fn init_refuses_keeps_or_replaces_an_existing_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = init(dir.path(), IfExists::Fail).expect("init");
        assert!(matches!(
            init(dir.path(), IfExists::Fail),
            Err(CertsError::CaExists { .. })
        ));
        let (kept, created) = init(dir.path(), IfExists::Keep).expect("keep");
        assert!(!created);
        assert_eq!(kept.current.pem, first.current.pem);
        let (replaced, created) = init(dir.path(), IfExists::Replace).expect("replace");
        assert!(created);
        assert_ne!(replaced.current.pem, first.current.pem);
    }

    #[test]
    fn rotation_cross_signs_the_new_ca_and_finishing_ends_the_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, _) = init(dir.path(), IfExists::Fail).expect("init");
        let old_x509 = old.current.x509.clone();
        let now = OffsetDateTime::now_utc();
        let new = old.rotate(&NewCa::default(), now).expect("rotate");
        assert_eq!(new.current.info.common_name.as_deref(), Some("Test CA G2"));
        let cross = new.cross.as_ref().expect("cross during overlap");
        assert_eq!(cross.info.subject, new.current.info.subject);
        assert_eq!(cross.info.subject_key_id, new.current.info.subject_key_id);
        assert!(verify_chain(&cross.x509, &[], &[old_x509])
            .expect("verify")
            .is_verified());
        assert!(new
            .bundle_pem()
            .contains(&new.previous.as_ref().expect("prev").pem));

        let done = new.finish_rotation(now).expect("finish");
        assert!(!done.in_overlap());
        assert!(done.previous.is_none());
        assert!(!dir.path().join(CA_CROSS).exists());
    }

    #[test]
    fn load_rejects_a_key_that_is_not_the_cas() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), IfExists::Fail).expect("init");
        let stranger = KeyPair::generate().expect("keygen");
        fs::write(dir.path().join(CA_KEY), stranger.serialize_pem()).expect("write");
        let err = CertificateAuthority::load(dir.path(), OffsetDateTime::now_utc())
            .expect_err("mismatch");
        assert!(matches!(err, CertsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn generation_names_count_up() {
        assert_eq!(next_generation_name("Dev CA"), "Dev CA G2");
        assert_eq!(next_generation_name("Dev CA G2"), "Dev CA G3");
        assert_eq!(next_generation_name("Dev CA G"), "Dev CA G G2");
    }
}
