//! Harness for the records integration tests: the real `records` binary on free ports in a
//! `testkit::ServiceEnv` (database, Redis namespace and identity key of its own).

#![allow(dead_code, clippy::unwrap_used)]

use std::ops::{Deref, DerefMut};

use identity_assertion::{Identity, IdentityKey, KeyId, SigningKey, Target};
use serde_json::Value;
use testkit::{RunningService, ServiceEnv};
use uuid::Uuid;

pub struct Harness {
    pub env: ServiceEnv,
    /// The key the test signs with, as the edge would (the service's only key).
    pub key: SigningKey,
    /// What `RECORDS_CACHE_REDIS_URL` is set to: the shared cache Redis, a private one, or
    /// nothing (cache off).
    pub cache_redis_url: Option<String>,
    /// Extra environment for the process (e.g. RECORDS_CACHE_MAX_ENTRY_KIB).
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
        Self {
            env,
            key,
            cache_redis_url: Some(testkit::shared_cache_redis_url()),
            extra_env: Vec::new(),
        }
    }

    /// Spawns `records` on fresh ports without waiting for it.
    pub fn spawn(&self) -> Running {
        self.spawn_on(testkit::free_tcp_port(), testkit::free_tcp_port())
    }

    pub fn spawn_on(&self, http: u16, grpc: u16) -> Running {
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_records"));
        let mut extra: Vec<(&str, &str)> = self
            .extra_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(url) = &self.cache_redis_url {
            extra.push(("RECORDS_CACHE_REDIS_URL", url));
        }
        let service = self
            .env
            .spawn(
                "records",
                program,
                ("RECORDS_HTTP_ADDR", http),
                ("RECORDS_GRPC_ADDR", grpc),
                &extra,
            )
            .expect("spawn records");
        Running(service)
    }

    /// Spawns `records` and waits until `/readyz` answers 200.
    pub async fn start(&self) -> Running {
        let running = self.spawn();
        running.wait_ready().await;
        running
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
        self.0.wait_ready().await.expect("records ready");
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        self.0.channel().await.expect("grpc channel")
    }

    pub async fn grpc_client(
        &self,
    ) -> record_proto::records::records_service_client::RecordsServiceClient<
        tonic::transport::Channel,
    > {
        record_proto::records::records_service_client::RecordsServiceClient::new(
            self.channel().await,
        )
    }

    pub async fn metric(&self, series: &str) -> f64 {
        self.0.metric(series).await.expect("metrics")
    }

    /// Status and body of `/readyz`.
    pub async fn readyz(&self) -> (u16, Value) {
        read(client().get(self.url("/readyz")).send().await.unwrap()).await
    }
}

/// A caller as the edge would assert it.
#[derive(Debug, Clone)]
pub struct User {
    pub identity: Identity,
}

impl User {
    pub fn new() -> Self {
        let id = Uuid::new_v4();
        Self {
            identity: Identity {
                user_id: id.to_string(),
                email: format!("{}@example.com", id.simple()),
                jti: Uuid::new_v4().to_string(),
            },
        }
    }

    /// The identity headers the edge would send with `method path_and_query` to records.
    pub fn headers(
        &self,
        key: &SigningKey,
        method: &str,
        path_and_query: &str,
    ) -> reqwest::header::HeaderMap {
        self.headers_for("records", key, method, path_and_query)
    }

    /// The identity headers the edge would send with `method path_and_query` to the
    /// service named `audience`.
    pub fn headers_for(
        &self,
        audience: &str,
        key: &SigningKey,
        method: &str,
        path_and_query: &str,
    ) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        let target = Target {
            audience,
            method,
            path_and_query,
        };
        let assertion = identity_assertion::sign(key, &self.identity, &target);
        headers.insert("x-user-id", self.identity.user_id.parse().unwrap());
        headers.insert("x-user-email", self.identity.email.parse().unwrap());
        headers.insert("x-user-jti", self.identity.jti.parse().unwrap());
        headers.insert("x-user-assertion", assertion.parse().unwrap());
        headers
    }

    /// A gRPC request for `records.RecordsService/<rpc>` with the metadata the edge would add.
    pub fn request<T>(&self, key: &SigningKey, rpc: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let path = format!("/records.RecordsService/{rpc}");
        let target = Target {
            audience: "records",
            method: "POST",
            path_and_query: &path,
        };
        let assertion = identity_assertion::sign(key, &self.identity, &target);
        let md = request.metadata_mut();
        md.insert("x-user-id", self.identity.user_id.parse().unwrap());
        md.insert("x-user-email", self.identity.email.parse().unwrap());
        md.insert("x-user-jti", self.identity.jti.parse().unwrap());
        md.insert("x-user-assertion", assertion.parse().unwrap());
        request
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends a JSON request as `user`; returns status and parsed body (Null when empty).
pub async fn call(
    running: &Running,
    key: &SigningKey,
    user: &User,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    // Signed for the target as it goes on the wire: the URL parser percent-encodes what
    // `path` spells raw (`?q=bjórk` is sent as `?q=bj%C3%B3rk`).
    let url = reqwest::Url::parse(&running.url(path)).expect("url");
    let sent = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let headers = user.headers(key, method.as_str(), &sent);
    let mut request = client().request(method, url).headers(headers);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    read(response).await
}

/// A GET of `path` as `user`.
pub async fn get(running: &Running, key: &SigningKey, user: &User, path: &str) -> (u16, Value) {
    call(running, key, user, reqwest::Method::GET, path, None).await
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    testkit::status_and_json(response)
        .await
        .expect("JSON response")
}

pub async fn create(running: &Running, key: &SigningKey, user: &User, body: Value) -> Value {
    let (status, created) = call(
        running,
        key,
        user,
        reqwest::Method::POST,
        "/records",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}
