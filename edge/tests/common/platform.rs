//! The platform behind a test edge: real auth and records processes on a test database
//! and Redis, and an edge config with the dev routes, JWKS from auth and the identity key;
//! optionally the web app's service with the dev config's `web` route.

use serde_json::json;
use testkit::{reqwest, ChildProcess, RunningService, ServiceEnv};

use super::{Edge, EdgeOptions, READY_TIMEOUT};

pub struct Platform {
    pub env: ServiceEnv,
    pub auth: RunningService,
    pub records: RunningService,
    _keys: testkit::TempDir,
}

impl Platform {
    /// auth and records on a fresh database, using `redis_url` (shared or private).
    pub async fn start(redis_url: Option<String>) -> Platform {
        Self::start_with_env(redis_url, &[]).await
    }

    pub async fn start_with_env(redis_url: Option<String>, env_extra: &[(&str, &str)]) -> Platform {
        let mut env = ServiceEnv::new("platform").await.expect("service env");
        if let Some(url) = redis_url {
            env.redis_url = url;
        }
        let keys = tempfile::tempdir().expect("key dir");
        let key_dir = keys.path().display().to_string();
        let auth = env
            .spawn(
                "auth",
                &testkit::workspace_bin("auth").expect("auth built"),
                ("AUTH_HTTP_ADDR", testkit::free_tcp_port()),
                ("AUTH_GRPC_ADDR", testkit::free_tcp_port()),
                &[
                    ("AUTH_KEY_DIR", &key_dir),
                    ("AUTH_ARGON2_MEMORY_KIB", "8192"),
                    ("AUTH_ARGON2_ITERATIONS", "1"),
                ],
            )
            .expect("spawn auth");
        auth.wait_ready().await.expect("auth ready");
        let records = env
            .spawn(
                "records",
                &testkit::workspace_bin("records").expect("records built"),
                ("RECORDS_HTTP_ADDR", testkit::free_tcp_port()),
                ("RECORDS_GRPC_ADDR", testkit::free_tcp_port()),
                env_extra,
            )
            .expect("spawn records");
        records.wait_ready().await.expect("records ready");
        Platform {
            env,
            auth,
            records,
            _keys: keys,
        }
    }

    /// The edge config body for this platform: the dev routes, JWKS from auth, Redis,
    /// identity key. `extra_routes` go first (more specific routes win anyway).
    pub fn edge_body(&self, extra: &str) -> String {
        format!(
            r#"
[clusters.auth]
addresses = ["127.0.0.1:{auth_http}"]
health_check = {{ kind = "http", path = "/healthz", interval = "500ms" }}

[clusters.auth-grpc]
addresses = ["127.0.0.1:{auth_grpc}"]
protocol = "h2c"
identity_audience = "auth"

[clusters.records]
addresses = ["127.0.0.1:{records_http}"]
health_check = {{ kind = "http", path = "/healthz", interval = "500ms" }}

[clusters.records-grpc]
addresses = ["127.0.0.1:{records_grpc}"]
protocol = "h2c"
identity_audience = "records"
health_check = {{ kind = "grpc", interval = "500ms" }}

[plugins.jwt]
issuer = "record-platform"
audience = "record-platform"
jwks_url = "http://127.0.0.1:{auth_http}/.well-known/jwks.json"
jwks_allow_http = true

[plugins.redis]
url = "{redis}"
namespace = "{namespace}"

[plugins.identity]
key_dir = "{identity}"
key_id = "{key_id}"

{extra}

[[routes]]
id = "auth-me"
path_prefix = "/api/auth/me"
strip_prefix = "/api/auth"
upstream = "auth"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "auth-logout"
path_prefix = "/api/auth/logout"
strip_prefix = "/api/auth"
upstream = "auth"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "auth-register"
path_prefix = "/api/auth/register"
strip_prefix = "/api/auth"
upstream = "auth"

[[routes]]
id = "auth-login"
path_prefix = "/api/auth/login"
strip_prefix = "/api/auth"
upstream = "auth"

[[routes]]
id = "records"
path_prefix = "/api/records"
strip_prefix = "/api"
upstream = "records"
plugins.jwt = {{ mode = "required" }}

[[routes]]
id = "records-grpc"
kind = "grpc"
path_prefix = "/records.RecordsService/"
upstream = "records-grpc"
plugins.jwt = {{ mode = "required" }}
"#,
            auth_http = self.auth.http,
            auth_grpc = self.auth.grpc,
            records_http = self.records.http,
            records_grpc = self.records.grpc,
            redis = self.env.redis_url,
            namespace = self.env.namespace,
            identity = self.env.identity_key_dir.display(),
            key_id = testkit::IDENTITY_KEY_ID,
        )
    }

    pub async fn edge(&self, extra: &str, http3: bool) -> Edge {
        let mut options = EdgeOptions::new(self.edge_body(extra));
        options.http3 = http3;
        let edge = Edge::start_with(options).await;
        edge.wait_ready().await;
        edge
    }
}

pub async fn body(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text })),
    )
}

/// Registers a fresh user through the edge and returns a token.
pub async fn login(edge: &Edge, client: &reqwest::Client) -> String {
    let email = format!("{}@example.com", uuid_like());
    let credentials = json!({"email": email, "password": "correct horse battery"});
    let (status, reply) = body(
        client
            .post(edge.url("/api/auth/register"))
            .json(&credentials)
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(status, 201, "register: {reply}");
    let (status, reply) = body(
        client
            .post(edge.url("/api/auth/login"))
            .json(&credentials)
            .send()
            .await
            .expect("login"),
    )
    .await;
    assert_eq!(status, 200, "login: {reply}");
    reply["token"].as_str().expect("token").to_string()
}

pub fn uuid_like() -> String {
    format!(
        "u{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// The web app's service (services/web) on a free port, serving the checkout's
/// `services/web/assets`.
pub struct WebService {
    pub port: u16,
    pub process: ChildProcess,
}

impl WebService {
    pub async fn start() -> WebService {
        let port = testkit::free_tcp_port();
        let listen = format!("127.0.0.1:{port}");
        // This checkout's assets, as `make up` passes them (the binary's built-in default
        // is the checkout it was compiled in).
        let assets = testkit::workspace_root().join("services/web/assets");
        let process = ChildProcess::spawn(
            "web",
            &testkit::workspace_bin("web").expect("web built"),
            &[
                "--listen",
                &listen,
                "--assets-dir",
                assets.to_str().expect("utf-8 path"),
            ],
            &[("RUST_LOG", "info")],
        )
        .expect("spawn web");
        if let Err(err) = process
            .wait_for_http_ok(&format!("http://{listen}/readyz"), READY_TIMEOUT)
            .await
        {
            panic!("web not ready: {err:#}");
        }
        WebService { port, process }
    }

    /// Edge config for the app: a `web` cluster on this service and the `web` route exactly
    /// as `edge/config/dev.toml` has it (security headers, CSP, compression), so the tests
    /// prove the shipped route.
    pub fn edge_config(&self) -> String {
        #[derive(serde::Serialize)]
        struct Routes<'a> {
            routes: [&'a toml::Value; 1],
        }
        let route = dev_config_route("web");
        let routes = toml::to_string(&Routes { routes: [&route] }).expect("route as TOML");
        format!(
            r#"
[clusters.web]
addresses = ["127.0.0.1:{port}"]
health_check = {{ kind = "http", path = "/healthz", interval = "500ms" }}

{routes}
"#,
            port = self.port,
        )
    }
}

/// The route `id` of a shipped edge config (`edge/config/dev.toml`, `k8s/base/edge/edge.toml`).
pub fn shipped_route(config: &str, id: &str) -> toml::Value {
    let path = testkit::workspace_root().join(config);
    let text = std::fs::read_to_string(&path).expect("read the shipped edge config");
    let config: toml::Value = toml::from_str(&text).expect("the shipped edge config is TOML");
    config["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|route| route["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("{}: no route {id}", path.display()))
        .clone()
}

pub fn dev_config_route(id: &str) -> toml::Value {
    shipped_route("edge/config/dev.toml", id)
}
