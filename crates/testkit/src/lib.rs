//! Test harness shared by every crate's integration tests.
//!
//! Everything here talks to real parts: the PostgreSQL and Redis that
//! `scripts/datastores.sh` starts on 127.0.0.1:55432 / :56379 (each test gets
//! its own database and its own Redis key namespace), throw-away `redis-server`
//! processes for fault injection, real binaries from the workspace's target
//! directory, and real TLS with a per-test CA.
//!
//! Test code may panic freely; this crate returns `anyhow::Result` so a failed
//! setup says what was missing ("run `make test`", "redis-server not installed").

#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub use tempfile::TempDir;
pub use {reqwest, tonic};

/// Default address of the shared test/dev PostgreSQL (`scripts/datastores.sh`).
pub const SHARED_PG_HOST: &str = "127.0.0.1";
pub const SHARED_PG_PORT: u16 = 55432;
/// Default URL of the shared test/dev Redis.
pub const SHARED_REDIS_URL: &str = "redis://127.0.0.1:56379";
/// Default URL of the shared test/dev cache Redis (records' search cache, `allkeys-lru`).
pub const SHARED_CACHE_REDIS_URL: &str = "redis://127.0.0.1:56380";

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // At run time first: cargo and nextest set CARGO_MANIFEST_DIR for each test process (the
    // package under test). The compile-time value is where *testkit* was built, which with a
    // target directory shared between checkouts (CI's cache) can be another, older checkout.
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        let dir = PathBuf::from(dir);
        if let Some(root) = dir.ancestors().find(|d| d.join("Cargo.lock").is_file()) {
            return root.to_path_buf();
        }
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // crates/testkit -> crates -> root
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

/// A binary of this workspace, built by `cargo build --workspace` (which `make test` runs
/// before the tests). Integration tests in the binary's own crate should prefer
/// `env!("CARGO_BIN_EXE_<name>")`; this is for tests that need a sibling crate's binary.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().context("current_exe")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected test binary location {}", exe.display()))?;
    let candidate = profile_dir.join(name);
    if candidate.is_file() {
        return Ok(candidate);
    }
    bail!(
        "binary `{name}` not found at {}; run `cargo build --workspace` first (make test does)",
        candidate.display()
    )
}

mod otlp;
mod ports;
mod process;
mod properties;
mod tls;
use tls::write_file;

pub use otlp::{CollectedSpan, OtlpCollector};

use process::tail;
pub use process::ChildProcess;
pub use properties::proptest_config;
pub use tls::{
    grpc_h2c_channel, grpc_tls_channel, https_client, tls_connect, HttpVersion, LeafFiles, TestPki,
};

/// A TCP port on 127.0.0.1 for a child process to bind: free now, and reserved for this
/// test process, so no other caller here or in a parallel test process gets it (see
/// `ports.rs`).
pub fn free_tcp_port() -> u16 {
    ports::reserve(false)
}

/// A port free on both TCP and UDP (for a listener serving TLS over TCP and QUIC over
/// UDP), reserved like [`free_tcp_port`].
pub fn free_tcp_udp_port() -> u16 {
    ports::reserve(true)
}

/// Polls until something accepts TCP connections on `addr`.
pub async fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    poll_tcp(addr, timeout, || Ok(())).await
}

/// Polls `url` (plain HTTP) until it answers 200.
pub async fn wait_for_http_ok(url: &str, timeout: Duration) -> Result<()> {
    poll_http_ok(url, timeout, || Ok(())).await
}

/// [`wait_for_tcp`], failing at once when `alive` fails (a child that exited).
pub(crate) async fn poll_tcp(
    addr: SocketAddr,
    timeout: Duration,
    alive: impl Fn() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        alive()?;
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= deadline => {
                bail!("nothing listening on {addr} after {timeout:?}: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// [`wait_for_http_ok`], failing at once when `alive` fails (a child that exited).
pub(crate) async fn poll_http_ok(
    url: &str,
    timeout: Duration,
    alive: impl Fn() -> Result<()>,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        alive()?;
        match client.get(url).send().await {
            Ok(resp) if resp.status() == 200 => return Ok(()),
            Ok(resp) => last = format!("status {}", resp.status()),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{url} not ready after {timeout:?}: {last}")
}

/// Polls `check` every 50 ms until it returns true; fails naming `what` after `timeout`.
/// For conditions a test cannot await directly (a health status, a reconnect).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Status of a plain-HTTP GET of `url`, or 0 when nothing answers.
pub async fn http_status(url: &str) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    match client {
        Ok(client) => match client.get(url).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        },
        Err(_) => 0,
    }
}

/// Status and JSON body of `response` (`Null` for an empty body).
pub async fn status_and_json(response: reqwest::Response) -> Result<(u16, serde_json::Value)> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    if text.is_empty() {
        return Ok((status, serde_json::Value::Null));
    }
    let value = serde_json::from_str(&text)
        .with_context(|| format!("non-JSON body (status {status}): {text}"))?;
    Ok((status, value))
}

/// The key id of the identity key [`write_identity_key`] writes (`[plugins.identity]
/// key_id` of a test edge).
pub const IDENTITY_KEY_ID: &str = "test-1";

/// A fresh random identity key (32 bytes, what the edge and the services share) written
/// as base64 to `<dir>/identity/test-1.key`, a key directory as the edge (`key_dir`) and
/// the services (`IDENTITY_KEY_DIR`) take it. Returns the directory and the raw key bytes.
pub fn write_identity_key(dir: &Path) -> Result<(PathBuf, Vec<u8>)> {
    use base64::Engine;
    let mut secret = uuid::Uuid::new_v4().as_bytes().to_vec();
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let key_dir = dir.join("identity");
    std::fs::create_dir_all(&key_dir)?;
    write_file(
        &key_dir.join(format!("{IDENTITY_KEY_ID}.key")),
        &base64::engine::general_purpose::STANDARD.encode(&secret),
    )?;
    Ok((key_dir, secret))
}

/// The superuser password of the shared PostgreSQL: `$RECORD_PG_PASSWORD`, else
/// `.dev/secrets/pg-password` written by `scripts/datastores.sh`.
pub fn shared_pg_password() -> Result<String> {
    if let Ok(pw) = std::env::var("RECORD_PG_PASSWORD") {
        return Ok(pw);
    }
    let path = workspace_root().join(".dev/secrets/pg-password");
    fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .with_context(|| {
            format!(
                "cannot read {}: start the datastores with `make test` or `scripts/datastores.sh up`",
                path.display()
            )
        })
}

/// URL of database `db` on the shared PostgreSQL, as the superuser.
pub fn shared_pg_url(db: &str) -> Result<String> {
    let host = std::env::var("RECORD_PG_HOST").unwrap_or_else(|_| SHARED_PG_HOST.to_string());
    let port = std::env::var("RECORD_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(SHARED_PG_PORT);
    Ok(format!(
        "postgres://postgres:{}@{host}:{port}/{db}",
        shared_pg_password()?
    ))
}

/// A database of its own on the shared PostgreSQL, dropped when this value is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates `test_<prefix>_<random>` (empty; the service under test migrates it).
    pub async fn create(prefix: &str) -> Result<Self> {
        let name = format!(
            "test_{}_{}",
            prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin_url = shared_pg_url("postgres")?;
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .with_context(|| {
                "cannot reach the shared PostgreSQL on 127.0.0.1:55432; run `make test` \
                 (or `scripts/datastores.sh up`)"
            })?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            url: shared_pg_url(&name)?,
            name,
            admin_url,
        })
    }

    /// A client connected to this database.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any async context guarantee: use a private runtime on a thread.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Everything a backend service under test needs from its surroundings: a database of its
/// own, a Redis namespace of its own on the shared Redis, and an identity key file. Spawned
/// processes get them through the environment variables of docs/contracts.md.
pub struct ServiceEnv {
    pub db: TestDatabase,
    /// What `DATABASE_URL` is set to (a test may point it elsewhere, e.g. at a [`TcpProxy`]).
    pub database_url: String,
    pub redis_url: String,
    pub namespace: String,
    /// The raw bytes of the key [`IDENTITY_KEY_ID`] in `identity_key_dir`.
    pub identity_key: Vec<u8>,
    pub identity_key_dir: PathBuf,
    pub dir: TempDir,
    /// Output of every process spawned from here, kept across restarts.
    pub log_file: PathBuf,
}

impl ServiceEnv {
    pub async fn new(prefix: &str) -> Result<Self> {
        let db = TestDatabase::create(prefix).await?;
        let dir = tempfile::tempdir()?;
        let (identity_key_dir, identity_key) = write_identity_key(dir.path())?;
        Ok(Self {
            database_url: db.url.clone(),
            db,
            redis_url: shared_redis_url(),
            namespace: redis_namespace(),
            identity_key,
            identity_key_dir,
            log_file: dir.path().join(format!("{prefix}.log")),
            dir,
        })
    }

    /// Spawns `program` on `http`/`grpc` ports whose addresses go to the `http_var`/`grpc_var`
    /// environment variables, with DATABASE_URL, REDIS_URL, REDIS_NAMESPACE,
    /// IDENTITY_KEY_DIR, a 1 s database timeout, and `extra` on top.
    pub fn spawn(
        &self,
        name: &str,
        program: &Path,
        (http_var, http): (&str, u16),
        (grpc_var, grpc): (&str, u16),
        extra: &[(&str, &str)],
    ) -> Result<RunningService> {
        let http_addr = format!("127.0.0.1:{http}");
        let grpc_addr = format!("127.0.0.1:{grpc}");
        let key_dir = self.identity_key_dir.display().to_string();
        let mut envs: Vec<(&str, &str)> = vec![
            (http_var, &http_addr),
            (grpc_var, &grpc_addr),
            ("DATABASE_URL", &self.database_url),
            ("REDIS_URL", &self.redis_url),
            ("REDIS_NAMESPACE", &self.namespace),
            ("IDENTITY_KEY_DIR", &key_dir),
            ("DB_TIMEOUT", "1s"),
            ("RUST_LOG", "info"),
        ];
        envs.extend_from_slice(extra);
        let child = ChildProcess::spawn_logging_to(name, program, &[], &envs, &self.log_file)?;
        Ok(RunningService { http, grpc, child })
    }
}

/// A service process spawned by [`ServiceEnv::spawn`].
pub struct RunningService {
    pub http: u16,
    pub grpc: u16,
    pub child: ChildProcess,
}

impl RunningService {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Waits until `/readyz` answers 200 (PostgreSQL and Redis reachable, migrated).
    pub async fn wait_ready(&self) -> Result<()> {
        let url = self.url("/readyz");
        self.child
            .wait_for_http_ok(&url, Duration::from_secs(60))
            .await
            .with_context(|| {
                format!(
                    "service not ready; its log:\n{}",
                    tail(&self.child.logs(), 40)
                )
            })
    }

    pub async fn channel(&self) -> Result<tonic::transport::Channel> {
        grpc_h2c_channel(self.grpc).await
    }

    /// The value of the Prometheus series `series` (name and labels exactly as exported) on
    /// `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> Result<f64> {
        let text = reqwest::get(self.url("/metrics")).await?.text().await?;
        Ok(text
            .lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0))
    }
}

/// A unique Redis key/channel namespace (e.g. `test-1a2b3c4d:`) on the shared Redis, so
/// parallel tests never see each other's keys or pub/sub messages.
pub fn redis_namespace() -> String {
    format!("test-{}:", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// URL of the shared Redis (`$RECORD_REDIS_URL` or redis://127.0.0.1:56379).
pub fn shared_redis_url() -> String {
    std::env::var("RECORD_REDIS_URL").unwrap_or_else(|_| SHARED_REDIS_URL.to_string())
}

/// URL of the shared cache Redis (`$RECORD_CACHE_REDIS_URL` or redis://127.0.0.1:56380).
pub fn shared_cache_redis_url() -> String {
    std::env::var("RECORD_CACHE_REDIS_URL").unwrap_or_else(|_| SHARED_CACHE_REDIS_URL.to_string())
}

/// A private `redis-server` on a free port, for tests that stop and restart Redis or need
/// settings of their own (a memory cap, an eviction policy).
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
    process: Option<ChildProcess>,
}

impl RedisServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Started with `extra_args` after the defaults (no persistence), e.g.
    /// `["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]`; kept across restarts.
    pub async fn start_with(extra_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut server = Self {
            port: free_tcp_port(),
            dir,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            process: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// A client connection, for tests that look at what was written.
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): connections drop as in a crash.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// (Re)starts the server on the same port and waits until it answers PING.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        let redis_server = which("redis-server").ok_or_else(|| {
            anyhow!("redis-server not installed; `make test` installs it (scripts/install-deps.sh)")
        })?;
        let port = self.port.to_string();
        let dir = self.dir.path().display().to_string();
        let log = self.dir.path().join("redis.log");
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir,
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        args.extend(self.extra_args.iter().map(String::as_str));
        let process =
            ChildProcess::spawn_logging_to("redis-server", &redis_server, &args, &[], &log)?;
        self.process = Some(process);
        let client = redis::Client::open(self.url())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("redis-server on port {} did not answer PING", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP forwarder from 127.0.0.1:`port` to `target` that a test can cut and restore on the
/// same port: the way to make PostgreSQL (or anything) "go down" for one service under test
/// without touching the shared server. Cutting drops every forwarded connection and stops
/// listening, so clients see closed sockets and refused connects.
pub struct TcpProxy {
    pub port: u16,
    target: SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpProxy {
    /// Listening and forwarding on a fresh port.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let mut proxy = Self::stopped(target);
        proxy.resume().await?;
        Ok(proxy)
    }

    /// A proxy whose port is chosen but not listening yet (the target looks down).
    pub fn stopped(target: SocketAddr) -> Self {
        Self {
            port: free_tcp_port(),
            target,
            tasks: Default::default(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts (again) listening on `port` and forwarding to the target.
    pub async fn resume(&mut self) -> Result<()> {
        self.cut();
        // An aborted accept task drops its listener on the runtime's next turn, not
        // synchronously: retry the bind briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            match socket.bind(self.addr()).and_then(|()| socket.listen(128)) {
                Ok(listener) => break listener,
                Err(err) if Instant::now() >= deadline => {
                    return Err(err).with_context(|| format!("proxy cannot bind {}", self.addr()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let target = self.target;
        let tasks = std::sync::Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(forward.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
        Ok(())
    }

    /// Stops listening and drops every forwarded connection.
    pub fn cut(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Finds `program` on PATH (plus the sbin directories Debian puts daemons in).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    #[test]
    fn free_tcp_udp_port_is_bindable_on_both() {
        let port = free_tcp_udp_port();
        TcpListener::bind(("127.0.0.1", port)).expect("tcp bind");
        UdpSocket::bind(("127.0.0.1", port)).expect("udp bind");
    }

    #[test]
    fn pki_issues_a_leaf_chained_to_its_ca() {
        let pki = TestPki::new().expect("pki");
        let leaf = pki
            .issue("leaf", &["localhost", "127.0.0.1"])
            .expect("leaf");
        let chain = fs::read_to_string(&leaf.cert).expect("read");
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(chain.ends_with(&pki.ca_cert_pem));
        assert!(fs::read_to_string(&leaf.key)
            .expect("key")
            .contains("PRIVATE KEY"));
    }

    #[test]
    fn namespaces_are_unique() {
        assert_ne!(redis_namespace(), redis_namespace());
    }

    #[tokio::test]
    async fn tcp_proxy_forwards_until_cut_and_again_after_resume() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let round_trip = |addr: SocketAddr| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await?;
            anyhow::Ok((buf, stream))
        };
        let mut proxy = TcpProxy::start(target).await.expect("proxy");
        let (echoed, mut open) = round_trip(proxy.addr()).await.expect("forwarded");
        assert_eq!(&echoed, b"ping");
        proxy.cut();
        let mut buf = [0u8; 1];
        assert_eq!(
            open.read(&mut buf).await.unwrap_or(0),
            0,
            "cut closes open connections"
        );
        assert!(
            round_trip(proxy.addr()).await.is_err(),
            "cut refuses new connections"
        );
        proxy.resume().await.expect("resume");
        assert_eq!(&round_trip(proxy.addr()).await.expect("again").0, b"ping");
    }

    #[tokio::test]
    async fn waiting_for_readiness_fails_at_once_when_the_child_exits() {
        let child = ChildProcess::spawn(
            "exits",
            Path::new("/bin/sh"),
            &["-c", "echo cannot bind; exit 3"],
            &[],
        )
        .expect("spawn sh");
        let started = Instant::now();
        let port = free_tcp_port();
        let err = child
            .wait_for_http_ok(
                &format!("http://127.0.0.1:{port}/"),
                Duration::from_secs(60),
            )
            .await
            .expect_err("a child that exited is never ready");
        let text = format!("{err:#}");
        assert!(
            text.contains("exited") && text.contains("cannot bind"),
            "{text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited {:?} for a process that had exited",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn child_process_logs_are_captured() {
        let sh = which("sh").expect("sh");
        let mut child =
            ChildProcess::spawn("echo", &sh, &["-c", "echo hello-from-child"], &[]).expect("spawn");
        assert_eq!(
            child.wait_exit(Duration::from_secs(10)).expect("exit"),
            Some(0)
        );
        assert!(child.logs().contains("hello-from-child"));
    }
}
