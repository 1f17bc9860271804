//! `CertStore`: SNI -> certificate chain + key, behind `ArcSwap`.
//!
//! Both TLS front ends read it on every handshake: Pingora's certificate callback (TCP)
//! and the QUIC side's select-certificate callback. A reload builds a complete new
//! [`CertSet`], validates it (key matches, chain links, dates, SAN coverage) and swaps it
//! in with one store; a bad set is rejected and the old one keeps serving. Handshakes
//! already past certificate selection keep the set they loaded.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use boring::pkey::{PKey, Private};
use boring::ssl::{NameType, SslRef};
use boring::x509::X509;
use serde::Serialize;

use crate::config::{CertPaths, TlsSection};
use crate::metrics::EdgeMetrics;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found ({detail})")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path}: not a PEM private key ({detail})")]
    BadKey { path: PathBuf, detail: String },
    #[error("{key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: chain is broken at position {position}: certificate {position} was not issued by certificate {next}")]
    BrokenChain {
        path: PathBuf,
        position: usize,
        next: usize,
    },
    #[error("{path}: certificate expired at {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("{path}: certificate is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{path}: certificate SANs {sans:?} do not cover '{host}'")]
    SanMismatch {
        path: PathBuf,
        host: String,
        sans: Vec<String>,
    },
    #[error("{path}: cannot parse certificate: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("generating the dev certificate: {0}")]
    Generate(String),
}

/// What an operator sees about a served certificate (admin `GET /certs`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub serial: String,
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub not_after_unix: i64,
    pub not_before_unix: i64,
    pub key_type: String,
    /// `None` for the generated dev certificate.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// A validated chain (leaf first) and its key, ready to put on a handshake.
pub struct CertifiedKey {
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    pub info: CertInfo,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl CertifiedKey {
    /// Puts this certificate, its chain and key on a handshake in progress.
    pub fn apply(&self, ssl: &mut SslRef) -> Result<(), boring::error::ErrorStack> {
        ssl.set_certificate(&self.leaf)?;
        for intermediate in &self.chain {
            ssl.add_chain_cert(intermediate)?;
        }
        ssl.set_private_key(&self.key)
    }

    /// Loads and validates one chain + key from PEM files.
    pub fn from_files(paths: &CertPaths) -> Result<Self, CertError> {
        let cert_pem = std::fs::read(&paths.cert).map_err(|source| CertError::Read {
            path: paths.cert.clone(),
            source,
        })?;
        let key_pem = std::fs::read(&paths.key).map_err(|source| CertError::Read {
            path: paths.key.clone(),
            source,
        })?;
        Self::from_pem(&cert_pem, &key_pem, Some(&paths.cert), Some(&paths.key))
    }

    /// Parses and validates PEM text. The paths only label errors and [`CertInfo`].
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_path: Option<&Path>,
        key_path: Option<&Path>,
    ) -> Result<Self, CertError> {
        let label = cert_path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<generated>"));
        let key_label = key_path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<generated key>"));
        let mut certs = X509::stack_from_pem(cert_pem).map_err(|e| CertError::NoCertificate {
            path: label.clone(),
            detail: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(CertError::NoCertificate {
                path: label,
                detail: "the file holds no CERTIFICATE block".into(),
            });
        }
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| CertError::BadKey {
            path: key_label.clone(),
            detail: e.to_string(),
        })?;
        let leaf = certs.remove(0);
        let leaf_public = leaf.public_key().map_err(|e| CertError::Parse {
            path: label.clone(),
            detail: e.to_string(),
        })?;
        if !leaf_public.public_eq(&key) {
            return Err(CertError::KeyMismatch {
                cert: label,
                key: key_label,
            });
        }
        // Each certificate must be issued (name + key id) and signed by the next one.
        let mut previous = &leaf;
        for (i, next) in certs.iter().enumerate() {
            let signed = next
                .public_key()
                .and_then(|public| previous.verify(&public))
                .unwrap_or(false);
            if next.issued(previous).is_err() || !signed {
                return Err(CertError::BrokenChain {
                    path: label,
                    position: i,
                    next: i + 1,
                });
            }
            previous = next;
        }
        // The chain file may end with a self-signed root; clients already have it.
        if let Some(last) = certs.last() {
            if last.issued(last).is_ok() {
                certs.pop();
            }
        }
        let info = describe(&leaf, &label, cert_path, key_path)?;
        let now = unix_now();
        if info.not_after_unix < now {
            return Err(CertError::Expired {
                path: label,
                not_after: info.not_after,
            });
        }
        // A little skew tolerance: a freshly issued leaf may reach a node whose clock is behind.
        if info.not_before_unix > now + 300 {
            return Err(CertError::NotYetValid {
                path: label,
                not_before: info.not_before,
            });
        }
        Ok(Self {
            leaf,
            chain: certs,
            key,
            info,
        })
    }

    /// True if one of the SANs covers `host` (RFC 6125: a wildcard covers one label).
    pub fn covers(&self, host: &str) -> bool {
        self.info.sans.iter().any(|san| san_matches(san, host))
    }

    /// A self-signed ECDSA P-256 certificate for localhost, for the embedded default config.
    pub fn generate_dev() -> Result<Self, CertError> {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let key = rcgen::KeyPair::generate().map_err(|e| CertError::Generate(e.to_string()))?;
        let mut params =
            rcgen::CertificateParams::new(names).map_err(|e| CertError::Generate(e.to_string()))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "record-platform edge (generated, dev only)",
        );
        let cert = params
            .self_signed(&key)
            .map_err(|e| CertError::Generate(e.to_string()))?;
        Self::from_pem(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            None,
            None,
        )
    }
}

fn describe(
    leaf: &X509,
    label: &Path,
    cert_path: Option<&Path>,
    key_path: Option<&Path>,
) -> Result<CertInfo, CertError> {
    let der = leaf.to_der().map_err(|e| CertError::Parse {
        path: label.to_path_buf(),
        detail: e.to_string(),
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Parse {
        path: label.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    sans.push(dns.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let key_type = match cert
        .public_key()
        .algorithm
        .algorithm
        .to_id_string()
        .as_str()
    {
        "1.2.840.10045.2.1" => "ecdsa",
        "1.2.840.113549.1.1.1" => "rsa",
        "1.3.101.112" => "ed25519",
        _ => "other",
    }
    .to_string();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        sans,
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        not_after_unix: cert.validity().not_after.timestamp(),
        not_before_unix: cert.validity().not_before.timestamp(),
        key_type,
        cert_file: cert_path.map(Path::to_path_buf),
        key_file: key_path.map(Path::to_path_buf),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 6125 section 6.4.3: `*.example.com` matches `a.example.com`, not `a.b.example.com`
/// nor `example.com`.
pub fn san_matches(san: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let san = san.to_ascii_lowercase();
    if let Some(suffix) = san.strip_prefix("*.") {
        return host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix);
    }
    san == host
}

/// One complete, validated set of certificates: a default plus SNI entries.
#[derive(Debug)]
pub struct CertSet {
    pub default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(suffix after "*.", cert)`.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// Fingerprint of the source files' bytes, to skip no-op reloads.
    fingerprint: u64,
}

impl CertSet {
    /// The certificate for an SNI name (exact, then wildcard, then the default).
    pub fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(cert) = self.exact.get(&name) {
            return cert;
        }
        if let Some((_, rest)) = name.split_once('.') {
            if let Some((_, cert)) = self.wildcard.iter().find(|(suffix, _)| suffix == rest) {
                return cert;
            }
        }
        &self.default
    }

    /// `(sni label, cert)` for every entry, the default as `*`.
    pub fn entries(&self) -> Vec<(String, Arc<CertifiedKey>)> {
        let mut out = vec![("*".to_string(), self.default.clone())];
        let mut exact: Vec<_> = self
            .exact
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        exact.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(exact);
        out.extend(
            self.wildcard
                .iter()
                .map(|(suffix, cert)| (format!("*.{suffix}"), cert.clone())),
        );
        out
    }

    /// Loads every file named in `[tls]` and validates the whole set.
    pub fn load(tls: &TlsSection, generation: u64) -> Result<Self, CertError> {
        let fingerprint = fingerprint_files(tls);
        let default = match &tls.default {
            Some(paths) => Arc::new(CertifiedKey::from_files(paths)?),
            None => Arc::new(CertifiedKey::generate_dev()?),
        };
        for host in &tls.required_hosts {
            if !default.covers(host) {
                return Err(CertError::SanMismatch {
                    path: default
                        .info
                        .cert_file
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("<generated>")),
                    host: host.clone(),
                    sans: default.info.sans.clone(),
                });
            }
        }
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for entry in &tls.certs {
            let cert = Arc::new(CertifiedKey::from_files(&CertPaths {
                cert: entry.cert.clone(),
                key: entry.key.clone(),
            })?);
            for name in &entry.server_names {
                let name = name.to_ascii_lowercase();
                if !cert.covers(&name) && !cert.info.sans.contains(&name) {
                    return Err(CertError::SanMismatch {
                        path: entry.cert.clone(),
                        host: name,
                        sans: cert.info.sans.clone(),
                    });
                }
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.push((suffix.to_string(), cert.clone())),
                    None => {
                        exact.insert(name, cert.clone());
                    }
                }
            }
        }
        Ok(Self {
            default,
            exact,
            wildcard,
            generation,
            loaded_at: SystemTime::now(),
            fingerprint,
        })
    }
}

/// A cheap content fingerprint of the files a `[tls]` section names (0 when one is
/// unreadable, which never equals a real fingerprint in practice and forces a reload).
fn fingerprint_files(tls: &TlsSection) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut paths: Vec<&Path> = Vec::new();
    if let Some(default) = &tls.default {
        paths.push(&default.cert);
        paths.push(&default.key);
    }
    for entry in &tls.certs {
        paths.push(&entry.cert);
        paths.push(&entry.key);
        entry.server_names.hash(&mut hasher);
    }
    for path in paths {
        path.hash(&mut hasher);
        match std::fs::read(path) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(_) => return 0,
        }
    }
    tls.required_hosts.hash(&mut hasher);
    hasher.finish()
}

/// Result of [`CertStore::reload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertReload {
    Applied { generation: u64 },
    Unchanged,
}

/// A validated certificate set not yet serving (see [`CertStore::prepare`]).
pub struct PreparedCerts(CertSet);

/// The hot-swappable certificate store shared by the TCP and QUIC front ends.
pub struct CertStore {
    current: ArcSwap<CertSet>,
    generation: AtomicU64,
    metrics: Arc<EdgeMetrics>,
    /// Serialises reloads (file watcher, SIGHUP and the admin endpoint may race).
    reload_lock: tokio::sync::Mutex<()>,
}

impl CertStore {
    pub fn new(tls: &TlsSection, metrics: Arc<EdgeMetrics>) -> Result<Arc<Self>, CertError> {
        let set = CertSet::load(tls, 1)?;
        let store = Arc::new(Self {
            current: ArcSwap::from_pointee(set),
            generation: AtomicU64::new(1),
            metrics,
            reload_lock: tokio::sync::Mutex::new(()),
        });
        store.export_expiry();
        Ok(store)
    }

    /// The set in use now.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// Puts the right certificate on a handshake. Called on every TLS handshake (TCP and
    /// QUIC): one atomic load and a hash lookup, no lock.
    pub fn apply(&self, ssl: &mut SslRef) -> bool {
        let set = self.current.load();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_owned);
        let cert = set.select(sni.as_deref());
        match cert.apply(ssl) {
            Ok(()) => true,
            Err(err) => {
                self.metrics
                    .tls_handshake_failures
                    .with_label_values(&["no_certificate"])
                    .inc();
                tracing::error!(%err, sni = ?sni, "cannot put the certificate on the handshake");
                false
            }
        }
    }

    /// Rebuilds the set from `[tls]` and swaps it in if it validates and changed
    /// (`prepare` then `install`, for a certificates-only reload).
    pub async fn reload(&self, tls: &TlsSection) -> Result<CertReload, CertError> {
        let _serialised = self.reload_lock.lock().await;
        match self.prepare(tls).await? {
            Some(set) => Ok(self.install(set)),
            None => Ok(CertReload::Unchanged),
        }
    }

    /// Loads and validates the set `[tls]` names WITHOUT installing it: `None` when the
    /// files are unchanged. A config reload prepares certificates first and installs them
    /// only once everything else in the new config validated too.
    pub async fn prepare(&self, tls: &TlsSection) -> Result<Option<PreparedCerts>, CertError> {
        let current = self.current.load_full();
        if tls.default.is_some()
            && fingerprint_files(tls) == current.fingerprint
            && current.fingerprint != 0
        {
            self.metrics
                .cert_reloads
                .with_label_values(&["unchanged"])
                .inc();
            return Ok(None);
        }
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        // Reading and verifying files is blocking work; keep it off the async workers.
        let tls_owned = tls.clone();
        let loaded = tokio::task::spawn_blocking(move || CertSet::load(&tls_owned, generation))
            .await
            .map_err(|e| CertError::Generate(format!("certificate loader panicked: {e}")))?;
        match loaded {
            Ok(set) => Ok(Some(PreparedCerts(set))),
            Err(err) => {
                self.metrics
                    .cert_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                tracing::error!(%err, "certificate reload rejected; the previous certificates keep serving");
                Err(err)
            }
        }
    }

    /// Swaps a prepared set in (one atomic store; handshakes in flight keep the old one).
    pub fn install(&self, prepared: PreparedCerts) -> CertReload {
        let set = prepared.0;
        let generation = set.generation;
        self.generation.store(generation, Ordering::Relaxed);
        let serial = set.default.info.serial.clone();
        self.current.store(Arc::new(set));
        self.export_expiry();
        self.metrics
            .cert_reloads
            .with_label_values(&["applied"])
            .inc();
        tracing::info!(generation, default_serial = %serial, "certificates reloaded");
        CertReload::Applied { generation }
    }

    fn export_expiry(&self) {
        let set = self.current.load();
        self.metrics.cert_not_after.reset();
        for (sni, cert) in set.entries() {
            self.metrics
                .cert_not_after
                .with_label_values(&[&sni, &cert.info.serial])
                .set(cert.info.not_after_unix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SniCertConfig;

    fn tls_with_default(pki: &testkit::TestPki, sans: &[&str]) -> TlsSection {
        let leaf = pki.issue("default", sans).expect("issue");
        TlsSection {
            default: Some(CertPaths {
                cert: leaf.cert,
                key: leaf.key,
            }),
            ..TlsSection::default()
        }
    }

    #[test]
    fn loads_a_chain_and_drops_the_self_signed_root() {
        let pki = testkit::TestPki::new().expect("pki");
        let set = CertSet::load(&tls_with_default(&pki, &["localhost"]), 1).expect("load");
        assert!(set.default.chain.is_empty(), "root must not be sent");
        assert_eq!(set.default.info.sans, ["localhost"]);
        assert_eq!(set.default.info.key_type, "ecdsa");
        assert!(set.default.info.not_after_unix > unix_now());
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let pki = testkit::TestPki::new().expect("pki");
        let a = pki.issue("a", &["localhost"]).expect("a");
        let b = pki.issue("b", &["localhost"]).expect("b");
        let err = CertifiedKey::from_files(&CertPaths {
            cert: a.cert,
            key: b.key,
        })
        .expect_err("mismatch");
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn chain_from_another_ca_is_broken() {
        let pki = testkit::TestPki::new().expect("pki");
        let other = testkit::TestPki::new().expect("other pki");
        let leaf = pki.issue("leaf", &["localhost"]).expect("leaf");
        let bad_chain = format!("{}{}", leaf.cert_pem, other.ca_cert_pem);
        let key = std::fs::read(&leaf.key).expect("key");
        let err = CertifiedKey::from_pem(bad_chain.as_bytes(), &key, None, None)
            .expect_err("broken chain");
        assert!(
            matches!(err, CertError::BrokenChain { position: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = CertifiedKey::from_pem(b"not pem", b"also not", None, None).expect_err("garbage");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn sni_selection_prefers_exact_then_wildcard_then_default() {
        let pki = testkit::TestPki::new().expect("pki");
        let exact = pki.issue("exact", &["api.example.com"]).expect("exact");
        let wild = pki.issue("wild", &["*.example.com"]).expect("wild");
        let mut tls = tls_with_default(&pki, &["localhost"]);
        tls.certs = vec![
            SniCertConfig {
                server_names: vec!["api.example.com".into()],
                cert: exact.cert,
                key: exact.key,
            },
            SniCertConfig {
                server_names: vec!["*.example.com".into()],
                cert: wild.cert,
                key: wild.key,
            },
        ];
        let set = CertSet::load(&tls, 1).expect("load");
        assert_eq!(
            set.select(Some("API.example.com.")).info.sans,
            ["api.example.com"]
        );
        assert_eq!(
            set.select(Some("www.example.com")).info.sans,
            ["*.example.com"]
        );
        assert_eq!(set.select(Some("a.b.example.com")).info.sans, ["localhost"]);
        assert_eq!(set.select(None).info.sans, ["localhost"]);
    }

    #[test]
    fn sni_entry_not_covered_by_its_cert_is_rejected() {
        let pki = testkit::TestPki::new().expect("pki");
        let leaf = pki.issue("leaf", &["api.example.com"]).expect("leaf");
        let mut tls = tls_with_default(&pki, &["localhost"]);
        tls.certs = vec![SniCertConfig {
            server_names: vec!["shop.example.com".into()],
            cert: leaf.cert,
            key: leaf.key,
        }];
        let err = CertSet::load(&tls, 1).expect_err("san mismatch");
        assert!(matches!(err, CertError::SanMismatch { .. }), "{err}");
    }

    #[test]
    fn required_hosts_must_be_covered_by_the_default() {
        let pki = testkit::TestPki::new().expect("pki");
        let mut tls = tls_with_default(&pki, &["localhost"]);
        tls.required_hosts = vec!["record.local".into()];
        assert!(matches!(
            CertSet::load(&tls, 1),
            Err(CertError::SanMismatch { .. })
        ));
    }

    #[test]
    fn wildcard_matching_follows_rfc_6125() {
        assert!(san_matches("*.example.com", "a.example.com"));
        assert!(!san_matches("*.example.com", "example.com"));
        assert!(!san_matches("*.example.com", "a.b.example.com"));
        assert!(san_matches("localhost", "LOCALHOST"));
    }

    #[test]
    fn generated_dev_certificate_covers_localhost() {
        let dev = CertifiedKey::generate_dev().expect("generate");
        assert!(dev.covers("localhost"));
        assert!(dev.covers("127.0.0.1"));
    }

    #[tokio::test]
    async fn bad_reload_keeps_the_old_set_and_good_reload_swaps() {
        let pki = testkit::TestPki::new().expect("pki");
        let tls = tls_with_default(&pki, &["localhost"]);
        let store = CertStore::new(&tls, EdgeMetrics::new()).expect("store");
        let first_serial = store.current().default.info.serial.clone();

        let paths = tls.default.clone().expect("paths");
        std::fs::write(&paths.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("corrupt");
        assert!(store.reload(&tls).await.is_err());
        assert_eq!(store.current().default.info.serial, first_serial);

        let fresh = pki.issue("default", &["localhost"]).expect("reissue");
        assert_eq!(fresh.cert, paths.cert, "same file names");
        assert!(matches!(
            store.reload(&tls).await.expect("reload"),
            CertReload::Applied { generation: 2 }
        ));
        assert_ne!(store.current().default.info.serial, first_serial);
        assert_eq!(
            store.reload(&tls).await.expect("noop"),
            CertReload::Unchanged
        );
    }
}
