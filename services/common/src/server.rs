//! Serving: the operational endpoints, the standard gRPC services, and graceful shutdown.
//!
//! A service builds its axum `Router` and tonic `Routes`, then calls [`serve`], which runs the
//! HTTP and gRPC listeners until SIGTERM/SIGINT and then drains both: new connections are
//! refused, in-flight requests finish (bounded by a grace period).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::error::{ApiError, ErrorKind};
use crate::metrics::{grpc_span, observe_http, Metrics};
use crate::redis::RedisHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Whether the service can do its job: PostgreSQL and Redis reachable, migrations applied.
/// Optional stores (a cache the service can do without) are reported but never make it
/// unready: a replica that can answer from PostgreSQL stays in rotation.
#[derive(Debug)]
pub struct Readiness {
    pool: Pool,
    redis: RedisHandle,
    optional: std::sync::Mutex<Vec<(&'static str, Option<RedisHandle>)>>,
    migrated: AtomicBool,
    timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessReport {
    pub postgres: Result<(), String>,
    pub redis: Result<(), String>,
    /// Name and state of each optional store: `ok`, `disabled` or the error.
    pub optional: Vec<(&'static str, String)>,
    pub migrated: bool,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.postgres.is_ok() && self.redis.is_ok() && self.migrated
    }

    pub fn to_json(&self) -> serde_json::Value {
        let check = |r: &Result<(), String>| match r {
            Ok(()) => "ok".to_string(),
            Err(e) => e.clone(),
        };
        let mut checks = serde_json::json!({
            "postgres": check(&self.postgres),
            "redis": check(&self.redis),
            "migrations": if self.migrated { "applied" } else { "pending" },
        });
        for (name, state) in &self.optional {
            checks[*name] = serde_json::Value::from(state.as_str());
        }
        serde_json::json!({
            "status": if self.is_ready() { "ready" } else { "not_ready" },
            "checks": checks,
        })
    }
}

impl Readiness {
    pub fn new(pool: Pool, redis: RedisHandle, timeout: Duration) -> Self {
        Self {
            pool,
            redis,
            optional: std::sync::Mutex::new(Vec::new()),
            migrated: AtomicBool::new(false),
            timeout,
        }
    }

    /// Reports `redis` (None: not configured, `disabled`) under `name` without gating
    /// readiness on it.
    pub fn add_optional_redis(&self, name: &'static str, redis: Option<RedisHandle>) {
        self.optional
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((name, redis));
    }

    pub fn mark_migrated(&self) {
        self.migrated.store(true, Ordering::Release);
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    pub async fn check(&self) -> ReadinessReport {
        let optional = self
            .optional
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let (postgres, redis, optional) = tokio::join!(
            crate::db::ping(&self.pool, self.timeout),
            async { self.redis.ping().await.map_err(|e| e.to_string()) },
            async {
                // Usually one store (records' cache): asked in turn, beside the others.
                let mut states = Vec::with_capacity(optional.len());
                for (name, redis) in optional {
                    let state = match redis {
                        None => "disabled".to_string(),
                        Some(redis) => match redis.ping().await {
                            Ok(()) => "ok".to_string(),
                            Err(err) => err.to_string(),
                        },
                    };
                    states.push((name, state));
                }
                states
            },
        );
        ReadinessReport {
            postgres,
            redis,
            optional,
            migrated: self.is_migrated(),
        }
    }
}

/// State of the operational endpoints.
#[derive(Clone)]
pub struct OpsState {
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    pub pool: Pool,
}

/// `/healthz` (the process answers), `/readyz` (dependencies reachable, else 503),
/// `/metrics` (Prometheus text).
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let report = state.readiness.check().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report.to_json())).into_response()
}

async fn metrics(State(state): State<OpsState>) -> Response {
    state.metrics.set_pool_status(&state.pool.status());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Wraps a service's router with what every route gets: JSON 404/405, the body limit, and
/// request observation (span with request id, access log, metrics).
pub fn finish_router(router: Router, metrics: Arc<Metrics>, max_body_bytes: usize) -> Router {
    router
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(metrics, observe_http))
}

/// `grpc.health.v1.Health` and server reflection (v1 and v1alpha, which older grpcurl
/// versions ask for) over `descriptor_set` plus the health service's own descriptor.
pub fn standard_grpc_routes(
    descriptor_set: &'static [u8],
) -> Result<(tonic::service::Routes, HealthReporter), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok((routes, reporter))
}

/// Keeps the gRPC health status of `services` (and the server as a whole, `""`) in line with
/// [`Readiness`], until shutdown, when everything turns NOT_SERVING.
pub fn spawn_health_updater(
    reporter: HealthReporter,
    readiness: Arc<Readiness>,
    services: &'static [&'static str],
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let set_all = |status: ServingStatus| {
            let reporter = reporter.clone();
            async move {
                for name in std::iter::once("").chain(services.iter().copied()) {
                    reporter.set_service_status(name, status).await;
                }
            }
        };
        loop {
            let status = if readiness.check().await.is_ready() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_all(status).await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        set_all(ServingStatus::NotServing).await;
    });
}

/// Flips to `true` on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> Result<watch::Receiver<bool>, ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down: draining");
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn wait_for_shutdown(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once it has fired.
    let _ = rx.wait_for(|stop| *stop).await;
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves HTTP on `http` and gRPC (h2c) on `grpc` until `shutdown` fires, then drains both
/// for at most `grace`.
pub async fn serve(
    http: TcpListener,
    router: Router,
    grpc: TcpListener,
    grpc_routes: tonic::service::Routes,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ServeError> {
    let addr = |listener: &TcpListener| {
        listener
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string())
    };
    tracing::info!(http = %addr(&http), grpc = %addr(&grpc), "listening");

    let http_server = axum::serve(http, router.into_make_service())
        .with_graceful_shutdown(wait_for_shutdown(shutdown.clone()));
    let grpc_server = tonic::transport::Server::builder()
        .trace_fn(grpc_span)
        // The identity gate binds assertions to the call's path, which tonic does not hand
        // to method implementations: recorded here for IdentityGate::from_grpc.
        .layer(tower::util::MapRequestLayer::new(
            crate::identity::record_request_target::<tonic::body::Body>,
        ))
        .add_routes(grpc_routes)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc),
            wait_for_shutdown(shutdown.clone()),
        );
    let both = async {
        let (http_result, grpc_result) = tokio::join!(http_server.into_future(), grpc_server);
        http_result.map_err(ServeError::Http)?;
        grpc_result?;
        Ok::<(), ServeError>(())
    };
    drain_within(both, shutdown, grace).await
}

/// Serves HTTP only (a service without gRPC, e.g. `web`) on `http` until `shutdown` fires,
/// then drains for at most `grace`.
pub async fn serve_http(
    http: TcpListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ServeError> {
    let addr = http
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    tracing::info!(http = %addr, "listening");
    let server = axum::serve(http, router.into_make_service())
        .with_graceful_shutdown(wait_for_shutdown(shutdown.clone()));
    let drained = async { server.into_future().await.map_err(ServeError::Http) };
    drain_within(drained, shutdown, grace).await
}

/// Runs `servers` (which stop accepting and drain on `shutdown`) to completion, or gives up
/// `grace` after `shutdown` fired: a stuck request must not keep a stopped process alive.
async fn drain_within(
    servers: impl std::future::Future<Output = Result<(), ServeError>>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ServeError> {
    let deadline = async {
        wait_for_shutdown(shutdown).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = servers => {
            tracing::info!("drained; exiting");
            result
        }
        _ = deadline => {
            tracing::warn!(?grace, "requests still running after the grace period; exiting anyway");
            Ok(())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
    #[error("identity: {0}")]
    Identity(#[from] crate::identity::IdentityConfigError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// What both services build the same way from their flags: pool, Redis, metrics, readiness,
/// the identity gate. A service adds its own state on top, then calls [`ServiceBase::run`].
pub struct ServiceBase {
    pub name: &'static str,
    pub pool: Pool,
    pub redis: RedisHandle,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub gate: Arc<crate::IdentityGate>,
    db: crate::config::DatabaseArgs,
    shared: crate::config::SharedServeArgs,
}

/// The service-specific parts [`ServiceBase::run`] serves.
pub struct ServiceSpec {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// The service's own routes (the operational ones are added).
    pub router: Router,
    /// Adds the service's own gRPC services to the routes already holding health and
    /// reflection (tonic's `Routes` cannot be merged: each carries a fallback).
    pub grpc: Box<dyn FnOnce(tonic::service::Routes) -> tonic::service::Routes + Send>,
    /// Fully qualified gRPC service names, for the health service.
    pub grpc_service_names: &'static [&'static str],
    pub descriptor_set: &'static [u8],
    pub migrations: fn() -> refinery::Runner,
    pub history_table: &'static str,
}

impl ServiceBase {
    /// `session_options`: `-c name=value` settings for every pooled connection.
    pub fn new(
        name: &'static str,
        db: &crate::config::DatabaseArgs,
        shared: &crate::config::SharedServeArgs,
        session_options: &str,
    ) -> Result<Self, StartError> {
        let gate = crate::IdentityGate::from_args(&shared.identity, name)?;
        let pool = crate::db::create_pool(db, name, session_options)?;
        let redis = RedisHandle::new(
            &shared.redis_url,
            &shared.redis_namespace,
            shared.redis_timeout,
        )?;
        let readiness = Readiness::new(pool.clone(), redis.clone(), db.db_timeout);
        Ok(Self {
            name,
            pool,
            redis,
            metrics: Arc::new(Metrics::new(name)?),
            readiness: Arc::new(readiness),
            gate: Arc::new(gate),
            db: db.clone(),
            shared: shared.clone(),
        })
    }

    /// Binds both listeners (failing fast if a port is taken), migrates in the background,
    /// and serves until `shutdown`, then drains.
    pub async fn run(
        self,
        spec: ServiceSpec,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), StartError> {
        let http = bind(spec.http_addr).await?;
        let grpc = bind(spec.grpc_addr).await?;

        let readiness = Arc::clone(&self.readiness);
        let url = self.db.database_url.clone();
        let timeout = self.db.db_timeout;
        tokio::spawn(async move {
            let result = crate::db::migrate_with_retry(
                &url,
                timeout,
                spec.history_table,
                spec.migrations,
                None,
            )
            .await;
            if result.is_ok() {
                readiness.mark_migrated();
            }
        });

        let (routes, reporter) = standard_grpc_routes(spec.descriptor_set)?;
        spawn_health_updater(
            reporter,
            Arc::clone(&self.readiness),
            spec.grpc_service_names,
            shutdown.clone(),
        );
        let grpc_routes = (spec.grpc)(routes);

        let ops = ops_router(OpsState {
            readiness: Arc::clone(&self.readiness),
            metrics: Arc::clone(&self.metrics),
            pool: self.pool.clone(),
        });
        let router = finish_router(
            spec.router.merge(ops),
            Arc::clone(&self.metrics),
            self.shared.max_body_bytes,
        );
        serve(
            http,
            router,
            grpc,
            grpc_routes,
            shutdown,
            self.shared.shutdown_grace,
        )
        .await?;
        Ok(())
    }
}
