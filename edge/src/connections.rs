//! Connection admission: a cap per client IP and a global one, for TCP and QUIC alike.
//!
//! Every accepted TCP connection passes [`ConnectionGate::admit`] before its TLS handshake
//! (pingora-core's `ConnectionAdmission` hook, vendor/README.md); every QUIC connection
//! before its first request is served. The returned [`Admitted`] guard lives as long as the
//! connection, so the counts are exact, failed and timed-out handshakes included.
//!
//! - Over `limits.max_connections_per_ip`: refused at once, before any TLS work. One address
//!   holding that many connections is a client bug or an attack; a reply would cost a
//!   handshake per attempt.
//! - Over `limits.max_connections`: admitted but *shed*: each request on the connection gets
//!   `503` + `Retry-After` (gRPC `UNAVAILABLE`) and the connection closes, so clients back off
//!   instead of queueing into timeouts. Beyond twice the cap even that is too much work and
//!   connections are refused like the per-IP case.
//!
//! The caps are read from the live config snapshot per connection, so a reload changes them.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pingora_core::services::listening::ConnectionAdmission;
use prometheus::{IntCounterVec, IntGauge};

use crate::state::EdgeState;

/// Which side of the HTTPS port a connection came in on (a TCP and a QUIC peer may share an
/// address and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Quic,
}

/// Caps as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_ip: usize,
    pub global: usize,
}

/// Why a connection was refused or shed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    Shed,
    RefusePerIp,
    RefuseGlobal,
}

#[derive(Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
}

pub struct ConnectionGate {
    state: Option<Arc<EdgeState>>,
    fixed_caps: Caps,
    total: AtomicUsize,
    counts: Mutex<Counts>,
    /// Connections admitted over the global cap; `shed_count` lets the per-request check
    /// skip the lock while none is.
    shed: Mutex<HashSet<(Transport, SocketAddr)>>,
    shed_count: AtomicUsize,
    decisions: Option<IntCounterVec>,
    /// `edge_client_connections_open`: admitted connections, from accept to close.
    open_gauge: Option<IntGauge>,
}

impl ConnectionGate {
    /// The gate of a running edge: caps from the current config snapshot, decisions counted
    /// in `edge_connections_limited_total`, open ones in `edge_client_connections_open`.
    pub fn new(state: Arc<EdgeState>) -> Arc<Self> {
        let decisions = state.metrics.connections_limited.clone();
        let open_gauge = state.metrics.client_connections_open.clone();
        Self::build(Some(state), None, Some(decisions), Some(open_gauge))
    }

    /// A gate with fixed caps and no metrics (tests).
    #[cfg(test)]
    fn with_caps(caps: Caps) -> Arc<Self> {
        Self::build(None, Some(caps), None, None)
    }

    fn build(
        state: Option<Arc<EdgeState>>,
        fixed_caps: Option<Caps>,
        decisions: Option<IntCounterVec>,
        open_gauge: Option<IntGauge>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state,
            fixed_caps: fixed_caps.unwrap_or(Caps {
                per_ip: usize::MAX,
                global: usize::MAX,
            }),
            total: AtomicUsize::new(0),
            counts: Mutex::default(),
            shed: Mutex::default(),
            shed_count: AtomicUsize::new(0),
            decisions,
            open_gauge,
        })
    }

    fn caps(&self) -> Caps {
        match &self.state {
            Some(state) => {
                let snapshot = state.snapshot();
                let limits = &snapshot.config().limits;
                Caps {
                    per_ip: limits.max_connections_per_ip,
                    global: limits.max_connections,
                }
            }
            None => self.fixed_caps,
        }
    }

    /// Decides for one new connection. `None` means: drop it now.
    pub fn admit(
        self: &Arc<Self>,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Option<Admitted> {
        let caps = self.caps();
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        let ip = peer.map(|p| p.ip());
        let verdict = {
            let mut counts = self.counts.lock();
            let from_ip = ip.map(|ip| {
                let n = counts.per_ip.entry(ip).or_insert(0);
                *n += 1;
                *n
            });
            let verdict = decide(caps, total, from_ip.unwrap_or(0));
            if verdict == Verdict::RefusePerIp || verdict == Verdict::RefuseGlobal {
                if let Some(ip) = ip {
                    release_ip(&mut counts, ip);
                }
            }
            verdict
        };
        self.count(verdict, transport);
        match verdict {
            Verdict::RefusePerIp | Verdict::RefuseGlobal => {
                self.total.fetch_sub(1, Ordering::AcqRel);
                None
            }
            Verdict::Admit | Verdict::Shed => {
                let shed_key = match (verdict, peer) {
                    (Verdict::Shed, Some(peer)) => {
                        self.shed.lock().insert((transport, peer));
                        self.shed_count.fetch_add(1, Ordering::AcqRel);
                        Some((transport, peer))
                    }
                    _ => None,
                };
                if let Some(gauge) = &self.open_gauge {
                    gauge.inc();
                }
                Some(Admitted {
                    gate: self.clone(),
                    ip,
                    shed_key,
                })
            }
        }
    }

    /// Whether requests on this connection are to be answered `503` (admitted over the cap).
    pub fn is_shed(&self, transport: Transport, peer: Option<SocketAddr>) -> bool {
        if self.shed_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        peer.is_some_and(|peer| self.shed.lock().contains(&(transport, peer)))
    }

    /// Open connections counted by the gate.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn count(&self, verdict: Verdict, transport: Transport) {
        let reason = match verdict {
            Verdict::Admit => return,
            Verdict::Shed => "shed",
            Verdict::RefusePerIp => "refused_per_ip",
            Verdict::RefuseGlobal => "refused_global",
        };
        let transport = match transport {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        };
        if let Some(decisions) = &self.decisions {
            decisions.with_label_values(&[transport, reason]).inc();
        }
    }
}

/// The rule, on the counts that include the new connection.
fn decide(caps: Caps, total: usize, from_ip: usize) -> Verdict {
    if from_ip > caps.per_ip {
        Verdict::RefusePerIp
    } else if total > caps.global.saturating_mul(2) {
        Verdict::RefuseGlobal
    } else if total > caps.global {
        Verdict::Shed
    } else {
        Verdict::Admit
    }
}

fn release_ip(counts: &mut Counts, ip: IpAddr) {
    if let Some(n) = counts.per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            counts.per_ip.remove(&ip);
        }
    }
}

/// Held for a connection's lifetime; releases its place when dropped.
pub struct Admitted {
    gate: Arc<ConnectionGate>,
    ip: Option<IpAddr>,
    shed_key: Option<(Transport, SocketAddr)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(key) = self.shed_key.take() {
            self.gate.shed.lock().remove(&key);
            self.gate.shed_count.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(ip) = self.ip {
            release_ip(&mut self.gate.counts.lock(), ip);
        }
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(gauge) = &self.gate.open_gauge {
            gauge.dec();
        }
    }
}

/// The TCP side: pingora-core calls this right after `accept()`.
pub struct TcpAdmission(pub Arc<ConnectionGate>);

impl ConnectionAdmission for TcpAdmission {
    fn admit(&self, peer: Option<SocketAddr>) -> Option<Box<dyn Send + Sync>> {
        self.0
            .admit(Transport::Tcp, peer)
            .map(|admitted| Box::new(admitted) as Box<dyn Send + Sync>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().expect("ip"), port))
    }

    #[test]
    fn the_per_ip_cap_refuses_only_that_address_and_frees_on_close() {
        let gate = ConnectionGate::with_caps(Caps {
            per_ip: 2,
            global: 100,
        });
        let a = gate.admit(Transport::Tcp, addr("10.0.0.1", 1));
        let b = gate.admit(Transport::Tcp, addr("10.0.0.1", 2));
        assert!(a.is_some() && b.is_some());
        assert!(gate.admit(Transport::Tcp, addr("10.0.0.1", 3)).is_none());
        assert!(
            gate.admit(Transport::Quic, addr("10.0.0.1", 4)).is_none(),
            "QUIC counts toward the same address"
        );
        let other = gate.admit(Transport::Tcp, addr("10.0.0.2", 1));
        assert!(other.is_some(), "another address is not affected");
        assert_eq!(gate.open(), 3);
        drop(a);
        let again = gate.admit(Transport::Tcp, addr("10.0.0.1", 5));
        assert!(again.is_some(), "a closed connection frees its place");
        assert_eq!(
            gate.open(),
            3,
            "the refused and the dropped one are released"
        );
    }

    #[test]
    fn over_the_global_cap_connections_are_shed_then_refused() {
        let gate = ConnectionGate::with_caps(Caps {
            per_ip: 100,
            global: 2,
        });
        let held: Vec<_> = (1..=2)
            .map(|port| gate.admit(Transport::Tcp, addr("10.0.0.1", port)))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(!gate.is_shed(Transport::Tcp, addr("10.0.0.1", 1)));
        let third = gate.admit(Transport::Tcp, addr("10.0.0.1", 3));
        let fourth = gate.admit(Transport::Tcp, addr("10.0.0.1", 4));
        assert!(third.is_some() && fourth.is_some());
        assert!(gate.is_shed(Transport::Tcp, addr("10.0.0.1", 3)));
        assert!(!gate.is_shed(Transport::Quic, addr("10.0.0.1", 3)));
        assert!(gate.admit(Transport::Tcp, addr("10.0.0.1", 5)).is_none());
        drop(third);
        assert!(!gate.is_shed(Transport::Tcp, addr("10.0.0.1", 3)));
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn connections_without_an_address_count_globally() {
        let gate = ConnectionGate::with_caps(Caps {
            per_ip: 1,
            global: 1,
        });
        let a = gate.admit(Transport::Tcp, None);
        assert!(a.is_some());
        let b = gate.admit(Transport::Tcp, None);
        assert!(b.is_some(), "over the cap: shed, not refused");
        assert!(
            !gate.is_shed(Transport::Tcp, None),
            "no address to answer by"
        );
        assert!(gate.admit(Transport::Tcp, None).is_none());
    }
}
