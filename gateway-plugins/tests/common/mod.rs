//! Integration-test scaffolding: "edge nodes" (independent `PolicyRuntime`s, each with
//! its own metrics registry) configured against a real Redis.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_plugins::config::{
    FailMode, JwtAlgorithm, JwtMode, JwtProviderConfig, JwtRoutePolicy, PluginsConfig, RedisConfig,
    StaticKeyConfig,
};
use gateway_plugins::decision::Decision;
use gateway_plugins::{ChainOutcome, PolicyRuntime, Protocol, RequestContext};
use http::request::Parts;

use crate::support::{TestKey, AUDIENCE, ISSUER};

/// Writes the key's public PEM into `dir` and returns `[plugins]` with JWT (static key)
/// and, when given, Redis.
pub fn plugins_config(dir: &Path, key: &TestKey, redis: Option<(&str, &str)>) -> PluginsConfig {
    let file = format!("{}.pem", key.kid);
    std::fs::write(dir.join(&file), &key.public_pem).expect("write pem");
    PluginsConfig {
        jwt: Some(JwtProviderConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url: None,
            jwks_ca_file: None,
            jwks_allow_http: false,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_refetch_interval: Duration::from_secs(10),
            jwks_fetch_timeout: Duration::from_secs(1),
            static_keys: vec![StaticKeyConfig {
                kid: key.kid.clone(),
                algorithm: key.algorithm,
                pem_file: file.into(),
            }],
            leeway: Duration::from_secs(5),
            verified_cache_size: 10_000,
        }),
        redis: redis.map(|(url, namespace)| RedisConfig {
            url: url.into(),
            namespace: namespace.into(),
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(250),
        }),
        ..PluginsConfig::default()
    }
}

pub async fn node(config: &PluginsConfig, dir: &Path) -> Arc<PolicyRuntime> {
    PolicyRuntime::new(config, dir, &prometheus::Registry::new())
        .await
        .expect("policy runtime")
}

pub fn jwt_route(fail_mode: FailMode) -> JwtRoutePolicy {
    JwtRoutePolicy {
        mode: JwtMode::Required,
        algorithms: vec![JwtAlgorithm::EdDSA],
        revocation_fail_mode: Some(fail_mode),
    }
}

pub fn request(token: Option<&str>) -> Parts {
    let mut builder = http::Request::builder().method("GET").uri("/api/records");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(()).expect("request").into_parts().0
}

pub fn ctx(client_ip: IpAddr) -> RequestContext {
    RequestContext {
        peer_addr: None,
        client_ip,
        protocol: Protocol::Http2,
        tls: None,
        route_id: Arc::from("records"),
        grpc: false,
        upstream: gateway_plugins::UpstreamTarget {
            audience: Arc::from("records"),
            path_and_query: "/records".into(),
        },
    }
}

/// `None` for Continue, else (status, JSON error code).
pub fn verdict(outcome: &ChainOutcome) -> Option<(u16, String)> {
    match &outcome.decision {
        Decision::Continue => None,
        Decision::Respond(response) => {
            let body: serde_json::Value =
                serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
            Some((
                response.status.as_u16(),
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            ))
        }
    }
}

/// Polls `condition` every 2 ms until it holds or `limit` passes; returns the time taken.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// What auth does on logout (docs/contracts.md).
pub async fn logout(conn: &mut redis::aio::MultiplexedConnection, ns: &str, jti: &str, exp: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let _: () = redis::cmd("SET")
        .arg(format!("{ns}revoked:{jti}"))
        .arg(1)
        .arg("EX")
        .arg(exp.saturating_sub(now).max(1))
        .query_async(conn)
        .await
        .expect("SET revoked");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{ns}revocations"))
        .arg(serde_json::json!({"jti": jti, "exp": exp}).to_string())
        .query_async(conn)
        .await
        .expect("PUBLISH");
}
