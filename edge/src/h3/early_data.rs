//! 0-RTT anti-replay for the QUIC listener.
//!
//! quiche accepts the same captured Initial + 0-RTT flight as often as it is sent (quiche
//! issue #2678), while RFC 9001 section 9.2 and RFC 8446 section 8 require a server to
//! accept 0-RTT for one handshake at most once. The edge keeps a ClientHello record
//! (RFC 8446 section 8.2) per listener: the BoringSSL select-certificate callback checks
//! the random of every ClientHello that offers early data against the [`ReplayRecord`]
//! ([`check_client_hello`]) and leaves the verdict with the connection. It must be the
//! ClientHello, not the first early request: a genuine client's 0-RTT request may be
//! processed only after its handshake completed (then it is not early data), and its
//! replay must be caught all the same. A connection whose ClientHello was seen before
//! serves no early request (425, see `gateway_plugins::early_data`); a full record
//! refuses early data rather than forget (fail closed). Requests after the handshake are
//! never affected: a replayer cannot finish the handshake, a genuine client can and
//! retries there.
//!
//! The record is per process and needs no sharing with an upgrade's successor: session
//! tickets are sealed with the ticket key of the listener's own SSL context, which
//! BoringSSL draws at random on first use (`ssl_ctx_rotate_ticket_encryption_key`; neither
//! the edge nor tokio-quiche sets one), so a new process cannot resume, let alone accept
//! 0-RTT from, a ticket the old one issued. See docs/upgrade.md.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use boring::ex_data::Index;
use boring::ssl::{ClientHello, ExtensionType, Ssl, SslRef};
use gateway_plugins::EarlyData;

/// How long a ClientHello stays in the record. BoringSSL refuses 0-RTT when the ticket
/// age the client claims and the one the server computes differ by more than 60 s
/// (`kMaxTicketAgeSkewSeconds`, ssl/tls13_server.cc). A captured ClientHello's claimed age
/// is frozen, so a replay drifts 1 s per second: one accepted with up to +60 s of skew
/// is refused by TLS itself 120 s later. 10 s more covers the whole-second rounding.
/// Fixed, not configurable: a shorter window would let replays through.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(130);

/// The 32 random bytes of a ClientHello (RFC 8446 section 4.1.2): fresh for every
/// handshake a client makes, identical in a replayed flight.
pub type ClientRandom = [u8; 32];

/// What the record says of a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen in the last [`REPLAY_WINDOW`]; now recorded.
    Fresh,
    /// Seen before: this flight is a replay.
    Replayed,
    /// The record is full; nothing can be vouched for until entries age out.
    Full,
}

/// ClientHello randoms of recent 0-RTT connections, bounded in entries and age.
pub struct ReplayRecord {
    max_entries: usize,
    window: Duration,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    randoms: HashSet<ClientRandom>,
    /// Oldest first, so expiry pops from the front.
    by_age: VecDeque<(Instant, ClientRandom)>,
}

impl ReplayRecord {
    pub fn new(max_entries: usize) -> Self {
        Self::with_window(max_entries, REPLAY_WINDOW)
    }

    fn with_window(max_entries: usize, window: Duration) -> Self {
        Self {
            max_entries,
            window,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records `random` unless it is there already or the record is full.
    pub fn check(&self, random: &ClientRandom, now: Instant) -> Verdict {
        // Nothing panics while the lock is held; a poisoned lock still holds a valid set.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((at, oldest)) = seen.by_age.front().copied() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            seen.by_age.pop_front();
            seen.randoms.remove(&oldest);
        }
        if seen.randoms.contains(random) {
            return Verdict::Replayed;
        }
        if seen.randoms.len() >= self.max_entries {
            return Verdict::Full;
        }
        seen.randoms.insert(*random);
        seen.by_age.push_back((now, *random));
        Verdict::Fresh
    }
}

/// What the record said of one connection's ClientHello, and the record to ask. Shared
/// between the connection (reads the verdict) and its SSL object (the callback sets it).
struct HelloVerdict {
    record: Arc<ReplayRecord>,
    /// Set by the select-certificate callback, which runs before any 0-RTT packet can be
    /// decrypted; unset when the ClientHello offered no early data.
    verdict: OnceLock<Verdict>,
}

/// The SSL extra-data slot that carries a connection's [`HelloVerdict`].
fn verdict_index() -> Option<Index<Ssl, Arc<HelloVerdict>>> {
    static INDEX: OnceLock<Option<Index<Ssl, Arc<HelloVerdict>>>> = OnceLock::new();
    *INDEX.get_or_init(|| match Ssl::new_ex_index() {
        Ok(index) => Some(index),
        Err(err) => {
            // Without the slot no ClientHello is captured: early data is refused (425).
            tracing::error!(%err, "no SSL extra-data slot for the 0-RTT replay check");
            None
        }
    })
}

/// Called from the select-certificate callback of the QUIC SSL context, once per
/// ClientHello. Only a ClientHello that offers early data is recorded: no other can
/// carry 0-RTT, and it keeps the record for the connections it protects.
pub(crate) fn check_client_hello(hello: &ClientHello<'_>) {
    if hello.get_extension(ExtensionType::EARLY_DATA).is_none() {
        return;
    }
    let Ok(random) = ClientRandom::try_from(hello.random()) else {
        return;
    };
    if let Some(connection) = verdict_index().and_then(|index| hello.ssl().ex_data(index)) {
        connection
            .verdict
            .get_or_init(|| connection.record.check(&random, Instant::now()));
    }
}

/// The 0-RTT state of one QUIC connection.
pub struct ConnectionEarlyData(Arc<HelloVerdict>);

impl ConnectionEarlyData {
    /// Attaches the verdict slot to a connection accepted but not yet handshaken (its
    /// ClientHello is read when the handshake starts).
    pub fn attach(ssl: &mut SslRef, record: Arc<ReplayRecord>) -> Self {
        let shared = Arc::new(HelloVerdict {
            record,
            verdict: OnceLock::new(),
        });
        if let Some(index) = verdict_index() {
            ssl.set_ex_data(index, shared.clone());
        }
        Self(shared)
    }

    /// How a request of this connection relates to early data. Every early request of a
    /// connection shares the verdict: they are one flight, not replays of each other.
    pub fn classify(&self, in_early_data: bool) -> EarlyData {
        if !in_early_data {
            return EarlyData::No;
        }
        match self.0.verdict.get() {
            Some(Verdict::Fresh) => EarlyData::Fresh,
            Some(Verdict::Replayed) => EarlyData::Replayed,
            // Full, or no verdict at all (no extra-data slot): nothing vouches for it.
            Some(Verdict::Full) | None => EarlyData::Unchecked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(byte: u8) -> ClientRandom {
        [byte; 32]
    }

    #[test]
    fn a_client_hello_is_fresh_once_then_replayed() {
        let record = ReplayRecord::new(10);
        let now = Instant::now();
        assert_eq!(record.check(&random(1), now), Verdict::Fresh);
        assert_eq!(record.check(&random(1), now), Verdict::Replayed);
        assert_eq!(record.check(&random(2), now), Verdict::Fresh);
    }

    #[test]
    fn a_full_record_refuses_instead_of_forgetting() {
        let record = ReplayRecord::new(2);
        let now = Instant::now();
        assert_eq!(record.check(&random(1), now), Verdict::Fresh);
        assert_eq!(record.check(&random(2), now), Verdict::Fresh);
        assert_eq!(record.check(&random(3), now), Verdict::Full);
        // The entries it holds are still remembered.
        assert_eq!(record.check(&random(1), now), Verdict::Replayed);
    }

    #[test]
    fn entries_age_out_after_the_window_and_make_room() {
        let record = ReplayRecord::with_window(1, Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(record.check(&random(1), start), Verdict::Fresh);
        let later = start + Duration::from_secs(9);
        assert_eq!(record.check(&random(2), later), Verdict::Full);
        let expired = start + Duration::from_secs(10);
        assert_eq!(record.check(&random(2), expired), Verdict::Fresh);
    }

    #[test]
    fn the_window_outlasts_the_ticket_age_skew_boringssl_tolerates() {
        // 60 s skew either way (kMaxTicketAgeSkewSeconds), plus rounding.
        assert!(REPLAY_WINDOW > Duration::from_secs(2 * 60));
    }

    /// A connection as the select-certificate callback leaves it.
    fn connection(record: &Arc<ReplayRecord>, hello: Option<u8>) -> ConnectionEarlyData {
        let shared = HelloVerdict {
            record: record.clone(),
            verdict: OnceLock::new(),
        };
        if let Some(byte) = hello {
            shared
                .verdict
                .get_or_init(|| record.check(&random(byte), Instant::now()));
        }
        ConnectionEarlyData(Arc::new(shared))
    }

    #[test]
    fn a_connection_without_a_verdict_is_refused_and_requests_after_the_handshake_are_not_early() {
        let record = Arc::new(ReplayRecord::new(4));
        let unchecked = connection(&record, None);
        assert_eq!(unchecked.classify(false), EarlyData::No);
        assert_eq!(unchecked.classify(true), EarlyData::Unchecked);
    }

    #[test]
    fn every_early_request_of_one_connection_shares_its_verdict() {
        let record = Arc::new(ReplayRecord::new(4));
        let original = connection(&record, Some(7));
        assert_eq!(original.classify(true), EarlyData::Fresh);
        assert_eq!(original.classify(true), EarlyData::Fresh);
        let replay = connection(&record, Some(7));
        assert_eq!(replay.classify(true), EarlyData::Replayed);
        assert_eq!(replay.classify(false), EarlyData::No);
    }
}
