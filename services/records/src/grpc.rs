//! `records.RecordsService` over gRPC: the same operations as HTTP, translated.
//!
//! proto3 has no `null` for strings, so in `RecordFields` an empty string (or
//! GRADE_UNSPECIFIED) clears an optional field; an unset field is left alone.

use std::sync::Arc;

use record_proto::records as pb;
use record_proto::records::records_service_server::RecordsService;
use service_common::metrics::Metrics;
use service_common::{ApiError, ApiResult, Caller, IdentityGate};
use tonic::{Request, Response, Status};

use crate::catalogue::{Catalogue, UpdateMode};
use crate::model::{format_price, Field, Grade, PriceInput, RawFields, Record};
use crate::store::{CountByKey, Stats};

pub struct RecordsGrpc {
    pub catalogue: Arc<Catalogue>,
    pub gate: Arc<IdentityGate>,
    pub metrics: Arc<Metrics>,
}

impl RecordsGrpc {
    fn caller<T>(&self, request: &Request<T>) -> ApiResult<Caller> {
        self.gate.from_grpc(request)
    }
}

fn text(value: Option<String>) -> Field<String> {
    match value {
        None => Field::Absent,
        Some(v) => Field::Value(v),
    }
}

fn grade(value: Option<i32>, field: &str) -> ApiResult<Field<String>> {
    match value {
        None => Ok(Field::Absent),
        Some(number) => match Grade::from_proto(number) {
            Ok(None) => Ok(Field::Null),
            Ok(Some(grade)) => Ok(Field::Value(grade.as_str().to_string())),
            Err(()) => Err(ApiError::invalid(
                field,
                "invalid_grade",
                format!("`{field}` is not a known Grade"),
            )),
        },
    }
}

fn flag(value: Option<bool>) -> Field<bool> {
    value.map_or(Field::Absent, Field::Value)
}

fn raw_fields(fields: Option<pb::RecordFields>) -> ApiResult<RawFields> {
    let f = fields.unwrap_or_default();
    Ok(RawFields {
        artist: text(f.artist),
        name: text(f.name),
        format: text(f.format),
        catalog_number: text(f.catalog_number),
        label: text(f.label),
        record_grade: grade(f.record_grade, "recordGrade")?,
        sleeve_grade: grade(f.sleeve_grade, "sleeveGrade")?,
        has_insert: flag(f.has_insert),
        has_booklet: flag(f.has_booklet),
        has_obi_strip: flag(f.has_obi_strip),
        has_factory_sleeve: flag(f.has_factory_sleeve),
        is_promo: flag(f.is_promo),
        notes: text(f.notes),
        purchased_at: text(f.purchased_at),
        price_paid: f
            .price_paid
            .map_or(Field::Absent, |p| Field::Value(PriceInput::Text(p))),
    })
}

fn record(r: Record) -> pb::Record {
    let d = r.data;
    let stamp =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    pb::Record {
        id: r.id.to_string(),
        user_id: r.user_id.to_string(),
        artist: d.artist,
        name: d.name,
        format: d.format,
        catalog_number: d.catalog_number,
        label: d.label,
        record_grade: d.record_grade.map_or(0, Grade::to_proto),
        sleeve_grade: d.sleeve_grade.map_or(0, Grade::to_proto),
        has_insert: d.has_insert,
        has_booklet: d.has_booklet,
        has_obi_strip: d.has_obi_strip,
        has_factory_sleeve: d.has_factory_sleeve,
        is_promo: d.is_promo,
        notes: d.notes,
        purchased_at: d.purchased_at.map(|p| p.format("%Y-%m-%d").to_string()),
        price_paid: d.price_paid.as_ref().map(format_price),
        created_at: stamp(r.created_at),
        updated_at: stamp(r.updated_at),
    }
}

fn counts(list: Vec<CountByKey>) -> Vec<pb::CountByKey> {
    list.into_iter()
        .map(|c| pb::CountByKey {
            key: c.key,
            count: c.count,
        })
        .collect()
}

fn stats(s: Stats) -> pb::StatsResponse {
    pb::StatsResponse {
        total_records: s.total_records,
        by_format: counts(s.by_format),
        by_record_grade: counts(s.by_record_grade),
        by_sleeve_grade: counts(s.by_sleeve_grade),
        total_spent: format_price(&s.total_spent),
        average_spent: format_price(&s.average_spent),
    }
}

#[tonic::async_trait]
impl RecordsService for RecordsGrpc {
    async fn create(
        &self,
        request: Request<pb::CreateRecordRequest>,
    ) -> Result<Response<pb::Record>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/Create", async {
                let caller = self.caller(&request)?;
                let raw = raw_fields(request.into_inner().fields)?;
                Ok(Response::new(record(
                    self.catalogue.create(&caller, raw).await?,
                )))
            })
            .await
    }

    async fn get(
        &self,
        request: Request<pb::GetRecordRequest>,
    ) -> Result<Response<pb::Record>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/Get", async {
                let caller = self.caller(&request)?;
                let id = request.into_inner().id;
                Ok(Response::new(record(
                    self.catalogue.get(&caller, &id).await?,
                )))
            })
            .await
    }

    async fn list(
        &self,
        request: Request<pb::ListRecordsRequest>,
    ) -> Result<Response<pb::ListRecordsResponse>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/List", async {
                let caller = self.caller(&request)?;
                let body = request.into_inner();
                let page = self
                    .catalogue
                    .list(&caller, Some(body.limit), Some(&body.cursor))
                    .await?;
                Ok(Response::new(pb::ListRecordsResponse {
                    records: page.records.into_iter().map(record).collect(),
                    next_cursor: page.next.map(|c| c.encode()).unwrap_or_default(),
                }))
            })
            .await
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRecordRequest>,
    ) -> Result<Response<pb::Record>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/Update", async {
                let caller = self.caller(&request)?;
                let body = request.into_inner();
                let raw = raw_fields(body.fields)?;
                let updated = self
                    .catalogue
                    .update(&caller, &body.id, raw, UpdateMode::Merge)
                    .await?;
                Ok(Response::new(record(updated)))
            })
            .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRecordRequest>,
    ) -> Result<Response<pb::DeleteRecordResponse>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/Delete", async {
                let caller = self.caller(&request)?;
                self.catalogue
                    .delete(&caller, &request.into_inner().id)
                    .await?;
                Ok(Response::new(pb::DeleteRecordResponse {}))
            })
            .await
    }

    async fn search(
        &self,
        request: Request<pb::SearchRecordsRequest>,
    ) -> Result<Response<pb::SearchRecordsResponse>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/Search", async {
                let caller = self.caller(&request)?;
                let body = request.into_inner();
                let hits = self
                    .catalogue
                    .search(&caller, &body.q, Some(body.limit))
                    .await?;
                Ok(Response::new(pb::SearchRecordsResponse {
                    hits: hits
                        .into_iter()
                        .map(|hit| pb::SearchHit {
                            record: Some(record(hit.record.into_record())),
                            score: hit.score,
                        })
                        .collect(),
                }))
            })
            .await
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        self.metrics
            .track_grpc("/records.RecordsService/Stats", async {
                let caller = self.caller(&request)?;
                Ok(Response::new(stats(self.catalogue.stats(&caller).await?)))
            })
            .await
    }
}
