//! Signing keys (generation, rotation, algorithms) and auth when Redis or PostgreSQL are down.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{read, unique_email, verify, Harness};
use record_proto::auth as pb;

#[tokio::test]
async fn keys_are_generated_private_on_first_start_and_reused_after_restart() {
    let h = Harness::new("auth_keygen").await;
    assert!(!h.key_dir.exists());
    let mut svc = h.start().await;
    let current = h.key_dir.join("current.pem");
    assert_eq!(
        std::fs::metadata(&current).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let email = unique_email();
    svc.register(&email, "long enough pw").await;
    let (_, login) = svc.login(&email, "long enough pw").await;
    let token = login["token"].as_str().unwrap().to_string();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();

    svc.child.kill();
    let again = h.spawn_on(svc.http, svc.grpc);
    again.wait_ready().await;
    let jwks = again.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        jwks["keys"][0]["kid"],
        kid.as_str(),
        "same key after restart"
    );
    verify(&token, &jwks);
}

#[tokio::test]
async fn rotate_key_keeps_tokens_of_the_previous_key_valid() {
    let h = Harness::new("auth_rotate").await;
    let svc = h.start().await;
    let email = unique_email();
    svc.register(&email, "long enough pw").await;
    let (_, login) = svc.login(&email, "long enough pw").await;
    let old_token = login["token"].as_str().unwrap().to_string();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();

    let mut rotate = testkit::ChildProcess::spawn(
        "auth-rotate-key",
        std::path::Path::new(env!("CARGO_BIN_EXE_auth")),
        &["rotate-key", "--key-dir", &h.key_dir.display().to_string()],
        &[],
    )
    .unwrap();
    assert_eq!(
        rotate.wait_exit(Duration::from_secs(30)).unwrap(),
        Some(0),
        "{}",
        rotate.logs()
    );
    assert_eq!(
        std::fs::metadata(h.key_dir.join("previous.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The running service picks the new keys up on SIGHUP.
    svc.child.signal(libc::SIGHUP).unwrap();
    testkit::eventually(
        "JWKS lists current and previous key",
        Duration::from_secs(10),
        || async { svc.jwks().await["keys"].as_array().map(Vec::len) == Some(2) },
    )
    .await
    .unwrap();
    let jwks = svc.jwks().await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids[1], old_kid, "previous key listed second");
    verify(&old_token, &jwks);

    let (_, login) = svc.login(&email, "long enough pw").await;
    let new_token = login["token"].as_str().unwrap();
    let new_kid = jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(kids[0], new_kid);
    verify(new_token, &jwks);
}

#[tokio::test]
async fn es256_is_configurable() {
    let mut h = Harness::new("auth_es256").await;
    h.extra_env.push(("AUTH_JWT_ALG".into(), "ES256".into()));
    let svc = h.start().await;
    let email = unique_email();
    svc.register(&email, "long enough pw").await;
    let (_, login) = svc.login(&email, "long enough pw").await;
    let token = login["token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(token).unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );
    let jwks = svc.jwks().await;
    assert_eq!(
        (
            jwks["keys"][0]["kty"].as_str(),
            jwks["keys"][0]["crv"].as_str()
        ),
        (Some("EC"), Some("P-256"))
    );
    verify(token, &jwks);
}

#[tokio::test]
async fn logout_is_503_while_redis_is_down_and_works_again_after() {
    let mut redis = testkit::RedisServer::start().await.unwrap();
    let mut h = Harness::new("auth_redis_down").await;
    h.redis_url = redis.url();
    let svc = h.start().await;
    let email = unique_email();
    svc.register(&email, "long enough pw").await;
    let (_, login) = svc.login(&email, "long enough pw").await;
    let identity = h.identity_for(&verify(login["token"].as_str().unwrap(), &svc.jwks().await));

    redis.stop();
    let started = Instant::now();
    let response = common::client()
        .post(svc.url("/logout"))
        .headers(h.edge_headers(&identity, "POST", "/logout"))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "revocation_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut grpc = svc.grpc_client().await;
    let status = grpc
        .logout(h.edge_request(&identity, "Logout", pb::LogoutRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(testkit::http_status(&svc.url("/readyz")).await, 503);
    // Logins do not need Redis.
    assert_eq!(svc.login(&email, "long enough pw").await.0, 200);

    redis.restart().await.unwrap();
    testkit::eventually(
        "readyz 200 after Redis returns",
        Duration::from_secs(30),
        || async { testkit::http_status(&svc.url("/readyz")).await == 200 },
    )
    .await
    .unwrap();
    let response = common::client()
        .post(svc.url("/logout"))
        .headers(h.edge_headers(&identity, "POST", "/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{}revoked:{}", h.namespace, identity.jti))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists);
}

#[tokio::test]
async fn with_postgres_unreachable_requests_are_503_and_the_service_recovers() {
    let mut h = Harness::new("auth_pg_down").await;
    let mut proxy = testkit::TcpProxy::stopped("127.0.0.1:55432".parse().unwrap());
    h.database_url = h.db.url.replace(":55432/", &format!(":{}/", proxy.port));
    let svc = h.spawn();
    testkit::wait_for_tcp(([127, 0, 0, 1], svc.http).into(), Duration::from_secs(30))
        .await
        .unwrap();

    let (status, ready) = read(
        common::client()
            .get(svc.url("/readyz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{ready}");
    assert_ne!(ready["checks"]["postgres"], "ok");
    let (status, body) = svc.register(&unique_email(), "long enough pw").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("database_unavailable")),
        "{body}"
    );
    let (status, _) = svc.login(&unique_email(), "long enough pw").await;
    assert_eq!(status, 503);

    proxy.resume().await.unwrap();
    svc.wait_ready().await;
    let email = unique_email();
    assert_eq!(svc.register(&email, "long enough pw").await.0, 201);
    proxy.cut();
    assert_eq!(svc.login(&email, "long enough pw").await.0, 503);
    proxy.resume().await.unwrap();
    svc.wait_ready().await;
    assert_eq!(svc.login(&email, "long enough pw").await.0, 200);
}

#[tokio::test]
async fn migrate_subcommand_applies_and_exits() {
    let h = Harness::new("auth_migrate_cmd").await;
    for _ in 0..2 {
        let mut child = testkit::ChildProcess::spawn(
            "auth-migrate",
            std::path::Path::new(env!("CARGO_BIN_EXE_auth")),
            &["migrate"],
            &[("DATABASE_URL", h.database_url.as_str())],
        )
        .unwrap();
        assert_eq!(
            child.wait_exit(Duration::from_secs(60)).unwrap(),
            Some(0),
            "{}",
            child.logs()
        );
    }
    let db = h.db.connect().await.unwrap();
    let rows = db
        .query("SELECT version FROM refinery_history_auth", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let email_type: String = db
        .query_one(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = 'users' AND column_name = 'email'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(email_type, "USER-DEFINED", "citext");
}
