//! Harness for the auth integration tests: the real `auth` binary on free ports in a
//! `testkit::ServiceEnv` (database, Redis namespace and identity key of its own) with a
//! signing-key directory of its own.

#![allow(dead_code, clippy::unwrap_used)]

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use identity_assertion::{Identity, IdentityKey, KeyId, SigningKey, Target};
use serde_json::{json, Value};
use testkit::{RunningService, ServiceEnv};
use uuid::Uuid;

pub struct Harness {
    pub env: ServiceEnv,
    /// The identity key the test signs with, as the edge would.
    pub key: SigningKey,
    pub key_dir: PathBuf,
    /// Extra environment for the process (e.g. AUTH_JWT_ALG).
    pub extra_env: Vec<(String, String)>,
}

impl Deref for Harness {
    type Target = ServiceEnv;
    fn deref(&self) -> &ServiceEnv {
        &self.env
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut ServiceEnv {
        &mut self.env
    }
}

impl Harness {
    pub async fn new(prefix: &str) -> Self {
        let env = ServiceEnv::new(prefix).await.expect("service environment");
        let key = SigningKey::new(
            KeyId::new(testkit::IDENTITY_KEY_ID).expect("kid"),
            IdentityKey::from_bytes(env.identity_key.clone()).expect("key"),
        );
        let key_dir = env.dir.path().join("keys");
        Self {
            env,
            key,
            key_dir,
            extra_env: Vec::new(),
        }
    }

    pub fn spawn(&self) -> Running {
        self.spawn_on(testkit::free_tcp_port(), testkit::free_tcp_port())
    }

    pub fn spawn_on(&self, http: u16, grpc: u16) -> Running {
        let key_dir = self.key_dir.display().to_string();
        let mut extra: Vec<(&str, &str)> = vec![("AUTH_KEY_DIR", &key_dir)];
        extra.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_auth"));
        let service = self
            .env
            .spawn(
                "auth",
                program,
                ("AUTH_HTTP_ADDR", http),
                ("AUTH_GRPC_ADDR", grpc),
                &extra,
            )
            .expect("spawn auth");
        Running(service)
    }

    pub async fn start(&self) -> Running {
        let running = self.spawn();
        running.wait_ready().await;
        running
    }

    /// The assertion the edge would attach for a token with these claims.
    pub fn identity_for(&self, claims: &Value) -> Identity {
        Identity {
            user_id: claims["sub"].as_str().unwrap().to_string(),
            email: claims["email"].as_str().unwrap_or_default().to_string(),
            jti: claims["jti"].as_str().unwrap().to_string(),
        }
    }

    /// The assertion the edge would sign for `method path` at auth.
    pub fn assertion(&self, identity: &Identity, method: &str, path: &str) -> String {
        let target = Target {
            audience: "auth",
            method,
            path_and_query: path,
        };
        identity_assertion::sign(&self.key, identity, &target)
    }

    /// The identity headers the edge would send with `method path` to auth.
    pub fn edge_headers(
        &self,
        identity: &Identity,
        method: &str,
        path: &str,
    ) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-user-id", identity.user_id.parse().unwrap());
        headers.insert("x-user-email", identity.email.parse().unwrap());
        headers.insert("x-user-jti", identity.jti.parse().unwrap());
        headers.insert(
            "x-user-assertion",
            self.assertion(identity, method, path).parse().unwrap(),
        );
        headers
    }

    /// A gRPC request for `auth.AuthService/<rpc>` with the metadata the edge would add.
    pub fn edge_request<T>(&self, identity: &Identity, rpc: &str, message: T) -> tonic::Request<T> {
        let path = format!("/auth.AuthService/{rpc}");
        let mut request = tonic::Request::new(message);
        let md = request.metadata_mut();
        md.insert("x-user-id", identity.user_id.parse().unwrap());
        md.insert("x-user-email", identity.email.parse().unwrap());
        md.insert("x-user-jti", identity.jti.parse().unwrap());
        md.insert(
            "x-user-assertion",
            self.assertion(identity, "POST", &path).parse().unwrap(),
        );
        request
    }
}

pub struct Running(pub RunningService);

impl Deref for Running {
    type Target = RunningService;
    fn deref(&self) -> &RunningService {
        &self.0
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut RunningService {
        &mut self.0
    }
}

impl Running {
    pub async fn wait_ready(&self) {
        self.0.wait_ready().await.expect("auth ready");
    }

    pub async fn grpc_client(
        &self,
    ) -> record_proto::auth::auth_service_client::AuthServiceClient<tonic::transport::Channel> {
        let channel = self.channel().await.expect("grpc channel");
        record_proto::auth::auth_service_client::AuthServiceClient::new(channel)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        read(
            client()
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn register(&self, email: &str, password: &str) -> (u16, Value) {
        self.post("/register", json!({"email": email, "password": password}))
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        self.post("/login", json!({"email": email, "password": password}))
            .await
    }

    pub async fn jwks(&self) -> Value {
        client()
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    testkit::status_and_json(response)
        .await
        .expect("JSON response")
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

/// Verifies `token` as the edge would: key picked from the JWKS by `kid`, algorithm from
/// the JWK, issuer and audience checked. Returns the claims.
pub fn verify(token: &str, jwks: &Value) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("header");
    let kid = header.kid.clone().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&["record-platform"]);
    validation.set_audience(&["record-platform"]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token verifies")
        .claims
}
