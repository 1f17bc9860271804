//! A small HTTP/3 client on tokio-quiche's client driver: many concurrent requests on one
//! QUIC connection, TLS verified against a given CA. Used by the edge's tests and by the
//! `h3load` load generator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use quiche::h3::{Header, NameValue};
use tokio::sync::{mpsc, oneshot};
use tokio_quiche::http3::driver::{
    ClientH3Event, H3Event, InboundFrame, IncomingH3Headers, NewClientRequest, OutboundFrame,
};
use tokio_quiche::http3::settings::Http3Settings;
use tokio_quiche::quic::{connect_with_config, ConnectionHook};
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ClientH3Driver, ConnectionParams};

/// A response read completely.
#[derive(Debug, Clone)]
pub struct H3Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl H3Response {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct Job {
    headers: Vec<Header>,
    body: Option<Bytes>,
    reply: oneshot::Sender<Result<H3Response>>,
}

/// One QUIC connection; requests on it run concurrently (each is its own stream).
#[derive(Clone)]
pub struct H3Connection {
    jobs: mpsc::UnboundedSender<Job>,
    authority: String,
    peer_serial: Option<String>,
}

/// Connection options beyond the address and the CA ([`H3Connection::connect_with`]).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TLS key-exchange groups, BoringSSL syntax (`X25519:P-256`). `None` keeps BoringSSL's
    /// default, whose post-quantum hybrid key share makes the ClientHello span two Initial
    /// packets.
    pub groups: Option<String>,
    /// Write a qlog per connection into this directory (default: `$H3CLIENT_QLOG_DIR`).
    pub qlog_dir: Option<String>,
    /// quiche's GREASE (reserved transport parameters and frame types).
    pub grease: bool,
}

impl Default for ClientOptions {
    /// X25519 then P-256, like the TCP clients of the perf suite (h2load, rustls): a
    /// single-packet ClientHello. Envoy 1.40 loses multi-packet ClientHellos from this client
    /// about half of the time (perf/README.md).
    fn default() -> Self {
        Self {
            groups: Some("X25519:P-256".to_string()),
            qlog_dir: std::env::var("H3CLIENT_QLOG_DIR").ok(),
            grease: true,
        }
    }
}

/// Verifies the server against our CA (quiche's default verification uses the system roots)
/// and records the serial of the leaf the server presented.
struct TrustCa {
    ca_file: Option<PathBuf>,
    groups: Option<String>,
    leaf_serial: Arc<std::sync::Mutex<Option<String>>>,
}

impl ConnectionHook for TrustCa {
    fn create_custom_ssl_context_builder(
        &self,
        _settings: TlsCertificatePaths<'_>,
    ) -> Option<boring::ssl::SslContextBuilder> {
        let mut builder =
            boring::ssl::SslContextBuilder::new(boring::ssl::SslMethod::tls()).ok()?;
        match &self.ca_file {
            Some(ca) => {
                builder.set_ca_file(ca).ok()?;
                builder.set_verify(boring::ssl::SslVerifyMode::PEER);
            }
            None => builder.set_verify(boring::ssl::SslVerifyMode::NONE),
        }
        if let Some(groups) = &self.groups {
            builder.set_curves_list(groups).ok()?;
        }
        // quiche replaces the verify callback (`verify_peer`), so the leaf is read when
        // the handshake is done instead.
        let seen = self.leaf_serial.clone();
        builder.set_info_callback(move |ssl, mode, _| {
            if mode != boring::ssl::SslInfoCallbackMode::HANDSHAKE_DONE {
                return;
            }
            let serial = ssl
                .peer_certificate()
                .and_then(|cert| cert.serial_number().to_bn().ok())
                .and_then(|bn| bn.to_hex_str().ok().map(|s| s.to_ascii_lowercase()));
            if let (Some(serial), Ok(mut slot)) = (serial, seen.lock()) {
                *slot = Some(serial);
            }
        });
        Some(builder)
    }
}

impl H3Connection {
    /// Connects to `addr`, sending `server_name` as SNI / `:authority` and verifying the
    /// certificate against `ca_file` (no verification when `None`, for benchmarks only).
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        ca_file: Option<&Path>,
    ) -> Result<Self> {
        Self::connect_with(addr, server_name, ca_file, &ClientOptions::default()).await
    }

    /// [`H3Connection::connect`] with explicit [`ClientOptions`].
    pub async fn connect_with(
        addr: SocketAddr,
        server_name: &str,
        ca_file: Option<&Path>,
        options: &ClientOptions,
    ) -> Result<Self> {
        let bind: SocketAddr = if addr.is_ipv4() {
            "127.0.0.1:0".parse()?
        } else {
            "[::1]:0".parse()?
        };
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        socket.connect(addr).await?;
        let mut settings = QuicSettings::default();
        settings.max_idle_timeout = Some(Duration::from_secs(30));
        settings.verify_peer = ca_file.is_some();
        settings.initial_max_streams_bidi = 1000;
        settings.initial_max_data = 32 * 1024 * 1024;
        settings.initial_max_stream_data_bidi_local = 4 * 1024 * 1024;
        settings.initial_max_stream_data_bidi_remote = 4 * 1024 * 1024;
        settings.qlog_dir = options.qlog_dir.clone();
        settings.grease = options.grease;
        let leaf_serial = Arc::new(std::sync::Mutex::new(None));
        let hooks = Hooks {
            connection_hook: Some(Arc::new(TrustCa {
                ca_file: ca_file.map(Path::to_path_buf),
                groups: options.groups.clone(),
                leaf_serial: leaf_serial.clone(),
            })),
        };
        // The hook only runs when certificate paths are given; they are not read.
        let params = ConnectionParams::new_client(
            settings,
            Some(TlsCertificatePaths {
                cert: "unused",
                private_key: "unused",
                kind: CertificateKind::X509,
            }),
            hooks,
        );
        let (driver, mut controller) = ClientH3Driver::new(Http3Settings::default());
        let socket = tokio_quiche::socket::Socket::try_from(socket)?;
        connect_with_config(socket, Some(server_name), &params, driver)
            .await
            .map_err(|e| anyhow!("QUIC handshake with {addr} failed: {e}"))?;

        let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<Job>();
        let sender = controller.request_sender();
        let mut events = controller.take_event_receiver();
        tokio::spawn(async move {
            // The controller must live as long as the connection.
            let _controller = controller;
            let mut next_id: u64 = 0;
            let mut waiting: HashMap<u64, oneshot::Sender<Result<H3Response>>> = HashMap::new();
            let mut by_stream: HashMap<u64, oneshot::Sender<Result<H3Response>>> = HashMap::new();
            loop {
                tokio::select! {
                    job = jobs_rx.recv() => {
                        let Some(job) = job else { break };
                        next_id += 1;
                        let (writer_tx, writer_rx) = oneshot::channel();
                        let request = NewClientRequest {
                            request_id: next_id,
                            headers: job.headers,
                            body_writer: job.body.as_ref().map(|_| writer_tx),
                        };
                        if sender.send(request).is_err() {
                            let _ = job.reply.send(Err(anyhow!("connection closed")));
                            continue;
                        }
                        if let Some(body) = job.body {
                            tokio::spawn(async move {
                                if let Ok(mut writer) = writer_rx.await {
                                    let _ = writer.send(OutboundFrame::Body(body, true)).await;
                                }
                            });
                        }
                        waiting.insert(next_id, job.reply);
                    }
                    event = events.recv() => {
                        let Some(event) = event else { break };
                        match event {
                            ClientH3Event::NewOutboundRequest { stream_id, request_id } => {
                                if let Some(reply) = waiting.remove(&request_id) {
                                    by_stream.insert(stream_id, reply);
                                }
                            }
                            ClientH3Event::Core(H3Event::IncomingHeaders(incoming)) => {
                                if let Some(reply) = by_stream.remove(&incoming.stream_id) {
                                    tokio::spawn(async move {
                                        let _ = reply.send(read_response(incoming).await);
                                    });
                                }
                            }
                            ClientH3Event::Core(H3Event::ResetStream { stream_id }) => {
                                if let Some(reply) = by_stream.remove(&stream_id) {
                                    let _ = reply.send(Err(anyhow!("stream {stream_id} reset by the server")));
                                }
                            }
                            ClientH3Event::Core(H3Event::ConnectionShutdown(_) | H3Event::ConnectionError(_)) => {}
                            ClientH3Event::Core(_) => {}
                        }
                    }
                }
            }
            for (_, reply) in waiting.drain().chain(by_stream.drain()) {
                let _ = reply.send(Err(anyhow!("connection closed")));
            }
        });
        let peer_serial = leaf_serial.lock().ok().and_then(|s| s.clone());
        Ok(Self {
            jobs: jobs_tx,
            authority: server_name.to_string(),
            peer_serial,
        })
    }

    /// Serial (lower-case hex) of the certificate the server presented in the handshake.
    pub fn peer_serial(&self) -> Option<&str> {
        self.peer_serial.as_deref()
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&self, request: http::Request<Bytes>) -> Result<H3Response> {
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| self.authority.clone());
        let mut headers = vec![
            Header::new(b":method", parts.method.as_str().as_bytes()),
            Header::new(b":scheme", b"https"),
            Header::new(b":authority", authority.as_bytes()),
            Header::new(b":path", path.as_bytes()),
        ];
        for (name, value) in &parts.headers {
            headers.push(Header::new(name.as_str().as_bytes(), value.as_bytes()));
        }
        let (reply, response) = oneshot::channel();
        self.jobs
            .send(Job {
                headers,
                body: (!body.is_empty()).then_some(body),
                reply,
            })
            .map_err(|_| anyhow!("connection closed"))?;
        response.await.map_err(|_| anyhow!("connection closed"))?
    }

    /// Sends a request given as ready HTTP/3 header fields (pseudo-headers first) and an
    /// optional body: the load generator's path, which builds the fields once and clones them.
    pub async fn send_fields(
        &self,
        headers: Vec<Header>,
        body: Option<Bytes>,
    ) -> Result<H3Response> {
        let (reply, response) = oneshot::channel();
        self.jobs
            .send(Job {
                headers,
                body: body.filter(|b| !b.is_empty()),
                reply,
            })
            .map_err(|_| anyhow!("connection closed"))?;
        response.await.map_err(|_| anyhow!("connection closed"))?
    }

    /// The `:authority` used when a request's URI has none.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET path` with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<H3Response> {
        self.send(build("GET", path, headers, Bytes::new())?).await
    }

    /// `POST path` with a body and extra headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<H3Response> {
        self.send(build("POST", path, headers, body.into())?).await
    }
}

fn build(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<http::Request<Bytes>> {
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Ok(builder.body(body)?)
}

async fn read_response(incoming: IncomingH3Headers) -> Result<H3Response> {
    let mut status = None;
    let mut headers = HeaderMap::new();
    for header in &incoming.headers {
        if header.name() == b":status" {
            status = Some(StatusCode::from_bytes(header.value())?);
        } else if !header.name().starts_with(b":") {
            headers.append(
                HeaderName::from_bytes(header.name())?,
                HeaderValue::from_bytes(header.value())?,
            );
        }
    }
    let status = status.ok_or_else(|| anyhow!("response without :status"))?;
    let mut body = BytesMut::new();
    let mut recv = incoming.recv;
    let mut finished = incoming.read_fin;
    while !finished {
        match recv.recv().await {
            Some(InboundFrame::Body(chunk, fin)) => {
                body.extend_from_slice(&chunk);
                finished = fin;
            }
            Some(InboundFrame::Datagram(_)) => {}
            None => bail!("stream closed before the end of the body"),
        }
    }
    Ok(H3Response {
        status,
        headers,
        body: body.freeze(),
    })
}
