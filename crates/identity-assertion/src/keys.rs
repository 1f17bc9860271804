//! The shared HMAC keys and their ids.
//!
//! On disk a key is a file `<key-id>.key` holding base64 text (at least 32 bytes decoded),
//! and a *key directory* holds one file per key. The edge signs with the one key its config
//! names; a service accepts every key in its directory, which is what lets an operator
//! rotate keys without a moment where the edge signs with a key a service does not know
//! (docs/identity-rotation.md).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

const MIN_KEY_BYTES: usize = 32;
const MAX_KEY_ID_LEN: usize = 64;
/// The file name suffix of a key in a key directory.
pub const KEY_FILE_SUFFIX: &str = ".key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read identity key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot list identity key directory {path}: {source}")]
    ReadDir {
        path: String,
        source: std::io::Error,
    },
    #[error("identity key file {path} is not valid base64: {source}")]
    Base64 {
        path: String,
        source: base64::DecodeError,
    },
    #[error("identity key is {0} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort(usize),
    #[error("identity key file {path} holds {len} bytes; at least {MIN_KEY_BYTES} are required")]
    FileTooShort { path: String, len: usize },
    #[error(
        "`{0}` is not a valid identity key id: use 1 to {MAX_KEY_ID_LEN} characters from A-Z a-z 0-9 _ -"
    )]
    BadKeyId(String),
    #[error("identity key directory {path} holds no `<key-id>{KEY_FILE_SUFFIX}` file")]
    NoKeys { path: String },
}

/// The name of a key, carried in clear in every assertion so the verifier knows which key
/// to check it with. Restricted to `[A-Za-z0-9_-]{1,64}`: it is a file name and a field of
/// the dot-separated wire format.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(text: &str) -> Result<Self, KeyError> {
        let valid = !text.is_empty()
            && text.len() <= MAX_KEY_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(text.to_string()))
        } else {
            Err(KeyError::BadKeyId(text.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shared HMAC secret. Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct IdentityKey(Vec<u8>);

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey(<{} bytes redacted>)", self.0.len())
    }
}

impl IdentityKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A key written as base64 text (standard alphabet, surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|source| KeyError::Base64 {
                path: "(inline)".into(),
                source,
            })?;
        Self::from_bytes(bytes)
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown(),
            source,
        })?;
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|source| KeyError::Base64 {
                path: shown(),
                source,
            })?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::FileTooShort {
                path: shown(),
                len: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; construction cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        }
    }
}

/// The key the edge signs with, and its id.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub(crate) id: KeyId,
    pub(crate) key: IdentityKey,
}

impl SigningKey {
    pub fn new(id: KeyId, key: IdentityKey) -> Self {
        Self { id, key }
    }

    /// `<dir>/<id>.key`.
    pub fn from_dir(dir: &Path, id: &KeyId) -> Result<Self, KeyError> {
        let key = IdentityKey::from_file(&key_file(dir, id))?;
        Ok(Self::new(id.clone(), key))
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

/// Where the key `id` lives in `dir`.
pub fn key_file(dir: &Path, id: &KeyId) -> PathBuf {
    dir.join(format!("{id}{KEY_FILE_SUFFIX}"))
}

/// Every key a service accepts, by id.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: BTreeMap<KeyId, IdentityKey>,
}

impl KeyRing {
    /// A ring of the given keys (a later key with the same id replaces an earlier one).
    pub fn new(keys: impl IntoIterator<Item = SigningKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.id, k.key)).collect(),
        }
    }

    /// Every `<key-id>.key` file in `dir`. Names starting with `.` are skipped (a mounted
    /// Kubernetes Secret keeps its real files in `..data/` and links them from the top);
    /// symlinks are followed. Any other `*.key` file must be a valid key: a broken one is an
    /// error, not a key silently missing on the day it is needed.
    pub fn from_dir(dir: &Path) -> Result<Self, KeyError> {
        let listing_error = |source| KeyError::ReadDir {
            path: dir.display().to_string(),
            source,
        };
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(listing_error)? {
            let entry = entry.map_err(listing_error)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let Some(stem) = name.strip_suffix(KEY_FILE_SUFFIX) else {
                continue;
            };
            let path = entry.path();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let id = KeyId::new(stem)?;
            keys.insert(id, IdentityKey::from_file(&path)?);
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys {
                path: dir.display().to_string(),
            });
        }
        Ok(Self { keys })
    }

    pub(crate) fn get(&self, id: &str) -> Option<&IdentityKey> {
        // KeyId orders like its string, so a borrowed lookup needs the owned form; ids are
        // short and the ring holds one or two keys.
        self.keys
            .iter()
            .find_map(|(kid, key)| (kid.as_str() == id).then_some(key))
    }

    /// The ids held, in order (for the service's start-up log).
    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(KeyId::as_str).collect()
    }
}
