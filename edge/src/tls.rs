//! TLS for the TCP listener (Pingora + BoringSSL) and the QUIC listener's SSL context.
//! Both take their certificates from the same [`CertStore`] on every handshake.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use boring::ssl::{
    ErrorCode, NameType, SslAlert, SslContextBuilder, SslInfoCallbackMode, SslInfoCallbackValue,
    SslMethod, SslRef, SslVersion,
};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::services::listening::{HandshakeFailure, HandshakeFailureObserver};

use crate::certs::CertStore;
use crate::config::{TlsSection, TlsVersion};
use crate::metrics::{ConnectionGauge, EdgeMetrics};

/// TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only (TLS 1.3 suites are all AEAD).
pub const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// What a TLS connection negotiated, attached to Pingora's `SslDigest` so every request
/// on the connection can read it. Dropping it (connection closed) lowers the gauge.
#[derive(Debug)]
pub struct TlsConnInfo {
    pub version: &'static str,
    // Shared, not copied, into every request's `TlsInfo`.
    pub alpn: Option<Arc<str>>,
    pub sni: Option<Arc<str>>,
    _open: ConnectionGauge,
}

impl std::fmt::Debug for ConnectionGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionGauge")
    }
}

struct EdgeTlsCallbacks {
    certs: Arc<CertStore>,
    metrics: Arc<EdgeMetrics>,
}

#[async_trait]
impl TlsAccept for EdgeTlsCallbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        // Nothing set means the handshake fails; `apply` counts and logs that case.
        self.certs.apply(ssl);
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let info = negotiated(ssl, &self.metrics, "tcp");
        Some(Arc::new(info))
    }
}

fn negotiated(ssl: &SslRef, metrics: &EdgeMetrics, transport: &str) -> TlsConnInfo {
    let version = ssl.version_str();
    let alpn = ssl
        .selected_alpn_protocol()
        .map(|p| Arc::<str>::from(String::from_utf8_lossy(p)));
    metrics
        .tls_handshakes
        .with_label_values(&[transport, version, alpn.as_deref().unwrap_or("none")])
        .inc();
    TlsConnInfo {
        version,
        alpn,
        sni: ssl.servername(NameType::HOST_NAME).map(Arc::from),
        _open: ConnectionGauge::open(
            metrics
                .downstream_connections
                .with_label_values(&[transport]),
        ),
    }
}

fn ssl_version(version: TlsVersion) -> SslVersion {
    match version {
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    }
}

/// Alerts we send during a handshake tell why it failed; a name per alert keeps the
/// metric's label set small.
fn alert_reason(alert: SslAlert) -> &'static str {
    match alert {
        SslAlert::PROTOCOL_VERSION => "protocol_version",
        SslAlert::HANDSHAKE_FAILURE => "handshake_failure",
        SslAlert::NO_APPLICATION_PROTOCOL => "no_application_protocol",
        SslAlert::UNRECOGNIZED_NAME => "unrecognized_name",
        SslAlert::DECODE_ERROR => "decode_error",
        SslAlert::UNEXPECTED_MESSAGE => "unexpected_message",
        SslAlert::RECORD_OVERFLOW => "record_overflow",
        SslAlert::INTERNAL_ERROR => "internal_error",
        SslAlert::ILLEGAL_PARAMETER => "illegal_parameter",
        SslAlert::INSUFFICIENT_SECURITY => "insufficient_security",
        _ => "other_alert",
    }
}

/// Counts handshake failures by the alert we sent and, for QUIC (where no Pingora
/// callback runs after the handshake), completed handshakes.
fn observe_handshakes(builder: &mut SslContextBuilder, metrics: Arc<EdgeMetrics>, quic: bool) {
    builder.set_info_callback(move |ssl, mode, value| {
        if quic && mode == SslInfoCallbackMode::HANDSHAKE_DONE {
            let alpn = ssl
                .selected_alpn_protocol()
                .map(String::from_utf8_lossy)
                .unwrap_or_else(|| "none".into());
            metrics
                .tls_handshakes
                .with_label_values(&["quic", ssl.version_str(), &alpn])
                .inc();
            return;
        }
        if mode != SslInfoCallbackMode::WRITE_ALERT || ssl.is_init_finished() {
            return;
        }
        if let SslInfoCallbackValue::Alert(alert) = value {
            if alert.alert() != SslAlert::CLOSE_NOTIFY {
                metrics
                    .tls_handshake_failures
                    .with_label_values(&[alert_reason(alert.alert())])
                    .inc();
            }
        }
    });
}

/// TLS settings for the HTTPS TCP listener: versions, TLS 1.2 suites, ALPN h2 + http/1.1,
/// certificates from the store through Pingora's callback.
pub fn tcp_tls_settings(
    tls: &TlsSection,
    certs: Arc<CertStore>,
    metrics: Arc<EdgeMetrics>,
) -> pingora_error::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(EdgeTlsCallbacks {
        certs,
        metrics: metrics.clone(),
    }))?;
    let tls_err = |e: boring::error::ErrorStack| {
        pingora_error::Error::explain(
            pingora_error::ErrorType::InternalError,
            format!("TLS settings: {e}"),
        )
    };
    settings
        .set_min_proto_version(Some(ssl_version(tls.min_version)))
        .map_err(tls_err)?;
    settings
        .set_max_proto_version(Some(ssl_version(tls.max_version)))
        .map_err(tls_err)?;
    settings
        .set_strict_cipher_list(TLS12_CIPHERS)
        .map_err(tls_err)?;
    settings.enable_h2();
    observe_handshakes(&mut settings, metrics, false);
    Ok(settings)
}

/// The SSL context for QUIC connections: TLS 1.3 (QUIC requires it), certificates picked
/// from the store when the ClientHello arrives.
pub fn quic_ssl_context(
    certs: Arc<CertStore>,
    metrics: Arc<EdgeMetrics>,
) -> Result<SslContextBuilder, boring::error::ErrorStack> {
    let mut builder = SslContextBuilder::new(SslMethod::tls())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    builder.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    let store = certs.clone();
    let failures = metrics.clone();
    builder.set_select_certificate_callback(move |mut hello| {
        // The one callback that sees every ClientHello: the 0-RTT replay check keys on it.
        crate::h3::early_data::check_client_hello(&hello);
        let sni = hello.servername(NameType::HOST_NAME).map(str::to_owned);
        let set = store.current();
        let cert = set.select(sni.as_deref());
        cert.apply(hello.ssl_mut()).map_err(|err| {
            failures
                .tls_handshake_failures
                .with_label_values(&["no_certificate"])
                .inc();
            tracing::error!(%err, ?sni, "cannot put the certificate on a QUIC handshake");
            boring::ssl::SelectCertError::ERROR
        })
    });
    observe_handshakes(&mut builder, metrics, true);
    Ok(builder)
}

/// Failed and timed-out handshakes on the TCP listener, in place of Pingora's error line for
/// each (pingora-core patch 10, vendor/README.md).
///
/// - A client that closed or reset the connection before or during the handshake (a TCP health
///   check, a port scan, a client that gave up) is routine: counted as `client_closed`, logged
///   at debug only.
/// - A handshake that ran out of `limits.handshake_timeout` is counted as `timeout` and logged
///   at info with the peer.
/// - Any other failure was counted by the alert the edge sent ([`observe_handshakes`]) and is
///   logged at info with the peer and the reason: it is the client's failure, not the edge's
///   (nginx logs these at info too).
pub struct HandshakeFailures(pub Arc<EdgeMetrics>);

impl HandshakeFailureObserver for HandshakeFailures {
    fn handshake_failed(&self, peer: Option<std::net::SocketAddr>, failure: HandshakeFailure<'_>) {
        let count = |reason: &str| {
            self.0
                .tls_handshake_failures
                .with_label_values(&[reason])
                .inc()
        };
        match failure {
            HandshakeFailure::TimedOut(limit) => {
                count("timeout");
                tracing::info!(?peer, ?limit, "TLS handshake timed out");
            }
            HandshakeFailure::Failed(error) if client_closed(error) => {
                count("client_closed");
                tracing::debug!(?peer, %error, "client closed the connection during the TLS handshake");
            }
            HandshakeFailure::Failed(error) => {
                tracing::info!(?peer, %error, "TLS handshake failed");
            }
        }
    }
}

/// Whether a handshake failed because the client closed or reset the connection: an EOF where
/// BoringSSL wanted more (`SSL_ERROR_SYSCALL` without an errno), a clean close, or a reset.
fn client_closed(error: &pingora_core::Error) -> bool {
    let cause = error.root_cause();
    let io_closed = |io: &std::io::Error| {
        use std::io::ErrorKind::*;
        matches!(
            io.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
        )
    };
    if let Some(ssl) = cause.downcast_ref::<boring::ssl::Error>() {
        return match ssl.code() {
            ErrorCode::ZERO_RETURN => true,
            ErrorCode::SYSCALL => ssl.io_error().is_none_or(io_closed),
            _ => false,
        };
    }
    cause
        .downcast_ref::<std::io::Error>()
        .is_some_and(io_closed)
}

/// Reads what the TCP handshake negotiated from Pingora's digest.
pub fn conn_info(digest: Option<&pingora_core::protocols::Digest>) -> Option<&TlsConnInfo> {
    digest?.ssl_digest.as_ref()?.extension.get::<TlsConnInfo>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls12_suites_are_all_ecdhe_and_aead() {
        for suite in TLS12_CIPHERS.split(':') {
            assert!(suite.starts_with("ECDHE-"), "{suite}");
            assert!(
                suite.contains("GCM") || suite.contains("CHACHA20-POLY1305"),
                "{suite}"
            );
        }
        let mut builder = SslContextBuilder::new(SslMethod::tls()).expect("builder");
        builder
            .set_strict_cipher_list(TLS12_CIPHERS)
            .expect("BoringSSL accepts every suite in the list");
    }

    #[test]
    fn alerts_map_to_bounded_reasons() {
        assert_eq!(alert_reason(SslAlert::PROTOCOL_VERSION), "protocol_version");
        assert_eq!(alert_reason(SslAlert::BAD_CERTIFICATE), "other_alert");
    }
}
