//! The Record Platform edge: one binary serving TLS 1.2/1.3 with HTTP/1.1 and HTTP/2
//! (Pingora) and HTTP/3 (tokio-quiche) on the same port. Every request, whatever its
//! protocol, goes through ONE `HttpProxy<EdgeProxy>` (`proxy`): one route table, one
//! policy chain and one upstream pool, all read from one `ArcSwap` snapshot (`state`).
//!
//! The library exists for the binary (`main.rs` calls [`server::run`] and
//! [`server::check`]) and for unit tests; nothing else is public.

mod access_log;
mod admin;
mod admin_guard;
mod cache;
mod certs;
mod compression;
mod config;
mod connections;
mod front;
#[doc(hidden)]
pub mod fuzz_support;
mod h3;
mod header_set;
mod health_check;
mod metric_series;
mod metrics;
mod outlier;
mod pipeline;
mod proxy;
mod reload;
mod routes;
pub mod server;
mod state;
mod tls;
mod trace;
pub mod upgrade;
mod upstream;
