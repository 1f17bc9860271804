//! OpenTelemetry tracing shared by the edge and the services.
//!
//! Off unless an OTLP endpoint is configured; then spans are exported over OTLP/gRPC in
//! batches, sampled parent-based (a sampled caller keeps its trace sampled, new traces are
//! sampled at `sample_ratio`), and W3C `traceparent` is the propagation format end to end:
//! client -> edge -> service -> PostgreSQL spans.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where and how much to trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`. `None`: tracing is off.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded (0.0 ..= 1.0); a sampled parent is always followed.
    pub sample_ratio: f64,
    pub service_name: String,
}

impl TracingConfig {
    /// From the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// `OTEL_TRACES_SAMPLER_ARG` (ratio, default 1.0), `OTEL_SERVICE_NAME`.
    pub fn from_env(default_service_name: &str) -> Self {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let ratio = std::env::var("OTEL_TRACES_SAMPLER_ARG")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1.0);
        let service_name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default_service_name.to_string());
        Self {
            otlp_endpoint: endpoint,
            sample_ratio: ratio,
            service_name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
    #[error("sample ratio {0} is not between 0.0 and 1.0")]
    Ratio(f64),
}

/// The installed tracer provider; flushes buffered spans when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn disabled() -> Self {
        Self { provider: None }
    }

    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// A tracer for spans created directly (the edge); `None` when tracing is off.
    pub fn tracer(&self, name: &'static str) -> Option<opentelemetry_sdk::trace::Tracer> {
        self.provider.as_ref().map(|p| p.tracer(name))
    }

    /// A `tracing` layer exporting `tracing` spans (the services); `None` when off.
    pub fn layer<S>(
        &self,
    ) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        self.tracer("platform")
            .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// Exports what is buffered (call before exit).
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(%err, "flushing spans at shutdown");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Installs the OTLP pipeline (on the current tokio runtime, which must outlive it) and the
/// W3C propagator. With no endpoint configured this does nothing.
pub fn init(config: &TracingConfig) -> Result<Telemetry, TelemetryError> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(Telemetry::disabled());
    };
    if !(0.0..=1.0).contains(&config.sample_ratio) {
        return Err(TelemetryError::Ratio(config.sample_ratio));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        })?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_attribute(KeyValue::new("service.name", config.service_name.clone()))
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Telemetry {
        provider: Some(provider),
    })
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's trace context from `traceparent`/`tracestate` (empty if absent or invalid).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `cx` as `traceparent`/`tracestate` into `headers`.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    #[test]
    fn traceparent_round_trips() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = extract(&headers);
        let span = cx.span().span_context().clone();
        assert!(span.is_valid());
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(span.is_sampled());

        let child = SpanContext::new(
            span.trace_id(),
            SpanId::from_hex("1111111111111111").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let mut out = http::HeaderMap::new();
        inject(&Context::new().with_remote_span_context(child), &mut out);
        assert_eq!(
            out["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
        );
    }

    #[test]
    fn garbage_traceparent_gives_an_empty_context() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static("not-a-trace"));
        assert!(!extract(&headers).span().span_context().is_valid());
        assert_eq!(
            TraceId::INVALID,
            extract(&http::HeaderMap::new())
                .span()
                .span_context()
                .trace_id()
        );
    }

    #[test]
    fn no_endpoint_means_tracing_off() {
        let config = TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "x".into(),
        };
        let telemetry = init(&config).expect("init");
        assert!(!telemetry.enabled());
        assert!(telemetry.tracer("t").is_none());
    }

    #[tokio::test]
    async fn invalid_ratio_is_refused() {
        let config = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            sample_ratio: 1.5,
            service_name: "x".into(),
        };
        assert!(matches!(init(&config), Err(TelemetryError::Ratio(_))));
    }
}
