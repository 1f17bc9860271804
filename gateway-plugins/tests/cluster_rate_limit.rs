//! Cluster-scope rate limits against a real Redis: one quota across two edge nodes, and
//! the fallback to the local limiter while Redis is down.

mod common;
mod support;

use std::net::IpAddr;
use std::time::Duration;

use gateway_plugins::config::{RateLimitKey, RateLimitRule, RateLimitScope};
use gateway_plugins::RoutePolicy;

use common::{ctx, node, plugins_config, request, verdict, wait_until};
use support::TestKey;

fn cluster_rule(requests: u32, per: Duration) -> RoutePolicy {
    RoutePolicy {
        rate_limits: vec![RateLimitRule {
            key: RateLimitKey::Ip,
            requests,
            per,
            burst: 0,
            scope: RateLimitScope::Cluster,
        }],
        ..RoutePolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_share_one_cluster_quota_within_ten_percent() {
    const QUOTA: u32 = 200;
    const PER_NODE: usize = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k");
    let url = testkit::shared_redis_url();
    let ns = testkit::redis_namespace();
    let config = plugins_config(dir.path(), &key, Some((&url, &ns)));
    let edge_a = node(&config, dir.path()).await;
    let edge_b = node(&config, dir.path()).await;
    // 200 per 10 minutes: replenishment during the test (~0.3/s) is negligible.
    let policy = cluster_rule(QUOTA, Duration::from_secs(600));
    let chain_a = std::sync::Arc::new(
        edge_a
            .build_chain(&edge_a.current(), "login", &policy)
            .expect("chain"),
    );
    let chain_b = std::sync::Arc::new(
        edge_b
            .build_chain(&edge_b.current(), "login", &policy)
            .expect("chain"),
    );
    let client: IpAddr = "198.51.100.23".parse().expect("ip");

    let started = std::time::Instant::now();
    let run = |chain: std::sync::Arc<gateway_plugins::Chain>| {
        tokio::spawn(async move {
            let mut admitted = 0u32;
            for _ in 0..PER_NODE {
                match verdict(&chain.evaluate(&request(None), &ctx(client)).await) {
                    None => admitted += 1,
                    Some((429, _)) => {}
                    other => panic!("unexpected verdict {other:?}"),
                }
            }
            admitted
        })
    };
    let (a, b) = tokio::join!(run(chain_a), run(chain_b));
    let (a, b) = (a.expect("node A"), b.expect("node B"));
    let total = a + b;
    println!(
        "cluster quota {QUOTA}: admitted {total} (A {a}, B {b}) of {} requests in {:?}",
        2 * PER_NODE,
        started.elapsed()
    );
    let tolerance = QUOTA / 10;
    assert!(
        (QUOTA - tolerance..=QUOTA + tolerance).contains(&total),
        "admitted {total}, quota {QUOTA} ± {tolerance}"
    );
    assert!(a > 0 && b > 0, "both nodes admitted some requests");
    for edge in [&edge_a, &edge_b] {
        assert_eq!(edge.metrics().ratelimit_redis_fallbacks.get(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_limit_falls_back_to_the_local_limit_while_redis_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k");
    let mut redis = testkit::RedisServer::start().await.expect("private redis");
    let ns = testkit::redis_namespace();
    let config = plugins_config(dir.path(), &key, Some((&redis.url(), &ns)));
    let edge = node(&config, dir.path()).await;
    let chain = edge
        .build_chain(
            &edge.current(),
            "login",
            &cluster_rule(5, Duration::from_secs(3600)),
        )
        .expect("chain");
    let client: IpAddr = "198.51.100.24".parse().expect("ip");

    // Through Redis: 5 admitted, then limited.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(verdict(&chain.evaluate(&request(None), &ctx(client)).await).map(|v| v.0));
    }
    assert_eq!(statuses, [None, None, None, None, None, Some(429)]);
    assert_eq!(edge.metrics().ratelimit_redis_fallbacks.get(), 0);

    redis.stop();
    wait_until(Duration::from_secs(5), || async {
        edge.health().redis_connected == Some(false)
    })
    .await
    .expect("outage noticed");
    // A different client, so the remembered cluster denial for the first one is not what
    // answers: the local limiter (same quota, this node only) decides.
    let other: IpAddr = "198.51.100.25".parse().expect("ip");
    let mut admitted = 0;
    for _ in 0..8 {
        if verdict(&chain.evaluate(&request(None), &ctx(other)).await).is_none() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "local limit applies while Redis is down");
    assert!(edge.metrics().ratelimit_redis_fallbacks.get() >= 8);

    redis.restart().await.expect("restart");
    wait_until(Duration::from_secs(10), || async {
        edge.health().redis_connected == Some(true)
    })
    .await
    .expect("reconnected");
    let fallbacks = edge.metrics().ratelimit_redis_fallbacks.get();
    let third: IpAddr = "198.51.100.26".parse().expect("ip");
    assert_eq!(
        verdict(&chain.evaluate(&request(None), &ctx(third)).await),
        None
    );
    assert_eq!(
        edge.metrics().ratelimit_redis_fallbacks.get(),
        fallbacks,
        "back on Redis"
    );
}
