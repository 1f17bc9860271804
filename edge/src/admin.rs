//! The admin listener (127.0.0.1:9000 by default; never expose it publicly):
//! `GET /metrics`, `/healthz`, `/readyz`, `/config`, `/certs`, and
//! `POST /certs/reload`, `POST /config/reload`, `POST /cache/purge`. Access rules:
//! `admin_guard`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::admin_guard::{self, Access};
use crate::certs::CertReload;
use crate::reload::{self, ConfigReload};
use crate::state::EdgeState;

pub struct AdminApp {
    state: Arc<EdgeState>,
    /// Where the listener is bound (fixed at start; the access rules depend on it).
    bound: SocketAddr,
}

impl AdminApp {
    pub fn new(state: Arc<EdgeState>, bound: SocketAddr) -> Self {
        Self { state, bound }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    let bytes = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("content-length", bytes.len())
        .body(bytes)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Vec<u8>> {
    json_response(status, json!({"error": {"code": code, "message": message}}))
}

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AdminApp {
    /// Ready when a config and certificates are loaded and every required cluster has a
    /// backend that passed its first health check.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let snapshot = self.state.snapshot();
        let mut ready = true;
        let mut clusters = serde_json::Map::new();
        for (name, cluster) in snapshot.clusters.iter() {
            let health = cluster.health();
            let ok = !health.required || (health.checked && health.healthy_backends > 0);
            ready &= ok;
            clusters.insert(name.clone(), json!({"ready": ok, "health": health}));
        }
        let certs = self.state.certs.current();
        let policy = self.state.snapshot().policy.health();
        let body = json!({
            "ready": ready,
            "configVersion": snapshot.version,
            "certificateGeneration": certs.generation,
            "clusters": clusters,
            "policy": {
                "redisConnected": policy.redis_connected,
                "jwtKeys": policy.jwt_keys,
            },
        });
        (ready, body)
    }

    /// Liveness (always 200 while the process serves) with the detail the public
    /// `/api/healthz` leaves out: each cluster's backends.
    fn health(&self) -> Response<Vec<u8>> {
        let snapshot = self.state.snapshot();
        let (all_required_up, clusters) = crate::pipeline::cluster_health(&snapshot);
        json_response(
            StatusCode::OK,
            json!({
                "status": if all_required_up { "ok" } else { "degraded" },
                "configVersion": snapshot.version,
                "clusters": clusters,
            }),
        )
    }

    /// `/healthz` and `/readyz` for a caller without the token: the verdict, no detail.
    fn status_only(&self, path: &str) -> Response<Vec<u8>> {
        if path == "/readyz" {
            let (ready, _) = self.readiness();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return json_response(status, json!({"ready": ready}));
        }
        let (all_required_up, _) = crate::pipeline::cluster_health(&self.state.snapshot());
        json_response(
            StatusCode::OK,
            json!({"status": if all_required_up { "ok" } else { "degraded" }}),
        )
    }

    fn config(&self) -> Response<Vec<u8>> {
        let snapshot = self.state.snapshot();
        let body = json!({
            "version": snapshot.version,
            "source": snapshot.loaded.path.as_ref().map(|p| p.display().to_string()),
            "loadedAt": unix(snapshot.loaded_at),
            "config": snapshot.config().redacted(),
        });
        json_response(StatusCode::OK, body)
    }

    fn certs(&self) -> Response<Vec<u8>> {
        let set = self.state.certs.current();
        let entries: Vec<serde_json::Value> = set
            .entries()
            .into_iter()
            .map(|(sni, cert)| json!({"sni": sni, "certificate": cert.info}))
            .collect();
        json_response(
            StatusCode::OK,
            json!({
                "generation": set.generation,
                "loadedAt": unix(set.loaded_at),
                "certificates": entries,
            }),
        )
    }

    async fn reload_certs(&self) -> Response<Vec<u8>> {
        let tls = self.state.snapshot().config().tls.clone();
        match self.state.certs.reload(&tls).await {
            Ok(CertReload::Applied { generation }) => json_response(
                StatusCode::OK,
                json!({"result": "applied", "generation": generation}),
            ),
            Ok(CertReload::Unchanged) => {
                json_response(StatusCode::OK, json!({"result": "unchanged"}))
            }
            Err(err) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "certificates_rejected",
                &format!("{err}; the previous certificates keep serving"),
            ),
        }
    }

    async fn reload_config(&self) -> Response<Vec<u8>> {
        match reload::reload_config(&self.state).await {
            Ok(ConfigReload::Applied { version }) => json_response(
                StatusCode::OK,
                json!({"result": "applied", "version": version}),
            ),
            Ok(ConfigReload::Unchanged) => {
                json_response(StatusCode::OK, json!({"result": "unchanged"}))
            }
            Err(err) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": {
                    "code": "config_rejected",
                    "message": "the previous config keeps serving",
                    "problems": err.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }}),
            ),
        }
    }
}

/// The body of `POST /cache/purge`: one of `path` (exact, any query) or `prefix`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    /// Only this host's objects; every host when absent.
    #[serde(default)]
    host: Option<String>,
}

/// Admin request bodies are small JSON documents.
const MAX_ADMIN_BODY: usize = 4096;

async fn read_small_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ADMIN_BODY {
                return Ok(None);
            }
        }
        Ok::<_, Box<pingora_error::Error>>(Some(body))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(Some(body))) => Ok(body),
        Ok(Ok(None)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "admin request bodies are at most 4 KiB",
        )),
        Ok(Err(_)) | Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        )),
    }
}

impl AdminApp {
    async fn purge_cache(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_small_body(session).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let request: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    &format!("expected {{\"path\": \"/...\"}} or {{\"prefix\": \"/...\"}}: {err}"),
                )
            }
        };
        let (path, prefix) = match (request.path, request.prefix) {
            (Some(path), None) => (path, false),
            (None, Some(prefix)) => (prefix, true),
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_purge",
                    "give exactly one of \"path\" or \"prefix\"",
                )
            }
        };
        if !path.starts_with('/') {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_purge",
                "the path or prefix must start with '/'",
            );
        }
        let purged = self
            .state
            .cache
            .purge(request.host.as_deref(), &path, prefix);
        self.state.metrics.cache_purged.inc_by(purged as u64);
        tracing::info!(path = %path, prefix, host = ?request.host, purged, "cache purged");
        json_response(StatusCode::OK, json!({"purged": purged}))
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let access = {
            let snapshot = self.state.snapshot();
            admin_guard::check(
                &snapshot.config().admin,
                self.bound,
                &method,
                &path,
                &session.req_header().headers,
            )
        };
        let access = match access {
            Ok(access) => access,
            Err(refusal) => {
                let mut response = error(refusal.status, refusal.code, &refusal.message);
                if refusal.status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"edge admin\""),
                    );
                }
                return response;
            }
        };
        if access == Access::StatusOnly {
            return self.status_only(&path);
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/plain; version=0.0.4")
                .body(self.state.metrics.render())
                .unwrap_or_else(|_| Response::new(Vec::new())),
            ("GET", "/healthz") => self.health(),
            ("GET", "/readyz") => {
                let (ready, body) = self.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, body)
            }
            ("GET", "/config") => self.config(),
            ("GET", "/certs") => self.certs(),
            ("POST", "/certs/reload") => self.reload_certs().await,
            ("POST", "/config/reload") => self.reload_config().await,
            ("POST", "/cache/purge") => self.purge_cache(session).await,
            (
                _,
                "/metrics" | "/healthz" | "/readyz" | "/config" | "/certs" | "/certs/reload"
                | "/config/reload" | "/cache/purge",
            ) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "see the README for the admin endpoints",
            ),
            _ => error(StatusCode::NOT_FOUND, "not_found", "unknown admin endpoint"),
        }
    }
}

/// The plain-HTTP listener: `/healthz`, and a 308 to https for everything else.
pub struct RedirectApp {
    state: Arc<EdgeState>,
}

impl RedirectApp {
    pub fn new(state: Arc<EdgeState>) -> Self {
        Self { state }
    }
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        if request.uri.path() == "/healthz" {
            return json_response(StatusCode::OK, json!({"status": "ok"}));
        }
        let snapshot = self.state.snapshot();
        let config = snapshot.config();
        let https = &config.listeners.https;
        let port = config
            .listeners
            .http
            .as_ref()
            .and_then(|h| h.redirect_port)
            .or(https.advertised_port)
            .unwrap_or(https.address.port());
        let Some(host) = crate::routes::request_host(request) else {
            return error(
                StatusCode::BAD_REQUEST,
                "missing_host",
                "a Host header is required",
            );
        };
        if !crate::config::is_valid_host_pattern(&host) || host.contains('*') {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_host",
                "the Host header is not a host name",
            );
        }
        let authority = if port == 443 {
            host.into_owned()
        } else {
            format!("{host}:{port}")
        };
        let path_and_query = request
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let location = format!("https://{authority}{path_and_query}");
        // 308 keeps the method and body (RFC 9110 section 15.4.9), unlike 301.
        Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header("location", location)
            .header("content-length", 0)
            .body(Vec::new())
            .unwrap_or_else(|_| error(StatusCode::BAD_REQUEST, "bad_request", "cannot redirect"))
    }
}
