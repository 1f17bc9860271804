//! Test helpers shared by the unit tests (included with `#[path]`), the integration tests
//! and the benches: generated signing keys (Ed25519, P-256, RSA via rcgen/aws-lc-rs),
//! token signing, crafted hostile tokens, and a local JWKS server that can fail on demand.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gateway_plugins::config::JwtAlgorithm;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

pub const ISSUER: &str = "record-platform";
pub const AUDIENCE: &str = "record-platform";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A signing key with its public forms.
pub struct TestKey {
    pub kid: String,
    pub algorithm: JwtAlgorithm,
    encoding: EncodingKey,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
    /// The public key as SPKI PEM.
    pub public_pem: String,
}

impl TestKey {
    pub fn ed25519(kid: &str) -> Self {
        Self::generate(kid, JwtAlgorithm::EdDSA)
    }

    pub fn es256(kid: &str) -> Self {
        Self::generate(kid, JwtAlgorithm::ES256)
    }

    pub fn rs256(kid: &str) -> Self {
        Self::generate(kid, JwtAlgorithm::RS256)
    }

    pub fn generate(kid: &str, algorithm: JwtAlgorithm) -> Self {
        let rcgen_alg = match algorithm {
            JwtAlgorithm::EdDSA => &rcgen::PKCS_ED25519,
            JwtAlgorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            JwtAlgorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        };
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("key generation");
        let private_pem = pair.serialize_pem();
        let encoding = match algorithm {
            JwtAlgorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
            JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
        }
        .expect("jsonwebtoken accepts the generated key");
        let raw = pair.public_key_raw();
        let mut jwk = match algorithm {
            JwtAlgorithm::EdDSA => json!({
                "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(raw),
            }),
            JwtAlgorithm::ES256 => {
                // Uncompressed point: 0x04 || x || y.
                assert_eq!(raw.len(), 65, "uncompressed P-256 point");
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
                })
            }
            JwtAlgorithm::RS256 => serde_json::to_value(
                jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256)
                    .expect("RSA public components"),
            )
            .expect("jwk json"),
        };
        let alg_name = match algorithm {
            JwtAlgorithm::EdDSA => "EdDSA",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::RS256 => "RS256",
        };
        let object = jwk.as_object_mut().expect("jwk object");
        object.insert("kid".into(), json!(kid));
        object.insert("alg".into(), json!(alg_name));
        object.insert("use".into(), json!("sig"));
        Self {
            kid: kid.to_string(),
            algorithm,
            encoding,
            jwk,
            public_pem: pair.public_key_pem(),
        }
    }

    fn jsonwebtoken_alg(&self) -> Algorithm {
        match self.algorithm {
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_with_kid(&self.kid, claims)
    }

    pub fn sign_with_kid(&self, kid: &str, claims: &Claims) -> String {
        let mut header = Header::new(self.jsonwebtoken_alg());
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims.0, &self.encoding).expect("signing")
    }

    /// Signs any JOSE header and payload (both as written, not normalised) with this key
    /// and its algorithm, whatever the header claims: the property tests' hostile tokens.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &self.encoding,
            self.jsonwebtoken_alg(),
        )
        .expect("signing");
        format!("{signing_input}.{signature}")
    }

    /// The public JWK as bytes, one of the "secrets" a key-confusion attacker tries.
    pub fn public_jwk_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.jwk).expect("jwk json")
    }
}

/// Claims as JSON, valid by default for [`ISSUER`] / [`AUDIENCE`], 15 minutes.
#[derive(Debug, Clone)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    pub fn valid(sub: &str) -> Self {
        let now = now();
        let mut map = Map::new();
        map.insert("sub".into(), json!(sub));
        map.insert("email".into(), json!(format!("{sub}@example.com")));
        map.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
        map.insert("iat".into(), json!(now));
        map.insert("exp".into(), json!(now + 900));
        map.insert("iss".into(), json!(ISSUER));
        map.insert("aud".into(), json!(AUDIENCE));
        Claims(map)
    }

    pub fn exp(self, exp: u64) -> Self {
        self.set("exp", json!(exp))
    }

    pub fn nbf(self, nbf: u64) -> Self {
        self.set("nbf", json!(nbf))
    }

    pub fn jti(&self) -> String {
        self.0["jti"].as_str().expect("jti").to_string()
    }

    pub fn expires_at(&self) -> u64 {
        self.0["exp"].as_u64().expect("exp")
    }

    pub fn set(mut self, name: &str, value: Value) -> Self {
        self.0.insert(name.into(), value);
        self
    }

    pub fn remove(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }
}

/// `alg: none` with an empty signature (RFC 7519 §6 "Unsecured JWTs").
pub fn unsigned_token(kid: &str, claims: &Claims) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.0.clone()).to_string())
    )
}

/// HS256 keyed with `secret` (e.g. the victim's public key) and the victim's `kid`.
pub fn hs256_token(kid: &str, secret: &[u8], claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims.0, &EncodingKey::from_secret(secret)).expect("hs256")
}

/// The id of the identity key [`write_identity_key`] writes.
pub const IDENTITY_KEY_ID: &str = "test";

/// Writes a fresh identity key (base64 of 32 random bytes) as `<dir>/identity/test.key` and
/// returns the key directory and the key text.
pub fn write_identity_key(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let text = STANDARD.encode(bytes);
    let key_dir = dir.join("identity");
    std::fs::create_dir_all(&key_dir).expect("identity key dir");
    std::fs::write(key_dir.join(format!("{IDENTITY_KEY_ID}.key")), &text)
        .expect("write identity key");
    (key_dir, text)
}

/// `[plugins.identity]` for the key [`write_identity_key`] wrote (paths relative to `dir`).
pub fn identity_config() -> gateway_plugins::config::IdentityConfig {
    gateway_plugins::config::IdentityConfig {
        key_dir: "identity".into(),
        key_id: IDENTITY_KEY_ID.into(),
    }
}

struct JwksState {
    keys: Mutex<Vec<Value>>,
    failing: AtomicBool,
    hits: AtomicUsize,
}

/// A JWKS endpoint on 127.0.0.1 (a real HTTP server), with keys that can change and an
/// outage switch. Stops when dropped.
pub struct JwksServer {
    addr: SocketAddr,
    https: bool,
    state: Arc<JwksState>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Plain HTTP on 127.0.0.1.
    pub async fn start(keys: Vec<Value>) -> Self {
        Self::start_with(keys, None).await
    }

    /// HTTPS on 127.0.0.1 with the certificate and key of `leaf` (rustls: a TLS stack other
    /// than the edge's BoringSSL); [`JwksServer::url`] then names `localhost`.
    pub async fn start_https(keys: Vec<Value>, leaf: &testkit::LeafFiles) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&leaf.cert)
            .expect("leaf certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("leaf certificate PEM");
        let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("leaf key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        Self::start_with(
            keys,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_with(keys: Vec<Value>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};

        async fn jwks(State(state): State<Arc<JwksState>>) -> Response {
            state.hits.fetch_add(1, Ordering::SeqCst);
            if state.failing.load(Ordering::SeqCst) {
                return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
            }
            let keys = state.keys.lock().expect("keys lock").clone();
            axum::Json(json!({ "keys": keys })).into_response()
        }

        let state = Arc::new(JwksState {
            keys: Mutex::new(keys),
            failing: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let addr = listener.local_addr().expect("local addr");
        let https = tls.is_some();
        let task = match tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }),
            Some(acceptor) => tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        // A client that rejects our certificate ends the handshake: expected
                        // in the wrong-CA tests, so not reported.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                    });
                }
            }),
        };
        Self {
            addr,
            https,
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        if self.https {
            format!(
                "https://localhost:{}/.well-known/jwks.json",
                self.addr.port()
            )
        } else {
            format!("http://{}/.well-known/jwks.json", self.addr)
        }
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("keys lock") = keys;
    }

    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Requests served (including failed ones).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
