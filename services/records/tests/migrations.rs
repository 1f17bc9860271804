//! Upgrading a database that holds records: the partitioning migration (V2) moves every row
//! of the V1 table into the per-user partitions, and the service then serves them as before.

#![allow(clippy::unwrap_used)]

mod common;

use common::{call, get, Harness, User};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("../../migrations/records");
}

#[tokio::test]
async fn records_written_before_partitioning_are_served_and_searched_after_it() {
    let h = Harness::new("rec_upgrade").await;
    let mut db = h.db.connect().await.unwrap();
    // The schema as it was before V2, with the history table the service uses.
    let mut runner = embedded::migrations::runner().set_target(refinery::Target::Version(1));
    runner.set_migration_table_name("refinery_history_records");
    runner.run_async(&mut db).await.unwrap();
    let alice = User::new();
    let bob = User::new();
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (id, owner, artist, name) in [
        (ids[0], &alice, "Boards of Canada", "Geogaddi"),
        (ids[1], &alice, "Aphex Twin", "Drukqs"),
        (ids[2], &bob, "Boards of Canada", "Tomorrow's Harvest"),
    ] {
        db.execute(
            "INSERT INTO records.records (id, user_id, artist, name, format, label) \
             VALUES ($1, $2::text::uuid, $3, $4, 'LP', 'Warp')",
            &[&id, &owner.identity.user_id, &artist, &name],
        )
        .await
        .unwrap();
    }

    let svc = h.start().await; // applies V2
    let partitions: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'records.records'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(partitions, 32);

    let (status, record) = get(&svc, &h.key, &alice, &format!("/records/{}", ids[0])).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["name"], "Geogaddi");
    let (status, _) = get(&svc, &h.key, &bob, &format!("/records/{}", ids[0])).await;
    assert_eq!(status, 404, "still only the owner's");

    let (status, found) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        "/records/search?q=bords%20of%20canda",
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["record"]["id"].clone())
            .collect::<Vec<_>>(),
        [json!(ids[0].to_string())],
        "the folded columns were computed for the moved rows"
    );
    let (status, bobs) = get(&svc, &h.key, &bob, "/records").await;
    assert_eq!(status, 200, "{bobs}");
    assert_eq!(bobs["records"].as_array().unwrap().len(), 1);
}

/// V3: search_text keeps a histogram too short (< 10 entries) for the planner to run the
/// trigram operator over it when it estimates a search; with the default 101 entries that was
/// half of every search's planning time. The other columns keep their full statistics.
#[tokio::test]
async fn search_text_statistics_stay_below_the_planners_histogram_minimum() {
    let h = Harness::new("rec_stats").await;
    let _svc = h.start().await;
    let db = h.db.connect().await.unwrap();
    let owner = User::new();
    db.execute(
        "INSERT INTO records.records (id, user_id, artist, name, format) \
         SELECT gen_random_uuid(), $1::text::uuid, 'Artist ' || g, 'Name ' || g, 'LP' \
         FROM generate_series(1, 300) AS g",
        &[&owner.identity.user_id],
    )
    .await
    .unwrap();
    db.batch_execute("ANALYZE records.records").await.unwrap();
    let longest = |column: &'static str| {
        let db = &db;
        async move {
            let row = db
                .query_one(
                    "SELECT max(array_length(histogram_bounds::text::text[], 1)) FROM pg_stats \
                     WHERE schemaname = 'records' AND attname = $1",
                    &[&column],
                )
                .await
                .unwrap();
            row.get::<_, Option<i32>>(0)
        }
    };
    let search_text = longest("search_text").await;
    assert!(
        search_text.is_some_and(|n| n < 10),
        "search_text histogram entries: {search_text:?}"
    );
    let artist = longest("artist_folded").await;
    assert!(
        artist.is_some_and(|n| n > 100),
        "artist_folded histogram entries: {artist:?}"
    );
}
