use std::time::Duration;

use identity_assertion::{sign, sign_at, IdentityKey, KeyId, SigningKey, Target};

use super::*;

fn key() -> SigningKey {
    SigningKey::new(
        KeyId::new("k1").expect("kid"),
        IdentityKey::from_bytes(vec![42; 32]).expect("key"),
    )
}

fn gate() -> IdentityGate {
    IdentityGate::new(Verifier::new(KeyRing::new([key()]), "records"))
}

fn alice() -> Identity {
    Identity {
        user_id: Uuid::new_v4().to_string(),
        email: "alice@example.com".into(),
        jti: Uuid::new_v4().to_string(),
    }
}

const LIST: Target<'static> = Target {
    audience: "records",
    method: "GET",
    path_and_query: "/records?limit=2",
};

fn headers(identity: &Identity, assertion: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(HEADER_USER_ID, identity.user_id.parse().expect("id"));
    headers.insert(HEADER_USER_EMAIL, identity.email.parse().expect("email"));
    headers.insert(HEADER_USER_JTI, identity.jti.parse().expect("jti"));
    headers.insert(HEADER_ASSERTION, assertion.parse().expect("assertion"));
    headers
}

fn parts(method: &str, uri: &str, headers: http::HeaderMap) -> Parts {
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .expect("request");
    *request.headers_mut() = headers;
    request.into_parts().0
}

#[test]
fn valid_assertion_for_this_request_yields_the_caller() {
    let id = alice();
    let request = parts(
        "GET",
        "/records?limit=2",
        headers(&id, &sign(&key(), &id, &LIST)),
    );
    let caller = gate().from_http(&request).expect("valid");
    assert_eq!(caller.user_id.to_string(), id.user_id);
    assert_eq!(caller.email, id.email);
}

#[test]
fn the_uri_before_router_nesting_is_what_is_checked() {
    let id = alice();
    let mut request = parts("GET", "/?limit=2", headers(&id, &sign(&key(), &id, &LIST)));
    request
        .extensions
        .insert(OriginalUri("/records?limit=2".parse().expect("uri")));
    assert!(gate().from_http(&request).is_ok());
}

#[test]
fn forged_stale_replayed_and_missing_assertions_are_401() {
    let id = alice();
    let good = sign(&key(), &id, &LIST);
    let mut forged = headers(&id, &good);
    forged.insert(
        HEADER_USER_ID,
        Uuid::new_v4().to_string().parse().expect("id"),
    );
    let stale = headers(&id, &sign_at(&key(), &id, &LIST, 1_000));
    let other_key = SigningKey::new(
        KeyId::new("k1").expect("kid"),
        IdentityKey::from_bytes(vec![1; 32]).expect("key"),
    );
    let wrong_key = headers(&id, &sign(&other_key, &id, &LIST));
    let for_auth = Target {
        audience: "auth",
        ..LIST
    };
    let other_service = headers(&id, &sign(&key(), &id, &for_auth));
    let mut missing = headers(&id, "x");
    missing.remove(HEADER_ASSERTION);
    for (name, method, uri, h) in [
        ("forged", "GET", "/records?limit=2", forged),
        ("stale", "GET", "/records?limit=2", stale),
        ("wrong key", "GET", "/records?limit=2", wrong_key),
        ("other service", "GET", "/records?limit=2", other_service),
        ("missing", "GET", "/records?limit=2", missing),
        ("other path", "GET", "/records/stats", headers(&id, &good)),
        (
            "other query",
            "GET",
            "/records?limit=200",
            headers(&id, &good),
        ),
        (
            "other method",
            "DELETE",
            "/records?limit=2",
            headers(&id, &good),
        ),
    ] {
        let err = gate().from_http(&parts(method, uri, h)).expect_err(name);
        assert_eq!(err.http_status(), http::StatusCode::UNAUTHORIZED, "{name}");
    }
}

#[test]
fn non_uuid_user_id_is_401_even_when_signed() {
    let mut id = alice();
    id.user_id = "not-a-uuid".into();
    let request = parts(
        "GET",
        "/records?limit=2",
        headers(&id, &sign(&key(), &id, &LIST)),
    );
    let err = gate().from_http(&request).expect_err("non-uuid");
    assert_eq!(err.grpc_code(), tonic::Code::Unauthenticated);
}

/// What the gRPC server's tonic code hands a method: `Request::from_http` of the incoming
/// HTTP/2 request, after the `record_request_target` layer when `layer` is set.
fn grpc_request(
    identity: &Identity,
    assertion: &str,
    path: &str,
    layer: bool,
) -> tonic::Request<()> {
    let mut http = http::Request::builder()
        .method("POST")
        .uri(path)
        .body(())
        .expect("request");
    *http.headers_mut() = headers(identity, assertion);
    if layer {
        http = record_request_target(http);
    }
    tonic::Request::from_http(http)
}

#[test]
fn grpc_calls_are_checked_against_their_recorded_method_path() {
    let id = alice();
    let get = Target {
        audience: "records",
        method: "POST",
        path_and_query: "/records.RecordsService/Get",
    };
    let assertion = sign(&key(), &id, &get);
    let ok = grpc_request(&id, &assertion, "/records.RecordsService/Get", true);
    assert_eq!(gate().from_grpc(&ok).expect("valid").jti, id.jti);
    let replayed = grpc_request(&id, &assertion, "/records.RecordsService/Delete", true);
    assert_eq!(
        gate()
            .from_grpc(&replayed)
            .expect_err("other method")
            .grpc_code(),
        tonic::Code::Unauthenticated
    );
    // Without the layer nothing can be bound: refused, not waved through.
    let unbound = grpc_request(&id, &assertion, "/records.RecordsService/Get", false);
    assert!(gate().from_grpc(&unbound).is_err());
}

#[test]
fn flags_beyond_the_caps_or_without_keys_name_the_flag() {
    let dir = std::env::temp_dir().join(format!("gate-keys-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut args = IdentityArgs {
        identity_key_dir: dir.clone(),
        identity_audience: None,
        identity_max_age: Duration::from_secs(5),
        identity_max_skew: Duration::from_secs(2),
    };
    let err = IdentityGate::from_args(&args, "records").expect_err("no keys");
    assert!(err.to_string().contains("IDENTITY_KEY_DIR"), "{err}");
    std::fs::write(
        dir.join("k1.key"),
        "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=",
    )
    .expect("key");
    let gate = IdentityGate::from_args(&args, "records").expect("gate");
    let id = alice();
    let request = parts(
        "GET",
        "/records?limit=2",
        headers(&id, &sign(&key(), &id, &LIST)),
    );
    assert!(gate.from_http(&request).is_ok(), "the file's key is key()");
    args.identity_audience = Some("auth".into());
    let as_auth = IdentityGate::from_args(&args, "records").expect("gate");
    assert!(as_auth.from_http(&request).is_err(), "audience flag wins");
    args.identity_max_age = Duration::from_secs(60);
    let err = IdentityGate::from_args(&args, "records").expect_err("window");
    assert!(err.to_string().contains("IDENTITY_MAX_AGE"), "{err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
