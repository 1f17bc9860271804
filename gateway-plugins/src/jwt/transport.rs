//! How the JWKS is reached: `https://` through BoringSSL (the edge's TLS stack), trusting
//! the system roots or only a configured CA bundle; `http://` only to hosts the config marks
//! as trusted, because whoever can rewrite a plain-HTTP JWKS response can mint tokens.

use std::net::IpAddr;
use std::path::Path;

use boring::ssl::{SslConnector, SslMethod, SslVersion};
use boring::x509::store::X509StoreBuilder;
use boring::x509::X509;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_boring::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::JwtConfigError;
use crate::config::{ConfigIssue, JwtProviderConfig};

/// The client JWKS documents are fetched with (http:// and https:// alike).
pub(super) type JwksClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

const HTTP_HINT: &str = "plain HTTP lets anyone on the path replace the signing keys";

/// Whether `host` may be reached over plain HTTP when `jwks_allow_http` is set: loopback,
/// private and unique-local addresses, and names that only resolve inside a cluster or a
/// host (`localhost`, single-label Service names like `auth`, `*.svc`, `*.svc.<domain>`,
/// `*.cluster.local`).
pub(crate) fn is_trusted_http_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
            IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !host.is_empty()
        && (host == "localhost"
            || !host.contains('.')
            || host.ends_with(".svc")
            || host.contains(".svc.")
            || host.ends_with(".cluster.local"))
}

/// The problems of `[plugins.jwt]`'s JWKS transport settings, paths relative to
/// `[plugins]` (for `PluginsConfig::validate`). Checks only what needs no I/O.
pub(crate) fn jwks_transport_issues(jwt: &JwtProviderConfig) -> Vec<ConfigIssue> {
    let issue = |path: &str, message: String| ConfigIssue {
        path: path.into(),
        message,
    };
    let Some(url) = &jwt.jwks_url else {
        let mut issues = Vec::new();
        if jwt.jwks_ca_file.is_some() {
            issues.push(issue("jwt.jwks_ca_file", "set without jwks_url".into()));
        }
        if jwt.jwks_allow_http {
            issues.push(issue("jwt.jwks_allow_http", "set without jwks_url".into()));
        }
        return issues;
    };
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(_) => return vec![issue("jwt.jwks_url", format!("`{url}` is not a valid URL"))],
    };
    let Some(host) = uri.host() else {
        return vec![issue("jwt.jwks_url", format!("`{url}` has no host"))];
    };
    match uri.scheme_str() {
        Some("https") if jwt.jwks_allow_http => vec![issue(
            "jwt.jwks_allow_http",
            "only applies to an http:// jwks_url; remove it".into(),
        )],
        Some("https") => Vec::new(),
        Some("http") if !jwt.jwks_allow_http => vec![issue(
            "jwt.jwks_url",
            format!(
                "`{url}` is plain HTTP ({HTTP_HINT}): use https:// (CA bundle in \
                 plugins.jwt.jwks_ca_file), or set plugins.jwt.jwks_allow_http = true for a \
                 loopback or in-cluster host"
            ),
        )],
        Some("http") => {
            let mut issues = Vec::new();
            if !is_trusted_http_host(host) {
                issues.push(issue(
                    "jwt.jwks_allow_http",
                    format!(
                        "only accepted for loopback or in-cluster hosts (localhost, 127.0.0.0/8, \
                         ::1, private addresses, single-label or *.svc names); `{host}` is none \
                         of these ({HTTP_HINT}): use https://"
                    ),
                ));
            }
            if jwt.jwks_ca_file.is_some() {
                issues.push(issue(
                    "jwt.jwks_ca_file",
                    "only applies to an https:// jwks_url".into(),
                ));
            }
            issues
        }
        _ => vec![issue(
            "jwt.jwks_url",
            format!("`{url}` must be an https:// (or trusted http://) URL"),
        )],
    }
}

/// The JWKS client for `config`: BoringSSL for https:// (TLS 1.2 or newer, the host name
/// verified), trusting only `jwks_ca_file` when set (relative to `config_dir`), else the
/// system roots.
pub(super) fn jwks_client(
    config: &JwtProviderConfig,
    config_dir: &Path,
) -> Result<JwksClient, JwtConfigError> {
    let tls_error = |message: String| JwtConfigError {
        path: "jwt.jwks_url".into(),
        message,
    };
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.jwks_fetch_timeout));
    http.set_nodelay(true);
    // The TLS connector wraps the TCP one and passes http:// through unencrypted.
    http.enforce_http(false);

    let mut ssl = SslConnector::builder(SslMethod::tls())
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    ssl.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    ssl.set_alpn_protos(b"\x08http/1.1")
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    if let Some(ca_file) = &config.jwks_ca_file {
        let path = if ca_file.is_absolute() {
            ca_file.clone()
        } else {
            config_dir.join(ca_file)
        };
        let ca_error = |message: String| JwtConfigError {
            path: "jwt.jwks_ca_file".into(),
            message: format!("{}: {message}", path.display()),
        };
        let pem = std::fs::read(&path).map_err(|e| ca_error(e.to_string()))?;
        let certs = X509::stack_from_pem(&pem)
            .map_err(|e| ca_error(format!("not a PEM certificate bundle: {e}")))?;
        if certs.is_empty() {
            return Err(ca_error("holds no certificate".into()));
        }
        let mut store = X509StoreBuilder::new().map_err(|e| ca_error(e.to_string()))?;
        for cert in certs {
            store.add_cert(cert).map_err(|e| ca_error(e.to_string()))?;
        }
        // Only this bundle: the JWKS server is the issuer's, not any publicly trusted host.
        ssl.set_cert_store(store.build());
    }
    let https = HttpsConnector::with_connector(http, ssl)
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::testing::{provider, ALL};
    use crate::jwt::JwtVerifier;
    use crate::metrics::PolicyMetrics;
    use crate::test_support::{Claims, JwksServer, TestKey};

    fn jwt(url: &str, allow_http: bool, ca: Option<&str>) -> JwtProviderConfig {
        let mut config: JwtProviderConfig =
            toml::from_str("issuer = \"i\"\naudience = \"a\"\n").expect("config");
        config.jwks_url = Some(url.into());
        config.jwks_allow_http = allow_http;
        config.jwks_ca_file = ca.map(Into::into);
        config
    }

    fn paths(config: &JwtProviderConfig) -> Vec<String> {
        jwks_transport_issues(config)
            .into_iter()
            .map(|i| i.path)
            .collect()
    }

    #[test]
    fn trusted_http_hosts_are_loopback_private_and_in_cluster_names() {
        for host in [
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "10.0.0.7",
            "192.168.1.2",
            "172.16.0.1",
            "[fd00::1]",
            "localhost",
            "auth",
            "auth.record-platform.svc",
            "auth.record-platform.svc.cluster.local",
            "auth.cluster.local",
        ] {
            assert!(is_trusted_http_host(host), "{host}");
        }
        for host in [
            "auth.example.com",
            "8.8.8.8",
            "172.32.0.1",
            "[2001:db8::1]",
            "svc.example.com",
            "",
        ] {
            assert!(!is_trusted_http_host(host), "{host}");
        }
    }

    #[test]
    fn plain_http_needs_the_flag_and_a_trusted_host_and_errors_name_the_key() {
        assert!(paths(&jwt("https://auth.example.com/jwks", false, None)).is_empty());
        assert!(paths(&jwt("https://auth.example.com/jwks", false, Some("ca.pem"))).is_empty());
        assert!(paths(&jwt("http://127.0.0.1:4001/jwks", true, None)).is_empty());
        assert!(paths(&jwt("http://auth:4001/jwks", true, None)).is_empty());

        let issues = jwks_transport_issues(&jwt("http://127.0.0.1:4001/jwks", false, None));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "jwt.jwks_url");
        assert!(
            issues[0].message.contains("plugins.jwt.jwks_allow_http"),
            "{}",
            issues[0].message
        );
        let issues = jwks_transport_issues(&jwt("http://auth.example.com/jwks", true, None));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "jwt.jwks_allow_http");
        assert!(
            issues[0].message.contains("auth.example.com"),
            "{}",
            issues[0].message
        );

        assert_eq!(
            paths(&jwt("http://auth/jwks", true, Some("ca.pem"))),
            ["jwt.jwks_ca_file"]
        );
        assert_eq!(
            paths(&jwt("https://auth/jwks", true, None)),
            ["jwt.jwks_allow_http"]
        );
        assert_eq!(
            paths(&jwt("ftp://auth/jwks", false, None)),
            ["jwt.jwks_url"]
        );
        assert_eq!(paths(&jwt("https:///jwks", false, None)), ["jwt.jwks_url"]);
    }

    /// A verifier fetching from `server` with `ca_file` (None: the system roots).
    async fn fetch_from(
        server: &JwksServer,
        ca_file: Option<&Path>,
    ) -> (JwtVerifier, Result<usize, crate::jwt::JwksError>) {
        let mut config = provider(Some(server.url()));
        config.jwks_ca_file = ca_file.map(Path::to_path_buf);
        let verifier =
            JwtVerifier::new(&config, Path::new("."), PolicyMetrics::for_tests()).expect("config");
        let fetched = verifier.refresh_jwks().await;
        (verifier, fetched)
    }

    #[tokio::test]
    async fn jwks_over_https_verifies_the_server_against_the_ca_bundle() {
        let key = TestKey::ed25519("tls-key");
        let pki = testkit::TestPki::new().expect("pki");
        let leaf = pki.issue("jwks", &["localhost"]).expect("leaf");
        let server = JwksServer::start_https(vec![key.jwk.clone()], &leaf).await;
        assert!(server.url().starts_with("https://localhost:"));

        let (verifier, fetched) = fetch_from(&server, Some(&pki.ca_path())).await;
        assert_eq!(fetched.expect("fetched over TLS"), 1);
        verifier
            .verify(&key.sign(&Claims::valid("u")), ALL)
            .await
            .expect("a token signed with the served key verifies");
        assert_eq!(server.hits(), 1);

        // Another CA, and the system roots (which do not hold the test CA): refused at the
        // handshake, with the reason in the error.
        let other = testkit::TestPki::new().expect("other pki");
        for (what, ca) in [("wrong CA", Some(other.ca_path())), ("system roots", None)] {
            let (_, fetched) = fetch_from(&server, ca.as_deref()).await;
            let err = fetched.expect_err(what).to_string();
            assert!(err.contains("CERTIFICATE_VERIFY_FAILED"), "{what}: {err}");
        }
        assert_eq!(server.hits(), 1, "no request got past a failed handshake");
    }

    #[tokio::test]
    async fn the_jwks_host_name_must_match_the_certificate() {
        let key = TestKey::ed25519("k");
        let pki = testkit::TestPki::new().expect("pki");
        let leaf = pki.issue("jwks", &["auth.internal"]).expect("leaf");
        let server = JwksServer::start_https(vec![key.jwk.clone()], &leaf).await;
        let (_, fetched) = fetch_from(&server, Some(&pki.ca_path())).await;
        let err = fetched.expect_err("name mismatch").to_string();
        assert!(err.contains("Hostname mismatch"), "{err}");
    }

    #[test]
    fn an_unreadable_or_empty_ca_bundle_is_reported_at_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("empty.pem"), "no certificates here").expect("write");
        for file in ["missing.pem", "empty.pem"] {
            let Err(err) = jwks_client(&jwt("https://auth/jwks", false, Some(file)), dir.path())
            else {
                panic!("{file}: accepted");
            };
            assert_eq!(err.path, "jwt.jwks_ca_file", "{file}: {}", err.message);
            assert!(err.message.contains(file), "{}", err.message);
        }
    }
}
