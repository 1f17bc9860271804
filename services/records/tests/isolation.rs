//! A search-cache flood cannot starve revocations: real `auth` and `records` processes on a
//! shared Redis capped at 2 MB with `noeviction` (as in k8s, where a full Redis refuses writes)
//! and a cache Redis of the same size with `allkeys-lru`. One user floods distinct searches
//! with multi-KB answers — more than fills 2 MB — and logout still writes its revocation.
//! With the cache in the shared Redis (before the cache had a store of its own), that Redis
//! filled up and logout answered 503.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::{create, get, Harness, User};
use identity_assertion::Identity;
use serde_json::{json, Value};
use testkit::RedisServer;

const RECORDS: usize = 100;
const DISTINCT_SEARCHES: usize = 40;
const SMALL_SEARCHES: usize = 100;

async fn info_field(redis: &RedisServer, section: &str, field: &str) -> u64 {
    let mut conn = redis.connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {info}"))
}

/// The claims of a token we just got from auth (its signature is auth's own tests' business).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_search_cache_flood_leaves_logout_and_its_revocation_working() {
    let shared =
        RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
            .await
            .unwrap();
    let cache =
        RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"])
            .await
            .unwrap();
    let mut h = Harness::new("rec_isolation").await;
    h.redis_url = shared.url();
    h.cache_redis_url = Some(cache.url());
    // Entries of ~100 KB must be cached for the flood to be one.
    h.extra_env
        .push(("RECORDS_CACHE_MAX_ENTRY_KIB".into(), "1024".into()));

    let key_dir = h.dir.path().join("auth-keys").display().to_string();
    let auth = h
        .env
        .spawn(
            "auth",
            &testkit::workspace_bin("auth").unwrap(),
            ("AUTH_HTTP_ADDR", testkit::free_tcp_port()),
            ("AUTH_GRPC_ADDR", testkit::free_tcp_port()),
            &[
                ("AUTH_KEY_DIR", &key_dir),
                ("AUTH_ARGON2_MEMORY_KIB", "8192"),
                ("AUTH_ARGON2_ITERATIONS", "1"),
            ],
        )
        .unwrap();
    auth.wait_ready().await.unwrap();
    let records = h.start().await;

    let client = common::client();
    let credentials = json!({"email": "flooder@example.com", "password": "correct horse battery"});
    let registered = client
        .post(auth.url("/register"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let (status, login) = common::read(
        client
            .post(auth.url("/login"))
            .json(&credentials)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let claims = claims(login["token"].as_str().unwrap());
    let user = User {
        identity: Identity {
            user_id: claims["sub"].as_str().unwrap().to_string(),
            email: claims["email"].as_str().unwrap().to_string(),
            jti: claims["jti"].as_str().unwrap().to_string(),
        },
    };

    // ~1 KB records that every flood query matches: each answer is a full page of ~100 KB.
    let notes = "Original pressing, gatefold sleeve, light ring wear. ".repeat(18);
    for n in 0..RECORDS {
        create(
            &records,
            &h.key,
            &user,
            json!({"artist":"Floodartist","name":format!("Volume {n}"),"format":"LP","notes":notes}),
        )
        .await;
    }
    // Big answers first, then many small ones (no hits) that fill what room is left, a few
    // at a time as a client with several connections would.
    for n in 0..DISTINCT_SEARCHES {
        let (status, body) = get(
            &records,
            &h.key,
            &user,
            &format!("/records/search?q=floodartist%20{n}&limit=100"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["hits"].as_array().unwrap().len(), RECORDS);
    }
    // Then every smaller page size, then answers with no hits: what room is left fills up too.
    for limit in (1..RECORDS).rev() {
        let (status, body) = get(
            &records,
            &h.key,
            &user,
            &format!("/records/search?q=floodartist&limit={limit}"),
        )
        .await;
        assert_eq!(
            (status, body["hits"].as_array().map(Vec::len)),
            (200, Some(limit))
        );
    }
    for n in 0..SMALL_SEARCHES {
        let path = format!("/records/search?q=qqzx{n}v");
        let (status, body) = get(&records, &h.key, &user, &path).await;
        assert_eq!(
            (status, body["hits"].as_array().map(Vec::len)),
            (200, Some(0))
        );
    }
    // Logout writes the revocation into the shared Redis.
    let mut shared_conn = shared.connection().await.unwrap();
    let logout = client
        .post(auth.url("/logout"))
        .headers(user.headers_for("auth", &h.key, "POST", "/logout"))
        .send()
        .await
        .unwrap();
    let status = logout.status();
    let body = logout.text().await.unwrap();
    let used = info_field(&shared, "memory", "used_memory").await;
    assert_eq!(
        status, 204,
        "logout after the flood (shared Redis: {used} of 2 MiB used): {body}"
    );
    let revoked: Option<String> = redis::cmd("GET")
        .arg(format!("{}revoked:{}", h.namespace, user.identity.jti))
        .query_async(&mut shared_conn)
        .await
        .unwrap();
    assert_eq!(revoked.as_deref(), Some("1"), "revocation written");

    // The flood was larger than a 2 MB Redis holds: the cache Redis had to evict.
    let evicted = info_field(&cache, "stats", "evicted_keys").await;
    assert!(evicted > 0, "the flood never filled the cache Redis");
    let cached_in_shared: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}records:*", h.namespace))
        .query_async(&mut shared_conn)
        .await
        .unwrap();
    assert!(
        cached_in_shared.is_empty(),
        "cache entries in the shared Redis: {} keys",
        cached_in_shared.len()
    );

    // And the cache still serves.
    let (status, body) = get(
        &records,
        &h.key,
        &user,
        "/records/search?q=floodartist&limit=3",
    )
    .await;
    assert_eq!(
        (status, body["hits"].as_array().map(Vec::len)),
        (200, Some(3))
    );
}
