//! What keeps a flood of logins and registrations from hurting everybody else, against a real
//! `auth` process: the capped hashing queue (503 + Retry-After / UNAVAILABLE at once when
//! full) and the per-account failed-login throttle (429 + Retry-After / RESOURCE_EXHAUSTED,
//! shared by HTTP and gRPC, no argon2 work, the same for unknown emails).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{unique_email, Harness, Running};
use record_proto::auth as pb;
use serde_json::Value;

const LOGINS_COMPUTED: &str =
    "password_hashes_total{operation=\"login\",result=\"computed\",service=\"auth\"}";

fn with_env(h: &mut Harness, vars: &[(&str, &str)]) {
    h.extra_env
        .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
}

/// Status, `Retry-After` and JSON body of an HTTP login.
async fn http_login(svc: &Running, email: &str, password: &str) -> (u16, Option<String>, Value) {
    let response = common::client()
        .post(svc.url("/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = common::read(response).await;
    (status, retry_after, body)
}

async fn grpc_login(svc: &Running, email: &str, password: &str) -> Result<(), tonic::Status> {
    let mut client = svc.grpc_client().await;
    client
        .login(pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(drop)
}

fn retry_after_metadata(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after metadata: {status:?}"))
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_and_unavailable_at_once() {
    let mut h = Harness::new("auth_hash_cap").await;
    // One hash at a time, none waiting, and each hash slow enough to be caught running.
    with_env(
        &mut h,
        &[
            ("AUTH_ARGON2_MAX_CONCURRENT", "1"),
            ("AUTH_ARGON2_MAX_QUEUED", "0"),
            ("AUTH_ARGON2_MEMORY_KIB", "65536"),
            ("AUTH_ARGON2_ITERATIONS", "16"),
        ],
    );
    let svc = h.start().await;
    let holder = {
        let url = svc.url("/login");
        tokio::spawn(async move {
            let body = serde_json::json!({"email": unique_email(), "password": "long enough pw"});
            let response = common::client().post(url).json(&body).send().await.unwrap();
            response.status().as_u16()
        })
    };
    let in_progress = "password_hashes_in_progress{service=\"auth\"}";
    testkit::eventually("a hash running", Duration::from_secs(30), || async {
        svc.metric(in_progress).await.unwrap() == 1.0
    })
    .await
    .unwrap();

    // While it runs every other hash is refused at once, on both protocols.
    let (status, retry_after, body) = http_login(&svc, &unique_email(), "long enough pw").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    let (status, body) = svc.register(&unique_email(), "long enough pw").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
    let refused = grpc_login(&svc, &unique_email(), "long enough pw")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(retry_after_metadata(&refused), 1);
    let mut client = svc.grpc_client().await;
    let refused = client
        .register(pb::RegisterRequest {
            email: unique_email(),
            password: "long enough pw".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    assert_eq!(
        holder.await.unwrap(),
        401,
        "the admitted login finished normally"
    );
    let rejected = |op: &str| {
        format!("password_hashes_total{{operation=\"{op}\",result=\"rejected\",service=\"auth\"}}")
    };
    assert_eq!(svc.metric(&rejected("login")).await.unwrap(), 2.0);
    assert_eq!(svc.metric(&rejected("register")).await.unwrap(), 2.0);
    // A free slot admits the next one again.
    let (status, _, body) = http_login(&svc, &unique_email(), "long enough pw").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(svc.metric(in_progress).await.unwrap(), 0.0);
}

#[tokio::test]
async fn failed_logins_throttle_the_email_on_http_and_grpc_without_hashing() {
    let mut h = Harness::new("auth_throttle").await;
    with_env(
        &mut h,
        &[
            ("AUTH_LOGIN_FAILURE_LIMIT", "3"),
            ("AUTH_LOGIN_BACKOFF", "60s"),
            ("AUTH_LOGIN_BACKOFF_MAX", "10m"),
        ],
    );
    let svc = h.start().await;
    let known = unique_email();
    assert_eq!(svc.register(&known, "the right password").await.0, 201);
    let unknown = unique_email();

    // Three failures, counted together across HTTP and gRPC, for a known and an unknown email.
    for email in [&known, &unknown] {
        for _ in 0..2 {
            assert_eq!(http_login(&svc, email, "a wrong password").await.0, 401);
        }
        let wrong = grpc_login(&svc, email, "a wrong password")
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    }
    let computed = svc.metric(LOGINS_COMPUTED).await.unwrap();

    // Now even the right password is refused, before any hashing.
    let (status, retry_after, known_body) = http_login(&svc, &known, "the right password").await;
    assert_eq!(status, 429, "{known_body}");
    let seconds: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    assert_eq!(known_body["error"]["code"], "login_throttled");
    let refused = grpc_login(&svc, &known.to_uppercase(), "the right password")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!((1..=60).contains(&retry_after_metadata(&refused)));

    // An unknown email gets exactly the same answer: no oracle for which accounts exist.
    let (status, retry_after, unknown_body) =
        http_login(&svc, &unknown, "the right password").await;
    assert_eq!((status, retry_after.is_some()), (429, true));
    assert_eq!(unknown_body, known_body);
    assert_eq!(
        svc.metric(LOGINS_COMPUTED).await.unwrap(),
        computed,
        "throttled attempts ran no argon2"
    );
    assert_eq!(
        svc.metric("login_throttled_total{service=\"auth\"}")
            .await
            .unwrap(),
        3.0
    );

    // Another account is unaffected, and a successful login clears its count: two failures,
    // a success, two more failures stay below the limit of three.
    let other = unique_email();
    assert_eq!(svc.register(&other, "the right password").await.0, 201);
    for round in 0..2 {
        for _ in 0..2 {
            let (status, _, body) = http_login(&svc, &other, "a wrong password").await;
            assert_eq!(status, 401, "round {round}: {body}");
        }
        let (status, _, body) = http_login(&svc, &other, "the right password").await;
        assert_eq!(status, 200, "round {round}: {body}");
    }
}

#[tokio::test]
async fn the_back_off_grows_with_every_failure_after_the_limit() {
    let mut h = Harness::new("auth_backoff").await;
    with_env(
        &mut h,
        &[
            ("AUTH_LOGIN_FAILURE_LIMIT", "2"),
            ("AUTH_LOGIN_BACKOFF", "2s"),
            ("AUTH_LOGIN_BACKOFF_MAX", "10m"),
        ],
    );
    let svc = h.start().await;
    let email = unique_email();
    for _ in 0..2 {
        assert_eq!(http_login(&svc, &email, "a wrong password").await.0, 401);
    }
    let retry_after = |(status, retry_after, body): (u16, Option<String>, Value)| {
        assert_eq!(status, 429, "{body}");
        retry_after.unwrap().parse::<u64>().unwrap()
    };
    let first = retry_after(http_login(&svc, &email, "a wrong password").await);
    assert!((1..=2).contains(&first), "first back-off 2 s: {first}");
    // Refused attempts do not count; the first one after the back-off does, and doubles it.
    testkit::eventually(
        "the first back-off to end",
        Duration::from_secs(10),
        || async { http_login(&svc, &email, "a wrong password").await.0 == 401 },
    )
    .await
    .unwrap();
    let second = retry_after(http_login(&svc, &email, "a wrong password").await);
    assert!((3..=4).contains(&second), "second back-off 4 s: {second}");
}

#[tokio::test]
async fn with_redis_down_the_throttle_still_holds_in_process() {
    let mut redis = testkit::RedisServer::start().await.unwrap();
    let mut h = Harness::new("auth_throttle_fallback").await;
    h.redis_url = redis.url();
    with_env(
        &mut h,
        &[
            ("AUTH_LOGIN_FAILURE_LIMIT", "2"),
            ("AUTH_LOGIN_BACKOFF", "60s"),
        ],
    );
    let svc = h.start().await;
    let email = unique_email();
    assert_eq!(svc.register(&email, "the right password").await.0, 201);
    redis.stop();
    for _ in 0..2 {
        assert_eq!(http_login(&svc, &email, "a wrong password").await.0, 401);
    }
    let (status, retry_after, body) = http_login(&svc, &email, "the right password").await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some());
    let refused = grpc_login(&svc, &email, "the right password")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        svc.metric("login_throttle_fallbacks_total{service=\"auth\"}")
            .await
            .unwrap()
            >= 2.0
    );
    // Other emails still log in (login itself never needed Redis).
    let other = unique_email();
    assert_eq!(svc.register(&other, "the right password").await.0, 201);
    assert_eq!(svc.login(&other, "the right password").await.0, 200);
}
