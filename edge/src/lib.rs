//! The Record Platform edge: one binary serving TLS 1.2/1.3 with HTTP/1.1 and HTTP/2
//! (Pingora) and HTTP/3 (tokio-quiche) on the same port, routing to the auth and records
//! services through one route table, one policy chain and one set of upstream clusters.

pub mod access_log;
pub mod admin;
pub mod certs;
pub mod config;
pub mod h3;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod trace;
pub mod upstream;
