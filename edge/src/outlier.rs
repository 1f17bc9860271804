//! Passive outlier ejection: a backend that fails `consecutive_failures` requests in a row
//! (5xx answers, connect failures, upstream timeouts) is taken out of rotation for
//! `base_ejection × 2^(n-1)` (n = its ejections in a row, capped at `max_ejection`), then gets
//! traffic again; one more failure while it is on probation ejects it for twice as long,
//! a success clears its record. Active health checks decide `healthy`; this reacts to what
//! real requests see, between checks and for clusters without one.
//!
//! Never more than `max_ejected_percent` of a cluster's backends are out (at least one may
//! be), and never the last one that is healthy: a cluster answers from a bad backend rather
//! than not at all.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::OutlierConfig;

/// Milliseconds on a process-wide monotonic clock (the unit of ejection deadlines).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One backend's record.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_failures: AtomicU32,
    /// Ejections in a row (reset by a success after the last one ended).
    ejections: AtomicU32,
    /// Monotonic ms until which the backend is out; 0 = in rotation.
    ejected_until_ms: AtomicU64,
}

/// What one request's outcome did to the backend's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// The backend is now ejected for this long.
    Ejected(Duration),
}

impl OutlierState {
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Acquire) > now_ms
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        // Back in rotation and answering: its next ejection starts from the base again.
        if self.ejected_until_ms.load(Ordering::Acquire) <= now_ms() {
            self.ejections.store(0, Ordering::Release);
        }
    }

    /// Counts a failure; ejects when the run reaches the threshold and `may_eject` says the
    /// cluster can spare the backend.
    pub fn record_failure(
        &self,
        config: &OutlierConfig,
        now_ms: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> Outcome {
        if config.consecutive_failures == 0 {
            return Outcome::Unchanged;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < config.consecutive_failures || self.is_ejected(now_ms) || !may_eject() {
            return Outcome::Unchanged;
        }
        let n = self.ejections.fetch_add(1, Ordering::AcqRel);
        let factor = 1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX);
        let period = config
            .base_ejection
            .saturating_mul(factor)
            .min(config.max_ejection);
        self.ejected_until_ms
            .store(now_ms + period.as_millis() as u64, Ordering::Release);
        // On probation afterwards: the next failure ejects again.
        self.consecutive_failures.store(
            config.consecutive_failures.saturating_sub(1),
            Ordering::Release,
        );
        Outcome::Ejected(period)
    }
}

/// Whether one more backend may be ejected when `ejected` of `total` already are and
/// `available` (healthy, not ejected) are in rotation.
pub fn may_eject(config: &OutlierConfig, total: usize, ejected: usize, available: usize) -> bool {
    let allowed = (total * usize::from(config.max_ejected_percent) / 100).max(1);
    available > 1 && ejected < allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn a_run_of_failures_ejects_for_a_growing_capped_period() {
        let state = OutlierState::default();
        let cfg = config();
        assert_eq!(
            state.record_failure(&cfg, 1_000, || true),
            Outcome::Unchanged
        );
        assert_eq!(
            state.record_failure(&cfg, 1_000, || true),
            Outcome::Unchanged
        );
        assert_eq!(
            state.record_failure(&cfg, 1_000, || true),
            Outcome::Ejected(Duration::from_secs(10))
        );
        assert!(state.is_ejected(10_999));
        assert!(!state.is_ejected(11_000));
        // On probation: one failure is enough, for twice as long, then capped.
        assert_eq!(
            state.record_failure(&cfg, 11_000, || true),
            Outcome::Ejected(Duration::from_secs(20))
        );
        assert_eq!(
            state.record_failure(&cfg, 31_000, || true),
            Outcome::Ejected(Duration::from_secs(25))
        );
    }

    #[test]
    fn a_success_clears_the_run_and_a_refused_ejection_changes_nothing() {
        let state = OutlierState::default();
        let cfg = config();
        state.record_failure(&cfg, 0, || true);
        state.record_failure(&cfg, 0, || true);
        state.record_success();
        assert_eq!(state.record_failure(&cfg, 0, || true), Outcome::Unchanged);
        state.record_failure(&cfg, 0, || true);
        assert_eq!(state.record_failure(&cfg, 0, || false), Outcome::Unchanged);
        assert!(!state.is_ejected(0));
    }

    #[test]
    fn the_last_available_backend_and_the_percentage_are_kept() {
        let cfg = config();
        assert!(!may_eject(&cfg, 1, 0, 1), "the only backend");
        assert!(may_eject(&cfg, 2, 0, 2), "at least one of two");
        assert!(!may_eject(&cfg, 2, 1, 1), "not the last one in rotation");
        assert!(may_eject(&cfg, 10, 4, 6));
        assert!(!may_eject(&cfg, 10, 5, 5), "50 % already out");
    }
}
