//! Time helpers shared by the plugins.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (JWT `exp`/`nbf` are in these units, RFC 7519 §2
/// "NumericDate"). A clock before 1970 reads as 0, which only makes tokens look newer.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds on a monotonic clock since the first call in this process (never 0 after
/// the first millisecond, so 0 can mean "never").
pub(crate) fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64
}
