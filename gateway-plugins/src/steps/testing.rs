//! Fixtures for the chain and step tests: a runtime with a static key, requests, helpers.

use std::sync::Arc;

use http::request::Parts;
use http::HeaderValue;

use crate::config::{JwtAlgorithm, JwtMode, RateLimitKey, RoutePolicy};
use crate::config::{
    JwtProviderConfig, JwtRoutePolicy, PluginsConfig, RateLimitRule, RateLimitScope,
    StaticKeyConfig,
};
use crate::decision::{ChainOutcome, Decision, PolicyResponse};
use crate::test_support::{write_identity_key, TestKey};
use crate::Protocol;
use crate::{Chain, PolicyRuntime, RequestContext, RuntimeError};
use std::net::IpAddr;
use std::time::Duration;

/// A runtime with one static Ed25519 key and an identity key, no Redis.
pub(crate) struct Fixture {
    pub(crate) runtime: Arc<PolicyRuntime>,
    pub(crate) key: TestKey,
    pub(crate) identity_key: String,
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    /// A chain for `policy`, built against the runtime's current set.
    pub(crate) fn chain(
        &self,
        route_id: &str,
        policy: &RoutePolicy,
    ) -> Result<Chain, RuntimeError> {
        self.runtime
            .build_chain(&self.runtime.current(), route_id, policy)
    }

    /// A chain with only the JWT step in `mode`.
    pub(crate) fn jwt_chain(&self, route_id: &str, mode: JwtMode) -> Chain {
        self.chain(
            route_id,
            &RoutePolicy {
                jwt: jwt(mode),
                ..Default::default()
            },
        )
        .expect("chain")
    }
}

pub(crate) async fn fixture(with_identity: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k1");
    std::fs::write(dir.path().join("k1.pem"), &key.public_pem).expect("pem");
    let (_, identity_key) = write_identity_key(dir.path());
    let config = PluginsConfig {
        jwt: Some(JwtProviderConfig {
            issuer: crate::test_support::ISSUER.into(),
            audience: crate::test_support::AUDIENCE.into(),
            jwks_url: None,
            jwks_ca_file: None,
            jwks_allow_http: false,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_refetch_interval: Duration::from_secs(10),
            jwks_fetch_timeout: Duration::from_secs(1),
            static_keys: vec![StaticKeyConfig {
                kid: "k1".into(),
                algorithm: JwtAlgorithm::EdDSA,
                pem_file: "k1.pem".into(),
            }],
            leeway: Duration::from_secs(5),
            verified_cache_size: 1000,
        }),
        identity: with_identity.then(crate::test_support::identity_config),
        ..PluginsConfig::default()
    };
    let runtime = PolicyRuntime::new(&config, dir.path(), &prometheus::Registry::new())
        .await
        .expect("runtime");
    Fixture {
        runtime,
        key,
        identity_key,
        dir,
    }
}

pub(crate) fn jwt(mode: JwtMode) -> Option<JwtRoutePolicy> {
    Some(JwtRoutePolicy {
        mode,
        algorithms: vec![JwtAlgorithm::EdDSA],
        revocation_fail_mode: None,
    })
}

pub(crate) fn rule(key: RateLimitKey, requests: u32) -> RateLimitRule {
    RateLimitRule {
        key,
        requests,
        per: Duration::from_secs(3600),
        burst: 0,
        scope: RateLimitScope::Local,
        budget: None,
    }
}

pub(crate) fn request(method: &str, headers: &[(&str, String)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri("/api/records");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(()).expect("request").into_parts().0
}

pub(crate) fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

pub(crate) fn ctx(grpc: bool) -> RequestContext {
    RequestContext {
        peer_addr: None,
        client_ip: IpAddr::from([192, 0, 2, 10]),
        protocol: if grpc {
            Protocol::Http2
        } else {
            Protocol::Http1
        },
        tls: None,
        route_id: Arc::from("records"),
        grpc,
        upstream: crate::UpstreamTarget {
            audience: Arc::from("records"),
            path_and_query: "/records".into(),
        },
    }
}

pub(crate) fn respond(outcome: &ChainOutcome) -> &PolicyResponse {
    match &outcome.decision {
        Decision::Respond(response) => response,
        Decision::Continue => panic!("expected a response, got Continue: {outcome:?}"),
    }
}

pub(crate) fn error_code(response: &PolicyResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json body");
    body["error"]["code"].as_str().expect("code").to_string()
}

pub(crate) fn upstream(outcome: &ChainOutcome, name: &str) -> Option<HeaderValue> {
    outcome
        .upstream_edits
        .set
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}
