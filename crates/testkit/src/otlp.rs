//! A real OTLP/gRPC trace collector for tests of the edge's and the services' spans.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// One span received by an [`OtlpCollector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
}

/// A real OTLP/gRPC trace receiver on a free port, keeping every span it is sent.
pub struct OtlpCollector {
    pub addr: SocketAddr,
    spans: std::sync::Arc<std::sync::Mutex<Vec<CollectedSpan>>>,
    task: tokio::task::JoinHandle<()>,
}

struct TraceSink(std::sync::Arc<std::sync::Mutex<Vec<CollectedSpan>>>);

#[async_trait::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for TraceSink
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(CollectedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex::encode(span.trace_id),
                        span_id: hex::encode(span.span_id),
                        parent_span_id: hex::encode(span.parent_span_id),
                    });
                }
            }
        }
        if let Ok(mut spans) = self.0.lock() {
            spans.extend(received);
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

impl OtlpCollector {
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let service = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
            TraceSink(spans.clone()),
        );
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Self { addr, spans, task })
    }

    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT` or `[tracing] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Polls until `check` holds for the spans received so far (exporters send in batches).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        check: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Result<Vec<CollectedSpan>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if check(&spans) {
                return Ok(spans);
            }
            if Instant::now() >= deadline {
                bail!("spans never matched within {timeout:?}; received: {spans:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
