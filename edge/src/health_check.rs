//! Active health checks: per cluster, a probe of every backend each `interval` (HTTP
//! `GET path` expecting 2xx, gRPC `grpc.health.v1.Health/Check` expecting SERVING, or a TCP
//! connect); `unhealthy_threshold` failures in a row take a backend out, `healthy_threshold`
//! successes bring it back. Passive ejection by real traffic is `outlier.rs`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_http::RequestHeader;

use crate::config::{HealthCheckConfig, HealthCheckKind};
use crate::metrics::EdgeMetrics;
use crate::upstream::{Backend, Cluster};

/// Runs a cluster's active health checks until the cluster is dropped (config reload
/// replaced it) or the process stops.
pub async fn run_health_checks(
    cluster: Weak<Cluster>,
    connector: Arc<Connector>,
    metrics: Arc<EdgeMetrics>,
) {
    let Some(check) = cluster
        .upgrade()
        .and_then(|c| c.config.health_check.clone())
    else {
        return;
    };
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let checks = cluster.backends.iter().map(|backend| {
            let connector = connector.clone();
            let check = check.clone();
            let backend = backend.clone();
            async move {
                let outcome =
                    tokio::time::timeout(check.timeout, probe(&connector, &backend, &check)).await;
                let result = match outcome {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {:?}", check.timeout)),
                };
                (backend, result)
            }
        });
        for (backend, result) in futures::future::join_all(checks).await {
            record(&cluster, &backend, &check, result, &metrics);
        }
    }
}

fn record(
    cluster: &Cluster,
    backend: &Backend,
    check: &HealthCheckConfig,
    result: Result<(), String>,
    metrics: &EdgeMetrics,
) {
    let was_healthy = backend.is_healthy();
    let first = !backend.checked.swap(true, Ordering::Relaxed);
    match result {
        Ok(()) => {
            backend.consecutive_fail.store(0, Ordering::Relaxed);
            let ok = backend.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !was_healthy && ok >= check.healthy_threshold {
                backend.healthy.store(true, Ordering::Relaxed);
                tracing::info!(cluster = %cluster.name, backend = %backend.label, "backend healthy again");
            }
        }
        Err(reason) => {
            backend.consecutive_ok.store(0, Ordering::Relaxed);
            let failed = backend.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
            // The first check decides at once: a backend that is down at start must not
            // receive traffic for `unhealthy_threshold` intervals.
            if was_healthy && (first || failed >= check.unhealthy_threshold) {
                backend.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(cluster = %cluster.name, backend = %backend.label, %reason, "backend unhealthy");
            }
        }
    }
    metrics
        .upstream_backend_healthy
        .with_label_values(&[&*cluster.name, &backend.label])
        .set(i64::from(backend.is_healthy()));
}

async fn probe(
    connector: &Connector,
    backend: &Backend,
    check: &HealthCheckConfig,
) -> Result<(), String> {
    match check.kind {
        HealthCheckKind::Tcp => tokio::net::TcpStream::connect(backend.addr)
            .await
            .map(|_| ())
            .map_err(|e| format!("connect: {e}")),
        HealthCheckKind::Http => {
            let request = probe_request("GET", &check.path, backend)?;
            let (status, _, _) = exchange(connector, backend, request, None).await?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
        HealthCheckKind::Grpc => {
            let mut request = probe_request("POST", "/grpc.health.v1.Health/Check", backend)?;
            for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
                request
                    .insert_header(name, value)
                    .map_err(|e| e.to_string())?;
            }
            let body = grpc_health_request(&check.grpc_service);
            let (status, body, trailers) =
                exchange(connector, backend, request, Some(body)).await?;
            if status != 200 {
                return Err(format!("HTTP status {status}"));
            }
            let grpc_status = trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("missing");
            if grpc_status != "0" {
                return Err(format!("grpc-status {grpc_status}"));
            }
            match grpc_health_status(&body) {
                Some(1) => Ok(()),
                other => Err(format!("serving status {other:?} (1 = SERVING)")),
            }
        }
    }
}

fn probe_request(method: &str, path: &str, backend: &Backend) -> Result<RequestHeader, String> {
    let mut request =
        RequestHeader::build(method, path.as_bytes(), None).map_err(|e| e.to_string())?;
    request
        .insert_header("host", backend.addr.to_string())
        .map_err(|e| e.to_string())?;
    request
        .insert_header("user-agent", "record-edge-health-check")
        .map_err(|e| e.to_string())?;
    Ok(request)
}

/// One request/response on a pooled connection; returns status, body and h2 trailers.
async fn exchange(
    connector: &Connector,
    backend: &Backend,
    request: RequestHeader,
    body: Option<Bytes>,
) -> Result<(u16, Bytes, Option<http::HeaderMap>), String> {
    let peer = backend.peer();
    let (mut session, _reused) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(|e| format!("write: {e}"))?;
    if let Some(body) = body {
        session
            .write_request_body(body, true)
            .await
            .map_err(|e| format!("write body: {e}"))?;
    }
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("finish: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("read: {e}"))?;
    let status = session
        .response_header()
        .map(|h| h.status.as_u16())
        .unwrap_or(0);
    let mut collected = BytesMut::new();
    while let Some(chunk) = session
        .read_response_body()
        .await
        .map_err(|e| format!("read body: {e}"))?
    {
        if collected.len() + chunk.len() > 64 * 1024 {
            return Err("health response larger than 64 KiB".into());
        }
        collected.extend_from_slice(&chunk);
    }
    let trailers = match &mut session {
        HttpSession::H2(h2) => h2
            .read_trailers()
            .await
            .map_err(|e| format!("trailers: {e}"))?,
        _ => None,
    };
    connector
        .release_http_session(
            session,
            &peer,
            Some(
                backend
                    .peer
                    .options
                    .idle_timeout
                    .unwrap_or(Duration::from_secs(60)),
            ),
        )
        .await;
    Ok((status, collected.freeze(), trailers))
}

/// A gRPC-framed `grpc.health.v1.HealthCheckRequest { service }`.
fn grpc_health_request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        encode_varint(service.len() as u64, &mut message);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The `status` field of a gRPC-framed `HealthCheckResponse` (absent field = 0 = UNKNOWN).
/// Every length in the reply is the backend's word, so each one is checked before it is
/// added to an offset; unknown fields of any wire type are skipped (protobuf encoding:
/// a tag is a varint of field number and wire type).
pub(crate) fn grpc_health_status(framed: &[u8]) -> Option<u64> {
    let header = framed.get(..5)?;
    if header[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let end = usize::try_from(len).ok()?.checked_add(5)?;
    let mut message = framed.get(5..end)?;
    let mut status = 0;
    while !message.is_empty() {
        let (tag, used) = decode_varint(message)?;
        message = &message[used..];
        let skip = match (tag >> 3, tag & 0x07) {
            (1, 0) => {
                let (value, used) = decode_varint(message)?;
                status = value;
                used
            }
            (_, 0) => decode_varint(message)?.1,
            (_, 1) => 8,
            (_, 2) => {
                let (length, used) = decode_varint(message)?;
                usize::try_from(length).ok()?.checked_add(used)?
            }
            (_, 5) => 4,
            _ => return None,
        };
        message = message.get(skip..)?;
    }
    Some(status)
}

fn decode_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_health_frames_round_trip() {
        let request = grpc_health_request("records.RecordsService");
        assert_eq!(request[0], 0);
        assert_eq!(
            u32::from_be_bytes([request[1], request[2], request[3], request[4]]) as usize,
            request.len() - 5
        );
        // HealthCheckResponse { status: SERVING (1) }
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 0x01]), Some(1));
        // NOT_SERVING (2)
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 0x02]), Some(2));
        // empty message = UNKNOWN
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 0]), Some(0));
        // truncated
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 9, 0x08]), None);
    }

    /// A backend's reply with a field whose length is u64::MAX: the skip `used + length`
    /// overflowed (a panic in the health-check task in debug builds, a wrapped offset in
    /// release ones). Found by the `health_reply` fuzz target's property test.
    #[test]
    fn a_health_reply_with_an_overflowing_field_length_is_refused() {
        let mut message = vec![0x12]; // field 2, length-delimited
        message.extend([0xff; 9]); // varint u64::MAX ...
        message.push(0x01);
        let mut frame = vec![0, 0, 0, 0, message.len() as u8];
        frame.extend(&message);
        assert_eq!(grpc_health_status(&frame), None);
    }

    /// Fields a newer HealthCheckResponse may carry (numbers from 16 need a two-byte tag;
    /// fixed64 and fixed32 values are not varints) are skipped, and the status after them
    /// is still read.
    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let message = [
            0x80, 0x01, 0x07, // field 16, varint 7
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3, fixed64
            0x25, 1, 2, 3, 4, // field 4, fixed32
            0x2a, 0x02, 0x08, 0x02, // field 5, length-delimited (looks like status 2)
            0x08, 0x01, // status: SERVING
        ];
        let mut frame = vec![0, 0, 0, 0, message.len() as u8];
        frame.extend(message);
        assert_eq!(grpc_health_status(&frame), Some(1));
    }
}
