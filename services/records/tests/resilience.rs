//! records when things break: crashes, Redis down, PostgreSQL down, replicas racing, SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{call, create, Harness, User};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn sigkill_and_restart_loses_nothing_committed() {
    let h = Harness::new("rec_restart").await;
    let mut svc = h.start().await;
    let alice = User::new();
    let mut ids = Vec::new();
    for n in 0..10 {
        let r = create(
            &svc,
            &h.key,
            &alice,
            json!({"artist":"Artist","name":format!("Album {n}"),"format":"LP"}),
        )
        .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let (status, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::PATCH,
        &format!("/records/{}", ids[0]),
        Some(json!({"notes":"kept"})),
    )
    .await;
    assert_eq!(status, 200);

    svc.child.kill(); // SIGKILL: no chance to flush anything
    let again = h.spawn_on(svc.http, svc.grpc);
    again.wait_ready().await;
    let (_, page) = call(&again, &h.key, &alice, Method::GET, "/records", None).await;
    let mut listed: Vec<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    let (_, first) = call(
        &again,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{}", ids.iter().min().unwrap()),
        None,
    )
    .await;
    assert!(first.is_object());
    let kept = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["notes"] == "kept")
        .count();
    assert_eq!(kept, 1);
}

#[tokio::test]
async fn with_the_cache_redis_down_search_answers_from_postgres_stays_ready_and_recovers() {
    let mut redis = testkit::RedisServer::start().await.unwrap();
    let mut h = Harness::new("rec_redis_down").await;
    h.cache_redis_url = Some(redis.url());
    let svc = h.start().await;
    let alice = User::new();
    create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Aphex Twin","name":"Syro","format":"LP"}),
    )
    .await;
    let (_, cached) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(cached["hits"].as_array().unwrap().len(), 1);

    redis.stop();
    let started = Instant::now();
    let (status, body) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["record"]["name"], "Syro");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "search must not hang on Redis: {:?}",
        started.elapsed()
    );
    // Writes and reads that do not need Redis keep working; the new record is found.
    create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Aphex Twin","name":"Drukqs","format":"2xLP"}),
    )
    .await;
    let (status, body) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!((status, body["hits"].as_array().unwrap().len()), (200, 2));
    let (status, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!((status, stats["totalRecords"].as_i64()), (200, Some(2)));
    let (status, ready) = svc.readyz().await;
    // The cache is optional: the replica answers from PostgreSQL, so it stays in rotation.
    assert_eq!(status, 200, "{ready}");
    assert_ne!(ready["checks"]["cache"], "ok", "{ready}");
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
    assert!(
        svc.metric("cache_requests_total{cache=\"search\",result=\"error\",service=\"records\"}")
            .await
            >= 1.0
    );

    redis.restart().await.unwrap();
    testkit::eventually(
        "readyz reports the cache ok after it returns",
        Duration::from_secs(30),
        || async { svc.readyz().await.1["checks"]["cache"] == "ok" },
    )
    .await
    .unwrap();
    let hits_metric = "cache_requests_total{cache=\"search\",result=\"hit\",service=\"records\"}";
    call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    let before = svc.metric(hits_metric).await;
    call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(
        svc.metric(hits_metric).await,
        before + 1.0,
        "the cache is used again"
    );
}

#[tokio::test]
async fn with_postgres_unreachable_requests_are_503_and_the_service_recovers() {
    let h = Harness::new("rec_pg_down").await;
    // PostgreSQL reached through a proxy the test can cut; it starts cut.
    let pg: std::net::SocketAddr = "127.0.0.1:55432".parse().unwrap();
    let mut proxy = testkit::TcpProxy::stopped(pg);
    let mut h = h;
    h.database_url = h.db.url.replace(":55432/", &format!(":{}/", proxy.port));
    let svc = h.spawn();
    testkit::wait_for_tcp(([127, 0, 0, 1], svc.http).into(), Duration::from_secs(30))
        .await
        .unwrap();
    let alice = User::new();

    let (status, ready) = common::read(
        common::client()
            .get(svc.url("/readyz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "not_ready");
    let (status, body) = call(&svc, &h.key, &alice, Method::GET, "/records", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database"),
        "{body}"
    );
    let healthz = testkit::http_status(&svc.url("/healthz")).await;
    assert_eq!(
        healthz, 200,
        "the process is up even though it is not ready"
    );

    proxy.resume().await.unwrap();
    svc.wait_ready().await;
    let created = create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"A","name":"B","format":"LP"}),
    )
    .await;

    proxy.cut();
    let (status, body) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{}", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = call(
        &svc,
        &h.key,
        &alice,
        Method::POST,
        "/records",
        Some(json!({"artist":"A","name":"C","format":"LP"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    testkit::eventually(
        "readyz 503 while PostgreSQL is away",
        Duration::from_secs(10),
        || async { testkit::http_status(&svc.url("/readyz")).await == 503 },
    )
    .await
    .unwrap();

    proxy.resume().await.unwrap();
    svc.wait_ready().await;
    let (status, fetched) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{}", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, &fetched), (200, &created));
    let mut svc = svc;
    assert!(svc.child.is_running());
}

#[tokio::test]
async fn replicas_starting_together_apply_each_migration_once() {
    let h = Harness::new("rec_migrate_race").await;
    let (a, b) = (h.spawn(), h.spawn());
    a.wait_ready().await;
    b.wait_ready().await;
    let db = h.db.connect().await.unwrap();
    let rows = db
        .query(
            "SELECT version FROM refinery_history_records ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2, 3], "each migration recorded once");
    // Both serve the same data.
    let alice = User::new();
    let created = create(
        &a,
        &h.key,
        &alice,
        json!({"artist":"A","name":"B","format":"LP"}),
    )
    .await;
    let (status, fetched) = call(
        &b,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{}", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, fetched), (200, created));
}

#[tokio::test]
async fn migrate_subcommand_applies_and_is_idempotent() {
    let h = Harness::new("rec_migrate_cmd").await;
    for _ in 0..2 {
        let mut child = testkit::ChildProcess::spawn(
            "records-migrate",
            std::path::Path::new(env!("CARGO_BIN_EXE_records")),
            &["migrate", "--database-url", &h.database_url],
            &[],
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
    let row = db
        .query_one("SELECT to_regclass('records.records')::text", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("records.records")
    );
    let indexes = db
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'records' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = indexes.iter().map(|r| r.get(0)).collect();
    assert!(
        names.contains(&"records_user_search_trgm_idx".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let h = Harness::new("rec_sigterm").await;
    let mut svc = h.start().await;
    let alice = User::new();
    create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"A","name":"B","format":"LP"}),
    )
    .await;
    svc.child.signal(libc::SIGTERM).unwrap();
    let code = svc.child.wait_exit(Duration::from_secs(30)).unwrap();
    assert_eq!(code, Some(0), "{}", svc.child.logs());
    let logs = svc.child.logs();
    assert!(
        logs.contains("SIGTERM") && logs.contains("drained"),
        "{logs}"
    );
    assert_eq!(
        testkit::http_status(&svc.url("/healthz")).await,
        0,
        "nothing listens after shutdown"
    );
}
