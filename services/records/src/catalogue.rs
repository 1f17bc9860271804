//! The records operations. HTTP handlers and gRPC methods both call these and only translate
//! their inputs and outputs.

use std::sync::Arc;

use service_common::metrics::Metrics;
use service_common::{ApiError, ApiResult, Caller};
use uuid::Uuid;

use crate::cache::{normalize_query, search_key, stats_key, CacheSettings, ResultCache};
use crate::cursor::Cursor;
use crate::model::{validate_full, validate_patch, RawFields, Record};
use crate::store::{Page, SearchHit, Stats, Store};

pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 500;
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const MAX_SEARCH_LIMIT: u32 = 100;
const MAX_QUERY_CHARS: usize = 200;

/// How an update treats fields the client left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// PUT: the body is the whole record; omitted optional fields are reset.
    Replace,
    /// PATCH (and gRPC Update): only the given fields change.
    Merge,
}

pub struct Catalogue {
    store: Store,
    search_cache: ResultCache<Vec<SearchHit>>,
    stats_cache: ResultCache<Stats>,
}

impl Catalogue {
    pub fn new(store: Store, cache: &CacheSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            search_cache: ResultCache::new("search", cache, Arc::clone(&metrics)),
            stats_cache: ResultCache::new("stats", cache, metrics),
        }
    }

    pub async fn create(&self, caller: &Caller, raw: RawFields) -> ApiResult<Record> {
        let data = validate_full(raw)?;
        self.store.create(caller.user_id, &data).await
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> ApiResult<Record> {
        let id = parse_id(id)?;
        self.store
            .get(caller.user_id, id)
            .await?
            .ok_or_else(not_found)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> ApiResult<Page> {
        let limit = bounded_limit(limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(Cursor::decode)
            .transpose()?;
        self.store.list(caller.user_id, limit, after).await
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        raw: RawFields,
        mode: UpdateMode,
    ) -> ApiResult<Record> {
        let id = parse_id(id)?;
        let updated = match mode {
            UpdateMode::Replace => {
                let data = validate_full(raw)?;
                self.store.replace(caller.user_id, id, &data).await?
            }
            UpdateMode::Merge => {
                let patch = validate_patch(raw)?;
                self.store.patch(caller.user_id, id, &patch).await?
            }
        };
        updated.ok_or_else(not_found)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> ApiResult<()> {
        let id = parse_id(id)?;
        if self.store.delete(caller.user_id, id).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    pub async fn search(
        &self,
        caller: &Caller,
        query: &str,
        limit: Option<u32>,
    ) -> ApiResult<Vec<SearchHit>> {
        let query = validate_query(query)?;
        let limit = bounded_limit(limit, DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT)?;
        let user = caller.user_id;
        let version = self.store.cache_version(user).await?;
        let store = self.store.clone();
        let key = search_key(user, version, &query);
        // One entry per query whatever the limit: the largest page, of which each request
        // takes its prefix (the ranking is a total order, so the prefix is what LIMIT gives).
        let mut hits = self
            .search_cache
            .get_or_compute(key, move || async move {
                store.search(user, &query, MAX_SEARCH_LIMIT).await
            })
            .await?;
        hits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(hits)
    }

    pub async fn stats(&self, caller: &Caller) -> ApiResult<Stats> {
        let user = caller.user_id;
        let version = self.store.cache_version(user).await?;
        let store = self.store.clone();
        self.stats_cache
            .get_or_compute(stats_key(user, version), move || async move {
                store.stats(user).await
            })
            .await
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("record_not_found", "no such record")
}

/// A malformed id cannot name anybody's record; it is the client's mistake (400), and it
/// says nothing about which ids exist.
pub fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(id.trim()).map_err(|_| {
        ApiError::bad_request("invalid_id", "the record id must be a UUID").with_field("id")
    })
}

/// `None` (or 0 from gRPC, where unset is 0) means the default.
pub fn bounded_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    match limit {
        None | Some(0) => Ok(default),
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            "invalid_limit",
            format!("`limit` must be between 1 and {max}"),
        )),
    }
}

/// The normalized query, or a field error for an empty, oversized or control-laden one.
pub fn validate_query(query: &str) -> ApiResult<String> {
    let normalized = normalize_query(query);
    if normalized.is_empty() {
        return Err(ApiError::invalid(
            "q",
            "missing_field",
            "`q` (the search text) is required",
        ));
    }
    if normalized.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(
            "q",
            "too_long",
            format!("`q` must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    if normalized.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "q",
            "invalid_characters",
            "`q` contains control characters",
        ));
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(bounded_limit(None, 100, 500).expect("default"), 100);
        assert_eq!(bounded_limit(Some(0), 100, 500).expect("grpc unset"), 100);
        assert_eq!(bounded_limit(Some(500), 100, 500).expect("max"), 500);
        let err = bounded_limit(Some(501), 100, 500).expect_err("too big");
        assert_eq!(err.field.as_deref(), Some("limit"));
    }

    #[test]
    fn queries_are_normalized_and_checked() {
        assert_eq!(
            validate_query("  Aphex   Twin ").expect("valid"),
            "aphex twin"
        );
        assert_eq!(
            validate_query(" \t ").expect_err("empty").field.as_deref(),
            Some("q")
        );
        assert_eq!(
            validate_query(&"x".repeat(201)).expect_err("long").code,
            "too_long"
        );
        assert_eq!(
            validate_query("a\u{0}b").expect_err("nul").code,
            "invalid_characters"
        );
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(parse_id(&Uuid::new_v4().to_string()).is_ok());
        let err = parse_id("42").expect_err("not a uuid");
        assert_eq!(err.http_status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(err.grpc_code(), tonic::Code::InvalidArgument);
    }
}
