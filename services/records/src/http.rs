//! HTTP/JSON routes of records (paths as the edge forwards them: `/api` stripped).
//! JSON uses the original platform's camelCase names.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use service_common::identity::HasIdentityGate;
use service_common::json::{double_option, ApiJson};
use service_common::{ApiError, ApiResult, Caller, IdentityGate};

use crate::catalogue::{Catalogue, UpdateMode};
use crate::model::{format_price, Field, PriceInput, RawFields, Record};
use crate::store::{CountByKey, SearchHit, Stats};

#[derive(Clone)]
pub struct AppState {
    pub catalogue: Arc<Catalogue>,
    pub gate: Arc<IdentityGate>,
}

impl HasIdentityGate for AppState {
    fn identity_gate(&self) -> &IdentityGate {
        &self.gate
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/records", get(list).post(create))
        .route("/records/_ping", get(ping))
        .route("/records/search", get(search))
        .route("/records/stats", get(stats))
        .route(
            "/records/{id}",
            get(fetch).put(replace).patch(patch).delete(remove),
        )
        .with_state(state)
}

/// Request body of POST, PUT and PATCH. Every field distinguishes absent from `null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecordBody {
    #[serde(default, deserialize_with = "double_option")]
    artist: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    format: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    catalog_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    label: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    record_grade: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    sleeve_grade: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    has_insert: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    has_booklet: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    has_obi_strip: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    has_factory_sleeve: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    is_promo: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    notes: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    purchased_at: Option<Option<String>>,
    /// A decimal string ("24.99"); a JSON number is accepted too.
    #[serde(default, deserialize_with = "double_option")]
    price_paid: Option<Option<serde_json::Value>>,
}

impl From<RecordBody> for RawFields {
    fn from(body: RecordBody) -> Self {
        let price = body.price_paid.map(|p| {
            p.map(|value| match value {
                serde_json::Value::String(text) => PriceInput::Text(text),
                serde_json::Value::Number(number) => PriceInput::Number(number.to_string()),
                _ => PriceInput::Other,
            })
        });
        RawFields {
            artist: Field::from(body.artist),
            name: body.name.into(),
            format: body.format.into(),
            catalog_number: body.catalog_number.into(),
            label: body.label.into(),
            record_grade: body.record_grade.into(),
            sleeve_grade: body.sleeve_grade.into(),
            has_insert: body.has_insert.into(),
            has_booklet: body.has_booklet.into(),
            has_obi_strip: body.has_obi_strip.into(),
            has_factory_sleeve: body.has_factory_sleeve.into(),
            is_promo: body.is_promo.into(),
            notes: body.notes.into(),
            purchased_at: body.purchased_at.into(),
            price_paid: price.into(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordView {
    id: String,
    user_id: String,
    artist: String,
    name: String,
    format: String,
    catalog_number: Option<String>,
    label: Option<String>,
    record_grade: Option<&'static str>,
    sleeve_grade: Option<&'static str>,
    has_insert: bool,
    has_booklet: bool,
    has_obi_strip: bool,
    has_factory_sleeve: bool,
    is_promo: bool,
    notes: Option<String>,
    purchased_at: Option<String>,
    price_paid: Option<String>,
    created_at: String,
    updated_at: String,
}

fn timestamp(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl From<Record> for RecordView {
    fn from(r: Record) -> Self {
        let d = r.data;
        Self {
            id: r.id.to_string(),
            user_id: r.user_id.to_string(),
            artist: d.artist,
            name: d.name,
            format: d.format,
            catalog_number: d.catalog_number,
            label: d.label,
            record_grade: d.record_grade.map(|g| g.as_str()),
            sleeve_grade: d.sleeve_grade.map(|g| g.as_str()),
            has_insert: d.has_insert,
            has_booklet: d.has_booklet,
            has_obi_strip: d.has_obi_strip,
            has_factory_sleeve: d.has_factory_sleeve,
            is_promo: d.is_promo,
            notes: d.notes,
            purchased_at: d.purchased_at.map(|p| p.format("%Y-%m-%d").to_string()),
            price_paid: d.price_paid.as_ref().map(format_price),
            created_at: timestamp(&r.created_at),
            updated_at: timestamp(&r.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PageView {
    records: Vec<RecordView>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct HitView {
    record: RecordView,
    score: f64,
}

#[derive(Debug, Serialize)]
struct SearchView {
    query: String,
    hits: Vec<HitView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsView {
    total_records: i64,
    by_format: Vec<CountByKey>,
    by_record_grade: Vec<CountByKey>,
    by_sleeve_grade: Vec<CountByKey>,
    total_spent: String,
    average_spent: String,
}

impl From<Stats> for StatsView {
    fn from(s: Stats) -> Self {
        Self {
            total_records: s.total_records,
            by_format: s.by_format,
            by_record_grade: s.by_record_grade,
            by_sleeve_grade: s.by_sleeve_grade,
            total_spent: format_price(&s.total_spent),
            average_spent: format_price(&s.average_spent),
        }
    }
}

/// Query parameters arrive as text so a bad number is our 422 naming the parameter, not
/// axum's plain-text rejection.
#[derive(Debug, Default, Deserialize)]
struct Params {
    limit: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
}

fn params(
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Params> {
    query
        .map(|Query(p)| p)
        .map_err(|_| ApiError::bad_request("invalid_query", "the query string could not be parsed"))
}

fn parse_limit(limit: Option<&str>) -> ApiResult<Option<u32>> {
    limit
        .map(|text| {
            text.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "limit",
                        "invalid_limit",
                        "`limit` must be a positive integer",
                    )
                })
        })
        .transpose()
}

async fn ping(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "service": "records", "userId": caller.user_id}))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<PageView>> {
    let params = params(query)?;
    let limit = parse_limit(params.limit.as_deref())?;
    let page = state
        .catalogue
        .list(&caller, limit, params.cursor.as_deref())
        .await?;
    Ok(Json(PageView {
        records: page.records.into_iter().map(RecordView::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RecordBody>,
) -> ApiResult<Response> {
    let record = state.catalogue.create(&caller, body.into()).await?;
    Ok((StatusCode::CREATED, Json(RecordView::from(record))).into_response())
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordView>> {
    Ok(Json(state.catalogue.get(&caller, &id).await?.into()))
}

async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RecordBody>,
) -> ApiResult<Json<RecordView>> {
    update(&state, &caller, &id, body, UpdateMode::Replace).await
}

async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RecordBody>,
) -> ApiResult<Json<RecordView>> {
    update(&state, &caller, &id, body, UpdateMode::Merge).await
}

async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: RecordBody,
    mode: UpdateMode,
) -> ApiResult<Json<RecordView>> {
    let record = state
        .catalogue
        .update(caller, id, body.into(), mode)
        .await?;
    Ok(Json(record.into()))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalogue.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn search(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SearchView>> {
    let params = params(query)?;
    let limit = parse_limit(params.limit.as_deref())?;
    let q = params.q.unwrap_or_default();
    let hits = state.catalogue.search(&caller, &q, limit).await?;
    Ok(Json(SearchView {
        query: q,
        hits: hits.into_iter().map(hit_view).collect(),
    }))
}

fn hit_view(hit: SearchHit) -> HitView {
    HitView {
        record: hit.record.into_record().into(),
        score: hit.score,
    }
}

async fn stats(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<StatsView>> {
    Ok(Json(state.catalogue.stats(&caller).await?.into()))
}
