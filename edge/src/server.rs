//! Assembles the process: config, state, the Pingora server and its services.
//! Read top to bottom, this is the whole edge.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use gateway_plugins::PolicyRuntime;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::http::v2::server::default_h2_options;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::listening::Service;

use crate::admin::{AdminApp, RedirectApp};
use crate::certs::{CertSet, CertStore};
use crate::config::{load_file, load_str, EdgeConfig, LoadedConfig, LogFormat, EMBEDDED_DEFAULT};
use crate::connections::{ConnectionGate, TcpAdmission};
use crate::front::{HttpsFront, SharedProxy, TcpFront};
use crate::h3::handoff::QuicHandoff;
use crate::h3::Http3Service;
use crate::metrics::EdgeMetrics;
use crate::proxy::EdgeProxy;
use crate::state::{EdgeState, Snapshot};
use crate::upstream::Clusters;

pub(crate) fn load(config: Option<&Path>) -> Result<LoadedConfig, crate::config::ConfigError> {
    match config {
        Some(path) => load_file(path),
        None => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
            load_str(EMBEDDED_DEFAULT, None, &cwd)
        }
    }
}

/// `edge check`: everything `run` would refuse, reported without starting anything.
pub fn check(config: Option<&Path>) -> ExitCode {
    let loaded = match load(config) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{err}");
            eprintln!("config invalid: {} problem(s)", err.problems.len());
            return ExitCode::FAILURE;
        }
    };
    let mut problems = Vec::new();
    if let Err(err) = CertSet::load(&loaded.config.tls, 1) {
        problems.push(loaded.problem(
            &crate::config::locate::KeyPath::root().key("tls"),
            err.to_string(),
        ));
    }
    if let Err(err) = Clusters::build(&loaded.config.clusters, None) {
        problems.push(
            loaded.problem(
                &crate::config::locate::KeyPath::root()
                    .key("clusters")
                    .key(&err.name),
                err.error.to_string(),
            ),
        );
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("config invalid: {} problem(s)", problems.len());
        return ExitCode::FAILURE;
    }
    match toml::to_string_pretty(&loaded.config.redacted()) {
        Ok(text) => {
            println!(
                "# effective config of {} (secrets redacted)",
                loaded.label()
            );
            print!("{text}");
            eprintln!("config ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("config is valid but cannot be printed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &EdgeConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.logging.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match config.logging.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(err) = result {
        eprintln!("logging already initialised: {err}");
    }
}

fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path)
}

/// Starts the edge and serves until a signal stops it. Returns only on start-up errors.
pub fn run(config: Option<&Path>, upgrade: bool) -> anyhow::Result<()> {
    let loaded = load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    init_logging(&loaded.config);
    if loaded.path.is_none() {
        tracing::warn!("no --config: running the embedded dev config (self-signed certificate, no Redis, no identity key)");
    }
    if loaded.config.tls.default.is_none() {
        tracing::warn!("no [tls.default]: serving a generated self-signed certificate for localhost (dev only)");
    }
    let config = loaded.config.clone();

    // Control-plane tasks (policy background work, health checks, reload triggers) run on
    // their own small runtime so they never compete with request handling.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("edge-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;

    let metrics = EdgeMetrics::new();
    let certs = CertStore::new(&config.tls, metrics.clone()).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            loaded.problem(
                &crate::config::locate::KeyPath::root().key("tls"),
                e.to_string()
            )
        )
    })?;
    let policy: Arc<PolicyRuntime> = control
        .block_on(PolicyRuntime::new(
            &config.plugins,
            &loaded.base_dir,
            &metrics.registry,
        ))
        .map_err(|e| {
            anyhow::anyhow!(
                "{}",
                loaded.problem(
                    &crate::config::locate::KeyPath::root().key("plugins"),
                    e.to_string()
                )
            )
        })?;
    let (snapshot, clusters) = Snapshot::build(loaded, None, &policy, policy.current(), 1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tracing_config = platform_telemetry::TracingConfig {
        otlp_endpoint: config
            .tracing
            .otlp_endpoint
            .clone()
            .or_else(|| platform_telemetry::TracingConfig::from_env("edge").otlp_endpoint),
        sample_ratio: config.tracing.sample_ratio,
        service_name: config.tracing.service_name.clone(),
    };
    // The batch exporter runs on the control runtime.
    let telemetry = {
        let _entered = control.enter();
        platform_telemetry::init(&tracing_config).context("[tracing]")?
    };
    if let Some(endpoint) = &tracing_config.otlp_endpoint {
        tracing::info!(%endpoint, ratio = tracing_config.sample_ratio, "exporting request spans over OTLP");
    }
    let state = EdgeState::new(snapshot, certs, policy, metrics, telemetry);
    {
        let _entered = control.enter();
        state.start_health_checks(&clusters);
        tokio::spawn(crate::reload::reload_on_sighup(state.clone()));
        if config.server.watch {
            tokio::spawn(crate::reload::watch_files(state.clone()));
        }
    }

    let mut server_conf = ServerConf {
        threads: config.server.threads,
        pid_file: config.server.pid_file.display().to_string(),
        upgrade_sock: config.server.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout.as_secs()),
        upstream_keepalive_pool_size: config.server.upstream_keepalive_pool_size,
        work_stealing: config.server.work_stealing(),
        ..ServerConf::default()
    };
    server_conf.daemon = false;
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    // With --upgrade this waits until the old process hands its listening sockets over.
    server.bootstrap();
    // From here this process serves: record its PID (after an upgrade, the new PID
    // replaces the old one, so scripts signal the right process).
    write_pid_file(&config.server.pid_file).with_context(|| {
        format!(
            "writing server.pid_file {}",
            config.server.pid_file.display()
        )
    })?;
    let pingora_conf = server.configuration.clone();

    // HTTPS over TCP: h1 + h2, the policy pipeline, the upstream pool.
    let https = &config.listeners.https;
    // ONE proxy for h1, h2 and h3: the TCP service and the QUIC listener share it, and
    // with it the upstream pool and every ProxyHttp phase.
    let connections = ConnectionGate::new(state.clone());
    let mut edge_proxy = pingora_proxy::http_proxy(
        &pingora_conf,
        EdgeProxy::new(state.clone(), connections.clone()),
    );
    let mut h2 = default_h2_options();
    h2.max_concurrent_streams(config.limits.h2_max_concurrent_streams);
    // Generous at the protocol layer; the exact limit answers 431 in the pipeline.
    h2.max_header_list_size((config.limits.max_request_header_bytes * 2) as u32);
    edge_proxy.h2_options = Some(h2);
    let mut options = HttpServerOptions::default();
    options.keepalive_request_limit = Some(config.limits.keepalive_requests);
    options.h2_idle_timeout = Some(config.limits.idle_timeout);
    // An h2 client must send its preface as an h1 client its header: within header_timeout.
    options.h2_handshake_timeout = Some(config.limits.header_timeout);
    edge_proxy.server_options = Some(options);
    let edge_proxy = Arc::new(edge_proxy);

    let front = TcpFront(Arc::new(SharedProxy {
        proxy: edge_proxy.clone(),
        state: state.clone(),
    }));
    let mut tcp = Service::new("edge https".to_string(), front);
    tcp.set_handshake_timeout(config.limits.handshake_timeout);
    tcp.set_connection_admission(Arc::new(TcpAdmission(connections.clone())));
    tcp.set_handshake_failure_observer(Arc::new(crate::tls::HandshakeFailures(
        state.metrics.clone(),
    )));
    let addresses: Vec<std::net::SocketAddr> = std::iter::once(https.address)
        .chain(https.extra_addresses.iter().copied())
        .collect();
    for address in &addresses {
        let tls =
            crate::tls::tcp_tls_settings(&config.tls, state.certs.clone(), state.metrics.clone())
                .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
        tcp.add_listener(
            ListenerConfig::tcp(address.to_string())
                .tls(tls)
                .l4_buffer(L4BufferSettings::default().read(https.read_buffer_bytes)),
        );
    }
    let mut quic = Vec::new();
    let mut handoff = None;
    if https.http3 {
        if https.address.port() == 0 {
            bail!("listeners.https.address: HTTP/3 needs a fixed port (TCP and UDP share it)");
        }
        // The UDP sockets come through the upgrade handoff like the TCP listeners.
        let quic_handoff = QuicHandoff::inherit(
            &server.listen_fds(),
            &addresses,
            crate::h3::bind_udp,
            state.metrics.quic_handoff_packets.clone(),
        )
        .with_context(|| format!("binding UDP {addresses:?} for HTTP/3"))?;
        for address in &addresses {
            quic.push(Http3Service::new(
                state.clone(),
                edge_proxy.clone(),
                connections.clone(),
                *address,
                quic_handoff.clone(),
                config.http3.clone(),
                config.server.grace_period,
            ));
        }
        handoff = Some(quic_handoff);
    }
    server.add_service(HttpsFront::new(tcp, quic, handoff));

    if let Some(http) = config.listeners.http.as_ref().filter(|h| h.enabled) {
        let mut redirect = Service::new(
            "edge http redirect".to_string(),
            HttpServer::new_app(RedirectApp::new(state.clone())),
        );
        redirect.add_tcp(&http.address.to_string());
        server.add_service(redirect);
    }

    let mut admin = Service::new(
        "edge admin".to_string(),
        HttpServer::new_app(AdminApp::new(state.clone(), config.admin.address)),
    );
    admin.add_tcp(&config.admin.address.to_string());
    server.add_service(admin);

    tracing::info!(
        https = %https.address,
        extra = ?https.extra_addresses,
        http3 = https.http3,
        admin = %config.admin.address,
        version = env!("CARGO_PKG_VERSION"),
        "edge starting"
    );
    // `control` must outlive the server; run_forever never returns.
    let _control = control;
    server.run_forever();
}
