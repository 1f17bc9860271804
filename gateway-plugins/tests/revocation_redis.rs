//! Revocation against a real Redis: pub/sub fan-out to several edge nodes, fail modes
//! while Redis is down, and recovery (resubscribe + resync) after it returns.

mod common;
mod support;

use std::net::IpAddr;
use std::time::Duration;

use gateway_plugins::config::FailMode;
use gateway_plugins::RoutePolicy;

use common::{ctx, jwt_route, logout, node, plugins_config, request, verdict, wait_until};
use support::{Claims, TestKey};

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_reaches_two_edge_nodes_through_pubsub_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k");
    let url = testkit::shared_redis_url();
    let ns = testkit::redis_namespace();
    let config = plugins_config(dir.path(), &key, Some((&url, &ns)));
    let route = RoutePolicy {
        jwt: Some(jwt_route(FailMode::Closed)),
        ..RoutePolicy::default()
    };
    let edge_a = node(&config, dir.path()).await;
    let edge_b = node(&config, dir.path()).await;
    for edge in [&edge_a, &edge_b] {
        assert_eq!(edge.health().revocation_subscribed, Some(true));
    }
    let chain_a = edge_a
        .build_chain(&edge_a.current(), "records", &route)
        .expect("chain");
    let chain_b = edge_b
        .build_chain(&edge_b.current(), "records", &route)
        .expect("chain");

    let claims = Claims::valid("user-1");
    let token = key.sign(&claims);
    // Both nodes accept the token and remember its jti as live (negative cache), so from
    // here on only a pub/sub message can change their answer.
    for _ in 0..2 {
        assert_eq!(
            verdict(&chain_a.evaluate(&request(Some(&token)), &ctx(CLIENT)).await),
            None
        );
        assert_eq!(
            verdict(&chain_b.evaluate(&request(Some(&token)), &ctx(CLIENT)).await),
            None
        );
    }
    let negative_hits = |edge: &gateway_plugins::PolicyRuntime| {
        edge.metrics()
            .revocation_checks
            .with_label_values(&["negative_cache", "live"])
            .get()
    };
    assert_eq!(negative_hits(&edge_a), 1);
    assert_eq!(negative_hits(&edge_b), 1);

    let mut conn = common::redis_connection(&url).await;
    let started = std::time::Instant::now();
    logout(&mut conn, &ns, &claims.jti(), claims.expires_at()).await;
    let latency_a = wait_until(Duration::from_secs(1), || async {
        verdict(&chain_a.evaluate(&request(Some(&token)), &ctx(CLIENT)).await)
            == Some((401, "token_revoked".into()))
    })
    .await
    .expect("node A enforces the logout within 1 s");
    let latency_b = wait_until(Duration::from_secs(1), || async {
        verdict(&chain_b.evaluate(&request(Some(&token)), &ctx(CLIENT)).await)
            == Some((401, "token_revoked".into()))
    })
    .await
    .expect("node B enforces the logout within 1 s");
    let total = started.elapsed();
    println!(
        "logout → 401 on both nodes: {:?} after PUBLISH returned (A {:?}, B {:?} more)",
        total, latency_a, latency_b
    );
    for edge in [&edge_a, &edge_b] {
        // Enforced from the local revoked set, i.e. by the pub/sub message.
        let applied = edge
            .metrics()
            .revocation_messages
            .with_label_values(&["applied"])
            .get();
        assert_eq!(applied, 1);
        let from_redis = edge
            .metrics()
            .revocation_checks
            .with_label_values(&["redis", "revoked"])
            .get();
        assert_eq!(from_redis, 0, "no Redis lookup was needed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_fail_mode_and_recovery_resubscribes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k");
    let mut redis = testkit::RedisServer::start().await.expect("private redis");
    let url = redis.url();
    let ns = testkit::redis_namespace();
    let config = plugins_config(dir.path(), &key, Some((&url, &ns)));
    let edge = node(&config, dir.path()).await;
    let closed = edge
        .build_chain(
            &edge.current(),
            "closed",
            &RoutePolicy {
                jwt: Some(jwt_route(FailMode::Closed)),
                ..RoutePolicy::default()
            },
        )
        .expect("chain");
    let open = edge
        .build_chain(
            &edge.current(),
            "open",
            &RoutePolicy {
                jwt: Some(jwt_route(FailMode::Open)),
                ..RoutePolicy::default()
            },
        )
        .expect("chain");
    let token = key.sign(&Claims::valid("u"));
    assert_eq!(
        verdict(&closed.evaluate(&request(Some(&token)), &ctx(CLIENT)).await),
        None
    );

    redis.stop();
    wait_until(Duration::from_secs(5), || async {
        edge.health().revocation_subscribed == Some(false)
    })
    .await
    .expect("the subscription loss is noticed");

    // Known-live tokens are not trusted any more (messages may be missed now).
    let fresh = key.sign(&Claims::valid("v"));
    for token in [&token, &fresh] {
        assert_eq!(
            verdict(&closed.evaluate(&request(Some(token)), &ctx(CLIENT)).await),
            Some((503, "revocation_unavailable".into()))
        );
        assert_eq!(
            verdict(&open.evaluate(&request(Some(token)), &ctx(CLIENT)).await),
            None
        );
    }
    let metrics = edge.metrics();
    assert!(metrics.revocation_redis_errors.get() >= 4);
    assert!(
        metrics
            .revocation_fail_mode
            .with_label_values(&["closed"])
            .get()
            >= 2
    );
    assert!(
        metrics
            .revocation_fail_mode
            .with_label_values(&["open"])
            .get()
            >= 2
    );
    // Missing token / bad token still answered normally: the edge keeps serving.
    assert_eq!(
        verdict(&closed.evaluate(&request(None), &ctx(CLIENT)).await),
        Some((401, "token_missing".into()))
    );

    redis.restart().await.expect("restart redis");
    let resyncs_before = metrics.revocation_resyncs.get();
    wait_until(Duration::from_secs(10), || async {
        let health = edge.health();
        health.revocation_subscribed == Some(true) && health.redis_connected == Some(true)
    })
    .await
    .expect("reconnects and resubscribes after Redis returns");
    assert!(metrics.revocation_resyncs.get() >= resyncs_before);
    assert_eq!(
        verdict(&closed.evaluate(&request(Some(&token)), &ctx(CLIENT)).await),
        None
    );

    // Revocations published after the recovery are enforced again.
    let claims = Claims::valid("w");
    let revoked = key.sign(&claims);
    assert_eq!(
        verdict(
            &closed
                .evaluate(&request(Some(&revoked)), &ctx(CLIENT))
                .await
        ),
        None
    );
    let mut conn = common::redis_connection(&url).await;
    logout(&mut conn, &ns, &claims.jti(), claims.expires_at()).await;
    wait_until(Duration::from_secs(1), || async {
        verdict(&open.evaluate(&request(Some(&revoked)), &ctx(CLIENT)).await)
            == Some((401, "token_revoked".into()))
    })
    .await
    .expect("revocation enforced after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_missed_while_unsubscribed_is_found_after_resync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::ed25519("k");
    // Private Redis: CLIENT KILL must not disturb other tests' subscribers.
    let redis = testkit::RedisServer::start().await.expect("private redis");
    let url = redis.url();
    let ns = testkit::redis_namespace();
    let config = plugins_config(dir.path(), &key, Some((&url, &ns)));
    let edge = node(&config, dir.path()).await;
    let chain = edge
        .build_chain(
            &edge.current(),
            "r",
            &RoutePolicy {
                jwt: Some(jwt_route(FailMode::Closed)),
                ..RoutePolicy::default()
            },
        )
        .expect("chain");
    let claims = Claims::valid("u");
    let token = key.sign(&claims);
    // Checked once against Redis, then remembered as live.
    for _ in 0..2 {
        assert_eq!(
            verdict(&chain.evaluate(&request(Some(&token)), &ctx(CLIENT)).await),
            None
        );
    }
    let resyncs = edge.metrics().revocation_resyncs.get();

    // Drop the subscriber connection and revoke without a message reaching us: the
    // revocation exists only in Redis, exactly what a flapping link loses.
    let mut conn = common::redis_connection(&url).await;
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    let _: () = redis::cmd("SET")
        .arg(format!("{ns}revoked:{}", claims.jti()))
        .arg(1)
        .arg("EX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .expect("SET revoked");

    wait_until(Duration::from_secs(5), || async {
        edge.metrics().revocation_resyncs.get() > resyncs
    })
    .await
    .expect("resubscribed");
    assert_eq!(
        verdict(&chain.evaluate(&request(Some(&token)), &ctx(CLIENT)).await),
        Some((401, "token_revoked".into())),
        "the negative cache was dropped, so Redis was asked again"
    );
    let from_redis = edge
        .metrics()
        .revocation_checks
        .with_label_values(&["redis", "revoked"])
        .get();
    assert_eq!(from_redis, 1);
}
