//! The HTTPS front: Pingora's TCP TLS listener (h1, h2) and the QUIC listener (h3) as ONE
//! Pingora service, on one runtime, around one shared `EdgeHttpProxy`.
//!
//! Why one runtime: the proxy's upstream pool is shared by all protocols, and a pooled
//! connection stays registered with the I/O driver of the runtime that opened it. With
//! HTTP/3 on a runtime of its own, every h3 request on a connection an h2 request had
//! opened woke two threads per I/O event (measured: h3 CPU per request 1.5x h2's; on one
//! runtime it is at h2's level, perf/README.md).

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::protocols::http::v2::server::H2Options;
use pingora_core::protocols::http::ServerSession;
#[cfg(unix)]
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_core::services::Service as ServiceTrait;

use crate::h3::Http3Service;
use crate::proxy::EdgeHttpProxy;

/// Lets Pingora's TCP service run the shared `Arc<EdgeHttpProxy>` (a `Service` owns its
/// app by value; the QUIC listener holds the same Arc).
pub struct SharedProxy(pub Arc<EdgeHttpProxy>);

#[async_trait]
impl HttpServerApp for SharedProxy {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.0.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.0.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.0.server_options()
    }

    async fn http_cleanup(&self) {
        self.0.http_cleanup().await;
    }
}

/// The TCP service plus, when HTTP/3 is on, the QUIC listener started on the same runtime.
pub struct HttpsFront {
    tcp: Service<SharedProxy>,
    quic: Option<Arc<Http3Service>>,
}

impl HttpsFront {
    pub fn new(tcp: Service<SharedProxy>, quic: Option<Http3Service>) -> Self {
        Self {
            tcp,
            quic: quic.map(Arc::new),
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
        let quic = self.quic.clone().map(|quic| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { quic.serve(shutdown).await })
        });
        self.tcp
            .start_service(
                #[cfg(unix)]
                fds,
                shutdown,
                listeners_per_fd,
            )
            .await;
        // The TCP side has drained; let HTTP/3 finish its own drain.
        if let Some(quic) = quic {
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
        self.tcp.listen_addresses()
    }
}
