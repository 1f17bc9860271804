//! The one error type of the library.
//!
//! Every variant renders as a single line that says what was wrong, where, and (when there is
//! an obvious next step) what to do: the binary prints it verbatim after `certs-tool: ` and
//! exits 2, so SREs and scripts get exactly one line per failure.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in certs-tool.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("missing {}: {hint}", path.display())]
    Missing { path: PathBuf, hint: String },

    #[error("CA already exists in {}: pass --exist-ok to keep it, or --force to replace it (every certificate it issued stops verifying)", dir.display())]
    CaExists { dir: PathBuf },

    #[error("invalid SAN {san:?}: {reason}")]
    InvalidSan { san: String, reason: String },

    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },

    #[error("key mismatch: {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    #[error("{}: chain does not verify against {}: {reason}", cert.display(), anchors.display())]
    ChainInvalid {
        cert: PathBuf,
        anchors: PathBuf,
        reason: String,
    },

    #[error("{}: not valid now ({reason}); run `certs-tool ca init --force` for a new CA", path.display())]
    CaNotValid { path: PathBuf, reason: String },

    #[error("{0}")]
    Usage(String),

    /// A report found a problem (key mismatch, broken chain, expiry); the report itself went
    /// to stdout, this is the one-line summary.
    #[error("{0}")]
    Invalid(String),

    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),

    #[error("BoringSSL: {0}")]
    Crypto(#[from] boring::error::ErrorStack),

    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

pub type Result<T, E = CertsError> = std::result::Result<T, E>;

impl CertsError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            return CertsError::Missing {
                path,
                hint: "no such file or directory".to_owned(),
            };
        }
        CertsError::Read { path, source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CertsError::Write {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CertsError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_renders_on_one_line() {
        let errors = [
            CertsError::read("/x/ca.crt", io::Error::other("boom")),
            CertsError::read("/x/ca.crt", io::Error::from(io::ErrorKind::NotFound)),
            CertsError::CaExists { dir: "/x".into() },
            CertsError::InvalidSan {
                san: "a..b".into(),
                reason: "empty label".into(),
            },
            CertsError::KeyMismatch {
                cert: "tls.crt".into(),
                key: "tls.key".into(),
            },
        ];
        for e in errors {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn not_found_reads_become_missing_with_the_path() {
        let e = CertsError::read("/x/ca.key", io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(e, CertsError::Missing { .. }));
        assert!(e.to_string().starts_with("missing /x/ca.key"));
    }
}
