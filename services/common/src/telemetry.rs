//! JSON logs on stdout, one object per line, with the fields of the enclosing request span
//! (notably `request_id`) flattened in. `RUST_LOG` filters as usual (default `info`).
//!
//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, request spans (continuing the
//! edge's `traceparent`) and their PostgreSQL spans are exported over OTLP/gRPC, sampled at
//! `OTEL_TRACES_SAMPLER_ARG` for new traces (`OTEL_SERVICE_NAME` overrides the name).

use platform_telemetry::{Telemetry, TracingConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs logging (and tracing export when configured). Call inside the tokio runtime
/// (the span exporter runs on it) and keep the returned value alive until exit.
pub fn init(service: &str) -> Telemetry {
    let telemetry = match platform_telemetry::init(&TracingConfig::from_env(service)) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("{service}: tracing export disabled: {err}");
            Telemetry::disabled()
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true);
    // try_init: a second call (tests, or a library that already set one) must not panic.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(telemetry.layer())
        .try_init();
    telemetry
}
