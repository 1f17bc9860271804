//! The client side of the proxy: what the transport knows about the client, and writing
//! the edge's own answers (with the unread request body drained first).

use gateway_plugins::{EarlyData, PolicyResponse, Protocol, TlsInfo};
use http::{HeaderMap, HeaderValue};
use pingora_core::protocols::http::HttpTask;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::h3::H3RequestInfo;
use crate::pipeline::{self, Downstream};
use crate::state::{EdgeState, Snapshot};

pub(super) fn downstream_of(session: &Session) -> Downstream {
    let peer_addr = session.client_addr().and_then(|a| a.as_inet()).copied();
    if session.as_downstream().is_custom() {
        // The only custom session is an HTTP/3 stream; the QUIC handshake's facts travel
        // with the request.
        let info = session.req_header().extensions.get::<H3RequestInfo>();
        return Downstream {
            peer_addr,
            protocol: Protocol::Http3,
            tls: info.map(|i| i.tls.clone()),
            early_data: info.map_or(EarlyData::No, |i| i.early_data),
        };
    }
    let info = crate::tls::conn_info(session.digest());
    Downstream {
        peer_addr,
        protocol: if session.is_http2() {
            Protocol::Http2
        } else {
            Protocol::Http1
        },
        tls: info.map(|info| TlsInfo {
            version: Some(info.version),
            sni: info.sni.clone(),
            alpn: info.alpn.clone(),
        }),
        early_data: EarlyData::No,
    }
}

/// Writes a response the edge produced (policy, errors, health) with the headers every
/// response gets.
pub(super) async fn write_edge_response(
    session: &mut Session,
    state: &EdgeState,
    snapshot: &Snapshot,
    response: &PolicyResponse,
    protocol: Protocol,
    close_connection: bool,
) -> Result<()> {
    let mut header = ResponseHeader::build(response.status, Some(response.headers.len() + 4))?;
    for (name, value) in &response.headers {
        header.append_header(name.clone(), value.clone())?;
    }
    let grpc_trailers_only = response.headers.contains_key("grpc-status");
    if !grpc_trailers_only {
        header.insert_header(http::header::CONTENT_LENGTH, response.body.len())?;
    }
    pipeline::decorate_response(&mut header, snapshot, state, &HeaderMap::new(), protocol);
    // The edge's own answers are JSON (or gRPC): never to be sniffed as something else.
    header.insert_header(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    )?;
    if close_connection {
        // Pingora writes `connection: close` for HTTP/1.1, so keep-alive clients know
        // before they send another request on a socket about to close.
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    // Header and body go out as one task list: a body-less answer (a gRPC trailers-only
    // response above all) is then ONE HEADERS frame with END_STREAM on h2 and h3, which
    // gRPC C-core requires ("Trailers-Only", gRPC over HTTP/2), instead of headers
    // followed by an empty DATA frame.
    let mut tasks = Vec::with_capacity(2);
    if response.body.is_empty() || head_only {
        tasks.push(HttpTask::Header(Box::new(header), true));
    } else {
        tasks.push(HttpTask::Header(Box::new(header), false));
        tasks.push(HttpTask::Body(Some(response.body.clone()), true));
    }
    session.write_response_tasks(tasks).await?;
    Ok(())
}

/// At most this much of a request body is read and dropped after an early answer (413,
/// 401 ...), and for at most this long.
const DISCARD_BODY_BYTES: usize = 1024 * 1024;
const DISCARD_BODY_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// After a complete early answer, reads (and drops) what is left of the request body, so
/// the client gets to read the answer: on h2/h3 the stream then closes cleanly instead of
/// being reset with CANCEL (curl reports that as exit 92 although the response arrived);
/// on HTTP/1.1 the connection (closed after such an answer) is not torn down with unread
/// bytes in its receive buffer, which makes the kernel send a RST that can destroy the
/// response before the client read it (RFC 9112 section 9.6). Bounded in bytes and time;
/// past that the stream is reset / the connection closed as before.
pub(super) async fn discard_unread_body(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    let drained = tokio::time::timeout(DISCARD_BODY_TIME, async {
        let mut left = DISCARD_BODY_BYTES;
        while let Ok(Some(chunk)) = downstream.read_request_body().await {
            if chunk.len() >= left {
                break;
            }
            left -= chunk.len();
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("request body still arriving after the early answer; resetting the stream");
    }
}
