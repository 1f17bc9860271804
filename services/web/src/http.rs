//! The routes: the page, the fingerprinted assets, the operational endpoints, and what an
//! unknown path gets (the page for a browser navigation, so client-side paths survive a
//! reload; JSON 404 for everything else).
//!
//! Caching (RFC 9111): assets are `public, max-age=31536000, immutable` (their URL changes
//! with their content); the page is `no-cache` with a strong ETag, so every load revalidates
//! and gets a 304 while it is unchanged. Answers that depend on `Accept` say `Vary: Accept`,
//! so a shared cache (the edge's) never hands the page to an API client or the reverse.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use service_common::error::ErrorKind;
use service_common::ApiError;

use crate::assets::{Asset, AssetCatalog, URL_PREFIX};

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const REVALIDATE: &str = "no-cache";

pub fn router(catalog: Arc<AssetCatalog>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(asset))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .fallback(fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                "method_not_allowed",
                "only GET and HEAD are served here",
            )
        })
        .with_state(catalog)
}

/// Ready as soon as it listens: the assets are loaded before the listener binds.
async fn readyz(State(catalog): State<Arc<AssetCatalog>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ready",
        "checks": {"assets": catalog.names().len() + 1},
    }))
    .into_response()
}

async fn index(State(catalog): State<Arc<AssetCatalog>>, headers: HeaderMap) -> Response {
    serve(catalog.index(), REVALIDATE, &headers)
}

async fn asset(
    State(catalog): State<Arc<AssetCatalog>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match catalog.asset(&path) {
        Some(asset) => serve(asset, IMMUTABLE, &headers),
        // An old page asking for a file of a previous version lands here too.
        None => not_found(false),
    }
}

async fn fallback(
    State(catalog): State<Arc<AssetCatalog>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    // `/api/...` and `/assets/...` are never client-side paths of the app.
    let app_path = !path.starts_with("/api/") && path != "/api" && !path.starts_with(URL_PREFIX);
    if (method == Method::GET || method == Method::HEAD) && app_path && accepts_html(&headers) {
        let mut response = serve(catalog.index(), REVALIDATE, &headers);
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept"));
        return response;
    }
    not_found(true)
}

fn not_found(varies_by_accept: bool) -> Response {
    let mut response = ApiError::not_found("not_found", "no such page or asset").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if varies_by_accept {
        headers.insert(header::VARY, HeaderValue::from_static("accept"));
    }
    response
}

/// A browser navigation asks for HTML (`text/html` in `Accept`); fetches and API clients
/// do not.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            // `text/html;q=0` means "not HTML" (RFC 9110 §12.4.2).
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// `If-None-Match` holds `etag` (or `*`): weak comparison, as RFC 9110 §13.1.2 asks.
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or("").trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == ours)
}

fn serve(asset: &Asset, cache_control: &'static str, request: &HeaderMap) -> Response {
    let cache_control = HeaderValue::from_static(cache_control);
    // nosniff here too, so the service is safe to reach without the edge in front.
    let nosniff = HeaderValue::from_static("nosniff");
    if not_modified(request, &asset.etag) {
        // A 304 carries the validator and the caching headers of the 200 (RFC 9110 §15.4.5).
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, asset.etag.clone()),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::ETAG, asset.etag.clone()),
            (header::CACHE_CONTROL, cache_control),
            (header::X_CONTENT_TYPE_OPTIONS, nosniff),
        ],
        asset.body.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn navigations_are_told_apart_from_fetches() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(accepts_html(&headers(&[("accept", chrome)])));
        assert!(accepts_html(&headers(&[("accept", "TEXT/HTML")])));
        assert!(!accepts_html(&headers(&[("accept", "*/*")])));
        assert!(!accepts_html(&headers(&[("accept", "application/json")])));
        assert!(!accepts_html(&headers(&[("accept", "text/html;q=0, */*")])));
        assert!(!accepts_html(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(not_modified(
            &headers(&[("if-none-match", "\"abc\"")]),
            &etag
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "W/\"abc\"")]),
            &etag
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "\"x\", \"abc\"")]),
            &etag
        ));
        assert!(not_modified(&headers(&[("if-none-match", "*")]), &etag));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"abd\"")]),
            &etag
        ));
        assert!(!not_modified(&HeaderMap::new(), &etag));
    }
}
