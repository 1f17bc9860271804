//! Plumbing shared by the `auth` and `records` services.
//!
//! Each module is one concern with a narrow interface; the services assemble them in their
//! `main.rs` top to bottom:
//!
//! - [`config`]: the flags/env both services take (docs/contracts.md, "Service command lines").
//! - [`db`]: the PostgreSQL pool and the migration runner (advisory-locked).
//! - [`redis`]: a Redis handle that never blocks a request for long and reconnects by itself.
//! - [`identity`]: the caller as the edge asserted it, for axum handlers and tonic methods.
//! - [`error`]: the one error type, rendered as `{"error":{...}}` or as a gRPC `Status`.
//! - [`json`]: a JSON body extractor whose every rejection is an [`error::ApiError`].
//! - [`metrics`], [`telemetry`]: Prometheus registry, request observation, JSON logs.
//! - [`server`]: `/healthz`, `/readyz`, `/metrics`, gRPC health + reflection, graceful shutdown.

pub mod config;
pub mod db;
pub mod error;
pub mod identity;
pub mod json;
pub mod metrics;
pub mod redis;
pub mod server;
pub mod telemetry;

pub use error::{ApiError, ApiResult};
pub use identity::{Caller, IdentityGate};
