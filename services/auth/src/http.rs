//! HTTP/JSON routes of auth (paths as the edge forwards them, prefix stripped).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use service_common::identity::HasIdentityGate;
use service_common::json::ApiJson;
use service_common::{ApiResult, Caller, IdentityGate};

use crate::accounts::{Accounts, User};

#[derive(Clone)]
pub struct AppState {
    pub accounts: Arc<Accounts>,
    pub gate: Arc<IdentityGate>,
}

impl HasIdentityGate for AppState {
    fn identity_gate(&self) -> &IdentityGate {
        &self.gate
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    id: String,
    email: String,
    created_at: String,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email,
            created_at: user
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// The original platform's login answer: `{token, expires_in}` (+ `token_type`).
#[derive(Debug, Serialize)]
struct TokenBody {
    token: String,
    expires_in: i64,
    token_type: &'static str,
}

async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Response> {
    let user = state.accounts.register(&body.email, &body.password).await?;
    Ok((StatusCode::CREATED, Json(UserBody::from(user))).into_response())
}

async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<TokenBody>> {
    let issued = state.accounts.login(&body.email, &body.password).await?;
    Ok(Json(TokenBody {
        token: issued.token,
        expires_in: issued.expires_in,
        token_type: "Bearer",
    }))
}

async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<UserBody>> {
    Ok(Json(state.accounts.me(&caller).await?.into()))
}

async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    state.accounts.logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn jwks(State(state): State<AppState>) -> Response {
    (
        // Short enough that a rotation reaches every edge within a minute.
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.accounts.jwks()),
    )
        .into_response()
}
