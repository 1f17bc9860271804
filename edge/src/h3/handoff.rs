//! HTTP/3 across a graceful upgrade: one UDP socket, and packets steered to the process
//! that serves their connection.
//!
//! The QUIC listener's socket goes through Pingora's upgrade handoff beside the TCP
//! listeners (key `udp:<address>` in the listen-fd table), so after an upgrade the old and
//! the new process read the SAME socket instead of two `SO_REUSEPORT` sockets between
//! which the kernel splits a connection's packets. Whichever process reads a packet:
//!
//! - every connection ID a process issues starts with its *generation* byte
//!   ([`GenerationCids`]), so a packet names the process that serves it;
//! - each process owns a Unix datagram socket pair. It reads end A, and leaves end B in
//!   the fd table (`quic-gen:<generation>`), so every newer process inherits B. Writing
//!   to B reaches that (older) process; writing to A reaches the newer ones, which read B;
//! - a packet a process's listener does not know (tokio-quiche PATCH(edge), [`route`]) goes
//!   to the older process its generation names, or — a newer generation's, or a new
//!   connection's Initial once this process drains — to the newer processes. Packets read
//!   from A are never steered again and a packet is never sent back to the process it
//!   came from, so each one ends after a few hops at most.
//!
//! The old process keeps serving its connections from the shared socket until they end
//! or `[server] grace_period` runs out, then closes them (GOAWAY, `CONNECTION_CLOSE`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use pingora_core::server::ListenFds;
use prometheus::IntCounterVec;
use quiche::ConnectionId;
use tokio::sync::mpsc;
use tokio_quiche::quic::{ForeignPacketSteering, Incoming, PacketSteering};
use tokio_quiche::{ConnectionIdGenerator, QuicResult};

use super::handoff_wire::{self, Message};

/// Length of the connection IDs the edge issues: generation byte + 19 random bytes.
pub const CID_LEN: usize = 20;
const GENERATION_KEY: &str = "quic-gen:";
const UDP_KEY: &str = "udp:";
/// Forwarded packets waiting for a listener; past it they are dropped (QUIC resends).
const INJECT_QUEUE: usize = 1024;
/// Socket-pair buffers: a burst of forwarded packets must not be dropped at once.
const PAIR_BUFFER_BYTES: usize = 4 << 20;
/// A GRO buffer (64 KiB) plus the message header.
const MAX_MESSAGE: usize = 65_536 + 128;

/// Where a packet of an unknown connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This process's listener (a new connection, or nobody's).
    Here,
    /// The older process of this generation.
    Older(u8),
    /// The newer processes (the successor).
    Newer,
}

/// Where the packet being routed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the shared UDP socket.
    Socket,
    /// Forwarded by the older process of this generation.
    OlderProcess(u8),
}

/// The generation a connection ID names, if it is one the edge issued.
pub fn generation_of(dcid: &[u8]) -> Option<u8> {
    (dcid.len() == CID_LEN).then(|| dcid[0])
}

/// The steering rule (pure, so it is tested on its own).
pub fn route(
    me: u8,
    older_alive: impl Fn(u8) -> bool,
    successor: bool,
    draining: bool,
    dcid: &[u8],
    initial: bool,
    source: Source,
) -> Route {
    if let Some(generation) = generation_of(dcid) {
        if generation == me {
            return Route::Here;
        }
        if older_alive(generation) {
            return match source {
                // Its own process sent it on: that process does not know it either.
                Source::OlderProcess(from) if from == generation => Route::Here,
                _ => Route::Older(generation),
            };
        }
    }
    // A newer generation, or a client-chosen ID (a new connection's Initial). While this
    // process still accepts, its new connections are its own, as on TCP.
    if successor && (draining || !initial) {
        Route::Newer
    } else {
        Route::Here
    }
}

struct OlderProcess {
    generation: u8,
    /// Its end B: a write reaches that process; a read gets what it sends to newer ones.
    end: UnixDatagram,
}

/// This process's part of the QUIC handoff (one per process, shared by its listeners).
pub struct QuicHandoff {
    generation: u8,
    older: RwLock<Vec<OlderProcess>>,
    /// End A of this process's pair.
    own: UnixDatagram,
    /// A newer process announced itself.
    successor: AtomicBool,
    /// This process stopped accepting new connections.
    draining: AtomicBool,
    injectors: RwLock<HashMap<SocketAddr, mpsc::Sender<Incoming>>>,
    sockets: Mutex<HashMap<SocketAddr, std::net::UdpSocket>>,
    keys: Vec<String>,
    packets: IntCounterVec,
}

impl QuicHandoff {
    /// Takes the UDP sockets of `addresses` from the fd table (after an upgrade) or binds
    /// them, finds the older processes still alive, announces this one to them, and
    /// leaves in the table what a successor needs.
    pub fn inherit(
        fds: &ListenFds,
        addresses: &[SocketAddr],
        bind: impl Fn(SocketAddr) -> io::Result<std::net::UdpSocket>,
        packets: IntCounterVec,
    ) -> io::Result<Arc<Self>> {
        let mut table = fds.lock();
        let (keys, _) = table.serialize();
        let mut taken = HashSet::new();
        let mut inherited = Vec::new();
        for key in &keys {
            let Some(generation) = key
                .strip_prefix(GENERATION_KEY)
                .and_then(|g| g.parse::<u8>().ok())
            else {
                continue;
            };
            let Some(end) = table.clone_fd(key).transpose()? else {
                continue;
            };
            taken.insert(generation);
            inherited.push((generation, key.clone(), UnixDatagram::from(end)));
        }
        let generation = (1..=u8::MAX)
            .find(|g| !taken.contains(g))
            .ok_or_else(|| io::Error::other("every QUIC generation is in use"))?;

        let mut older = Vec::new();
        let mut gone = HashSet::new();
        for (older_generation, key, end) in inherited {
            end.set_nonblocking(true)?;
            // The hello doubles as the liveness probe: a process that exited refuses it
            // (any other failure, a full buffer say, leaves it counted as alive).
            match end.send(&handoff_wire::encode_hello(generation)) {
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::debug!(older_generation, "an older edge process is gone");
                    gone.insert(key);
                }
                result => {
                    if let Err(err) = result {
                        tracing::warn!(older_generation, %err, "could not greet an older edge process");
                    }
                    older.push(OlderProcess {
                        generation: older_generation,
                        end,
                    });
                }
            }
        }
        if !gone.is_empty() {
            let keep: HashSet<String> = keys.into_iter().filter(|k| !gone.contains(k)).collect();
            table.close_unclaimed(&keep);
        }

        let mut sockets = HashMap::new();
        let mut own_keys = Vec::new();
        for &address in addresses {
            let key = format!("{UDP_KEY}{address}");
            let socket = match table.clone_fd(&key).transpose()? {
                Some(fd) => std::net::UdpSocket::from(fd),
                None => {
                    let socket = bind(address)?;
                    // The table holds its own descriptor for as long as this process
                    // lives: it is what a successor receives.
                    table.add(key.clone(), socket.try_clone()?.into_raw_fd());
                    socket
                }
            };
            socket.set_nonblocking(true)?;
            sockets.insert(address, socket);
            own_keys.push(key);
        }

        let (own, successors_end) = UnixDatagram::pair()?;
        for end in [&own, &successors_end] {
            end.set_nonblocking(true)?;
            let end = socket2::SockRef::from(end);
            end.set_send_buffer_size(PAIR_BUFFER_BYTES)?;
            end.set_recv_buffer_size(PAIR_BUFFER_BYTES)?;
        }
        table.add(
            format!("{GENERATION_KEY}{generation}"),
            successors_end.into_raw_fd(),
        );
        own_keys.push(format!("{GENERATION_KEY}{generation}"));
        own_keys.extend(
            older
                .iter()
                .map(|o| format!("{GENERATION_KEY}{}", o.generation)),
        );
        tracing::info!(
            generation,
            older = ?older.iter().map(|o| o.generation).collect::<Vec<_>>(),
            "QUIC connection IDs of this process carry its generation"
        );
        Ok(Arc::new(Self {
            generation,
            older: RwLock::new(older),
            own,
            successor: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            injectors: RwLock::new(HashMap::new()),
            sockets: Mutex::new(sockets),
            keys: own_keys,
            packets,
        }))
    }

    pub fn generation(&self) -> u8 {
        self.generation
    }

    /// The fd-table keys this process hands to a successor (a service must claim them,
    /// or Pingora prunes them).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The UDP socket of `address` (once).
    pub fn take_socket(&self, address: SocketAddr) -> Option<std::net::UdpSocket> {
        self.sockets.lock().ok()?.remove(&address)
    }

    pub fn cid_generator(&self) -> Arc<dyn ConnectionIdGenerator<'static>> {
        Arc::new(GenerationCids(self.generation))
    }

    /// The steering for the listener of `address`.
    pub fn steering(self: &Arc<Self>, address: SocketAddr) -> PacketSteering {
        let (inject, injected) = mpsc::channel(INJECT_QUEUE);
        if let Ok(mut injectors) = self.injectors.write() {
            injectors.insert(address, inject);
        }
        PacketSteering {
            foreign: Arc::new(ListenerSteering {
                handoff: self.clone(),
                listener: address,
            }),
            injected,
        }
    }

    /// A newer process announced itself (this one is being upgraded).
    pub fn has_successor(&self) -> bool {
        self.successor.load(Ordering::Acquire)
    }

    /// From now on new connections belong to the successor.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Reads what other processes send this one, until the runtime stops.
    pub async fn run(self: Arc<Self>) {
        let mut readers = tokio::task::JoinSet::new();
        match self.own.try_clone() {
            Ok(own) => {
                readers.spawn(self.clone().read(own, None));
            }
            Err(err) => tracing::error!(%err, "cannot read the QUIC handoff socket"),
        }
        let older: Vec<_> = match self.older.read() {
            Ok(older) => older
                .iter()
                .filter_map(|o| Some((o.generation, o.end.try_clone().ok()?)))
                .collect(),
            Err(_) => Vec::new(),
        };
        for (generation, end) in older {
            readers.spawn(self.clone().read(end, Some(generation)));
        }
        while readers.join_next().await.is_some() {}
    }

    /// `from`: the older process whose end this is; `None` for this process's own end A,
    /// whose packets were steered here and are never steered again.
    async fn read(self: Arc<Self>, end: UnixDatagram, from: Option<u8>) {
        let end = match tokio::net::UnixDatagram::from_std(end) {
            Ok(end) => end,
            Err(err) => {
                tracing::error!(%err, "cannot register a QUIC handoff socket");
                return;
            }
        };
        let mut datagram = vec![0u8; MAX_MESSAGE];
        loop {
            let n = match end.recv(&mut datagram).await {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(%err, "QUIC handoff socket failed");
                    return;
                }
            };
            match handoff_wire::decode(&datagram[..n]) {
                Some(Message::Hello { generation }) => {
                    self.successor.store(true, Ordering::Release);
                    tracing::info!(
                        generation,
                        "a newer edge process shares the QUIC sockets; steering its packets to it"
                    );
                }
                Some(Message::Packet {
                    listener,
                    mut incoming,
                }) => match from {
                    None => self.inject(listener, incoming),
                    Some(from) => {
                        let Ok(header) = quiche::Header::from_slice(&mut incoming.buf, CID_LEN)
                        else {
                            continue;
                        };
                        let initial = header.ty == quiche::Type::Initial;
                        match self.route(&header.dcid, initial, Source::OlderProcess(from)) {
                            Route::Here => self.inject(listener, incoming),
                            Route::Older(generation) => {
                                self.send_older(generation, listener, &incoming)
                            }
                            Route::Newer => self.send_newer(listener, &incoming),
                        }
                    }
                },
                None => {}
            }
        }
    }

    fn route(&self, dcid: &[u8], initial: bool, source: Source) -> Route {
        let Ok(older) = self.older.read() else {
            return Route::Here;
        };
        route(
            self.generation,
            |g| older.iter().any(|o| o.generation == g),
            self.successor.load(Ordering::Acquire),
            self.draining.load(Ordering::Acquire),
            dcid,
            initial,
            source,
        )
    }

    fn inject(&self, listener: SocketAddr, incoming: Incoming) {
        let sent = self
            .injectors
            .read()
            .ok()
            .and_then(|injectors| injectors.get(&listener).cloned())
            .map(|inject| inject.try_send(incoming).is_ok())
            .unwrap_or(false);
        self.count(if sent { "injected" } else { "dropped" });
    }

    fn send_older(&self, generation: u8, listener: SocketAddr, incoming: &Incoming) {
        let result = match self.older.read() {
            Ok(older) => match older.iter().find(|o| o.generation == generation) {
                Some(process) => send_encoded(&process.end, listener, incoming),
                None => Err(io::ErrorKind::NotFound.into()),
            },
            Err(_) => Err(io::ErrorKind::Other.into()),
        };
        match result {
            Ok(()) => self.count("to_older"),
            Err(err) => {
                if err.kind() == io::ErrorKind::ConnectionRefused {
                    // That process has exited: its generation's packets are nobody's now.
                    if let Ok(mut older) = self.older.write() {
                        older.retain(|o| o.generation != generation);
                    }
                    tracing::info!(generation, "an older edge process has exited");
                }
                self.count("dropped");
            }
        }
    }

    fn send_newer(&self, listener: SocketAddr, incoming: &Incoming) {
        match send_encoded(&self.own, listener, incoming) {
            Ok(()) => self.count("to_newer"),
            Err(_) => self.count("dropped"),
        }
    }

    fn count(&self, route: &str) {
        self.packets.with_label_values(&[route]).inc();
    }
}

thread_local! {
    /// Reused for every forwarded packet (the router runs on one task per listener).
    static MESSAGE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(MAX_MESSAGE));
}

fn send_encoded(end: &UnixDatagram, listener: SocketAddr, incoming: &Incoming) -> io::Result<()> {
    MESSAGE.with(|message| {
        let mut message = message.borrow_mut();
        handoff_wire::encode_packet(listener, incoming, &mut message);
        end.send(&message).map(|_| ())
    })
}

/// The steering of one listener: tokio-quiche asks it about unknown connections.
struct ListenerSteering {
    handoff: Arc<QuicHandoff>,
    listener: SocketAddr,
}

impl ForeignPacketSteering for ListenerSteering {
    fn steer(&self, incoming: Incoming, hdr: &quiche::Header<'_>) -> Option<Incoming> {
        let initial = hdr.ty == quiche::Type::Initial;
        match self.handoff.route(&hdr.dcid, initial, Source::Socket) {
            Route::Here => Some(incoming),
            Route::Older(generation) => {
                self.handoff
                    .send_older(generation, self.listener, &incoming);
                None
            }
            Route::Newer => {
                self.handoff.send_newer(self.listener, &incoming);
                None
            }
        }
    }
}

/// Connection IDs that start with the process generation.
pub struct GenerationCids(pub u8);

impl ConnectionIdGenerator<'static> for GenerationCids {
    fn new_connection_id(&self) -> ConnectionId<'static> {
        let mut id = vec![0u8; CID_LEN];
        id[0] = self.0;
        if boring::rand::rand_bytes(&mut id[1..]).is_err() {
            // Not expected; the IDs must stay unguessable, so use the OS hasher's keys.
            use std::hash::{BuildHasher, RandomState};
            for chunk in id[1..].chunks_mut(8) {
                let bytes = RandomState::new().hash_one(0u8).to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
        }
        ConnectionId::from_vec(id)
    }

    fn verify_connection_id(&self, cid: &ConnectionId<'_>) -> QuicResult<()> {
        match generation_of(cid) {
            Some(generation) if generation == self.0 => Ok(()),
            _ => Err("not a connection ID of this process".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(generation: u8) -> Vec<u8> {
        let mut id = vec![9u8; CID_LEN];
        id[0] = generation;
        id
    }

    #[test]
    fn packets_go_to_the_generation_their_connection_id_names() {
        let older = |g| g == 1 || g == 2;
        // Process 3, an upgrade of 2 of 1; it has no successor.
        let at3 =
            |dcid: &[u8], initial, source| route(3, older, false, false, dcid, initial, source);
        assert_eq!(at3(&cid(3), false, Source::Socket), Route::Here);
        assert_eq!(at3(&cid(1), false, Source::Socket), Route::Older(1));
        assert_eq!(
            at3(&cid(2), false, Source::OlderProcess(1)),
            Route::Older(2)
        );
        // A packet its own process sent on is nobody's: it is not sent back.
        assert_eq!(at3(&cid(1), false, Source::OlderProcess(1)), Route::Here);
        // The newest process owns new connections and unknown generations.
        assert_eq!(at3(&[7u8; 8], true, Source::Socket), Route::Here);
        assert_eq!(at3(&cid(9), false, Source::Socket), Route::Here);
        assert_eq!(at3(&[7u8; 8], true, Source::OlderProcess(2)), Route::Here);
    }

    #[test]
    fn an_old_process_hands_newer_packets_on_and_new_connections_once_it_drains() {
        let none = |_| false;
        let at1 = |draining, dcid: &[u8], initial| {
            route(1, none, true, draining, dcid, initial, Source::Socket)
        };
        assert_eq!(at1(false, &cid(1), false), Route::Here);
        assert_eq!(at1(false, &cid(2), false), Route::Newer);
        // Before it drains, an old process still accepts (as its TCP listener does).
        assert_eq!(at1(false, &[7u8; 8], true), Route::Here);
        assert_eq!(at1(true, &[7u8; 8], true), Route::Newer);
        assert_eq!(at1(true, &cid(1), false), Route::Here);
        // Without a successor nothing leaves the process.
        assert_eq!(
            route(1, none, false, true, &cid(2), false, Source::Socket),
            Route::Here
        );
    }

    #[test]
    fn issued_connection_ids_carry_the_generation_and_are_random() {
        let cids = GenerationCids(42);
        let (a, b) = (cids.new_connection_id(), cids.new_connection_id());
        assert_eq!(a.len(), CID_LEN);
        assert_eq!(generation_of(&a), Some(42));
        assert_ne!(a, b);
        assert!(cids.verify_connection_id(&a).is_ok());
        assert!(GenerationCids(41).verify_connection_id(&a).is_err());
    }
}
