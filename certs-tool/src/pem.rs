//! Reading PEM files: certificates and private keys, with the path in every error.

use std::path::{Path, PathBuf};

use boring::pkey::{PKey, Private};
use boring::x509::X509;
use x509_parser::pem::Pem;

use crate::error::{CertsError, Result};

/// The decoded blocks of one PEM file, in file order.
#[derive(Debug)]
pub struct PemFile {
    pub path: PathBuf,
    /// DER of each `CERTIFICATE` block.
    pub certs: Vec<Vec<u8>>,
    /// Each private key block (PKCS#8, SEC1 or PKCS#1).
    pub keys: Vec<PKey<Private>>,
}

impl PemFile {
    /// Reads and decodes `path`. A file with no PEM block at all, or with a damaged block (for
    /// example one cut short by a non-atomic writer), is an error.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| CertsError::read(path, e))?;
        Self::parse(path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut file = PemFile {
            path: path.to_owned(),
            certs: Vec::new(),
            keys: Vec::new(),
        };
        for (index, block) in Pem::iter_from_buffer(bytes).enumerate() {
            let block = block.map_err(|e| {
                CertsError::bad_file(path, format!("PEM block {} is damaged: {e}", index + 1))
            })?;
            match block.label.as_str() {
                "CERTIFICATE" => {
                    // Parse now so a damaged DER fails here, with the file name, not later.
                    x509_parser::parse_x509_certificate(&block.contents).map_err(|e| {
                        CertsError::bad_file(
                            path,
                            format!("certificate {} does not parse: {e}", file.certs.len() + 1),
                        )
                    })?;
                    file.certs.push(block.contents);
                }
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                    let key = PKey::private_key_from_der(&block.contents).map_err(|_| {
                        CertsError::bad_file(path, format!("{} does not parse", block.label))
                    })?;
                    file.keys.push(key);
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(CertsError::bad_file(
                        path,
                        "encrypted private keys are not supported; decrypt it with `openssl pkey`",
                    ))
                }
                // Parameters, CSRs and the like carry nothing we use; ignoring them keeps
                // `inspect` useful on files produced by other tools.
                _ => {}
            }
        }
        if file.certs.is_empty() && file.keys.is_empty() {
            return Err(CertsError::bad_file(
                path,
                "no PEM certificate or private key found",
            ));
        }
        Ok(file)
    }

    /// Loads a file that must hold at least one certificate.
    pub fn load_certs(path: &Path) -> Result<Self> {
        let file = Self::load(path)?;
        if file.certs.is_empty() {
            return Err(CertsError::bad_file(
                path,
                "no certificate found (expected a PEM CERTIFICATE block)",
            ));
        }
        Ok(file)
    }

    /// Loads a file that must hold exactly one private key.
    pub fn load_key(path: &Path) -> Result<PKey<Private>> {
        let mut file = Self::load(path)?;
        match file.keys.len() {
            1 => Ok(file.keys.remove(0)),
            0 => Err(CertsError::bad_file(path, "no private key found")),
            n => Err(CertsError::bad_file(
                path,
                format!("{n} private keys found, expected one"),
            )),
        }
    }

    /// The certificates as BoringSSL objects, for verification.
    pub fn x509s(&self) -> Result<Vec<X509>> {
        self.certs
            .iter()
            .map(|der| X509::from_der(der).map_err(CertsError::from))
            .collect()
    }
}

/// PEM text of a list of DER certificates, in order.
pub fn certs_to_pem(ders: &[Vec<u8>]) -> Result<String> {
    let mut out = String::new();
    for der in ders {
        let pem = X509::from_der(der)?.to_pem()?;
        out.push_str(&String::from_utf8_lossy(&pem));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn reads_certs_and_keys_from_one_file() {
        let (cert, key) = self_signed();
        let both = format!("{cert}{key}{cert}");
        let file = PemFile::parse(Path::new("x.pem"), both.as_bytes()).expect("parses");
        assert_eq!(file.certs.len(), 2);
        assert_eq!(file.keys.len(), 1);
        let round = certs_to_pem(&file.certs).expect("encode");
        assert_eq!(round, format!("{cert}{cert}"));
    }

    #[test]
    fn garbage_and_truncation_are_errors_naming_the_file() {
        let err = PemFile::parse(Path::new("g.crt"), b"not a pem").expect_err("garbage");
        assert!(err.to_string().starts_with("g.crt: no PEM"), "{err}");

        let (cert, _) = self_signed();
        let cut = &cert[..cert.len() / 2];
        let err = PemFile::parse(Path::new("t.crt"), cut.as_bytes()).expect_err("truncated");
        assert!(err.to_string().starts_with("t.crt: "), "{err}");
    }
}
