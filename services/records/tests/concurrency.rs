//! Concurrent writes to the records API against a real `records` process and PostgreSQL:
//! nothing committed is lost, and no write overwrites another's.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{call, Harness, User};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn fifty_concurrent_creates_all_persist() {
    let h = Harness::new("rec_concurrent").await;
    let svc = h.start().await;
    let alice = User::new();
    let creates = (0..50).map(|n| {
        call(&svc, &h.key, &alice, Method::POST, "/records", Some(json!({"artist":"Artist","name":format!("Album {n}"),"format":"LP","pricePaid":"1.00"})))
    });
    let results = futures::future::join_all(creates).await;
    let ids: HashSet<String> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 50);

    let (_, page) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records?limit=500",
        None,
    )
    .await;
    let listed: HashSet<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);
    let (_, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(
        (stats["totalRecords"].as_i64(), stats["totalSpent"].as_str()),
        (Some(50), Some("50.00"))
    );
    let db = h.db.connect().await.unwrap();
    let row = db
        .query_one(
            "SELECT count(*) FROM records.records WHERE user_id = $1::text::uuid",
            &[&alice.identity.user_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 50);
}

/// Concurrent PATCHes of different fields of one record all land: a PATCH that read the row
/// and wrote every field back could overwrite another's change with what it had read.
#[tokio::test]
async fn concurrent_patches_of_different_fields_all_land() {
    let h = Harness::new("rec_concurrent_patch").await;
    let svc = h.start().await;
    let alice = User::new();
    let (status, created) = call(
        &svc,
        &h.key,
        &alice,
        Method::POST,
        "/records",
        Some(json!({"artist":"Broadcast","name":"Tender Buttons","format":"LP"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/records/{}", created["id"].as_str().unwrap());
    for round in 0..10 {
        let notes = format!("notes {round}");
        let label = format!("label {round}");
        let catalog = format!("WARP{round}");
        let patches = [
            json!({ "notes": notes }),
            json!({ "label": label }),
            json!({ "catalogNumber": catalog }),
            json!({ "isPromo": round % 2 == 0 }),
        ];
        let answers = futures::future::join_all(
            patches
                .into_iter()
                .map(|patch| call(&svc, &h.key, &alice, Method::PATCH, &path, Some(patch))),
        )
        .await;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
        }
        let (_, record) = call(&svc, &h.key, &alice, Method::GET, &path, None).await;
        assert_eq!(
            (
                record["notes"].as_str(),
                record["label"].as_str(),
                record["catalogNumber"].as_str(),
                record["isPromo"].as_bool(),
                record["name"].as_str(),
            ),
            (
                Some(notes.as_str()),
                Some(label.as_str()),
                Some(catalog.as_str()),
                Some(round % 2 == 0),
                Some("Tender Buttons"),
            ),
            "round {round}: {record}"
        );
    }
}
