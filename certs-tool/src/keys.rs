//! Key algorithms we generate, and naming the ones we find.

use boring::nid::Nid;
use boring::pkey::{HasPublic, Id, PKeyRef};

use crate::error::{CertsError, Result};

/// Key algorithm for a new CA or leaf. ECDSA P-256 is the default: it is what the perf suite
/// measures and what every TLS 1.3 client supports; RSA 2048 is there for old clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum KeyAlgorithm {
    #[default]
    #[value(name = "ecdsa-p256")]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "rsa-2048")]
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

impl KeyAlgorithm {
    /// Generates a fresh key pair with the aws-lc backend of rcgen.
    pub fn generate(self) -> Result<rcgen::KeyPair> {
        let alg = match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        };
        Ok(rcgen::KeyPair::generate_for(alg)?)
    }

    /// The algorithm of an existing public key, if it is one we can generate again.
    pub fn of<T: HasPublic>(key: &PKeyRef<T>) -> Option<Self> {
        match key.id() {
            Id::EC if curve(key) == Some(Nid::X9_62_PRIME256V1) => Some(KeyAlgorithm::EcdsaP256),
            Id::RSA if key.bits() == 2048 => Some(KeyAlgorithm::Rsa2048),
            _ => None,
        }
    }

    /// Whether this is an RSA key (RSA leaves also need keyEncipherment for TLS 1.2 RSA kx).
    pub fn is_rsa(self) -> bool {
        self == KeyAlgorithm::Rsa2048
    }
}

/// Human name of a key, e.g. `ECDSA P-256` or `RSA 2048`.
pub fn describe<T: HasPublic>(key: &PKeyRef<T>) -> String {
    match key.id() {
        Id::EC => match curve(key) {
            Some(Nid::X9_62_PRIME256V1) => "ECDSA P-256".to_owned(),
            Some(Nid::SECP384R1) => "ECDSA P-384".to_owned(),
            Some(Nid::SECP521R1) => "ECDSA P-521".to_owned(),
            _ => format!("ECDSA ({} bits)", key.bits()),
        },
        Id::RSA => format!("RSA {}", key.bits()),
        Id::ED25519 => "Ed25519".to_owned(),
        other => format!("unknown key type (id {})", other.as_raw()),
    }
}

fn curve<T: HasPublic>(key: &PKeyRef<T>) -> Option<Nid> {
    key.ec_key().ok()?.group().curve_name()
}

/// Parses a PEM private key into rcgen's form for signing (PKCS#8, SEC1 and PKCS#1 accepted).
pub(crate) fn signing_key_from_pem(path: &std::path::Path, pem: &str) -> Result<rcgen::KeyPair> {
    rcgen::KeyPair::from_pem(pem)
        .map_err(|e| CertsError::bad_file(path, format!("not a usable private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::pkey::PKey;

    #[test]
    fn generated_keys_are_named_and_recognised() {
        for (alg, name) in [
            (KeyAlgorithm::EcdsaP256, "ECDSA P-256"),
            (KeyAlgorithm::Rsa2048, "RSA 2048"),
        ] {
            let key = alg.generate().expect("keygen");
            let parsed =
                PKey::private_key_from_pem(key.serialize_pem().as_bytes()).expect("boring parses");
            assert_eq!(describe(&parsed), name);
            assert_eq!(KeyAlgorithm::of(&parsed), Some(alg));
        }
    }
}
