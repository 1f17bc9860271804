//! Bad input to the records API, over HTTP and gRPC: every field's mistakes get a 4xx (or
//! INVALID_ARGUMENT) naming the field, never a 500.

#![allow(clippy::unwrap_used)]

mod common;

use common::{call, Harness, User};
use record_proto::records as pb;
use reqwest::Method;
use serde_json::{json, Value};

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
            .headers(alice.headers(&h.key, "POST", "/records"))
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
            .create(alice.request(&h.key, "Create", request))
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
        .get(alice.request(&h.key, "Get", pb::GetRecordRequest { id: "42".into() }))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), tonic::Code::InvalidArgument);
    let bad_cursor = client
        .list(alice.request(
            &h.key,
            "List",
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
            "Search",
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
