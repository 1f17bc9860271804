//! The one Pingora `ProxyHttp` implementation, for h1, h2 and h3 alike (HTTP/3 streams
//! arrive as Pingora custom sessions, see `h3`). Thin by design: each phase calls into the
//! shared pipeline (`pipeline`), the upstream pool (`upstream`) or the access log
//! (`access_log`) and returns. [`classify_failure`] is the one failure classifier and
//! [`EdgeProxy::logging`] the one request record for every protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use gateway_plugins::{EarlyDataOutcome, ErrorKind, Protocol};
use pingora_cache::key::{CacheKey, HashBinary};
use pingora_cache::{CacheMeta, RespCacheable};
use pingora_core::modules::http::compression::ResponseCompressionBuilder;
use pingora_core::modules::http::grpc_web::{GrpcWeb, GrpcWebBridge};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, HttpProxy, ProxyHttp, Session};
use smallvec::SmallVec;

use crate::access_log::{self, AccessRecord};
use crate::connections::{ConnectionGate, Transport};
use crate::metric_series::RouteSeries;
use crate::pipeline::{self, Admission, Forward};
use crate::routes::Route;
use crate::state::{EdgeState, Snapshot};
use crate::trace::RequestSpan;
use crate::upstream::{ClusterSlot, InFlight};

mod downstream;
mod failure;

use downstream::{discard_unread_body, downstream_of, write_edge_response};
use failure::{classify_failure, client_went_away};

/// Per-request state across Pingora's phases.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    protocol: Protocol,
    peer: Option<SocketAddr>,
    forward: Option<Forward>,
    /// Set when the edge answered the request itself (`health`, `policy`, `no_route`, ...).
    answered: Option<&'static str>,
    /// The route that took the request (forwarded or answered by the edge on its behalf).
    route: Option<Arc<Route>>,
    in_flight: Option<InFlight>,
    /// This request's place under its cluster's `max_concurrent_requests`.
    cluster_slot: Option<ClusterSlot>,
    /// Held while this attempt waits for its upstream connection (`max_pending_connections`).
    pending_slot: Option<ClusterSlot>,
    /// The current backend's outcome went to outlier detection already.
    outcome_recorded: bool,
    /// Backend indices this request already tried (retries go elsewhere).
    tried: SmallVec<[usize; 4]>,
    retries_left: u32,
    body_bytes: u64,
    upstream_started: Option<Instant>,
    upstream_reused: Option<bool>,
    /// `edge_upstream_errors_total{kind}` / access-log `error` for a failed request.
    failure: Option<&'static str>,
    /// Kept as the header value (a reference count, not a copy); read as text for the log.
    grpc_status: Option<http::HeaderValue>,
    span: Option<RequestSpan>,
    /// Set on a cached route: whether this request uses the cache.
    cache: Option<crate::cache::Decision>,
    /// The `x-cache-status` sent (metrics and the access log).
    cache_status: Option<&'static str>,
    /// What the 0-RTT gate decided, for a request sent in early data.
    early_data: Option<EarlyDataOutcome>,
}

pub struct EdgeProxy {
    state: Arc<EdgeState>,
    connections: Arc<ConnectionGate>,
    /// The request metrics of requests no route took (route `-`).
    unrouted: RouteSeries,
}

/// The proxy every listener hands its requests to: the TCP service (h1, h2) and the QUIC
/// listener (h3) share one instance, hence one upstream connection pool.
pub type EdgeHttpProxy = HttpProxy<EdgeProxy>;

impl EdgeProxy {
    pub fn new(state: Arc<EdgeState>, connections: Arc<ConnectionGate>) -> Self {
        Self {
            state,
            connections,
            unrouted: RouteSeries::default(),
        }
    }

    /// One `edge_upstream_errors_total{cluster, kind}`.
    fn count_upstream_error(&self, cluster: &str, kind: &str) {
        self.state
            .metrics
            .upstream_errors
            .with_label_values(&[cluster, kind])
            .inc();
    }

    /// Tells outlier detection how the current backend did, once per attempt.
    fn record_outcome(&self, ctx: &mut RequestCtx, failed: bool) {
        if ctx.outcome_recorded {
            return;
        }
        let (Some(forward), Some(in_flight)) = (ctx.forward.as_ref(), ctx.in_flight.as_ref())
        else {
            return;
        };
        ctx.outcome_recorded = true;
        let cluster = &forward.route.cluster;
        if cluster
            .record_outcome(in_flight.backend(), failed)
            .is_some()
        {
            self.state
                .metrics
                .upstream_ejections
                .with_label_values(&[&*cluster.name, &in_flight.backend().label])
                .inc();
        }
    }
}

/// The verified user a `per_user` cached route keys on: the `sub` of the token the route's
/// JWT check accepted (never a client's header).
fn cache_user(forward: &Forward) -> Option<&str> {
    if !forward.route.cache.as_ref().is_some_and(|c| c.per_user) {
        return None;
    }
    forward.user.as_deref()
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            protocol: Protocol::Http1,
            peer: None,
            forward: None,
            answered: None,
            route: None,
            in_flight: None,
            cluster_slot: None,
            pending_slot: None,
            outcome_recorded: false,
            tried: SmallVec::new(),
            retries_left: 0,
            body_bytes: 0,
            upstream_started: None,
            upstream_reused: None,
            failure: None,
            grpc_status: None,
            span: None,
            cache: None,
            cache_status: None,
            early_data: None,
        }
    }

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        // grpc-web (HTTP/1.1 browsers) is bridged to gRPC over h2 upstreams.
        modules.add_module(Box::new(GrpcWeb));
        // On per route in request_filter (compression.rs).
        modules.add_module(ResponseCompressionBuilder::enable(
            crate::compression::MODULE_LEVEL,
        ));
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        crate::front::header_received();
        if let Some(bridge) = session.downstream_modules_ctx.get_mut::<GrpcWebBridge>() {
            bridge.init();
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.started = Instant::now();
        let snapshot = self.state.snapshot();
        let limits = &snapshot.config().limits;
        session.set_read_timeout(Some(limits.client_read_timeout));
        session.set_write_timeout(Some(limits.client_write_timeout));
        session.set_keepalive(Some(limits.idle_timeout.as_secs().max(1)));

        let downstream = downstream_of(session);
        ctx.protocol = downstream.protocol;
        ctx.peer = downstream.peer_addr;
        if let Some(tracer) = &self.state.tracer {
            ctx.span = Some(RequestSpan::start(
                tracer,
                session.req_header(),
                ctx.protocol,
                ctx.peer,
            ));
        }
        let transport = match ctx.protocol {
            Protocol::Http3 => Transport::Quic,
            _ => Transport::Tcp,
        };
        let admission = if self.connections.is_shed(transport, ctx.peer) {
            pipeline::overloaded(
                pipeline::is_grpc(&session.req_header().headers),
                "the edge is at its connection limit; retry shortly",
            )
        } else {
            pipeline::admit(&snapshot, session.req_header(), &downstream).await
        };
        ctx.early_data = match &admission {
            Admission::Answer(answer) => answer.early_data,
            Admission::Forward(forward) => forward.early_data.then_some(EarlyDataOutcome::Accepted),
        };
        if let Some(outcome) = ctx.early_data {
            self.state
                .metrics
                .quic_early_data
                .with_label_values(&[outcome.as_str()])
                .inc();
        }
        let result = match admission {
            Admission::Answer(answer) => {
                ctx.answered = Some(answer.reason);
                ctx.route = answer.route.clone();
                // An unread request body would be parsed as the next request: close instead.
                // A shed connection is closed too, so the client reconnects after Retry-After.
                let close =
                    !session.as_downstream_mut().is_body_done() || answer.reason == "overloaded";
                write_edge_response(
                    session,
                    &self.state,
                    &snapshot,
                    &answer.response,
                    ctx.protocol,
                    close,
                )
                .await?;
                if close {
                    discard_unread_body(session).await;
                }
                Ok(true)
            }
            Admission::Forward(forward) => {
                crate::compression::for_route(
                    session,
                    forward.route.compression.as_ref(),
                    forward.grpc,
                )?;
                ctx.route = Some(forward.route.clone());
                ctx.retries_left = forward.route.cluster.config.retries;
                ctx.forward = Some(forward);
                Ok(false)
            }
        };
        ctx.snapshot = Some(snapshot);
        result
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // An h2 client may end its body with an empty DATA frame (END_STREAM). Pingora 0.9.1
        // hands that on as `Body(Some(""), end)`, and its chunked HTTP/1.1 writer turns an
        // empty chunk into the terminator "0\r\n\r\n" — then writes the terminator again
        // when it finishes the body. The stray 5 bytes sit in front of the next request on
        // that pooled upstream connection, which the backend then rejects (400). "No data,
        // end" is what the empty frame means.
        if end_of_stream && body.as_ref().is_some_and(Bytes::is_empty) {
            *body = None;
        }
        if let (Some(chunk), Some(forward)) = (body.as_ref(), ctx.forward.as_ref()) {
            ctx.body_bytes += chunk.len() as u64;
            // Chunked bodies have no Content-Length to check up front.
            if ctx.body_bytes > forward.route.max_body_bytes {
                ctx.failure = Some("payload_too_large");
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the route limit",
                );
            }
        }
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        let Some(forward) = ctx.forward.as_ref() else {
            return Ok(());
        };
        let Some(policy) = forward.route.cache.as_ref() else {
            return Ok(());
        };
        let user = cache_user(forward);
        ctx.cache = Some(self.state.cache.enable(session, policy, user));
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Self::CTX) -> Result<CacheKey> {
        let user = ctx.forward.as_ref().and_then(cache_user);
        Ok(crate::cache::cache_key(session.req_header(), user))
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        response: &ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<RespCacheable> {
        match ctx.forward.as_ref().and_then(|f| f.route.cache.as_ref()) {
            Some(policy) => Ok(crate::cache::cacheability(policy, response)),
            None => Ok(RespCacheable::Uncacheable(
                pingora_cache::NoCacheReason::NeverEnabled,
            )),
        }
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Self::CTX,
        request: &RequestHeader,
    ) -> Option<HashBinary> {
        crate::cache::variance(meta, request)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
        error: Option<&Error>,
    ) -> bool {
        // The route's `stale_while_revalidate` / `stale_if_error` (or the origin's own
        // directives) are the permission RFC 9111 section 4.2.4 asks for; pingora-cache
        // checks the stored object's windows before asking. `None`: while revalidating.
        ctx.cache == Some(crate::cache::Decision::Use)
            && error.is_none_or(|e| e.esource() == &ErrorSource::Upstream)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let forward = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route decided"))?;
        let cluster = &forward.route.cluster;
        if ctx.cluster_slot.is_none() {
            match cluster.reserve_slot() {
                Some(slot) => ctx.cluster_slot = Some(slot),
                None => {
                    ctx.failure = Some("cluster_busy");
                    self.count_upstream_error(&cluster.name, "cluster_busy");
                    return Error::e_explain(ErrorType::HTTPStatus(503), "cluster at capacity");
                }
            }
        }
        match cluster.reserve_pending() {
            Some(slot) => ctx.pending_slot = Some(slot),
            None => {
                ctx.failure = Some("cluster_busy");
                self.count_upstream_error(&cluster.name, "cluster_pending");
                return Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    "too many requests waiting for a connection to the cluster",
                );
            }
        }
        // The previous attempt's backend is no longer this request's.
        ctx.in_flight = None;
        ctx.outcome_recorded = false;
        match cluster.select(&ctx.tried) {
            Some((index, in_flight)) => {
                ctx.tried.push(index);
                let peer = in_flight.backend().peer();
                ctx.in_flight = Some(in_flight);
                Ok(Box::new(peer))
            }
            None => {
                ctx.failure = Some("no_healthy_backend");
                self.count_upstream_error(&cluster.name, "no_healthy_backend");
                Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend")
            }
        }
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.pending_slot = None;
        ctx.upstream_started = Some(Instant::now());
        ctx.upstream_reused = Some(reused);
        if let Some(forward) = &ctx.forward {
            let cluster = &forward.route.cluster;
            cluster
                .series
                .count_connection(&self.state.metrics, &cluster.name, reused);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(forward) = &ctx.forward {
            self.count_upstream_error(&forward.route.cluster.name, "connect");
        }
        ctx.failure = Some("connect");
        ctx.pending_slot = None;
        self.record_outcome(ctx, true);
        // Retry elsewhere only when repeating the request is harmless and nothing of a
        // request body has been consumed.
        let alternative = ctx
            .forward
            .as_ref()
            .is_some_and(|f| f.route.cluster.has_untried_backend(&ctx.tried));
        if alternative
            && ctx.retries_left > 0
            && pipeline::is_idempotent(&session.req_header().method)
            && ctx.body_bytes == 0
        {
            ctx.retries_left -= 1;
            e.set_retry(true);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let forward = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route decided"))?;
        pipeline::prepare_upstream_request(upstream_request, forward, ctx.peer)?;
        if forward.route.cache.is_some() && forward.route.compression.is_some() {
            // The edge compresses for each client: the origin sends (and the cache keeps)
            // the identity body, served to every client in its own encoding.
            upstream_request.remove_header(&http::header::ACCEPT_ENCODING);
        }
        if let Some(span) = &ctx.span {
            span.inject(upstream_request);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(started), Some(forward)) = (ctx.upstream_started, ctx.forward.as_ref()) {
            let cluster = &forward.route.cluster;
            cluster
                .series
                .observe_duration(&self.state.metrics, &cluster.name, started.elapsed());
        }
        if let Some(status) = upstream_response.headers.get("grpc-status") {
            ctx.grpc_status = Some(status.clone());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(forward) = ctx.forward.as_ref() {
            crate::compression::for_response(
                session,
                forward.route.compression.as_ref(),
                upstream_response,
            );
        }
        if let (Some(snapshot), Some(forward)) = (ctx.snapshot.as_ref(), ctx.forward.as_ref()) {
            pipeline::decorate_response(
                upstream_response,
                snapshot,
                &self.state,
                &forward.response_headers,
                ctx.protocol,
            );
            pipeline::add_route_headers(upstream_response, &forward.route);
        }
        if let Some(decision) = ctx.cache {
            let status = crate::cache::status(decision, session.cache.phase());
            ctx.cache_status = Some(status);
            upstream_response.insert_header(crate::cache::STATUS_HEADER, status)?;
        }
        self.record_outcome(ctx, upstream_response.status.is_server_error());
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(status) = upstream_trailers.get("grpc-status") {
            ctx.grpc_status = Some(status.clone());
        }
        Ok(())
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        // A client that left mid-request is not an edge failure; an error line per aborted
        // download would bury the real ones. The request is still counted and access-logged.
        let gone = client_went_away(error);
        if gone {
            tracing::debug!(%error, "the client went away mid-request");
        }
        gone
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let grpc = ctx
            .forward
            .as_ref()
            .map(|f| f.grpc)
            .unwrap_or_else(|| pipeline::is_grpc(&session.req_header().headers));
        let Some((kind, code, message)) = classify_failure(e, ctx) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.failure = ctx.failure.or(Some(code));
        if kind == ErrorKind::RequestTimeout {
            self.state
                .metrics
                .client_timeouts
                .with_label_values(&["body"])
                .inc();
        }
        if kind == ErrorKind::GatewayTimeout {
            if let Some(forward) = &ctx.forward {
                self.count_upstream_error(&forward.route.cluster.name, "timeout");
            }
        }
        let mut response = pipeline::edge_error(kind, code, &message, grpc);
        if kind == ErrorKind::Unavailable {
            pipeline::add_retry_after(&mut response);
        }
        let status = response.status.as_u16();
        // Headers already sent (the upstream failed mid-body): nothing clean can be written.
        if session.response_written().is_none() {
            let snapshot = ctx
                .snapshot
                .clone()
                .unwrap_or_else(|| self.state.snapshot());
            if let Err(err) = write_edge_response(
                session,
                &self.state,
                &snapshot,
                &response,
                ctx.protocol,
                // Pingora closes the client connection after a failed proxy attempt
                // whatever we return; say so to HTTP/1.1 keep-alive clients.
                true,
            )
            .await
            {
                tracing::debug!(%err, "could not send the error response");
            } else if !session.as_downstream_mut().is_body_done() {
                discard_unread_body(session).await;
            }
        } else {
            return FailToProxy {
                error_code: status,
                can_reuse_downstream: false,
            };
        }
        if grpc {
            ctx.grpc_status = Some(http::HeaderValue::from(kind.grpc_code() as u16));
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        // A backend that never answered (timeout, broken response) failed this request.
        if matches!(
            ctx.failure,
            Some("upstream_timeout" | "upstream_error" | "upstream_unreachable")
        ) {
            self.record_outcome(ctx, true);
        }
        ctx.in_flight.take();
        crate::compression::observe(session, &self.state.metrics);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route_id = ctx.route.as_ref().map(|r| &*r.id);
        let route = route_id.unwrap_or("-");
        if let Some(span) = ctx.span.take() {
            span.finish(
                status,
                route_id,
                ctx.forward.as_ref().map(|f| &*f.route.cluster.name),
                ctx.failure.or_else(|| e.map(|e| e.etype().as_str())),
            );
        }
        let request = session.req_header();
        let elapsed = ctx.started.elapsed();
        let series = ctx.route.as_ref().map_or(&self.unrouted, |r| &r.series);
        series.observe(
            &self.state.metrics,
            route,
            &request.method,
            status,
            ctx.protocol,
            elapsed,
        );
        if let Some(cache_status) = ctx.cache_status {
            self.state
                .metrics
                .observe_cache(route, cache_status, session.body_bytes_sent() as u64);
        }
        if ctx.body_bytes > 0 {
            self.state
                .metrics
                .request_body_bytes
                .observe(ctx.body_bytes as f64);
        }
        let snapshot = ctx.snapshot.as_ref();
        if snapshot.is_none_or(|s| s.config().logging.access_log) {
            access_log::emit(&AccessRecord {
                protocol: ctx.protocol,
                method: request.method.as_str(),
                path: request.uri.path(),
                route,
                cluster: ctx.forward.as_ref().map(|f| &*f.route.cluster.name),
                status,
                grpc_status: ctx.grpc_status.as_ref().and_then(|v| v.to_str().ok()),
                duration: elapsed,
                upstream_duration: ctx.upstream_started.map(|s| s.elapsed()),
                upstream_reused: ctx.upstream_reused,
                request_bytes: ctx.body_bytes,
                response_bytes: session.body_bytes_sent() as u64,
                client: ctx
                    .forward
                    .as_ref()
                    .map(|f| f.client_ip)
                    .or(ctx.peer.map(|p| p.ip())),
                request_id: ctx
                    .forward
                    .as_ref()
                    .and_then(|f| f.request_id.as_ref())
                    .and_then(|v| v.to_str().ok()),
                answered_by_edge: ctx.answered,
                cache: ctx.cache_status,
                early_data: ctx.early_data.map(EarlyDataOutcome::as_str),
                error: ctx.failure.or_else(|| e.map(|e| e.etype().as_str())),
            });
        }
    }
}
