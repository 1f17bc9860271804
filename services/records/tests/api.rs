//! The records API over HTTP and gRPC against a real `records` process, PostgreSQL and Redis.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{call, create, Harness, User};
use record_proto::records as pb;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn crud_round_trip_over_http_uses_camel_case_and_the_original_curl_body() {
    let h = Harness::new("rec_crud").await;
    let svc = h.start().await;
    let alice = User::new();

    // The original platform's curl example must keep working as is.
    let created = create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Aphex Twin","name":"SAW 85-92","format":"LP"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["userId"], alice.identity.user_id.as_str());
    assert_eq!(created["hasInsert"], false);
    assert_eq!(created["pricePaid"], Value::Null);
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let full = json!({
        "artist": "Aphex Twin", "name": "Selected Ambient Works 85-92", "format": "LP",
        "catalogNumber": "AMB LP 3922", "label": "Apollo", "recordGrade": "vg+", "sleeveGrade": "NM",
        "hasInsert": true, "hasBooklet": false, "hasObiStrip": true, "hasFactorySleeve": true, "isPromo": false,
        "notes": "first press\nslight ring wear", "purchasedAt": "2023-05-17", "pricePaid": "24.9"
    });
    let (status, replaced) = call(
        &svc,
        &h.key,
        &alice,
        Method::PUT,
        &format!("/records/{id}"),
        Some(full),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["recordGrade"], "VG+");
    assert_eq!(replaced["pricePaid"], "24.90");
    assert_eq!(replaced["purchasedAt"], "2023-05-17");
    assert_eq!(replaced["catalogNumber"], "AMB LP 3922");
    assert_eq!(replaced["notes"], "first press\nslight ring wear");
    assert_eq!(replaced["createdAt"], created["createdAt"]);
    assert_ne!(replaced["updatedAt"], created["updatedAt"]);

    // PATCH changes only what it names; null clears an optional field.
    let (status, patched) = call(
        &svc,
        &h.key,
        &alice,
        Method::PATCH,
        &format!("/records/{id}"),
        Some(json!({"label": null, "isPromo": true, "pricePaid": 30})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["label"], Value::Null);
    assert_eq!(patched["isPromo"], true);
    assert_eq!(patched["pricePaid"], "30.00");
    assert_eq!(patched["name"], "Selected Ambient Works 85-92");

    // PUT replaces: omitted optional fields are reset.
    let (status, reset) = call(
        &svc,
        &h.key,
        &alice,
        Method::PUT,
        &format!("/records/{id}"),
        Some(json!({"artist":"Aphex Twin","name":"SAW 85-92","format":"2xLP"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            reset["format"].as_str(),
            reset["hasObiStrip"].as_bool(),
            &reset["pricePaid"]
        ),
        (Some("2xLP"), Some(false), &Value::Null)
    );

    let (status, fetched) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{id}"),
        None,
    )
    .await;
    assert_eq!((status, &fetched), (200, &reset));

    let (status, body) = call(
        &svc,
        &h.key,
        &alice,
        Method::DELETE,
        &format!("/records/{id}"),
        None,
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "record_not_found");
    let (status, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::DELETE,
        &format!("/records/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "deleting twice is a 404");

    // `curl -d '{...}'` without `-H content-type` sends form-urlencoded; the JSON body counts.
    let response = common::client()
        .post(svc.url("/records"))
        .headers(alice.headers(&h.key))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"artist":"Aphex Twin","name":"SAW 85-92","format":"LP"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let (status, ping) = call(&svc, &h.key, &alice, Method::GET, "/records/_ping", None).await;
    assert_eq!((status, ping["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn another_users_records_are_404_over_http_and_never_leak() {
    let h = Harness::new("rec_isolation_http").await;
    let svc = h.start().await;
    let (alice, bob) = (User::new(), User::new());
    let record = create(
        &svc,
        &h.key,
        &alice,
        json!({"artist":"Boards of Canada","name":"Geogaddi","format":"3xLP"}),
    )
    .await;
    let path = format!("/records/{}", record["id"].as_str().unwrap());

    for (method, body) in [
        (Method::GET, None),
        (
            Method::PUT,
            Some(json!({"artist":"x","name":"y","format":"z"})),
        ),
        (Method::PATCH, Some(json!({"name":"stolen"}))),
        (Method::DELETE, None),
    ] {
        let (status, body) = call(&svc, &h.key, &bob, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} by another user: {body}");
        assert!(!body.to_string().contains("Geogaddi"), "{body}");
    }
    let (_, bobs_list) = call(&svc, &h.key, &bob, Method::GET, "/records", None).await;
    assert_eq!(bobs_list["records"], json!([]));
    let (_, bobs_search) = call(
        &svc,
        &h.key,
        &bob,
        Method::GET,
        "/records/search?q=geogaddi",
        None,
    )
    .await;
    assert_eq!(bobs_search["hits"], json!([]));
    let (_, bobs_stats) = call(&svc, &h.key, &bob, Method::GET, "/records/stats", None).await;
    assert_eq!(bobs_stats["totalRecords"], 0);

    let (status, still) = call(&svc, &h.key, &alice, Method::GET, &path, None).await;
    assert_eq!(
        (status, &still),
        (200, &record),
        "alice's record is untouched"
    );
}

#[tokio::test]
async fn another_users_records_are_not_found_over_grpc() {
    let h = Harness::new("rec_isolation_grpc").await;
    let svc = h.start().await;
    let (alice, bob) = (User::new(), User::new());
    let mut client = svc.grpc_client().await;
    let fields = pb::RecordFields {
        artist: Some("Autechre".into()),
        name: Some("Amber".into()),
        format: Some("2xLP".into()),
        ..Default::default()
    };
    let created = client
        .create(alice.request(
            &h.key,
            pb::CreateRecordRequest {
                fields: Some(fields),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = created.id.clone();

    let get = client
        .get(bob.request(&h.key, pb::GetRecordRequest { id: id.clone() }))
        .await;
    assert_eq!(get.unwrap_err().code(), tonic::Code::NotFound);
    let update = client
        .update(bob.request(
            &h.key,
            pb::UpdateRecordRequest {
                id: id.clone(),
                fields: Some(pb::RecordFields {
                    name: Some("stolen".into()),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_eq!(update.unwrap_err().code(), tonic::Code::NotFound);
    let delete = client
        .delete(bob.request(&h.key, pb::DeleteRecordRequest { id: id.clone() }))
        .await;
    assert_eq!(delete.unwrap_err().code(), tonic::Code::NotFound);
    let list = client
        .list(bob.request(
            &h.key,
            pb::ListRecordsRequest {
                limit: 0,
                cursor: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(list.records.is_empty());

    let mine = client
        .get(alice.request(&h.key, pb::GetRecordRequest { id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine, created);
}

#[tokio::test]
async fn grpc_serves_every_operation_like_http() {
    let h = Harness::new("rec_grpc_ops").await;
    let svc = h.start().await;
    let alice = User::new();
    let mut client = svc.grpc_client().await;
    let created = client
        .create(alice.request(
            &h.key,
            pb::CreateRecordRequest {
                fields: Some(pb::RecordFields {
                    artist: Some("Björk".into()),
                    name: Some("Homogenic".into()),
                    format: Some("LP".into()),
                    label: Some("One Little Indian".into()),
                    record_grade: Some(pb::Grade::Nm as i32),
                    price_paid: Some("19.5".into()),
                    purchased_at: Some("2021-01-02".into()),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.record_grade, pb::Grade::Nm as i32);
    assert_eq!(created.price_paid.as_deref(), Some("19.50"));

    // Update: only given fields change; an empty string clears an optional one.
    let updated = client
        .update(alice.request(
            &h.key,
            pb::UpdateRecordRequest {
                id: created.id.clone(),
                fields: Some(pb::RecordFields {
                    label: Some(String::new()),
                    sleeve_grade: Some(pb::Grade::VgPlus as i32),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.label, None);
    assert_eq!(updated.sleeve_grade, pb::Grade::VgPlus as i32);
    assert_eq!(updated.name, "Homogenic");

    // The same record is visible over HTTP, in the same shape.
    let (status, over_http) = call(
        &svc,
        &h.key,
        &alice,
        Method::GET,
        &format!("/records/{}", created.id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(over_http["sleeveGrade"], "VG+");
    assert_eq!(over_http["updatedAt"], updated.updated_at.as_str());

    let found = client
        .search(alice.request(
            &h.key,
            pb::SearchRecordsRequest {
                q: "bjork".into(),
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.hits.len(), 1, "accent-insensitive search over gRPC");

    let stats = client
        .stats(alice.request(&h.key, pb::StatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.total_records, stats.total_spent.as_str()),
        (1, "19.50")
    );

    client
        .delete(alice.request(
            &h.key,
            pb::DeleteRecordRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap();
    let gone = client
        .get(alice.request(&h.key, pb::GetRecordRequest { id: created.id }))
        .await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn bad_input_of_every_field_is_a_4xx_naming_the_field_never_a_500() {
    let h = Harness::new("rec_validation").await;
    let svc = h.start().await;
    let alice = User::new();
    let base = || json!({"artist":"A","name":"B","format":"LP"});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"name":"B","format":"LP"}),
            422,
            "missing_field",
            Some("artist"),
        ),
        (
            json!({"artist":"A","format":"LP"}),
            422,
            "missing_field",
            Some("name"),
        ),
        (
            json!({"artist":"A","name":"B"}),
            422,
            "missing_field",
            Some("format"),
        ),
        (
            with("artist", json!("   ")),
            422,
            "required_field",
            Some("artist"),
        ),
        (
            with("artist", json!(42)),
            422,
            "invalid_field",
            Some("artist"),
        ),
        (
            with("name", json!("x".repeat(501))),
            422,
            "too_long",
            Some("name"),
        ),
        (
            with("name", json!("nul\u{0}byte")),
            422,
            "invalid_characters",
            Some("name"),
        ),
        (
            with("format", Value::Null),
            422,
            "required_field",
            Some("format"),
        ),
        (
            with("catalogNumber", json!("c".repeat(101))),
            422,
            "too_long",
            Some("catalogNumber"),
        ),
        (
            with("label", json!(["a"])),
            422,
            "invalid_field",
            Some("label"),
        ),
        (
            with("recordGrade", json!("excellent plus")),
            422,
            "invalid_grade",
            Some("recordGrade"),
        ),
        (
            with("sleeveGrade", json!("Z")),
            422,
            "invalid_grade",
            Some("sleeveGrade"),
        ),
        (
            with("hasInsert", json!("yes")),
            422,
            "invalid_field",
            Some("hasInsert"),
        ),
        (
            with("hasBooklet", Value::Null),
            422,
            "invalid_field",
            Some("hasBooklet"),
        ),
        (
            with("hasObiStrip", json!(1)),
            422,
            "invalid_field",
            Some("hasObiStrip"),
        ),
        (
            with("hasFactorySleeve", json!({})),
            422,
            "invalid_field",
            Some("hasFactorySleeve"),
        ),
        (
            with("isPromo", json!("false")),
            422,
            "invalid_field",
            Some("isPromo"),
        ),
        (
            with("notes", json!("n".repeat(5001))),
            422,
            "too_long",
            Some("notes"),
        ),
        (
            with("purchasedAt", json!("17/05/2023")),
            422,
            "invalid_date",
            Some("purchasedAt"),
        ),
        (
            with("purchasedAt", json!("2023-02-30")),
            422,
            "invalid_date",
            Some("purchasedAt"),
        ),
        (
            with("pricePaid", json!("-5")),
            422,
            "invalid_price",
            Some("pricePaid"),
        ),
        (
            with("pricePaid", json!("1.999")),
            422,
            "invalid_price",
            Some("pricePaid"),
        ),
        (
            with("pricePaid", json!("123456789")),
            422,
            "invalid_price",
            Some("pricePaid"),
        ),
        (
            with("pricePaid", json!(true)),
            422,
            "invalid_price",
            Some("pricePaid"),
        ),
        (
            with("colour", json!("red")),
            422,
            "unknown_field",
            Some("colour"),
        ),
        (
            with("id", json!("5f0c8a3e-0000-4000-8000-000000000001")),
            422,
            "unknown_field",
            Some("id"),
        ),
        (json!([1, 2]), 422, "invalid_body", None),
    ];
    for (body, status, code, field) in cases {
        let (got, err) = call(
            &svc,
            &h.key,
            &alice,
            Method::POST,
            "/records",
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body} -> {err}");
        assert_eq!(err["error"]["code"], code, "{body} -> {err}");
        assert_eq!(err["error"]["field"].as_str(), field, "{body} -> {err}");
        assert!(err["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    let raw = |body: &'static str, content_type: &'static str| {
        common::client()
            .post(svc.url("/records"))
            .headers(alice.headers(&h.key))
            .header("content-type", content_type)
            .body(body)
    };
    for (request, status, code) in [
        (
            raw("{\"artist\": ", "application/json"),
            400,
            "malformed_json",
        ),
        (raw("", "application/json"), 400, "malformed_json"),
        (
            raw("not json at all", "application/json"),
            400,
            "malformed_json",
        ),
        (
            raw(
                "{\"artist\":\"A\",\"name\":\"B\",\"format\":\"LP\"}",
                "text/plain",
            ),
            415,
            "unsupported_media_type",
        ),
    ] {
        let (got, err) = common::read(request.send().await.unwrap()).await;
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (status, Some(code)),
            "{err}"
        );
    }
    let huge = json!({"artist":"A","name":"B","format":"LP","notes":"x".repeat(200_000)});
    let (got, err) = call(&svc, &h.key, &alice, Method::POST, "/records", Some(huge)).await;
    assert_eq!(
        (got, err["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    for (path, status, code, field) in [
        ("/records?limit=abc", 422, "invalid_limit", "limit"),
        ("/records?limit=0", 422, "invalid_limit", "limit"),
        ("/records?limit=501", 422, "invalid_limit", "limit"),
        ("/records?cursor=garbage", 422, "invalid_cursor", "cursor"),
        ("/records/search", 422, "missing_field", "q"),
        ("/records/search?q=%20%20", 422, "missing_field", "q"),
        (
            "/records/search?q=a&limit=101",
            422,
            "invalid_limit",
            "limit",
        ),
        ("/records/not-a-uuid", 400, "invalid_id", "id"),
    ] {
        let (got, err) = call(&svc, &h.key, &alice, Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {err}");
        assert_eq!(
            (
                err["error"]["code"].as_str(),
                err["error"]["field"].as_str()
            ),
            (Some(code), Some(field)),
            "{path}"
        );
    }
    let (got, _) = call(
        &svc,
        &h.key,
        &alice,
        Method::PATCH,
        "/records/not-a-uuid",
        Some(json!({})),
    )
    .await;
    assert_eq!(got, 400);

    // Nothing above reached the database as a record, and the service is still healthy.
    let (_, listed) = call(&svc, &h.key, &alice, Method::GET, "/records", None).await;
    assert_eq!(listed["records"], json!([]));
    assert_eq!(svc.metric("requests_total{operation=\"POST /records\",protocol=\"http\",status=\"500\",service=\"records\"}").await, 0.0);
}

#[tokio::test]
async fn grpc_bad_input_is_invalid_argument() {
    let h = Harness::new("rec_grpc_validation").await;
    let svc = h.start().await;
    let alice = User::new();
    let mut client = svc.grpc_client().await;
    let fields = |f: pb::RecordFields| pb::CreateRecordRequest {
        fields: Some(pb::RecordFields {
            artist: f.artist.or(Some("A".into())),
            name: f.name.or(Some("B".into())),
            format: f.format.or(Some("LP".into())),
            ..f
        }),
    };
    for (request, field) in [
        (pb::CreateRecordRequest { fields: None }, "artist"),
        (
            fields(pb::RecordFields {
                artist: Some(String::new()),
                ..Default::default()
            }),
            "artist",
        ),
        (
            fields(pb::RecordFields {
                record_grade: Some(42),
                ..Default::default()
            }),
            "recordGrade",
        ),
        (
            fields(pb::RecordFields {
                price_paid: Some("abc".into()),
                ..Default::default()
            }),
            "pricePaid",
        ),
        (
            fields(pb::RecordFields {
                purchased_at: Some("yesterday".into()),
                ..Default::default()
            }),
            "purchasedAt",
        ),
    ] {
        let status = client
            .create(alice.request(&h.key, request))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{field}: {status:?}"
        );
        assert_eq!(
            status
                .metadata()
                .get("x-error-field")
                .and_then(|v| v.to_str().ok()),
            Some(field)
        );
    }
    let bad_id = client
        .get(alice.request(&h.key, pb::GetRecordRequest { id: "42".into() }))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), tonic::Code::InvalidArgument);
    let bad_cursor = client
        .list(alice.request(
            &h.key,
            pb::ListRecordsRequest {
                limit: 10,
                cursor: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_cursor.code(), tonic::Code::InvalidArgument);
    let empty_query = client
        .search(alice.request(
            &h.key,
            pb::SearchRecordsRequest {
                q: " ".into(),
                limit: 0,
            },
        ))
        .await;
    assert_eq!(
        empty_query.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
}

#[tokio::test]
async fn missing_forged_or_stale_identity_assertion_is_401() {
    let h = Harness::new("rec_identity").await;
    let svc = h.start().await;
    let alice = User::new();
    let client = common::client();

    let (status, body) = common::read(client.get(svc.url("/records")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // Claiming to be someone else with alice's assertion.
    let mut forged = alice.headers(&h.key);
    forged.insert(
        "x-user-id",
        uuid::Uuid::new_v4().to_string().parse().unwrap(),
    );
    // Signed with a key that is not the shared one.
    let other_key = identity_assertion::IdentityKey::from_bytes(vec![9; 32]).unwrap();
    let wrong_key = alice.headers(&other_key);
    // Old enough to be expired.
    let mut stale = alice.headers(&h.key);
    let old = identity_assertion::sign_at(&h.key, &alice.identity, 1_000_000);
    stale.insert("x-user-assertion", old.parse().unwrap());
    let mut missing = alice.headers(&h.key);
    missing.remove("x-user-assertion");
    for (name, headers) in [
        ("forged", forged),
        ("wrong key", wrong_key),
        ("stale", stale),
        ("missing", missing),
    ] {
        for path in [
            "/records",
            "/records/_ping",
            "/records/stats",
            "/records/search?q=x",
        ] {
            let response = client
                .get(svc.url(path))
                .headers(headers.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{name} {path}");
        }
        let response = client
            .post(svc.url("/records"))
            .headers(headers.clone())
            .json(&json!({"artist":"A","name":"B","format":"LP"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name} POST");
    }

    let mut grpc = svc.grpc_client().await;
    let bare = grpc
        .list(pb::ListRecordsRequest {
            limit: 0,
            cursor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bare.code(), tonic::Code::Unauthenticated);
    let mut request = alice.request(
        &h.key,
        pb::ListRecordsRequest {
            limit: 0,
            cursor: String::new(),
        },
    );
    request.metadata_mut().insert(
        "x-user-id",
        uuid::Uuid::new_v4().to_string().parse().unwrap(),
    );
    assert_eq!(
        grpc.list(request).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // Nothing was created by any of the rejected requests.
    let (_, listed) = call(&svc, &h.key, &alice, Method::GET, "/records", None).await;
    assert_eq!(listed["records"], json!([]));
}

#[tokio::test]
async fn list_pages_newest_first_with_an_opaque_cursor() {
    let h = Harness::new("rec_pages").await;
    let svc = h.start().await;
    let alice = User::new();
    let mut ids = Vec::new();
    for n in 0..7 {
        let r = create(
            &svc,
            &h.key,
            &alice,
            json!({"artist":"Artist","name":format!("Album {n}"),"format":"LP"}),
        )
        .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut path = "/records?limit=3".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = call(&svc, &h.key, &alice, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/records?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    // Default limit is 100: everything on one page, no cursor.
    let (_, page) = call(&svc, &h.key, &alice, Method::GET, "/records", None).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 7);
    assert_eq!(page["nextCursor"], Value::Null);

    // gRPC pages the same way.
    let mut grpc = svc.grpc_client().await;
    let first = grpc
        .list(alice.request(
            &h.key,
            pb::ListRecordsRequest {
                limit: 4,
                cursor: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let second = grpc
        .list(alice.request(
            &h.key,
            pb::ListRecordsRequest {
                limit: 4,
                cursor: first.next_cursor.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let grpc_ids: Vec<String> = first
        .records
        .iter()
        .chain(&second.records)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(grpc_ids, ids);
    assert!(second.next_cursor.is_empty());
}

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
    create(&svc, &h.key, &alice, json!({"artist":"Aphex Twin","name":"Richard D. James Album","format":"LP","pricePaid":"5.50"})).await;
    let (_, stats) = call(&svc, &h.key, &alice, Method::GET, "/records/stats", None).await;
    assert_eq!(
        (stats["totalRecords"].as_i64(), stats["totalSpent"].as_str()),
        (Some(2), Some("15.50")),
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

#[tokio::test]
async fn operational_endpoints_health_reflection_and_request_ids() {
    let h = Harness::new("rec_ops").await;
    let svc = h.start().await;
    let alice = User::new();
    let client = common::client();

    let (status, health) =
        common::read(client.get(svc.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = common::read(client.get(svc.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["checks"],
        json!({"postgres":"ok","redis":"ok","migrations":"applied"})
    );

    let response = client
        .get(svc.url("/records"))
        .headers(alice.headers(&h.key))
        .header("x-request-id", "req-records-ops-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-records-ops-42");
    let metrics = client
        .get(svc.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("requests_total{operation=\"GET /records\",protocol=\"http\",status=\"200\",service=\"records\"}"), "{metrics}");
    assert!(
        metrics.contains("request_duration_seconds_bucket{operation=\"GET /records\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("db_pool_connections{state=\"max\",service=\"records\"} 16"),
        "{metrics}"
    );

    // The access log is JSON and carries the edge's request id.
    let logged = svc
        .child
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|entry| {
            entry["request_id"] == "req-records-ops-42"
                || entry["span"]["request_id"] == "req-records-ops-42"
        });
    assert!(logged, "{}", svc.child.logs());

    // gRPC calls log with the request id from their metadata too.
    let mut grpc = svc.grpc_client().await;
    let mut request = alice.request(&h.key, pb::StatsRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "req-records-grpc-43".parse().unwrap());
    grpc.stats(request).await.unwrap();
    let grpc_logged = svc.child.logs().lines().any(|line| {
        line.contains("req-records-grpc-43") && line.contains("/records.RecordsService/Stats")
    });
    assert!(grpc_logged, "{}", svc.child.logs());

    // The health service follows readiness (re-checked every second), so poll for it.
    let health = tonic_health::pb::health_client::HealthClient::new(svc.channel().await);
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    for name in ["", "records.RecordsService"] {
        testkit::eventually(
            &format!("{name:?} SERVING"),
            std::time::Duration::from_secs(10),
            || {
                let mut health = health.clone();
                async move {
                    let request = tonic_health::pb::HealthCheckRequest {
                        service: name.into(),
                    };
                    health.check(request).await.unwrap().into_inner().status == serving
                }
            },
        )
        .await
        .unwrap();
    }

    // Reflection lists our service (what grpcurl asks first).
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(svc.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"records.RecordsService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let (status, body) = common::read(client.get(svc.url("/nope")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
