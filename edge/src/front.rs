//! The HTTPS front: Pingora's TCP TLS listener (h1, h2) and the QUIC listener (h3) as ONE
//! Pingora service, on one runtime, around one shared `EdgeHttpProxy`.
//!
//! Why one runtime: the proxy's upstream pool is shared by all protocols, and a pooled
//! connection stays registered with the I/O driver of the runtime that opened it. With
//! HTTP/3 on a runtime of its own, every h3 request on a connection an h2 request had
//! opened woke two threads per I/O event (measured: h3 CPU per request 1.5x h2's; on one
//! runtime it is at h2's level, perf/README.md).

use std::cell::Cell;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::v2::server::H2Options;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
#[cfg(unix)]
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_core::services::Service as ServiceTrait;

use crate::h3::handoff::QuicHandoff;
use crate::h3::Http3Service;
use crate::proxy::EdgeHttpProxy;
use crate::state::EdgeState;

/// What the header deadline needs to know about the HTTP/1.1 connection being served.
#[derive(Default)]
struct ConnectionClock {
    /// Requests started on this connection (the first one has no keep-alive wait).
    requests: Cell<u32>,
    /// The current request's header has been read (the proxy's first phase ran).
    header_received: Cell<bool>,
}

tokio::task_local! {
    // Pingora serves an HTTP/1.1 connection, all its keep-alive requests included, on the
    // one task `TcpFront::process_new` runs on; h2 streams get tasks of their own.
    static CONNECTION: ConnectionClock;
}

/// Called by the proxy's first phase: the request header is complete.
pub fn header_received() {
    let _ = CONNECTION.try_with(|clock| clock.header_received.set(true));
}

/// The app of the TCP service: scopes each connection's [`ConnectionClock`].
pub struct TcpFront(pub Arc<SharedProxy>);

#[async_trait]
impl ServerApp for TcpFront {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        CONNECTION
            .scope(
                ConnectionClock::default(),
                self.0.process_new(stream, shutdown),
            )
            .await
    }

    async fn cleanup(&self) {
        self.0.cleanup().await;
    }
}

/// Lets Pingora's TCP service run the shared `Arc<EdgeHttpProxy>` (a `Service` owns its
/// app by value; the QUIC listener holds the same Arc), and puts a deadline on a whole
/// HTTP/1.1 request header, which Pingora's per-read timeout (restarted by every byte)
/// does not.
pub struct SharedProxy {
    pub proxy: Arc<EdgeHttpProxy>,
    pub state: Arc<EdgeState>,
}

#[async_trait]
impl HttpServerApp for SharedProxy {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // HTTP/2 header blocks arrive whole (h2 enforces the size); only h1 trickles.
        let first = match session.is_http2() {
            true => None,
            false => CONNECTION
                .try_with(|clock| {
                    let n = clock.requests.get();
                    clock.requests.set(n.saturating_add(1));
                    clock.header_received.set(false);
                    n == 0
                })
                .ok(),
        };
        let Some(first) = first else {
            return self.proxy.process_new_http(session, shutdown).await;
        };
        let deadline = {
            let snapshot = self.state.snapshot();
            let limits = &snapshot.config().limits;
            // A keep-alive connection may sit idle before its next request starts.
            limits.header_timeout
                + if first {
                    Default::default()
                } else {
                    limits.idle_timeout
                }
        };
        let serve = self.proxy.process_new_http(session, shutdown);
        tokio::pin!(serve);
        tokio::select! {
            reused = &mut serve => return reused,
            () = tokio::time::sleep(deadline) => {}
        }
        if CONNECTION.with(|clock| clock.header_received.get()) {
            return serve.await;
        }
        // Dropping the future closes the connection: a client that cannot finish its
        // header in time gets no answer (as nginx's client_header_timeout).
        self.state
            .metrics
            .client_timeouts
            .with_label_values(&["header"])
            .inc();
        None
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// The TCP service plus, when HTTP/3 is on, the QUIC listener started on the same runtime.
pub struct HttpsFront {
    tcp: Service<TcpFront>,
    /// One QUIC listener per address of `[listeners.https]` (none without `http3`).
    quic: Vec<Arc<Http3Service>>,
    /// Their sockets' part of the graceful upgrade.
    handoff: Option<Arc<QuicHandoff>>,
}

impl HttpsFront {
    pub fn new(
        tcp: Service<TcpFront>,
        quic: Vec<Http3Service>,
        handoff: Option<Arc<QuicHandoff>>,
    ) -> Self {
        Self {
            tcp,
            quic: quic.into_iter().map(Arc::new).collect(),
            handoff,
        }
    }
}

#[async_trait]
impl ServiceTrait for HttpsFront {
    async fn start_service(
        &mut self,
        #[cfg(unix)] fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        // Spawned from inside the service: the QUIC socket and every h3 request task live
        // on this service's runtime, beside the TCP listener and the pool's connections.
        if let Some(handoff) = &self.handoff {
            tokio::spawn(handoff.clone().run());
        }
        let quic: Vec<_> = self
            .quic
            .iter()
            .map(|quic| {
                let (quic, shutdown) = (quic.clone(), shutdown.clone());
                tokio::spawn(async move { quic.serve(shutdown).await })
            })
            .collect();
        self.tcp
            .start_service(
                #[cfg(unix)]
                fds,
                shutdown,
                listeners_per_fd,
            )
            .await;
        // The TCP side has drained; let HTTP/3 finish its own drain.
        for quic in quic {
            if let Err(err) = quic.await {
                tracing::error!(%err, "the HTTP/3 listener task failed");
            }
        }
    }

    fn name(&self) -> &str {
        self.tcp.name()
    }

    fn threads(&self) -> Option<usize> {
        ServiceTrait::threads(&self.tcp)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        // The QUIC sockets and handoff pairs are in the fd table too: claimed here, or
        // Pingora closes them in a successor before the QUIC listeners start.
        let mut addresses = self.tcp.listen_addresses()?;
        if let Some(handoff) = &self.handoff {
            addresses.extend(handoff.keys().iter().cloned());
        }
        Some(addresses)
    }
}
