//! Records search (pg_trgm ranking, cached in Redis, single-flight) and stats, against a real
//! `records` process, PostgreSQL and Redis.

#![allow(clippy::unwrap_used)]

mod common;

use common::{call, create, Harness, User};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn search_is_fuzzy_accent_and_case_insensitive_and_ranks_exact_first() {
    let h = Harness::new("rec_search").await;
    let svc = h.start().await;
    let alice = User::new();
    for (artist, name, label, catalog) in [
        (
            "Aphex Twin",
            "Selected Ambient Works 85-92",
            "Apollo",
            "AMB 3922",
        ),
        ("Autechre", "Amber", "Warp Records", "WARPCD25"),
        ("Autechere Tribute Band", "Covers", "Nobody", "NB1"),
        ("Autechre Remixed", "Various", "Warp Records", "WARPCD99"),
        ("Björk", "Homogenic", "One Little Indian", "TPLP71"),
        ("Miles Davis", "Kind of Blue", "Columbia", "CL 1355"),
    ] {
        create(&svc, &h.key, &alice, json!({"artist":artist,"name":name,"format":"LP","label":label,"catalogNumber":catalog})).await;
    }
    let search = |q: &str| {
        let q = q.to_string();
        let (svc, key, alice) = (&svc, &h.key, &alice);
        async move {
            let (status, body) = call(
                svc,
                key,
                alice,
                Method::GET,
                &format!("/records/search?q={q}"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hit| {
                    (
                        hit["record"]["artist"].as_str().unwrap().to_string(),
                        hit["score"].as_f64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    let aphex = search("aphex").await;
    assert_eq!(
        aphex.first().map(|h| h.0.as_str()),
        Some("Aphex Twin"),
        "{aphex:?}"
    );
    assert!(!aphex.iter().any(|h| h.0 == "Miles Davis"), "{aphex:?}");

    // Exact artist first, then the record containing the text, then the typo'd fuzzy one.
    let ranked = search("Autechre").await;
    let order: Vec<&str> = ranked.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(
        order,
        ["Autechre", "Autechre Remixed", "Autechere Tribute Band"],
        "{ranked:?}"
    );
    assert!(
        ranked[0].1 > ranked[1].1 && ranked[1].1 > ranked[2].1,
        "{ranked:?}"
    );

    assert_eq!(
        search("BJORK").await.first().map(|h| h.0.as_str()),
        Some("Björk"),
        "accents and case ignored"
    );
    assert_eq!(
        search("bjórk").await.first().map(|h| h.0.as_str()),
        Some("Björk")
    );
    assert_eq!(
        search("kind%20of%20blue")
            .await
            .first()
            .map(|h| h.0.as_str()),
        Some("Miles Davis"),
        "name field"
    );
    assert_eq!(
        search("one%20little%20indian")
            .await
            .first()
            .map(|h| h.0.as_str()),
        Some("Björk"),
        "label field"
    );
    assert_eq!(
        search("warpcd25").await.first().map(|h| h.0.as_str()),
        Some("Autechre"),
        "catalog number field"
    );
    assert!(
        search("100%25").await.is_empty(),
        "LIKE wildcards in the query are literal"
    );
    assert!(search("zzzzqqq").await.is_empty());

    // limit bounds the answer.
    let (_, limited) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=autechre&limit=1",
        None,
    )
    .await;
    assert_eq!(limited["hits"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_mutation_invalidates_cached_search_and_stats() {
    let h = Harness::new("rec_cache").await;
    let svc = h.start().await;
    let alice = User::new();
    let record = create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Aphex Twin","name":"Drukqs","format":"2xCD","pricePaid":"10.00"}),
    )
    .await;
    let path = format!("/records/{}", record["id"].as_str().unwrap());
    let hits = |body: &Value| {
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["record"]["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let search_hits = "cache_requests_total{cache=\"search\",result=\"hit\",service=\"records\"}";

    let (_, first) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(hits(&first), ["Drukqs"]);
    let before = svc.metric(search_hits).await;
    let (_, second) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=%20APHEX%20",
        None,
    )
    .await;
    assert_eq!(second["hits"], first["hits"]);
    assert_eq!(
        svc.metric(search_hits).await,
        before + 1.0,
        "the normalized repeat is a cache hit"
    );

    let (status, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::PATCH,
        &path,
        Some(json!({"name":"Syro"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, after_update) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(
        hits(&after_update),
        ["Syro"],
        "update invalidated the cached search"
    );

    let (_, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(
        (stats["totalRecords"].as_i64(), stats["totalSpent"].as_str()),
        (Some(1), Some("10.00"))
    );
    let (status, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::PUT,
        &path,
        Some(json!({"artist":"Aphex Twin","name":"Syro","format":"2xLP","pricePaid":"12.00"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(
        stats["totalSpent"], "12.00",
        "replace invalidated the cached stats"
    );
    create(&svc, &h.key, &alice, json!({"artist":"Aphex Twin","name":"Richard D. James Album","format":"LP","pricePaid":"5.50"})).await;
    let (_, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(
        (stats["totalRecords"].as_i64(), stats["totalSpent"].as_str()),
        (Some(2), Some("17.50")),
        "create invalidated stats"
    );
    let (_, after_create) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(after_create["hits"].as_array().unwrap().len(), 2);

    let (status, _) = call(&svc, &h.key, &alice, Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (_, after_delete) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(
        hits(&after_delete),
        ["Richard D. James Album"],
        "delete invalidated the cached search"
    );
    let (_, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(stats["totalRecords"], 1);

    // A mutation that finds no row bumps no version: the cached answer stays valid.
    let before = svc.metric(search_hits).await;
    let (status, _) = call(&svc, &h.key, &alice, Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::PATCH,
        &path,
        Some(json!({"name":"Gone"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::PUT,
        &path,
        Some(json!({"artist":"Aphex Twin","name":"Gone","format":"LP"})),
    )
    .await;
    assert_eq!(status, 404);
    let (_, again) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=aphex",
        None,
    )
    .await;
    assert_eq!(again["hits"], after_delete["hits"]);
    assert_eq!(
        svc.metric(search_hits).await,
        before + 1.0,
        "a delete, patch or put of a missing record kept the cache version"
    );
}

#[tokio::test]
async fn concurrent_identical_searches_compute_once() {
    let h = Harness::new("rec_singleflight").await;
    let svc = h.start().await;
    let alice = User::new();
    create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Aphex Twin","name":"Syro","format":"LP"}),
    )
    .await;
    let misses = "cache_requests_total{cache=\"search\",result=\"miss\",service=\"records\"}";
    let before = svc.metric(misses).await;
    let searches = (0..20).map(|_| {
        call(
            &svc,
            &h.key,
            &alice,
            Method::GET,
            "/records/search?q=syro",
            None,
        )
    });
    let answers = futures::future::join_all(searches).await;
    assert!(answers
        .iter()
        .all(|(status, body)| *status == 200 && body["hits"].as_array().unwrap().len() == 1));
    // Requests that overlap share one flight; later ones hit the cache. Either way the
    // database was asked once.
    assert_eq!(svc.metric(misses).await, before + 1.0);
}

#[tokio::test]
async fn replicas_sharing_redis_compute_a_search_once() {
    let h = Harness::new("rec_singleflight_replicas").await;
    let (a, b) = (h.start().await, h.start().await);
    let alice = User::new();
    create(
        &a,
        &h.key,
        &alice,
        json!({"artist":"Autechre","name":"Tri Repetae","format":"2xLP"}),
    )
    .await;
    let misses = "cache_requests_total{cache=\"search\",result=\"miss\",service=\"records\"}";
    let before = a.metric(misses).await + b.metric(misses).await;
    let searches = (0..20).map(|n| {
        let replica = if n % 2 == 0 { &a } else { &b };
        call(
            replica,
            &h.key,
            &alice,
            Method::GET,
            "/records/search?q=tri%20repetae",
            None,
        )
    });
    let answers = futures::future::join_all(searches).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["hits"], answers[0].1["hits"]);
    }
    // The Redis lock makes the second replica wait for the first one's entry.
    assert_eq!(
        a.metric(misses).await + b.metric(misses).await,
        before + 1.0
    );
}

#[tokio::test]
async fn stats_count_formats_grades_and_spending() {
    let h = Harness::new("rec_stats").await;
    let svc = h.start().await;
    let alice = User::new();
    for (format, grade, price) in [
        ("LP", "NM", Some("20.00")),
        ("LP", "VG+", Some("10.00")),
        ("CD", "NM", None),
        ("7\"", "", Some("3.01")),
    ] {
        let mut body = json!({"artist":"A","name":"B","format":format,"recordGrade":grade});
        if let Some(price) = price {
            body["pricePaid"] = json!(price);
        }
        create(&svc, &h.key, &alice, body).await;
    }
    let (status, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["totalRecords"], 4);
    assert_eq!(
        stats["byFormat"],
        json!([{"key":"LP","count":2},{"key":"7\"","count":1},{"key":"CD","count":1}])
    );
    assert_eq!(
        stats["byRecordGrade"],
        json!([{"key":"NM","count":2},{"key":"VG+","count":1},{"key":"ungraded","count":1}])
    );
    assert_eq!(
        stats["bySleeveGrade"],
        json!([{"key":"ungraded","count":4}])
    );
    assert_eq!(stats["totalSpent"], "33.01");
    assert_eq!(
        stats["averageSpent"], "11.00",
        "average over the priced records"
    );
}

/// A small collection whose search answers are pinned: order, tier and score. The search SQL
/// and its indexes may change shape for speed; these answers may not.
const COLLECTION: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    (
        "Boards of Canada",
        "Music Has the Right to Children",
        Some("Warp"),
        Some("WARPCD55"),
    ),
    (
        "Boards of Canada",
        "Geogaddi",
        Some("Warp"),
        Some("WARPCD101"),
    ),
    (
        "Aphex Twin",
        "Selected Ambient Works 85-92",
        Some("Apollo"),
        Some("AMB 3922"),
    ),
    ("Aphex Twin", "Drukqs", Some("Warp"), Some("WARPCD92")),
    ("Autechre", "Amber", Some("Warp"), Some("WARPCD25")),
    (
        "Autechere Tribute Band",
        "Covers",
        Some("Nobody"),
        Some("NB1"),
    ),
    (
        "Björk",
        "Homogenic",
        Some("One Little Indian"),
        Some("TPLP71"),
    ),
    ("Massive Attack", "Mezzanine", Some("Circa"), Some("WBRCD4")),
    ("Portishead", "Dummy", Some("Go! Beat"), Some("828 522-2")),
    (
        "Miles Davis",
        "Kind of Blue",
        Some("Columbia"),
        Some("CL 1355"),
    ),
    ("The Warp Collective", "Canada Day", None, None),
    ("Canadian Brass", "Ragtime", Some("RCA"), None),
];

async fn collection_owner(h: &Harness, svc: &common::Running) -> User {
    let owner = User::new();
    // One by one: creation order breaks score ties (newest first), so it must be fixed.
    for (artist, name, label, catalog) in COLLECTION {
        create(
            svc,
            &h.key,
            &owner,
            json!({"artist":artist,"name":name,"format":"LP","label":label,"catalogNumber":catalog}),
        )
        .await;
    }
    owner
}

/// `(artist, name, score rounded to 4 places)` of every hit, best first.
async fn ranked(
    svc: &common::Running,
    h: &Harness,
    user: &User,
    q: &str,
) -> Vec<(String, String, f64)> {
    let path = format!("/records/search?q={}&limit=100", q.replace(' ', "%20"));
    let (status, body) = call(svc, &h.key, user, Method::GET, &path, None).await;
    assert_eq!(status, 200, "{body}");
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| {
            (
                hit["record"]["artist"].as_str().unwrap().to_string(),
                hit["record"]["name"].as_str().unwrap().to_string(),
                (hit["score"].as_f64().unwrap() * 10_000.0).round() / 10_000.0,
            )
        })
        .collect()
}

/// `(artist, name, score)` of one expected hit.
type Hit = (&'static str, &'static str, f64);

/// Asserts the whole answer (every hit, in order, with its score) of each query.
async fn assert_answers(
    svc: &common::Running,
    h: &Harness,
    user: &User,
    answers: &[(&str, &[Hit])],
) {
    for (q, expected) in answers {
        let expected: Vec<(String, String, f64)> = expected
            .iter()
            .map(|(artist, name, score)| (artist.to_string(), name.to_string(), *score))
            .collect();
        assert_eq!(ranked(svc, h, user, q).await, expected, "q={q}");
    }
}

#[tokio::test]
async fn search_ranking_of_a_fixed_collection_is_pinned() {
    let h = Harness::new("rec_search_pinned").await;
    let svc = h.start().await;
    let owner = collection_owner(&h, &svc).await;
    let boc = "Boards of Canada";
    let pinned: &[(&str, &[Hit])] = &[
        // Exact label match (3) for four records, newest first; then a substring (2).
        (
            "warp",
            &[
                ("Autechre", "Amber", 3.0),
                ("Aphex Twin", "Drukqs", 3.0),
                (boc, "Geogaddi", 3.0),
                (boc, "Music Has the Right to Children", 3.0),
                ("The Warp Collective", "Canada Day", 2.0),
            ],
        ),
        // Substrings in name and artist (2), then a fuzzy neighbour (word similarity only).
        (
            "canada",
            &[
                ("The Warp Collective", "Canada Day", 2.0),
                (boc, "Geogaddi", 2.0),
                (boc, "Music Has the Right to Children", 2.0),
                ("Canadian Brass", "Ragtime", 0.7143),
            ],
        ),
        // The exact artist first; the last hit shares "canada" only (word similarity 0.41).
        (
            "boards of canada",
            &[
                (boc, "Geogaddi", 3.0),
                (boc, "Music Has the Right to Children", 3.0),
                ("The Warp Collective", "Canada Day", 0.4118),
            ],
        ),
        (
            "aphex twin",
            &[
                ("Aphex Twin", "Drukqs", 3.0),
                ("Aphex Twin", "Selected Ambient Works 85-92", 3.0),
            ],
        ),
        (
            "amber",
            &[
                ("Autechre", "Amber", 3.0),
                ("Aphex Twin", "Selected Ambient Works 85-92", 0.5),
            ],
        ),
        // A prefix: substring of four records, equal scores, newest first.
        (
            "canad",
            &[
                ("Canadian Brass", "Ragtime", 1.8333),
                ("The Warp Collective", "Canada Day", 1.8333),
                (boc, "Geogaddi", 1.8333),
                (boc, "Music Has the Right to Children", 1.8333),
            ],
        ),
    ];
    assert_answers(&svc, &h, &owner, pinned).await;
}

/// A letter or two missing in each word still finds the record (word similarity against the
/// record's text, threshold 0.4), ranked below any exact or substring match.
#[tokio::test]
async fn misspelled_queries_find_the_record() {
    let h = Harness::new("rec_search_typos").await;
    let svc = h.start().await;
    let owner = collection_owner(&h, &svc).await;
    let misspelled: &[(&str, &[Hit])] = &[
        (
            "bords of canda",
            &[
                ("Boards of Canada", "Geogaddi", 0.5556),
                (
                    "Boards of Canada",
                    "Music Has the Right to Children",
                    0.5556,
                ),
            ],
        ),
        (
            "selectd ambint works",
            &[("Aphex Twin", "Selected Ambient Works 85-92", 0.6296)],
        ),
        ("massve attak", &[("Massive Attack", "Mezzanine", 0.5625)]),
        ("kid of blu", &[("Miles Davis", "Kind of Blue", 0.5714)]),
        // Short words lose a larger share of their trigrams to one missing letter.
        (
            "aphx twn",
            &[
                ("Aphex Twin", "Drukqs", 0.4167),
                ("Aphex Twin", "Selected Ambient Works 85-92", 0.4167),
            ],
        ),
        ("mils davs", &[("Miles Davis", "Kind of Blue", 0.4615)]),
        ("portshed", &[("Portishead", "Dummy", 0.4444)]),
    ];
    assert_answers(&svc, &h, &owner, misspelled).await;
}

/// `unaccent` folds the full-width `％` to `%`, so the LIKE pattern is escaped after the query
/// is folded: a typed percent sign, full-width or not, matches a literal one and is never a
/// wildcard (which would lift "100 Percent Pure" into the substring tier).
#[tokio::test]
async fn a_typed_percent_sign_matches_literally_even_full_width() {
    let h = Harness::new("rec_search_percent").await;
    let svc = h.start().await;
    let owner = User::new();
    for name in ["100 Percent Pure", "100% Pure"] {
        create(
            &svc,
            &h.key,
            &owner,
            json!({"artist":"The Testers","name":name,"format":"LP"}),
        )
        .await;
    }
    // "100％" and "100%", URL-encoded.
    for q in ["100%EF%BC%85", "100%25"] {
        assert_eq!(
            ranked(&svc, &h, &owner, q).await,
            [
                ("The Testers".to_string(), "100% Pure".to_string(), 2.0),
                (
                    "The Testers".to_string(),
                    "100 Percent Pure".to_string(),
                    1.0
                ),
            ],
            "q={q}"
        );
    }
}
