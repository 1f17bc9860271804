//! SQL for the records schema. Every statement is scoped by `user_id`, so one user's id
//! never reaches another user's row; "not yours" and "does not exist" are the same `None`.
//!
//! Every mutation bumps the user's row in `records.cache_versions` in the same statement
//! (a data-modifying CTE, so both commit together); cached search/stats answers are keyed
//! by that version, so they can never outlive a committed change.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, Pool};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use service_common::ApiResult;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::cursor::Cursor;
use crate::model::{Grade, Record, RecordData, RecordPatch};

const COLUMNS: &str = "id, user_id, artist, name, format, catalog_number, label, record_grade, sleeve_grade, \
     has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at, price_paid, \
     created_at, updated_at";

/// The mutation statements. Each one changes the record and bumps its owner's cache version
/// in ONE statement: the bump is a data-modifying CTE fed by the change's `RETURNING`, so it
/// happens exactly when a row changed, commits with it, and costs no round trip of its own.
/// No mutation needs an explicit transaction (a PATCH assigns its columns in the UPDATE
/// itself). Measured with `perf/pgbench/crud.sql` (perf/README.md, "Records search at
/// 1M rows"): the CRUD mix went from 15 round trips to 5.
fn with_bump(change: &str, result: &str) -> String {
    format!(
        "WITH changed AS ({change}), \
              bumped AS (INSERT INTO records.cache_versions (user_id, version) \
                         SELECT user_id, 1 FROM changed \
                         ON CONFLICT (user_id) DO UPDATE SET version = records.cache_versions.version + 1) \
         SELECT {result} FROM changed"
    )
}

/// `$1` id, `$2` user, `$3`.. the writable fields in `writable_params` order.
static CREATE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    with_bump(
        &format!(
            "INSERT INTO records.records (id, user_id, artist, name, format, catalog_number, label, record_grade, \
             sleeve_grade, has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, purchased_at, \
             price_paid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             RETURNING {COLUMNS}"
        ),
        COLUMNS,
    )
});

/// `$1` id, `$2` user, `$3`.. the writable fields in `writable_params` order.
static REPLACE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    with_bump(
        &format!(
            "UPDATE records.records SET artist = $3, name = $4, format = $5, catalog_number = $6, label = $7, \
             record_grade = $8, sleeve_grade = $9, has_insert = $10, has_booklet = $11, has_obi_strip = $12, \
             has_factory_sleeve = $13, is_promo = $14, notes = $15, purchased_at = $16, price_paid = $17, \
             updated_at = clock_timestamp() WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ),
        COLUMNS,
    )
});

/// The columns a PATCH may name, in the order of `Store::patch`'s parameters.
const PATCH_COLUMNS: [&str; 15] = [
    "artist",
    "name",
    "format",
    "catalog_number",
    "label",
    "record_grade",
    "sleeve_grade",
    "has_insert",
    "has_booklet",
    "has_obi_strip",
    "has_factory_sleeve",
    "is_promo",
    "notes",
    "purchased_at",
    "price_paid",
];

/// `$1` id, `$2` user, then per column of `PATCH_COLUMNS` whether the patch names it and the
/// value it sets. One fixed text for every PATCH, so it is prepared once per connection.
static PATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let assignments: String = PATCH_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let (named, value) = (2 * i + 3, 2 * i + 4);
            format!("{column} = CASE WHEN ${named} THEN ${value} ELSE {column} END, ")
        })
        .collect();
    with_bump(
        &format!(
            "UPDATE records.records SET {assignments}updated_at = clock_timestamp() \
             WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ),
        COLUMNS,
    )
});

/// `$1` id, `$2` user.
static GET_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM records.records WHERE id = $1 AND user_id = $2")
});

/// `$1` user, `$2` how many.
static LIST_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM records.records WHERE user_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )
});

/// `$1` user, `$2`, `$3` the cursor (created_at, id), `$4` how many. The row comparison lets
/// the index (user_id, created_at DESC, id DESC) serve it as a range scan starting right
/// after the cursor.
static LIST_AFTER_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM records.records WHERE user_id = $1 AND (created_at, id) < ($2, $3) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )
});

/// `$1` id, `$2` user.
static DELETE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    with_bump(
        "DELETE FROM records.records WHERE id = $1 AND user_id = $2 RETURNING user_id",
        "user_id",
    )
});

/// `$1` user, `$2` the query as typed, `$3` limit.
///
/// The shape is what makes it fast (perf/README.md, "Records search at 1M rows"):
/// - `user_id = $1` first, so the planner prunes to the user's partition before planning;
/// - the folded query and pattern are constants of the plan (each call prepares the statement
///   and runs it once, so PostgreSQL plans it with the parameters' values), so the index
///   conditions are plain trigram look-ups;
/// - the cheap LIKE leads the OR: a row it accepts skips the word-similarity test, which
///   PostgreSQL evaluates twice per candidate (index recheck, then the filter it cannot drop
///   because `<%` is STABLE);
/// - ranking reads the stored folded fields instead of folding four fields per candidate.
///
/// The LIKE pattern escapes the query AFTER folding it: `unaccent` maps the full-width `％`,
/// `＿` and `＼` to `%`, `_` and `\`, so a pattern escaped first and folded second would turn
/// a typed `％` into a wildcard.
static SEARCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns}, \
           (CASE WHEN q.q IN (r.artist_folded, r.name_folded, r.label_folded, r.catalog_folded) THEN 2.0 \
                 WHEN r.search_text LIKE q.pattern THEN 1.0 \
                 ELSE 0.0 END \
            + GREATEST(word_similarity(q.q, r.artist_folded), word_similarity(q.q, r.name_folded), \
                       word_similarity(q.q, r.label_folded), word_similarity(q.q, r.catalog_folded)))::float8 AS score \
         FROM records.records r, \
              (SELECT f.q, '%' || replace(replace(replace(f.q, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%' AS pattern \
               FROM (SELECT records.fold($2::text) AS q) AS f) AS q \
         WHERE r.user_id = $1 AND (r.search_text LIKE q.pattern OR q.q <% r.search_text) \
         ORDER BY score DESC, r.created_at DESC, r.id DESC \
         LIMIT $3"
    )
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub record: StoredRecord,
    pub score: f64,
}

/// A record in the shape the cache stores (serde-friendly, independent of the API shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub artist: String,
    pub name: String,
    pub format: String,
    pub catalog_number: Option<String>,
    pub label: Option<String>,
    pub record_grade: Option<String>,
    pub sleeve_grade: Option<String>,
    pub has_insert: bool,
    pub has_booklet: bool,
    pub has_obi_strip: bool,
    pub has_factory_sleeve: bool,
    pub is_promo: bool,
    pub notes: Option<String>,
    pub purchased_at: Option<chrono::NaiveDate>,
    pub price_paid: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Record> for StoredRecord {
    fn from(r: &Record) -> Self {
        let d = &r.data;
        Self {
            id: r.id,
            user_id: r.user_id,
            artist: d.artist.clone(),
            name: d.name.clone(),
            format: d.format.clone(),
            catalog_number: d.catalog_number.clone(),
            label: d.label.clone(),
            record_grade: d.record_grade.map(|g| g.as_str().to_string()),
            sleeve_grade: d.sleeve_grade.map(|g| g.as_str().to_string()),
            has_insert: d.has_insert,
            has_booklet: d.has_booklet,
            has_obi_strip: d.has_obi_strip,
            has_factory_sleeve: d.has_factory_sleeve,
            is_promo: d.is_promo,
            notes: d.notes.clone(),
            purchased_at: d.purchased_at,
            price_paid: d.price_paid,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl StoredRecord {
    pub fn into_record(self) -> Record {
        let grade = |g: Option<String>| g.as_deref().and_then(Grade::parse);
        Record {
            id: self.id,
            user_id: self.user_id,
            data: RecordData {
                artist: self.artist,
                name: self.name,
                format: self.format,
                catalog_number: self.catalog_number,
                label: self.label,
                record_grade: grade(self.record_grade),
                sleeve_grade: grade(self.sleeve_grade),
                has_insert: self.has_insert,
                has_booklet: self.has_booklet,
                has_obi_strip: self.has_obi_strip,
                has_factory_sleeve: self.has_factory_sleeve,
                is_promo: self.is_promo,
                notes: self.notes,
                purchased_at: self.purchased_at,
                price_paid: self.price_paid,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountByKey {
    pub key: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub total_records: i64,
    pub by_format: Vec<CountByKey>,
    pub by_record_grade: Vec<CountByKey>,
    pub by_sleeve_grade: Vec<CountByKey>,
    pub total_spent: Decimal,
    pub average_spent: Decimal,
}

pub struct Page {
    pub records: Vec<Record>,
    pub next: Option<Cursor>,
}

fn grade_texts(data: &RecordData) -> [Option<&'static str>; 2] {
    [
        data.record_grade.map(Grade::as_str),
        data.sleeve_grade.map(Grade::as_str),
    ]
}

/// One statement parameter with its PostgreSQL type.
///
/// Every statement but the search is prepared once per connection (deadpool's statement
/// cache, `prepared` below). After its first use it costs Bind and Execute in one round
/// trip, with no parsing. PostgreSQL may then run it with a generic plan (the default
/// `plan_cache_mode`): for these look-ups by key that is cheaper than planning every call.
/// Measured with `perf/pgbench/crud.sql`, 8 clients (perf/README.md, "Records search at 1M
/// rows"): 773 mixes a second unprepared, 886 prepared; forcing a fresh plan per call
/// instead gave 697.
///
/// The search stays an unnamed statement (`query_typed`: Parse, Bind and Execute in one round
/// trip), which PostgreSQL always plans with the call's values. Its generic plan cannot prune
/// to the caller's partition and is slower (621 against 888 searches a second).
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A PATCH field that cannot be cleared: whether the patch names it, and its new value.
fn named<T>(field: &Option<T>) -> (bool, Option<&T>) {
    (field.is_some(), field.as_ref())
}

/// A PATCH field that `null` clears: whether the patch names it, and its new value (None
/// when named to clear it).
fn named_nullable<T>(field: &Option<Option<T>>) -> (bool, Option<&T>) {
    (field.is_some(), field.as_ref().and_then(Option::as_ref))
}

/// A statement from the connection's cache and the values to bind to it.
struct Prepared<'a> {
    statement: Statement,
    values: Vec<&'a (dyn ToSql + Sync)>,
}

/// Prepares `sql` with the parameters' types on this connection, once (later calls find it
/// in the connection's cache). Only for fixed statement texts: every distinct text stays
/// prepared for the connection's lifetime.
async fn prepared<'a>(
    client: &Client,
    sql: &str,
    params: &[Param<'a>],
) -> Result<Prepared<'a>, tokio_postgres::Error> {
    let types: Vec<Type> = params.iter().map(|(_, ty)| ty.clone()).collect();
    Ok(Prepared {
        statement: client.prepare_typed_cached(sql, &types).await?,
        values: params.iter().map(|(value, _)| *value).collect(),
    })
}

/// Parameters `$3..=$17` of the INSERT and the UPDATE: the writable columns in table order.
fn writable_params<'a>(
    data: &'a RecordData,
    grades: &'a [Option<&'static str>; 2],
) -> [Param<'a>; 15] {
    [
        (&data.artist, Type::TEXT),
        (&data.name, Type::TEXT),
        (&data.format, Type::TEXT),
        (&data.catalog_number, Type::TEXT),
        (&data.label, Type::TEXT),
        (&grades[0], Type::TEXT),
        (&grades[1], Type::TEXT),
        (&data.has_insert, Type::BOOL),
        (&data.has_booklet, Type::BOOL),
        (&data.has_obi_strip, Type::BOOL),
        (&data.has_factory_sleeve, Type::BOOL),
        (&data.is_promo, Type::BOOL),
        (&data.notes, Type::TEXT),
        (&data.purchased_at, Type::DATE),
        (&data.price_paid, Type::NUMERIC),
    ]
}

fn record(row: &Row) -> ApiResult<Record> {
    let grade = |idx: usize| -> ApiResult<Option<Grade>> {
        let text: Option<String> = row.try_get(idx)?;
        Ok(text.as_deref().and_then(Grade::parse))
    };
    Ok(Record {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        data: RecordData {
            artist: row.try_get(2)?,
            name: row.try_get(3)?,
            format: row.try_get(4)?,
            catalog_number: row.try_get(5)?,
            label: row.try_get(6)?,
            record_grade: grade(7)?,
            sleeve_grade: grade(8)?,
            has_insert: row.try_get(9)?,
            has_booklet: row.try_get(10)?,
            has_obi_strip: row.try_get(11)?,
            has_factory_sleeve: row.try_get(12)?,
            is_promo: row.try_get(13)?,
            notes: row.try_get(14)?,
            purchased_at: row.try_get(15)?,
            price_paid: row.try_get(16)?,
        },
        created_at: row.try_get(17)?,
        updated_at: row.try_get(18)?,
    })
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "create"))]
    pub async fn create(&self, user_id: Uuid, data: &RecordData) -> ApiResult<Record> {
        let client = self.pool.get().await?;
        let id = Uuid::now_v7();
        let grades = grade_texts(data);
        let mut params: Vec<Param> = vec![(&id, Type::UUID), (&user_id, Type::UUID)];
        params.extend(writable_params(data, &grades));
        let create = prepared(&client, &CREATE_SQL, &params).await?;
        let row = client.query_one(&create.statement, &create.values).await?;
        record(&row)
    }

    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "get"))]
    pub async fn get(&self, user_id: Uuid, id: Uuid) -> ApiResult<Option<Record>> {
        let client = self.pool.get().await?;
        let get = prepared(
            &client,
            &GET_SQL,
            &[(&id, Type::UUID), (&user_id, Type::UUID)],
        )
        .await?;
        client
            .query_opt(&get.statement, &get.values)
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// Newest first; `after` continues from a previous page.
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "list"))]
    pub async fn list(&self, user_id: Uuid, limit: u32, after: Option<Cursor>) -> ApiResult<Page> {
        let client = self.pool.get().await?;
        let fetch = i64::from(limit) + 1;
        let rows = match after {
            None => {
                let first = prepared(
                    &client,
                    &LIST_SQL,
                    &[(&user_id, Type::UUID), (&fetch, Type::INT8)],
                )
                .await?;
                client.query(&first.statement, &first.values).await?
            }
            Some(cursor) => {
                let params: [Param; 4] = [
                    (&user_id, Type::UUID),
                    (&cursor.created_at, Type::TIMESTAMPTZ),
                    (&cursor.id, Type::UUID),
                    (&fetch, Type::INT8),
                ];
                let next = prepared(&client, &LIST_AFTER_SQL, &params).await?;
                client.query(&next.statement, &next.values).await?
            }
        };
        let mut records = rows.iter().map(record).collect::<ApiResult<Vec<_>>>()?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| Cursor {
                created_at: r.created_at,
                id: r.id,
            })
        } else {
            None
        };
        Ok(Page { records, next })
    }

    /// Replaces all writable fields of the record if it is the user's (PUT): one statement,
    /// since nothing of the current row is needed.
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "replace"))]
    pub async fn replace(
        &self,
        user_id: Uuid,
        id: Uuid,
        data: &RecordData,
    ) -> ApiResult<Option<Record>> {
        let client = self.pool.get().await?;
        let grades = grade_texts(data);
        let mut params: Vec<Param> = vec![(&id, Type::UUID), (&user_id, Type::UUID)];
        params.extend(writable_params(data, &grades));
        let replace = prepared(&client, &REPLACE_SQL, &params).await?;
        client
            .query_opt(&replace.statement, &replace.values)
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// Changes the fields `patch` names if the record is the user's (PATCH), in one statement:
    /// each column is assigned in the UPDATE itself, the new value when the patch names it and
    /// its current one otherwise (`PATCH_SQL`), so two concurrent PATCHes of different fields
    /// both land (the row lock orders them) with no read before the write.
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "patch"))]
    pub async fn patch(
        &self,
        user_id: Uuid,
        id: Uuid,
        patch: &RecordPatch,
    ) -> ApiResult<Option<Record>> {
        // Per column: whether the patch names it, and the value it sets (NULL when unnamed,
        // or when it clears an optional field).
        let artist = named(&patch.artist);
        let name = named(&patch.name);
        let format = named(&patch.format);
        let catalog_number = named_nullable(&patch.catalog_number);
        let label = named_nullable(&patch.label);
        let grade =
            |grade: Option<Option<Grade>>| (grade.is_some(), grade.flatten().map(Grade::as_str));
        let record_grade = grade(patch.record_grade);
        let sleeve_grade = grade(patch.sleeve_grade);
        let has_insert = named(&patch.has_insert);
        let has_booklet = named(&patch.has_booklet);
        let has_obi_strip = named(&patch.has_obi_strip);
        let has_factory_sleeve = named(&patch.has_factory_sleeve);
        let is_promo = named(&patch.is_promo);
        let notes = named_nullable(&patch.notes);
        let purchased_at = named_nullable(&patch.purchased_at);
        let price_paid = named_nullable(&patch.price_paid);
        macro_rules! pairs {
            ($($column:ident: $ty:ident),* $(,)?) => {{
                // The parameters follow PATCH_SQL's columns, one list for both.
                debug_assert_eq!([$(stringify!($column)),*], PATCH_COLUMNS);
                [
                    (&id as &(dyn ToSql + Sync), Type::UUID),
                    (&user_id, Type::UUID),
                    $((&$column.0, Type::BOOL), (&$column.1, Type::$ty),)*
                ]
            }};
        }
        let params: [Param; 32] = pairs!(
            artist: TEXT,
            name: TEXT,
            format: TEXT,
            catalog_number: TEXT,
            label: TEXT,
            record_grade: TEXT,
            sleeve_grade: TEXT,
            has_insert: BOOL,
            has_booklet: BOOL,
            has_obi_strip: BOOL,
            has_factory_sleeve: BOOL,
            is_promo: BOOL,
            notes: TEXT,
            purchased_at: DATE,
            price_paid: NUMERIC,
        );
        let client = self.pool.get().await?;
        let update = prepared(&client, &PATCH_SQL, &params).await?;
        client
            .query_opt(&update.statement, &update.values)
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "delete"))]
    pub async fn delete(&self, user_id: Uuid, id: Uuid) -> ApiResult<bool> {
        let client = self.pool.get().await?;
        let delete = prepared(
            &client,
            &DELETE_SQL,
            &[(&id, Type::UUID), (&user_id, Type::UUID)],
        )
        .await?;
        let deleted = client.query(&delete.statement, &delete.values).await?;
        Ok(!deleted.is_empty())
    }

    /// The user's cache version (0 before their first mutation).
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "cache_version"))]
    pub async fn cache_version(&self, user_id: Uuid) -> ApiResult<i64> {
        let client = self.pool.get().await?;
        let version = prepared(
            &client,
            "SELECT version FROM records.cache_versions WHERE user_id = $1",
            &[(&user_id, Type::UUID)],
        )
        .await?;
        let row = client
            .query_opt(&version.statement, &version.values)
            .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }

    /// Trigram search over artist, name, label and catalog number, folded (case and accents
    /// ignored). Candidates come from the caller's partition of the GIN index on
    /// (user_id, search_text); ranking puts an exact field match first, then a substring
    /// match, then fuzzy matches, each tier ordered by the best per-field word similarity.
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "search"))]
    pub async fn search(
        &self,
        user_id: Uuid,
        query: &str,
        limit: u32,
    ) -> ApiResult<Vec<SearchHit>> {
        let client = self.pool.get().await?;
        // Unnamed, not prepared: planned with this call's values every time (see SEARCH_SQL).
        let rows = client
            .query_typed(
                SEARCH_SQL.as_str(),
                &[
                    (&user_id, Type::UUID),
                    (&query, Type::TEXT),
                    (&i64::from(limit), Type::INT8),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SearchHit {
                    record: StoredRecord::from(&record(row)?),
                    score: row.try_get(19)?,
                })
            })
            .collect()
    }

    /// Counts by format and grades, total and average spent, in one pass (GROUPING SETS).
    #[tracing::instrument(name = "postgres", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation = "stats"))]
    pub async fn stats(&self, user_id: Uuid) -> ApiResult<Stats> {
        let client = self.pool.get().await?;
        let grouped = prepared(
            &client,
            "SELECT GROUPING(format, record_grade, sleeve_grade) AS set_id, format, record_grade, sleeve_grade, \
                    count(*) AS n, coalesce(sum(price_paid), 0) AS total, \
                    coalesce(round(avg(price_paid), 2), 0) AS average \
             FROM records.records WHERE user_id = $1 \
             GROUP BY GROUPING SETS ((format), (record_grade), (sleeve_grade), ()) \
             ORDER BY n DESC, format, record_grade, sleeve_grade",
            &[(&user_id, Type::UUID)],
        )
        .await?;
        let rows = client.query(&grouped.statement, &grouped.values).await?;
        let mut stats = Stats {
            total_records: 0,
            by_format: Vec::new(),
            by_record_grade: Vec::new(),
            by_sleeve_grade: Vec::new(),
            total_spent: Decimal::ZERO,
            average_spent: Decimal::ZERO,
        };
        let key = |value: Option<String>| value.unwrap_or_else(|| "ungraded".to_string());
        for row in &rows {
            // GROUPING bits (format, record_grade, sleeve_grade): 1 = aggregated away.
            let set_id: i32 = row.try_get("set_id")?;
            let count: i64 = row.try_get("n")?;
            match set_id {
                0b011 => stats.by_format.push(CountByKey {
                    key: key(row.try_get("format")?),
                    count,
                }),
                0b101 => stats.by_record_grade.push(CountByKey {
                    key: key(row.try_get("record_grade")?),
                    count,
                }),
                0b110 => stats.by_sleeve_grade.push(CountByKey {
                    key: key(row.try_get("sleeve_grade")?),
                    count,
                }),
                0b111 => {
                    stats.total_records = count;
                    stats.total_spent = row.try_get("total")?;
                    stats.average_spent = row.try_get("average")?;
                }
                _ => {}
            }
        }
        Ok(stats)
    }
}
