//! Key/cert matching and chain verification with BoringSSL, the library the edge serves with, so
//! "certs-tool says it verifies" means the same thing as "the edge will accept it".

use boring::pkey::{HasPublic, PKeyRef};
use boring::stack::Stack;
use boring::x509::store::X509StoreBuilder;
use boring::x509::{X509Ref, X509StoreContext, X509};

use crate::error::Result;

/// Whether `key` is the private half of `cert`'s public key.
pub fn key_matches<T: HasPublic>(cert: &X509Ref, key: &PKeyRef<T>) -> Result<bool> {
    Ok(cert.public_key()?.public_eq(key))
}

/// The outcome of building and checking a path from a certificate to one of the anchors.
#[derive(Debug)]
pub enum ChainVerdict {
    /// A valid path exists now; `path` runs from the certificate (first) to the anchor (last).
    Verified { path: Vec<X509> },
    /// No valid path; `reason` is BoringSSL's text, `depth` where it failed (0 = the leaf).
    Failed { reason: String, depth: u32 },
}

impl ChainVerdict {
    pub fn is_verified(&self) -> bool {
        matches!(self, ChainVerdict::Verified { .. })
    }
}

/// Verifies `cert` at the current time against `anchors`, using `intermediates` as untrusted
/// helpers for path building — the same inputs as
/// `openssl verify -CAfile anchors -untrusted intermediates cert`.
pub fn verify_chain(cert: &X509, intermediates: &[X509], anchors: &[X509]) -> Result<ChainVerdict> {
    if anchors.is_empty() {
        return Ok(ChainVerdict::Failed {
            reason: "no trusted CA certificate to verify against".to_owned(),
            depth: 0,
        });
    }
    let mut store = X509StoreBuilder::new()?;
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for anchor in anchors {
        // A bundle may list the same CA twice (e.g. a half-finished rotation); the store only
        // needs it once.
        let der = anchor.to_der()?;
        if !seen.contains(&der) {
            store.add_cert(anchor.clone())?;
            seen.push(der);
        }
    }
    let store = store.build();
    let mut untrusted = Stack::new()?;
    for cert in intermediates {
        untrusted.push(cert.clone())?;
    }
    let mut ctx = X509StoreContext::new()?;
    let verdict = ctx.init(&store, cert, &untrusted, |ctx| {
        if ctx.verify_cert()? {
            let path = ctx
                .chain()
                .map(|chain| chain.iter().map(X509Ref::to_owned).collect())
                .unwrap_or_default();
            return Ok(ChainVerdict::Verified { path });
        }
        let reason = match ctx.verify_result() {
            Err(e) => e.error_string().to_owned(),
            Ok(()) => "verification failed".to_owned(),
        };
        Ok(ChainVerdict::Failed {
            reason,
            depth: ctx.error_depth(),
        })
    })?;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::pkey::PKey;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn named_ca(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
    }

    fn boring(cert: &rcgen::Certificate) -> X509 {
        X509::from_der(cert.der()).expect("der")
    }

    #[test]
    fn a_leaf_verifies_only_under_its_own_ca() {
        let ca_key = KeyPair::generate().expect("keygen");
        let ca_params = named_ca("Test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca_params, &ca_key);

        let leaf_key = KeyPair::generate().expect("keygen");
        let leaf = CertificateParams::new(vec!["a.test".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");

        let verdict = verify_chain(&boring(&leaf), &[], &[boring(&ca)]).expect("verify");
        match verdict {
            ChainVerdict::Verified { path } => assert_eq!(path.len(), 2),
            other => panic!("should verify: {other:?}"),
        }

        let other_key = KeyPair::generate().expect("keygen");
        let other_params = named_ca("Other CA");
        let other = other_params.self_signed(&other_key).expect("other ca");
        assert!(!verify_chain(&boring(&leaf), &[], &[boring(&other)])
            .expect("verify")
            .is_verified());
        assert!(!verify_chain(&boring(&leaf), &[], &[])
            .expect("verify")
            .is_verified());

        let leaf_pkey =
            PKey::private_key_from_pem(leaf_key.serialize_pem().as_bytes()).expect("pkey");
        let ca_pkey = PKey::private_key_from_pem(ca_key.serialize_pem().as_bytes()).expect("pkey");
        assert!(key_matches(&boring(&leaf), &leaf_pkey).expect("compare"));
        assert!(!key_matches(&boring(&leaf), &ca_pkey).expect("compare"));
    }
}
