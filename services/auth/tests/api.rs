//! The auth API over HTTP and gRPC against a real `auth` process, PostgreSQL and Redis.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{read, unique_email, verify, Harness};
use record_proto::auth as pb;
use serde_json::{json, Value};

#[tokio::test]
async fn register_login_me_logout_over_http() {
    let h = Harness::new("auth_http_flow").await;
    let svc = h.start().await;
    let email = unique_email();

    let (status, user) = svc.register(&email, "correct horse battery").await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], email.as_str());
    let user_id = user["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&user_id).is_ok());
    assert!(user["createdAt"].as_str().is_some());

    let (status, login) = svc
        .login(&email.to_uppercase(), "correct horse battery")
        .await;
    assert_eq!(status, 200, "email lookup ignores case: {login}");
    assert_eq!(login["expires_in"], 900);
    assert_eq!(login["token_type"], "Bearer");
    let token = login["token"].as_str().unwrap();

    // The token is what docs/contracts.md promises the edge.
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let jwks = svc.jwks().await;
    let claims = verify(token, &jwks);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["email"], email.as_str());
    assert_eq!(claims["iss"], "record-platform");
    assert_eq!(claims["aud"], "record-platform");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (
            jwk["kty"].as_str(),
            jwk["crv"].as_str(),
            jwk["use"].as_str(),
            jwk["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("sig"), Some("EdDSA"))
    );

    let identity = h.identity_for(&claims);
    let (status, me) = read(
        common::client()
            .get(svc.url("/me"))
            .headers(h.edge_headers(&identity, "GET", "/me"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, user);

    // Logout: revocation key with the token's remaining lifetime, a published notice, an audit row.
    let redis = redis::Client::open(h.redis_url.as_str()).unwrap();
    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{}revocations", h.namespace))
        .await
        .unwrap();
    let response = common::client()
        .post(svc.url("/logout"))
        .headers(h.edge_headers(&identity, "POST", "/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}revoked:{}", h.namespace, identity.jti);
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("1"));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let left = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!(
        ttl > 0 && ttl <= 900 && (ttl - left).abs() <= 5,
        "ttl {ttl}, token has {left}s left"
    );

    use futures::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .unwrap()
        .unwrap();
    let notice: Value = serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(notice, json!({"jti": identity.jti, "exp": claims["exp"]}));

    let db = h.db.connect().await.unwrap();
    let events: Vec<String> = db
        .query(
            "SELECT event FROM auth.audit_events WHERE user_id = $1::text::uuid ORDER BY id",
            &[&user_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["register", "login", "logout"]);
    let revoked: bool = db
        .query_one(
            "SELECT revoked_at IS NOT NULL FROM auth.issued_tokens WHERE jti = $1::text::uuid",
            &[&identity.jti],
        )
        .await
        .unwrap()
        .get(0);
    assert!(revoked);
}

#[tokio::test]
async fn register_login_me_logout_over_grpc() {
    let h = Harness::new("auth_grpc_flow").await;
    let svc = h.start().await;
    let mut client = svc.grpc_client().await;
    let email = unique_email();

    let registered = client
        .register(pb::RegisterRequest {
            email: email.clone(),
            password: "hunter2hunter2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(registered.email, email);

    let login = client
        .login(pb::LoginRequest {
            email: email.clone(),
            password: "hunter2hunter2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (login.expires_in, login.token_type.as_str()),
        (900, "Bearer")
    );
    let claims = verify(&login.token, &svc.jwks().await);
    let identity = h.identity_for(&claims);

    let me = client
        .me(h.edge_request(&identity, "Me", pb::MeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me, registered);

    client
        .logout(h.edge_request(&identity, "Logout", pb::LogoutRequest {}))
        .await
        .unwrap();
    let redis = redis::Client::open(h.redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{}revoked:{}", h.namespace, identity.jti))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists);

    let wrong = client
        .login(pb::LoginRequest {
            email,
            password: "wrong password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let anonymous = client.me(pb::MeRequest {}).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_its_case() {
    let h = Harness::new("auth_duplicate").await;
    let svc = h.start().await;
    let email = unique_email();
    assert_eq!(svc.register(&email, "password-one").await.0, 201);
    let (status, body) = svc.register(&email.to_uppercase(), "password-two").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "email_taken");
    assert_eq!(body["error"]["field"], "email");
    // The first password still works; the second never took effect.
    assert_eq!(svc.login(&email, "password-one").await.0, 200);
    assert_eq!(svc.login(&email, "password-two").await.0, 401);

    let mut client = svc.grpc_client().await;
    let status = client
        .register(pb::RegisterRequest {
            email,
            password: "password-three".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
}

#[tokio::test]
async fn bad_input_of_every_field_is_a_4xx_naming_the_field() {
    let h = Harness::new("auth_validation").await;
    let svc = h.start().await;
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "/register",
            json!({"email": "not-an-email", "password": "long enough"}),
            422,
            "invalid_email",
            Some("email"),
        ),
        (
            "/register",
            json!({"email": "a@b", "password": "long enough"}),
            422,
            "invalid_email",
            Some("email"),
        ),
        (
            "/register",
            json!({"email": "", "password": "long enough"}),
            422,
            "missing_field",
            Some("email"),
        ),
        (
            "/register",
            json!({"email": "x y@example.com", "password": "long enough"}),
            422,
            "invalid_email",
            Some("email"),
        ),
        (
            "/register",
            json!({"email": unique_email(), "password": "short"}),
            422,
            "password_too_short",
            Some("password"),
        ),
        (
            "/register",
            json!({"email": unique_email(), "password": "p".repeat(2000)}),
            422,
            "password_too_long",
            Some("password"),
        ),
        (
            "/register",
            json!({"email": unique_email()}),
            422,
            "missing_field",
            Some("password"),
        ),
        (
            "/register",
            json!({"password": "long enough"}),
            422,
            "missing_field",
            Some("email"),
        ),
        (
            "/register",
            json!({"email": 42, "password": "long enough"}),
            422,
            "invalid_field",
            Some("email"),
        ),
        (
            "/register",
            json!({"email": unique_email(), "password": "long enough", "admin": true}),
            422,
            "unknown_field",
            Some("admin"),
        ),
        (
            "/login",
            json!({"email": "", "password": "whatever"}),
            422,
            "missing_field",
            Some("email"),
        ),
        (
            "/login",
            json!({"email": unique_email(), "password": ""}),
            422,
            "missing_field",
            Some("password"),
        ),
        (
            "/login",
            json!({"email": unique_email(), "password": "x", "remember": true}),
            422,
            "unknown_field",
            Some("remember"),
        ),
    ];
    for (path, body, status, code, field) in cases {
        let (got, err) = svc.post(path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {err}");
        assert_eq!(err["error"]["code"], code, "{path} {body}: {err}");
        assert_eq!(
            err["error"]["field"].as_str(),
            field,
            "{path} {body}: {err}"
        );
    }
    for path in ["/register", "/login"] {
        let response = common::client()
            .post(svc.url(path))
            .header("content-type", "application/json")
            .body("{\"email\":")
            .send()
            .await
            .unwrap();
        let (status, err) = read(response).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some("malformed_json")),
            "{path}"
        );
    }
    let mut client = svc.grpc_client().await;
    let status = client
        .register(pb::RegisterRequest {
            email: "nope".into(),
            password: "long enough".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.metadata().get("x-error-field").unwrap(), "email");
    let status = client
        .register(pb::RegisterRequest {
            email: unique_email(),
            password: "short".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let db = h.db.connect().await.unwrap();
    let users: i64 = db
        .query_one("SELECT count(*) FROM auth.users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 0, "no bad input created an account");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_indistinguishable() {
    let h = Harness::new("auth_enumeration").await;
    let svc = h.start().await;
    let email = unique_email();
    assert_eq!(svc.register(&email, "the right password").await.0, 201);

    let (wrong_status, wrong_body) = svc.login(&email, "the wrong password").await;
    let (unknown_status, unknown_body) = svc.login(&unique_email(), "the wrong password").await;
    assert_eq!((wrong_status, unknown_status), (401, 401));
    assert_eq!(wrong_body, unknown_body, "identical bodies");

    // Same order of time: an unknown email still pays for a full argon2id verification.
    // Without the dummy hash it would answer ~50x faster than a wrong password.
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        svc.login(&email, "the wrong password").await;
        wrong.push(started.elapsed());
        let started = Instant::now();
        svc.login(&unique_email(), "the wrong password").await;
        unknown.push(started.elapsed());
    }
    let (wrong, unknown) = (median(wrong), median(unknown));
    assert!(
        unknown.as_secs_f64() >= wrong.as_secs_f64() / 4.0
            && unknown.as_secs_f64() <= wrong.as_secs_f64() * 4.0,
        "wrong password {wrong:?} vs unknown email {unknown:?}"
    );
}

#[tokio::test]
async fn me_and_logout_require_a_valid_identity_assertion() {
    let h = Harness::new("auth_identity").await;
    let svc = h.start().await;
    let email = unique_email();
    svc.register(&email, "long enough pw").await;
    let (_, login) = svc.login(&email, "long enough pw").await;
    let claims = verify(login["token"].as_str().unwrap(), &svc.jwks().await);
    let identity = h.identity_for(&claims);
    let client = common::client();

    // Each bad header set is made for exactly the request it is sent with, so it fails for
    // its own reason only (replays elsewhere: edge/tests/identity_binding.rs).
    let bad_headers = |method: &str, path: &str| {
        let mut forged = h.edge_headers(&identity, method, path);
        forged.insert(
            "x-user-jti",
            uuid::Uuid::new_v4().to_string().parse().unwrap(),
        );
        let mut stale = h.edge_headers(&identity, method, path);
        let target = identity_assertion::Target {
            audience: "auth",
            method,
            path_and_query: path,
        };
        stale.insert(
            "x-user-assertion",
            identity_assertion::sign_at(&h.key, &identity, &target, 1_000)
                .parse()
                .unwrap(),
        );
        let mut missing = h.edge_headers(&identity, method, path);
        missing.remove("x-user-assertion");
        [
            ("forged", forged),
            ("stale", stale),
            ("missing", missing),
            ("none", Default::default()),
        ]
    };
    for (name, headers) in bad_headers("GET", "/me") {
        let me = client
            .get(svc.url("/me"))
            .headers(headers)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 401, "{name} /me");
    }
    for (name, headers) in bad_headers("POST", "/logout") {
        let logout = client
            .post(svc.url("/logout"))
            .headers(headers)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 401, "{name} /logout");
    }
    // None of those revoked anything.
    let redis = redis::Client::open(h.redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}revoked:*", h.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    let mut grpc = svc.grpc_client().await;
    let mut request = h.edge_request(&identity, "Logout", pb::LogoutRequest {});
    request.metadata_mut().insert(
        "x-user-id",
        uuid::Uuid::new_v4().to_string().parse().unwrap(),
    );
    assert_eq!(
        grpc.logout(request).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
}

#[tokio::test]
async fn operational_endpoints_and_grpc_health() {
    let h = Harness::new("auth_ops").await;
    let svc = h.start().await;
    let client = common::client();
    let (status, ready) = read(client.get(svc.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, &ready["checks"]),
        (
            200,
            &json!({"postgres":"ok","redis":"ok","migrations":"applied"})
        )
    );
    svc.register(&unique_email(), "long enough pw").await;
    let metrics = client
        .get(svc.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("requests_total{operation=\"POST /register\",protocol=\"http\",status=\"201\",service=\"auth\"} 1"), "{metrics}");
    let response = client
        .get(svc.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");

    let channel = testkit::grpc_h2c_channel(svc.grpc).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    // The health service follows readiness (re-checked every second), so poll for it.
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    testkit::eventually("auth.AuthService SERVING", Duration::from_secs(10), || {
        let mut health = health.clone();
        async move {
            let request = tonic_health::pb::HealthCheckRequest {
                service: "auth.AuthService".into(),
            };
            health.check(request).await.unwrap().into_inner().status == serving
        }
    })
    .await
    .unwrap();
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.Such".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
