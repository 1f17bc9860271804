//! Real TLS for tests: a throw-away CA issuing leaf certificates, and clients (rustls — a
//! TLS stack independent of the edge's BoringSSL — and tonic) that trust only it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

/// A throw-away CA and a leaf certificate (ECDSA P-256) written as PEM files.
pub struct TestPki {
    pub dir: TempDir,
    pub ca_cert_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

/// Paths of an issued leaf.
#[derive(Debug, Clone)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The leaf certificate alone, PEM.
    pub cert_pem: String,
}

impl TestPki {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "record-platform test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate()?;
        let ca_cert = params.self_signed(&ca_key)?;
        let ca_cert_pem = ca_cert.pem();
        fs::write(dir.path().join("ca.crt"), &ca_cert_pem)?;
        Ok(Self {
            dir,
            ca_cert_pem,
            ca_params: params,
            ca_key,
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Issues a leaf for `sans` into `<dir>/<name>.crt` (leaf + CA chain) and `<name>.key`.
    pub fn issue(&self, name: &str, sans: &[&str]) -> Result<LeafFiles> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            sans.first().copied().unwrap_or(name),
        );
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate()?;
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        write_file(&cert_path, &format!("{}{}", cert.pem(), self.ca_cert_pem))?;
        write_file(&key_path, &key.serialize_pem())?;
        Ok(LeafFiles {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
        })
    }
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<()> {
    let mut file = fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Which HTTP version a [`https_client`] insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// An HTTPS client (rustls, an independent TLS stack) trusting only the CA(s) in `ca_pem`, pinned to
/// one HTTP version via ALPN. Redirects are not followed.
pub fn https_client(ca_pem: &str, version: HttpVersion) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
    // A bundle (old + new CA during a CA rotation) is trusted as a whole.
    for ca in reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())? {
        builder = builder.add_root_certificate(ca);
    }
    let builder = builder
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    let builder = match version {
        HttpVersion::Http1 => builder.http1_only(),
        // ALPN "h2" only: the server must negotiate HTTP/2.
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
    };
    Ok(builder.build()?)
}

/// A tonic channel over TLS to `https://<domain>:<port>` connecting to 127.0.0.1,
/// trusting only `ca_pem`.
pub async fn grpc_tls_channel(
    port: u16,
    domain: &str,
    ca_pem: &str,
) -> Result<tonic::transport::Channel> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name(domain);
    let channel = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(20))
        .connect()
        .await?;
    Ok(channel)
}

/// A plaintext (h2c) tonic channel to 127.0.0.1:`port`.
pub async fn grpc_h2c_channel(port: u16) -> Result<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .timeout(Duration::from_secs(20))
        .connect()
        .await?;
    Ok(channel)
}

/// A raw TLS connection (rustls) to `127.0.0.1:port` for server name `localhost`, trusting
/// only `ca_pem`, offering `alpn`: for tests that must control every byte (slow clients,
/// half-sent requests).
pub async fn tls_connect(
    ca_pem: &str,
    port: u16,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("CA PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost")?;
    Ok(connector.connect(name, tcp).await?)
}
