//! Fixtures shared by the unit tests: a CA and a published leaf in a private temp directory.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::ca::{CaInit, CertificateAuthority, IfExists};
use crate::issue::{issue, LeafRequest};
use crate::keys::KeyAlgorithm;
use crate::layout::LayoutChoice;
use crate::san::SubjectAltName;

/// A temp root holding `ca/` (a "Test CA") and, once `with_leaf` ran, `out/`.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub ca_dir: PathBuf,
    pub out: PathBuf,
}

/// A fresh ECDSA "Test CA" valid for `days`, in a new temp root.
pub fn fixture_with_ca(days: u32) -> Fixture {
    let root = tempfile::tempdir().expect("create a temp dir for the test");
    let ca_dir = root.path().join("ca");
    let out = root.path().join("out");
    init_test_ca(&ca_dir, days);
    Fixture { root, ca_dir, out }
}

pub fn init_test_ca(dir: &std::path::Path, days: u32) -> CertificateAuthority {
    CertificateAuthority::init(
        dir,
        &CaInit {
            name: "Test CA".into(),
            days,
            key: KeyAlgorithm::EcdsaP256,
            if_exists: IfExists::Fail,
        },
        OffsetDateTime::now_utc(),
    )
    .expect("init a test CA")
    .0
}

pub fn leaf_request(sans: &[&str], days: u32, key: KeyAlgorithm) -> LeafRequest {
    LeafRequest {
        sans: SubjectAltName::parse_all(sans).expect("valid test SANs"),
        days,
        key,
    }
}

impl Fixture {
    /// Issues a leaf into `out/` with the given request and layout.
    pub fn with_leaf(self, req: &LeafRequest, layout: LayoutChoice) -> Self {
        issue(
            &self.ca_dir,
            &self.out,
            req,
            layout,
            OffsetDateTime::now_utc(),
        )
        .expect("issue a test leaf");
        self
    }
}
