//! Per-request cost of the policy chain.
//!
//! - `jwt_verify_uncached/{EdDSA,ES256,RS256}`: a full signature + claims check (the cost
//!   paid once per token);
//! - `jwt_verify_cached`: the same token again (hash + cache lookup);
//! - `ratelimit_check/{1,2}_threads`: one local GCRA check per request (hot key);
//! - `chain_protected_route`: the whole chain for an authenticated request with a cached
//!   token (request id, traceparent, JWT, revocation, user rate limit, identity headers
//!   with the assertion), in-process revocation store;
//! - `chain_protected_route_redis`: the same with Redis-backed revocation (negative cache
//!   hit, no round trip), when the shared Redis is reachable.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway_plugins::config::{
    JwtAlgorithm, JwtMode, JwtProviderConfig, JwtRoutePolicy, PluginsConfig, RateLimitKey,
    RateLimitRule, RateLimitScope, RedisConfig, StaticKeyConfig,
};
use gateway_plugins::jwt::JwtVerifier;
use gateway_plugins::rate_limit::{LimitKey, RuleLimiter};
use gateway_plugins::{PolicyMetrics, PolicyRuntime, Protocol, RequestContext, RoutePolicy};
use support::{Claims, TestKey};

fn provider(keys: &[&TestKey], dir: &Path, cache_size: usize) -> JwtProviderConfig {
    JwtProviderConfig {
        issuer: support::ISSUER.into(),
        audience: support::AUDIENCE.into(),
        jwks_url: None,
        jwks_ca_file: None,
        jwks_allow_http: false,
        jwks_refresh_interval: Duration::from_secs(300),
        jwks_min_refetch_interval: Duration::from_secs(10),
        jwks_fetch_timeout: Duration::from_secs(1),
        static_keys: keys
            .iter()
            .map(|key| {
                let file = format!("{}.pem", key.kid);
                std::fs::write(dir.join(&file), &key.public_pem).expect("write pem");
                StaticKeyConfig {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm,
                    pem_file: file.into(),
                }
            })
            .collect(),
        leeway: Duration::from_secs(30),
        verified_cache_size: cache_size,
    }
}

fn metrics() -> PolicyMetrics {
    PolicyMetrics::register(&prometheus::Registry::new()).expect("metrics")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

const ALL: &[JwtAlgorithm] = &[
    JwtAlgorithm::EdDSA,
    JwtAlgorithm::ES256,
    JwtAlgorithm::RS256,
];

fn jwt_verify(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [
        TestKey::ed25519("ed"),
        TestKey::es256("ec"),
        TestKey::rs256("rsa"),
    ];
    let refs: Vec<&TestKey> = keys.iter().collect();
    // Cache size 0: every call verifies the signature.
    let uncached =
        JwtVerifier::new(&provider(&refs, dir.path(), 0), dir.path(), metrics()).expect("verifier");
    let mut group = c.benchmark_group("jwt_verify_uncached");
    for key in &keys {
        let token = key.sign(&Claims::valid("bench-user"));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{:?}", key.algorithm)),
            |b| {
                b.to_async(&rt)
                    .iter(|| async { uncached.verify(&token, ALL).await.expect("valid token") })
            },
        );
    }
    group.finish();

    let cached = JwtVerifier::new(&provider(&refs, dir.path(), 1000), dir.path(), metrics())
        .expect("verifier");
    let token = keys[0].sign(&Claims::valid("bench-user"));
    c.bench_function("jwt_verify_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.verify(&token, ALL).await.expect("valid token") })
    });
}

fn ratelimit_check(c: &mut Criterion) {
    let rule = RateLimitRule {
        key: RateLimitKey::Ip,
        // Effectively unlimited: the check itself is measured, allowed every time.
        requests: 1_000_000_000,
        per: Duration::from_secs(1),
        burst: 0,
        scope: RateLimitScope::Local,
        budget: None,
    };
    let limiter =
        Arc::new(RuleLimiter::standalone("bench", &rule, 100_000, &metrics()).expect("rule"));
    let key = LimitKey::ip(IpAddr::from([198, 51, 100, 7]));
    let mut group = c.benchmark_group("ratelimit_check");
    group.bench_function("1_thread", |b| {
        b.iter(|| futures::executor::block_on(limiter.check(&key, None)))
    });
    group.bench_function("2_threads", |b| {
        // Both threads hit the same key (worst case: one contended bucket); the time is
        // per check per thread.
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for t in 0..2u8 {
                    let limiter = Arc::clone(&limiter);
                    let key = if t == 0 {
                        key.clone()
                    } else {
                        LimitKey::ip(IpAddr::from([198, 51, 100, 7]))
                    };
                    scope.spawn(move || {
                        for _ in 0..iters {
                            futures::executor::block_on(limiter.check(&key, None));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

struct ChainBench {
    runtime: Arc<PolicyRuntime>,
    chain: gateway_plugins::Chain,
    parts: http::request::Parts,
    ctx: RequestContext,
    _dir: tempfile::TempDir,
}

async fn chain_bench(redis: Option<RedisConfig>) -> ChainBench {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k");
    support::write_identity_key(dir.path());
    let config = PluginsConfig {
        jwt: Some(provider(&[&key], dir.path(), 10_000)),
        identity: Some(support::identity_config()),
        redis,
        ..PluginsConfig::default()
    };
    let runtime = PolicyRuntime::new(&config, dir.path(), &prometheus::Registry::new())
        .await
        .expect("runtime");
    let policy = RoutePolicy {
        jwt: Some(JwtRoutePolicy {
            mode: JwtMode::Required,
            algorithms: vec![JwtAlgorithm::EdDSA],
            revocation_fail_mode: None,
        }),
        rate_limits: vec![RateLimitRule {
            key: RateLimitKey::User,
            requests: 1_000_000_000,
            per: Duration::from_secs(1),
            burst: 0,
            scope: RateLimitScope::Local,
            budget: None,
        }],
        cors: None,
    };
    let chain = runtime
        .build_chain(&runtime.current(), "records", &policy)
        .expect("chain");
    let token = key.sign(&Claims::valid("bench-user"));
    let parts = http::Request::builder()
        .method("GET")
        .uri("/api/records")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let ctx = RequestContext {
        peer_addr: None,
        client_ip: IpAddr::from([198, 51, 100, 8]),
        protocol: Protocol::Http2,
        tls: None,
        route_id: Arc::from("records"),
        grpc: false,
        upstream: gateway_plugins::UpstreamTarget {
            audience: Arc::from("records"),
            path_and_query: "/records".into(),
        },
    };
    ChainBench {
        runtime,
        chain,
        parts,
        ctx,
        _dir: dir,
    }
}

fn chain(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(chain_bench(None));
    // Warm the token cache: the benchmark measures the steady state of a session.
    rt.block_on(bench.chain.evaluate(&bench.parts, &bench.ctx));
    c.bench_function("chain_protected_route", |b| {
        b.to_async(&rt)
            .iter(|| async { bench.chain.evaluate(&bench.parts, &bench.ctx).await })
    });

    let redis = RedisConfig {
        url: std::env::var("RECORD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into()),
        namespace: format!("bench-{}:", uuid::Uuid::new_v4().simple()),
        connect_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_millis(250),
    };
    let bench = rt.block_on(chain_bench(Some(redis)));
    if bench.runtime.health().revocation_subscribed != Some(true) {
        eprintln!("chain_protected_route_redis: Redis not reachable, skipped");
        return;
    }
    rt.block_on(bench.chain.evaluate(&bench.parts, &bench.ctx));
    c.bench_function("chain_protected_route_redis", |b| {
        b.to_async(&rt)
            .iter(|| async { bench.chain.evaluate(&bench.parts, &bench.ctx).await })
    });
}

criterion_group!(benches, jwt_verify, ratelimit_check, chain);
criterion_main!(benches);
