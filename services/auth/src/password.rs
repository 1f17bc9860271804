//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow and memory-hard, so it runs on the blocking pool and at most
//! `max_concurrent` hashes run at once (each holds `memory_kib` of RAM). Unknown emails are
//! verified against a dummy hash made with the same parameters, so "no such user" costs the
//! same as "wrong password" and the two cannot be told apart by timing.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// OWASP's argon2id baseline (m=19 MiB, t=2, p=1).
pub const DEFAULT_MEMORY_KIB: u32 = 19_456;
pub const DEFAULT_ITERATIONS: u32 = 2;
pub const DEFAULT_PARALLELISM: u32 = 1;

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Argon2Args {
    /// argon2id memory cost in KiB.
    #[arg(long = "argon2-memory-kib", env = "AUTH_ARGON2_MEMORY_KIB", default_value_t = DEFAULT_MEMORY_KIB)]
    pub memory_kib: u32,
    /// argon2id iterations (time cost).
    #[arg(long = "argon2-iterations", env = "AUTH_ARGON2_ITERATIONS", default_value_t = DEFAULT_ITERATIONS)]
    pub iterations: u32,
    /// argon2id lanes (parallelism).
    #[arg(long = "argon2-parallelism", env = "AUTH_ARGON2_PARALLELISM", default_value_t = DEFAULT_PARALLELISM)]
    pub parallelism: u32,
    /// Hashes computed at once; bounds memory use to about this many times the memory cost.
    #[arg(
        long = "argon2-max-concurrent",
        env = "AUTH_ARGON2_MAX_CONCURRENT",
        default_value_t = 8
    )]
    pub max_concurrent: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("password hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("password hasher is shut down")]
    Closed,
}

pub struct PasswordHasher {
    argon: Argon2<'static>,
    dummy_hash: String,
    permits: Semaphore,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub fn new(args: &Argon2Args) -> Result<Arc<Self>, PasswordError> {
        let params = Params::new(args.memory_kib, args.iterations, args.parallelism, None)
            .map_err(PasswordError::Params)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon, "dummy password for timing parity")?;
        Ok(Arc::new(Self {
            argon,
            dummy_hash,
            permits: Semaphore::new(args.max_concurrent.max(1)),
        }))
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || hash_with(&this.argon, &password)).await?
    }

    /// True if `password` matches `stored`. `stored = None` (unknown user) still does a full
    /// verification against the dummy hash and returns false.
    pub async fn verify(
        self: &Arc<Self>,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let phc = stored.unwrap_or_else(|| this.dummy_hash.clone());
            // A stored hash we cannot parse is treated like a wrong password (and logged):
            // the user cannot log in, but nothing else breaks.
            let matches = match PasswordHash::new(&phc) {
                Ok(parsed) => this
                    .argon
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                Err(err) => {
                    tracing::error!(error = %err, "stored password hash is unreadable");
                    false
                }
            };
            known && matches
        })
        .await
        .map_err(PasswordError::from)
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    // Salt from the OS CSPRNG: two v4 UUIDs carry 244 random bits (getrandom), well above
    // the 128 bits a salt needs, without another RNG dependency.
    let mut random = [0u8; 32];
    random[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    random[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let salt = SaltString::encode_b64(&random).map_err(PasswordError::Hash)?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(PasswordError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Args {
        Argon2Args {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
        }
    }

    #[tokio::test]
    async fn hash_verifies_only_the_right_password() {
        let hasher = PasswordHasher::new(&cheap()).expect("hasher");
        let stored = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(
            stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{stored}"
        );
        assert!(hasher
            .verify("correct horse".into(), Some(stored.clone()))
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("wrong horse".into(), Some(stored))
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn unknown_user_never_matches_even_the_dummy_password() {
        let hasher = PasswordHasher::new(&cheap()).expect("hasher");
        let dummy = "dummy password for timing parity".to_string();
        assert!(!hasher.verify(dummy, None).await.expect("verify"));
    }

    #[test]
    fn default_parameters_are_owasp_baseline() {
        assert_eq!(
            (DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS, DEFAULT_PARALLELISM),
            (19_456, 2, 1)
        );
    }

    #[tokio::test]
    async fn corrupt_stored_hash_is_a_mismatch_not_an_error() {
        let hasher = PasswordHasher::new(&cheap()).expect("hasher");
        assert!(!hasher
            .verify("pw".into(), Some("garbage".into()))
            .await
            .expect("verify"));
    }
}
