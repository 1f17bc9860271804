//! CORS with an explicit allow-list (Fetch standard, "CORS protocol").
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   by the edge with 204: it carries no credentials, so it must not reach the JWT step,
//!   and the services do not implement `OPTIONS`.
//! - An actual request from an allowed origin gets the CORS response headers.
//! - A disallowed origin gets no CORS headers at all: the browser then refuses to expose
//!   the response, while non-browser clients (which send no `Origin` or ignore CORS)
//!   keep working. The edge never rejects a request because of its `Origin`.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::config::CorsPolicy;
use crate::decision::PolicyResponse;

/// What the CORS step decided.
#[derive(Debug, Clone, PartialEq)]
pub enum CorsAction {
    /// A preflight: answer it now.
    Preflight(PolicyResponse),
    /// An actual request: add these headers to whatever response it gets (possibly none).
    Actual(HeaderMap),
}

/// One route's CORS policy with its header values rendered once.
#[derive(Debug, Clone)]
pub struct CorsPlugin {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    allow_credentials: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CorsConfigError {
    pub path: String,
    pub message: String,
}

impl CorsPlugin {
    pub fn new(policy: &CorsPolicy) -> Result<Self, CorsConfigError> {
        let header = |path: &str, values: &[String]| {
            HeaderValue::from_str(&values.join(", ")).map_err(|_| CorsConfigError {
                path: path.into(),
                message: "values must be visible ASCII".into(),
            })
        };
        let mut origins = Vec::new();
        let mut any_origin = false;
        for (i, origin) in policy.allowed_origins.iter().enumerate() {
            if origin == "*" {
                any_origin = true;
                continue;
            }
            // Origins are compared byte for byte (Fetch: "origin" serialisation), so a
            // trailing slash or upper case in the config would silently never match.
            if origin.ends_with('/') || origin.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(CorsConfigError {
                    path: format!("cors.allowed_origins[{i}]"),
                    message: format!(
                        "`{origin}` is not a serialised origin: use lower case scheme://host[:port] without a path"
                    ),
                });
            }
            origins.push(HeaderValue::from_str(origin).map_err(|_| CorsConfigError {
                path: format!("cors.allowed_origins[{i}]"),
                message: "must be visible ASCII".into(),
            })?);
        }
        Ok(Self {
            any_origin,
            origins,
            allow_methods: header("cors.allowed_methods", &policy.allowed_methods)?,
            allow_headers: header("cors.allowed_headers", &policy.allowed_headers)?,
            expose_headers: if policy.expose_headers.is_empty() {
                None
            } else {
                Some(header("cors.expose_headers", &policy.expose_headers)?)
            },
            max_age: HeaderValue::from(policy.max_age.as_secs()),
            allow_credentials: policy.allow_credentials,
        })
    }

    /// `None` when the request has no `Origin` (not a CORS request) or is not CORS-relevant.
    pub fn evaluate(&self, method: &Method, headers: &HeaderMap) -> Option<CorsAction> {
        let origin = headers.get(ORIGIN)?;
        let is_preflight =
            method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = self.allow_origin_value(origin);
        if is_preflight {
            let mut response_headers = HeaderMap::new();
            if let Some(allow_origin) = allowed {
                self.common_headers(allow_origin, &mut response_headers);
                response_headers.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
                response_headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
                response_headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
            }
            // Disallowed origin: still 204 (it's the edge's own answer to OPTIONS), but
            // without any Access-Control-* header the browser fails the preflight.
            return Some(CorsAction::Preflight(PolicyResponse {
                status: StatusCode::NO_CONTENT,
                headers: response_headers,
                body: bytes::Bytes::new(),
            }));
        }
        let mut response_headers = HeaderMap::new();
        if let Some(allow_origin) = allowed {
            self.common_headers(allow_origin, &mut response_headers);
            if let Some(expose) = &self.expose_headers {
                response_headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
        Some(CorsAction::Actual(response_headers))
    }

    fn allow_origin_value(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.origins.iter().any(|o| o == origin) {
            return Some(origin.clone());
        }
        self.any_origin.then(|| HeaderValue::from_static("*"))
    }

    fn common_headers(&self, allow_origin: HeaderValue, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        // The answer depends on Origin, so caches must key on it.
        headers.insert(VARY, HeaderValue::from_static("origin"));
        if self.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plugin(origins: &[&str], credentials: bool) -> CorsPlugin {
        CorsPlugin::new(&CorsPolicy {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            allowed_methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        })
        .expect("valid policy")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn preflight_from_allowed_origin_is_answered_with_204_and_allow_lists() {
        let cors = plugin(&["https://app.example.com"], true);
        let req = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        let Some(CorsAction::Preflight(resp)) = cors.evaluate(&Method::OPTIONS, &req) else {
            panic!("expected a preflight answer");
        };
        assert_eq!(resp.status, StatusCode::NO_CONTENT);
        assert_eq!(
            resp.headers[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(resp.headers[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            resp.headers[ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type"
        );
        assert_eq!(resp.headers[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(resp.headers[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(resp.headers[VARY], "origin");
    }

    #[test]
    fn actual_request_from_allowed_origin_gets_cors_headers() {
        let cors = plugin(&["https://app.example.com"], false);
        let req = headers(&[("origin", "https://app.example.com")]);
        let Some(CorsAction::Actual(resp)) = cors.evaluate(&Method::GET, &req) else {
            panic!("expected actual-request headers");
        };
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(resp[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
        assert!(resp.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }

    #[test]
    fn disallowed_origin_gets_no_cors_headers_and_is_not_rejected() {
        let cors = plugin(&["https://app.example.com"], true);
        let req = headers(&[("origin", "https://evil.example.net")]);
        assert_eq!(
            cors.evaluate(&Method::GET, &req),
            Some(CorsAction::Actual(HeaderMap::new()))
        );
        let preflight = headers(&[
            ("origin", "https://evil.example.net"),
            ("access-control-request-method", "DELETE"),
        ]);
        let Some(CorsAction::Preflight(resp)) = cors.evaluate(&Method::OPTIONS, &preflight) else {
            panic!("expected a preflight answer");
        };
        assert!(resp.headers.is_empty(), "{:?}", resp.headers);
    }

    #[test]
    fn requests_without_origin_are_not_cors() {
        let cors = plugin(&["https://app.example.com"], false);
        assert_eq!(cors.evaluate(&Method::GET, &HeaderMap::new()), None);
        // A plain OPTIONS without Access-Control-Request-Method is an actual request.
        let req = headers(&[("origin", "https://app.example.com")]);
        assert!(matches!(
            cors.evaluate(&Method::OPTIONS, &req),
            Some(CorsAction::Actual(_))
        ));
    }

    #[test]
    fn wildcard_allows_any_origin_without_echoing_it() {
        let cors = plugin(&["*"], false);
        let req = headers(&[("origin", "https://anywhere.example")]);
        let Some(CorsAction::Actual(resp)) = cors.evaluate(&Method::GET, &req) else {
            panic!("expected headers");
        };
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn non_serialised_origins_are_a_config_error() {
        let err = CorsPlugin::new(&CorsPolicy {
            allowed_origins: vec!["https://ok.example".into(), "https://App.example/".into()],
            allowed_methods: vec![],
            allowed_headers: vec![],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: Duration::from_secs(1),
        })
        .expect_err("upper case and trailing slash");
        assert_eq!(err.path, "cors.allowed_origins[1]");
    }
}
