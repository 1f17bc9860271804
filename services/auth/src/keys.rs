//! JWT signing keys: generated on first start, rotated by `auth rotate-key`, published as a
//! JWKS (RFC 7517) with the current and the previous key.
//!
//! Layout of the key directory (files 0600, directory 0700):
//! - `current.pem`: PKCS#8 private key that signs new tokens;
//! - `previous.pem`: the key before the last rotation, kept only so that the JWKS still lists
//!   it and the edge keeps accepting the tokens it signed until they expire.
//!
//! The algorithm is the key's own (Ed25519 → EdDSA, P-256 → ES256, RSA → RS256) and the `kid`
//! is the RFC 7638 JWK thumbprint, so nothing but the PEM files needs storing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

const CURRENT: &str = "current.pem";
const PREVIOUS: &str = "previous.pem";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlg {
    #[value(name = "EdDSA")]
    EdDsa,
    #[value(name = "ES256")]
    Es256,
    #[value(name = "RS256")]
    Rs256,
}

impl KeyAlg {
    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable private key ({reason}); expected a PKCS#8 PEM with an Ed25519, P-256 or RSA key")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot generate a {alg} key: {reason}")]
    Generate { alg: &'static str, reason: String },
    #[error(
        "{path} holds a {found} key but --jwt-alg is {wanted}; run `auth rotate-key --key-dir {dir} --jwt-alg {wanted}` \
         to switch algorithms (the old key stays valid as the previous one)"
    )]
    AlgorithmMismatch {
        path: PathBuf,
        dir: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("cannot sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// One key: what signs, and what the JWKS says about it.
pub struct SigningKey {
    pub kid: String,
    pub alg: KeyAlg,
    encoding: EncodingKey,
    /// Public JWK members (kty, crv/x/y or n/e) without kid/alg/use.
    public: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_pem(pem: &str, path: &Path) -> Result<Self, KeyError> {
        let parse_err = |reason: String| KeyError::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let pair = rcgen::KeyPair::from_pem(pem).map_err(|e| parse_err(e.to_string()))?;
        let raw = pair.public_key_raw();
        let algorithm = pair.algorithm();
        let mut public = serde_json::Map::new();
        let text = |s: &str| serde_json::Value::String(s.to_string());
        let (alg, encoding) = if algorithm == &rcgen::PKCS_ED25519 {
            public.insert("crv".into(), text("Ed25519"));
            public.insert("kty".into(), text("OKP"));
            public.insert("x".into(), text(&URL_SAFE_NO_PAD.encode(raw)));
            let key =
                EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| parse_err(e.to_string()))?;
            (KeyAlg::EdDsa, key)
        } else if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
            // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
            if raw.len() != 65 || raw[0] != 4 {
                return Err(parse_err("unexpected P-256 public key encoding".into()));
            }
            public.insert("crv".into(), text("P-256"));
            public.insert("kty".into(), text("EC"));
            public.insert("x".into(), text(&URL_SAFE_NO_PAD.encode(&raw[1..33])));
            public.insert("y".into(), text(&URL_SAFE_NO_PAD.encode(&raw[33..])));
            let key =
                EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| parse_err(e.to_string()))?;
            (KeyAlg::Es256, key)
        } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
            let key =
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| parse_err(e.to_string()))?;
            let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256)
                .map_err(|e| parse_err(e.to_string()))?;
            let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
                return Err(parse_err("RSA key without RSA parameters".into()));
            };
            public.insert("e".into(), text(&rsa.e));
            public.insert("kty".into(), text("RSA"));
            public.insert("n".into(), text(&rsa.n));
            (KeyAlg::Rs256, key)
        } else {
            return Err(parse_err(format!(
                "unsupported key algorithm {algorithm:?}"
            )));
        };
        Ok(Self {
            kid: thumbprint(&public),
            alg,
            encoding,
            public,
        })
    }

    fn jwk(&self) -> serde_json::Value {
        let mut jwk = self.public.clone();
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("alg".into(), self.alg.name().into());
        jwk.insert("use".into(), "sig".into());
        serde_json::Value::Object(jwk)
    }
}

/// RFC 7638: SHA-256 over the required public members, lexicographically ordered, no spaces.
/// `public` is a `serde_json::Map` (a BTreeMap without `preserve_order`), so serialisation
/// already orders the members.
fn thumbprint(public: &serde_json::Map<String, serde_json::Value>) -> String {
    let canonical = serde_json::Value::Object(public.clone()).to_string();
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn generate_pem(alg: KeyAlg) -> Result<String, KeyError> {
    let generated = match alg {
        KeyAlg::EdDsa => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyAlg::Es256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlg::Rs256 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    };
    generated
        .map(|pair| pair.serialize_pem())
        .map_err(|e| KeyError::Generate {
            alg: alg.name(),
            reason: e.to_string(),
        })
}

/// The keys in use: `current` signs; `previous` (if any) is only published.
#[derive(Debug)]
pub struct KeySet {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

#[derive(Serialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Loads `dir`, generating `current.pem` (with `alg`) when it does not exist yet.
    pub fn load_or_create(dir: &Path, alg: KeyAlg) -> Result<Self, KeyError> {
        ensure_dir(dir)?;
        let current_path = dir.join(CURRENT);
        if !current_path.exists() {
            let created = write_new(&current_path, &generate_pem(alg)?)?;
            if created {
                tracing::info!(dir = %dir.display(), alg = alg.name(), "generated a new signing key");
            }
        }
        let set = Self::load(dir)?;
        if set.current.alg != alg {
            return Err(KeyError::AlgorithmMismatch {
                path: current_path,
                dir: dir.display().to_string(),
                found: set.current.alg.name(),
                wanted: alg.name(),
            });
        }
        Ok(set)
    }

    /// Loads whatever `dir` holds (`current.pem` must exist).
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let current = load_key(&dir.join(CURRENT))?;
        let previous_path = dir.join(PREVIOUS);
        let previous = if previous_path.exists() {
            Some(load_key(&previous_path)?).filter(|p| p.kid != current.kid)
        } else {
            None
        };
        Ok(Self { current, previous })
    }

    /// Makes the current key the previous one and generates a new current key.
    /// Returns the new key set.
    pub fn rotate(dir: &Path, alg: KeyAlg) -> Result<Self, KeyError> {
        ensure_dir(dir)?;
        let current_path = dir.join(CURRENT);
        let new_pem = generate_pem(alg)?;
        if current_path.exists() {
            // Validate before moving it: never demote a file we could not publish.
            load_key(&current_path)?;
            // Copy-then-rename keeps every step atomic: a crash leaves either the old
            // pair, or previous == current (harmless), never a missing current key.
            let staged = dir.join(".previous.pem.tmp");
            let pem = read(&current_path)?;
            write_file(&staged, &pem)?;
            rename(&staged, &dir.join(PREVIOUS))?;
        }
        let staged = dir.join(".current.pem.tmp");
        write_file(&staged, &new_pem)?;
        rename(&staged, &current_path)?;
        Self::load(dir)
    }

    /// `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(SigningKey::jwk)
            .collect();
        serde_json::to_value(Jwks { keys }).unwrap_or_default()
    }

    /// A compact JWS over `claims` with the current key; header `alg`, `kid`, `typ: JWT`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(self.current.alg.jwt());
        header.kid = Some(self.current.kid.clone());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &self.current.encoding,
        )?)
    }
}

fn load_key(path: &Path) -> Result<SigningKey, KeyError> {
    SigningKey::from_pem(&read(path)?, path)
}

fn read(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
        .map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

fn write_file(path: &Path, contents: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // `mode` only applies to newly created files; a leftover temp file may be wider.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn rename(from: &Path, to: &Path) -> Result<(), KeyError> {
    fs::rename(from, to).map_err(|source| KeyError::Io {
        path: to.to_path_buf(),
        source,
    })
}

/// Creates `path` only if it does not exist (two replicas starting on an empty shared
/// directory must end up with one key): write a temp file, then hard-link it into place,
/// which fails if another process won. Returns whether we created it.
fn write_new(path: &Path, contents: &str) -> Result<bool, KeyError> {
    let staged = path.with_extension(format!("tmp.{}", std::process::id()));
    write_file(&staged, contents)?;
    let linked = fs::hard_link(&staged, path);
    let _ = fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(KeyError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims {
            sub: "someone".into(),
            exp: u64::try_from(chrono::Utc::now().timestamp()).expect("positive") + 600,
        }
    }

    /// What the edge does: pick the JWK by kid and verify with it.
    fn verify_with_jwks(jwks: &serde_json::Value, token: &str, alg: Algorithm) -> Claims {
        let kid = jsonwebtoken::decode_header(token)
            .expect("header")
            .kid
            .expect("kid");
        let jwk = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("kid in jwks");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
        let key = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .expect("verifies")
            .claims
    }

    #[test]
    fn every_algorithm_signs_tokens_its_jwks_verifies() {
        for alg in [KeyAlg::EdDsa, KeyAlg::Es256, KeyAlg::Rs256] {
            let dir = tempfile::tempdir().expect("tempdir");
            let keys = KeySet::load_or_create(dir.path(), alg).expect("create");
            let token = keys.sign(&claims()).expect("sign");
            let header = jsonwebtoken::decode_header(&token).expect("header");
            assert_eq!(header.alg, alg.jwt());
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(
                verify_with_jwks(&keys.jwks(), &token, alg.jwt()).sub,
                "someone"
            );
            let jwk = &keys.jwks()["keys"][0];
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], alg.name());
        }
    }

    #[test]
    fn key_files_are_private_and_reloading_keeps_the_kid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = KeySet::load_or_create(dir.path(), KeyAlg::EdDsa).expect("create");
        let mode = fs::metadata(dir.path().join(CURRENT))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = KeySet::load_or_create(dir.path(), KeyAlg::EdDsa).expect("load");
        assert_eq!(first.current.kid, again.current.kid);
        assert!(again.previous.is_none());
    }

    #[test]
    fn rotation_keeps_the_previous_key_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = KeySet::load_or_create(dir.path(), KeyAlg::EdDsa).expect("create");
        let old_token = before.sign(&claims()).expect("sign");
        let after = KeySet::rotate(dir.path(), KeyAlg::EdDsa).expect("rotate");
        assert_ne!(after.current.kid, before.current.kid);
        assert_eq!(
            after.previous.as_ref().map(|k| k.kid.as_str()),
            Some(before.current.kid.as_str())
        );
        let jwks = after.jwks();
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
        verify_with_jwks(&jwks, &old_token, Algorithm::EdDSA);
        let new_token = after.sign(&claims()).expect("sign");
        verify_with_jwks(&jwks, &new_token, Algorithm::EdDSA);
    }

    #[test]
    fn configured_algorithm_must_match_the_current_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        KeySet::load_or_create(dir.path(), KeyAlg::EdDsa).expect("create");
        let err = KeySet::load_or_create(dir.path(), KeyAlg::Es256).expect_err("mismatch");
        assert!(err.to_string().contains("rotate-key"), "{err}");
        // Rotating to the new algorithm is the documented way out.
        let rotated = KeySet::rotate(dir.path(), KeyAlg::Es256).expect("rotate");
        assert_eq!(rotated.current.alg, KeyAlg::Es256);
        assert_eq!(
            rotated.previous.as_ref().map(|k| k.alg),
            Some(KeyAlg::EdDsa)
        );
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CURRENT), "not a key").expect("write");
        let err = KeySet::load(dir.path()).expect_err("garbage");
        assert!(err.to_string().contains("current.pem"), "{err}");
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1.
        let mut public = serde_json::Map::new();
        public.insert("e".into(), "AQAB".into());
        public.insert("kty".into(), "RSA".into());
        public.insert("n".into(), "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into());
        assert_eq!(
            thumbprint(&public),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
