//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow and memory-hard, so it runs on the blocking pool and at most
//! `max_concurrent` hashes run at once (each holds `memory_kib` of RAM). At most `max_queued`
//! more wait for a turn; beyond that a request is refused at once ([`PasswordError::Busy`],
//! 503 + `Retry-After`) instead of queueing: a flood of registrations or logins must not
//! delay every login without bound. Both permits travel with the blocking task, so a client
//! that hangs up does not free a slot while its hash still runs.
//!
//! Unknown emails are verified against a dummy hash made with the same parameters, so "no
//! such user" costs the same as "wrong password" and the two cannot be told apart by timing.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// Hashes allowed to wait for a turn beyond those running; more are refused with 503.
    #[arg(
        long = "argon2-max-queued",
        env = "AUTH_ARGON2_MAX_QUEUED",
        default_value_t = 32
    )]
    pub max_queued: usize,
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
    #[error("every password hashing slot is taken")]
    Busy,
    #[error("password hashing metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What a hash is for (the `operation` label of the metrics).
#[derive(Debug, Clone, Copy)]
enum Operation {
    Register,
    Login,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
        }
    }
}

pub struct PasswordHasher {
    argon: Argon2<'static>,
    dummy_hash: String,
    /// Running hashes.
    running: Arc<Semaphore>,
    /// Running plus waiting hashes; `try_acquire` on it is the admission check.
    admitted: Arc<Semaphore>,
    max_admitted: usize,
    hashes: IntCounterVec,
    in_progress: IntGauge,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Registers its metrics in `registry`: `password_hashes_total{operation,result}`
    /// (`computed`, or `rejected` when every slot was taken) and
    /// `password_hashes_in_progress` (running plus waiting).
    pub fn new(args: &Argon2Args, registry: &Registry) -> Result<Arc<Self>, PasswordError> {
        let params = Params::new(args.memory_kib, args.iterations, args.parallelism, None)
            .map_err(PasswordError::Params)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon, "dummy password for timing parity")?;
        let running = args.max_concurrent.max(1);
        let max_admitted = running.saturating_add(args.max_queued);
        let hashes = IntCounterVec::new(
            Opts::new(
                "password_hashes_total",
                "argon2 hashes by operation (register, login) and result (computed; rejected: \
                 every running and queued slot was taken, answered 503)",
            ),
            &["operation", "result"],
        )?;
        let in_progress = IntGauge::new(
            "password_hashes_in_progress",
            "argon2 hashes running or waiting for a slot",
        )?;
        registry.register(Box::new(hashes.clone()))?;
        registry.register(Box::new(in_progress.clone()))?;
        Ok(Arc::new(Self {
            argon,
            dummy_hash,
            running: Arc::new(Semaphore::new(running)),
            admitted: Arc::new(Semaphore::new(max_admitted)),
            max_admitted,
            hashes,
            in_progress,
        }))
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, PasswordError> {
        let slot = self.take_slot(Operation::Register).await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let hashed = hash_with(&this.argon, &password);
            this.release(slot, Operation::Register);
            hashed
        })
        .await?
    }

    /// True if `password` matches `stored`. `stored = None` (unknown user) still does a full
    /// verification against the dummy hash and returns false.
    pub async fn verify(
        self: &Arc<Self>,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let slot = self.take_slot(Operation::Login).await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let matches = this.verify_blocking(&password, stored);
            this.release(slot, Operation::Login);
            matches
        })
        .await
        .map_err(PasswordError::from)
    }

    /// Admission (refused at once when running + waiting hashes are at the cap), then a
    /// turn to run. The permits are owned so they can move into the blocking task.
    async fn take_slot(&self, operation: Operation) -> Result<Slot, PasswordError> {
        let admitted = match Arc::clone(&self.admitted).try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.hashes
                    .with_label_values(&[operation.as_str(), "rejected"])
                    .inc();
                tracing::warn!(
                    operation = operation.as_str(),
                    cap = self.max_admitted,
                    "password hashing saturated; request refused"
                );
                return Err(PasswordError::Busy);
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(PasswordError::Closed),
        };
        self.in_progress.inc();
        let mut slot = Slot {
            _admitted: admitted,
            running: None,
            in_progress: self.in_progress.clone(),
        };
        // Dropped while waiting (the caller went away): the slot's Drop undoes the count.
        slot.running = Some(
            Arc::clone(&self.running)
                .acquire_owned()
                .await
                .map_err(|_| PasswordError::Closed)?,
        );
        Ok(slot)
    }

    /// Called by the blocking task once the hash is done.
    fn release(&self, slot: Slot, operation: Operation) {
        drop(slot);
        self.hashes
            .with_label_values(&[operation.as_str(), "computed"])
            .inc();
    }

    fn verify_blocking(&self, password: &str, stored: Option<String>) -> bool {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.clone());
        // A stored hash we cannot parse is treated like a wrong password (and logged): the
        // user cannot log in, but nothing else breaks.
        let matches = match PasswordHash::new(&phc) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(err) => {
                tracing::error!(error = %err, "stored password hash is unreadable");
                false
            }
        };
        known && matches
    }
}

/// The permits a hash holds until it has finished (not merely until its caller stops
/// waiting), and its place in the in-progress gauge.
struct Slot {
    _admitted: OwnedSemaphorePermit,
    running: Option<OwnedSemaphorePermit>,
    in_progress: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_progress.dec();
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
            max_queued: 2,
        }
    }

    fn hasher(args: &Argon2Args) -> Arc<PasswordHasher> {
        PasswordHasher::new(args, &Registry::new()).expect("hasher")
    }

    #[tokio::test]
    async fn hash_verifies_only_the_right_password() {
        let hasher = hasher(&cheap());
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
        let hasher = hasher(&cheap());
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
        let hasher = hasher(&cheap());
        assert!(!hasher
            .verify("pw".into(), Some("garbage".into()))
            .await
            .expect("verify"));
    }

    /// A hasher with one slot to run and one to wait, both taken the way two in-flight
    /// requests would: the running one (held by the caller) and a queued task.
    async fn one_running_one_queued() -> (
        Arc<PasswordHasher>,
        Slot,
        tokio::task::JoinHandle<Result<(), PasswordError>>,
    ) {
        let args = Argon2Args {
            max_concurrent: 1,
            max_queued: 1,
            ..cheap()
        };
        let hasher = hasher(&args);
        let running = hasher.take_slot(Operation::Login).await.expect("runs");
        let queued = {
            let hasher = Arc::clone(&hasher);
            tokio::spawn(async move { hasher.take_slot(Operation::Login).await.map(drop) })
        };
        yield_until(|| hasher.in_progress.get() == 2).await;
        (hasher, running, queued)
    }

    #[tokio::test]
    async fn beyond_running_and_queued_slots_a_hash_is_refused_at_once() {
        let (hasher, first, queued) = one_running_one_queued().await;
        let refused = hasher.verify("pw".into(), None).await;
        assert!(matches!(refused, Err(PasswordError::Busy)), "{refused:?}");
        let refused = hasher.hash("pw".into()).await;
        assert!(matches!(refused, Err(PasswordError::Busy)), "{refused:?}");
        assert_eq!(
            hasher
                .hashes
                .with_label_values(&["login", "rejected"])
                .get(),
            1
        );
        // The running hash finishing lets the queued one through, and new ones are admitted.
        drop(first);
        queued.await.expect("join").expect("queued hash ran");
        assert!(!hasher.verify("pw".into(), None).await.expect("admitted"));
        assert_eq!(hasher.in_progress.get(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_while_queued_frees_its_place() {
        let (hasher, first, waiting) = one_running_one_queued().await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(hasher.in_progress.get(), 1, "only the running hash is left");
        assert!(hasher.admitted.available_permits() == 1);
        drop(first);
        assert_eq!(hasher.in_progress.get(), 0);
    }

    /// Yields until `condition` holds (the spawned task has reached its await point).
    async fn yield_until(condition: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if condition() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition never held");
    }
}
