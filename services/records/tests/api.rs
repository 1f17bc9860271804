//! The records API over HTTP and gRPC against a real `records` process, PostgreSQL and Redis.

#![allow(clippy::unwrap_used)]

mod common;

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

    // What a page on another site can POST without a CORS preflight — a form encoding,
    // text/plain, or no content type at all — is 415 even when the body is JSON.
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let mut request = common::client()
            .post(svc.url("/records"))
            .headers(alice.headers(&h.key, "POST", "/records"))
            .body(r#"{"artist":"Aphex Twin","name":"SAW 85-92","format":"LP"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "unsupported_media_type",
            "{content_type:?}"
        );
    }

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
            "Create",
            pb::CreateRecordRequest {
                fields: Some(fields),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = created.id.clone();

    let get = client
        .get(bob.request(&h.key, "Get", pb::GetRecordRequest { id: id.clone() }))
        .await;
    assert_eq!(get.unwrap_err().code(), tonic::Code::NotFound);
    let update = client
        .update(bob.request(
            &h.key,
            "Update",
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
        .delete(bob.request(&h.key, "Delete", pb::DeleteRecordRequest { id: id.clone() }))
        .await;
    assert_eq!(delete.unwrap_err().code(), tonic::Code::NotFound);
    let list = client
        .list(bob.request(
            &h.key,
            "List",
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
        .get(alice.request(&h.key, "Get", pb::GetRecordRequest { id }))
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
            "Create",
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
            "Update",
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
            "Search",
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
        .stats(alice.request(&h.key, "Stats", pb::StatsRequest {}))
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
            "Delete",
            pb::DeleteRecordRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap();
    let gone = client
        .get(alice.request(&h.key, "Get", pb::GetRecordRequest { id: created.id }))
        .await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
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

    // Each bad header set is made for exactly the request it is sent with, so each fails
    // for its own reason only (the replay cases are in edge/tests/identity_binding.rs).
    let bad_headers = |method: &str, path: &str| {
        // Claiming to be someone else with alice's assertion.
        let mut forged = alice.headers(&h.key, method, path);
        forged.insert(
            "x-user-id",
            uuid::Uuid::new_v4().to_string().parse().unwrap(),
        );
        // Signed with a key of the same id that is not the shared one.
        let other_key = identity_assertion::SigningKey::new(
            identity_assertion::KeyId::new(testkit::IDENTITY_KEY_ID).unwrap(),
            identity_assertion::IdentityKey::from_bytes(vec![9; 32]).unwrap(),
        );
        let wrong_key = alice.headers(&other_key, method, path);
        // Old enough to be expired.
        let mut stale = alice.headers(&h.key, method, path);
        let target = identity_assertion::Target {
            audience: "records",
            method,
            path_and_query: path,
        };
        let old = identity_assertion::sign_at(&h.key, &alice.identity, &target, 1_000_000);
        stale.insert("x-user-assertion", old.parse().unwrap());
        let mut missing = alice.headers(&h.key, method, path);
        missing.remove("x-user-assertion");
        [
            ("forged", forged),
            ("wrong key", wrong_key),
            ("stale", stale),
            ("missing", missing),
        ]
    };
    for path in [
        "/records",
        "/records/_ping",
        "/records/stats",
        "/records/search?q=x",
    ] {
        for (name, headers) in bad_headers("GET", path) {
            let response = client
                .get(svc.url(path))
                .headers(headers)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{name} {path}");
        }
    }
    for (name, headers) in bad_headers("POST", "/records") {
        let response = client
            .post(svc.url("/records"))
            .headers(headers)
            .json(&json!({"artist":"A","name":"B","format":"LP"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name} POST");
    }
    // The same request with good headers is served: the failures above are the headers'.
    let good = client
        .get(svc.url("/records/stats"))
        .headers(alice.headers(&h.key, "GET", "/records/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);

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
        "List",
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
            "List",
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
            "List",
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
        json!({"postgres":"ok","redis":"ok","migrations":"applied","cache":"ok"})
    );

    let response = client
        .get(svc.url("/records"))
        .headers(alice.headers(&h.key, "GET", "/records"))
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
    let mut request = alice.request(&h.key, "Stats", pb::StatsRequest {});
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
