//! The search/stats cache's bounds: one entry per query whatever the `limit`, answers over the
//! entry-size cap served but not stored, and no cache at all (never the shared Redis) without
//! a cache URL. Against a real `records` process, PostgreSQL and the cache Redis.

#![allow(clippy::unwrap_used)]

mod common;

use common::{create, get, Harness, User};
use serde_json::{json, Value};

const SEARCH_HITS: &str =
    "cache_requests_total{cache=\"search\",result=\"hit\",service=\"records\"}";

/// Keys under `namespace` in the Redis at `url` (no lock keys).
async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.into_iter().filter(|k| !k.ends_with(":lock")).collect()
}

fn names(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["record"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn searches_share_one_entry_whatever_the_limit_and_get_their_prefix() {
    let h = Harness::new("rec_cache_limit").await;
    let svc = h.start().await;
    let alice = User::new();
    for name in ["Amber", "Tri Repetae", "Chiastic Slide", "LP5", "Confield"] {
        create(
            &svc,
            &h.key,
            &alice,
            json!({"artist":"Autechre","name":name,"format":"LP"}),
        )
        .await;
    }
    let search = |limit: &str| {
        let path = format!("/records/search?q=autechre{limit}");
        let (svc, key, alice) = (&svc, &h.key, &alice);
        async move {
            let (status, body) = get(svc, key, alice, &path).await;
            assert_eq!(status, 200, "{body}");
            names(&body)
        }
    };
    let five = search("&limit=5").await;
    assert_eq!(five.len(), 5, "{five:?}");
    let before = svc.metric(SEARCH_HITS).await;
    assert_eq!(
        search("&limit=2").await,
        five[..2],
        "a prefix of the same ranking"
    );
    assert_eq!(search("").await, five, "default limit 20: all five");
    assert_eq!(search("&limit=100").await, five);
    assert_eq!(
        svc.metric(SEARCH_HITS).await,
        before + 3.0,
        "other limits are hits on the same entry"
    );
    let entries = keys(
        &testkit::shared_cache_redis_url(),
        &format!("{}records:search:*", h.namespace),
    )
    .await;
    assert_eq!(entries.len(), 1, "one entry for four limits: {entries:?}");
}

#[tokio::test]
async fn answers_over_the_entry_size_cap_are_served_but_not_cached() {
    let mut h = Harness::new("rec_cache_cap").await;
    h.extra_env
        .push(("RECORDS_CACHE_MAX_ENTRY_KIB".into(), "1".into()));
    let svc = h.start().await;
    let alice = User::new();
    for n in 0..3 {
        create(
            &svc,
            &h.key,
            &alice,
            json!({"artist":"Boards of Canada","name":format!("Album {n}"),"format":"LP",
                   "notes":"a long note about the pressing. ".repeat(20)}),
        )
        .await;
    }
    let too_large = "cache_writes_total{cache=\"search\",result=\"too_large\",service=\"records\"}";
    for _ in 0..2 {
        let (status, body) = get(&svc, &h.key, &alice, "/records/search?q=boards").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(names(&body).len(), 3, "served in full");
    }
    assert_eq!(svc.metric(too_large).await, 2.0, "both answers over 1 KiB");
    assert_eq!(
        svc.metric(SEARCH_HITS).await,
        0.0,
        "never served from the cache"
    );
    let pattern = format!("{}records:search:*", h.namespace);
    assert!(keys(&testkit::shared_cache_redis_url(), &pattern)
        .await
        .is_empty());

    // A small answer under the same cap is cached as before.
    let stats_hits = "cache_requests_total{cache=\"stats\",result=\"hit\",service=\"records\"}";
    for _ in 0..2 {
        let (status, stats) = get(&svc, &h.key, &alice, "/records/stats").await;
        assert_eq!((status, stats["totalRecords"].as_i64()), (200, Some(3)));
    }
    assert_eq!(
        svc.metric("cache_writes_total{cache=\"stats\",result=\"stored\",service=\"records\"}")
            .await,
        1.0
    );
    assert_eq!(svc.metric(stats_hits).await, 1.0);
}

#[tokio::test]
async fn without_a_cache_redis_nothing_is_cached_and_the_shared_redis_is_untouched() {
    let mut h = Harness::new("rec_cache_off").await;
    h.cache_redis_url = None;
    let svc = h.start().await;
    let alice = User::new();
    create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Aphex Twin","name":"Syro","format":"LP"}),
    )
    .await;
    for _ in 0..2 {
        let (status, body) = get(&svc, &h.key, &alice, "/records/search?q=aphex").await;
        assert_eq!((status, names(&body)), (200, vec!["Syro".to_string()]));
        let (status, _) = get(&svc, &h.key, &alice, "/records/stats").await;
        assert_eq!(status, 200);
    }
    let written = keys(&h.redis_url, &format!("{}*", h.namespace)).await;
    assert!(
        written.is_empty(),
        "the shared Redis got cache entries: {written:?}"
    );
    assert_eq!(svc.metric(SEARCH_HITS).await, 0.0);
    let (status, ready) = svc.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["cache"], "disabled", "{ready}");
}
