//! Request policy for the Record Platform edge, with no Pingora types.
//!
//! The edge (h1/h2 through Pingora, h3 through tokio-quiche) turns each request into
//! `http::request::Parts` plus a [`RequestContext`], asks the route's [`Chain`] for a
//! [`ChainOutcome`], and then either answers with the outcome's [`PolicyResponse`] or
//! forwards the request upstream with the outcome's [`HeaderEdits`] applied.
//!
//! ```text
//! PolicyRuntime::new(&PluginsConfig, config_dir, &Registry).await -> Arc<PolicyRuntime>
//!   │            once per process: metrics, rate-limit buckets, the first committed PolicySet
//!   │
//!   ├─ runtime.current() -> Arc<PolicySet>                       the committed set
//!   ├─ runtime.prepare(&PluginsConfig).await -> Arc<PolicySet>   per reload; changes nothing
//!   │
//!   ├─ runtime.build_chain(&set, route_id, &RoutePolicy) -> Chain
//!   │    │       once per route per config version, against a prepared or committed set
//!   │    └─ chain.evaluate(&parts, &ctx).await -> ChainOutcome
//!   │                   once per request, any protocol; the chain holds its set
//!   │
//!   └─ runtime.commit(&set)      after the rest of the reload validated: health(),
//!                                revoke(), refresh_jwks(), client_ip_resolver() follow it
//! ```
//!
//! A reload: `prepare` the new `[plugins]`, build every route's chain against the prepared
//! set, validate everything else, swap the snapshot holding the chains, then `commit`. A
//! rejected reload just drops the prepared set and its chains: nothing running changed,
//! and the background tasks only that set started stop with it.
//!
//! Stateful parts (JWKS keys and the verified-token cache, the revocation cache and its
//! Redis subscription, the Redis link) live in [`PolicySet`]s and are shared by a new set
//! whenever their config did not change; rate-limit buckets live in the
//! [`PolicyRuntime`] and survive every reload that keeps the rule. A [`Chain`] is an
//! immutable list of steps (see `steps`) that the edge swaps with the rest of its config.

mod chain;
pub mod client_ip;
mod clock;
pub mod config;
pub mod cors;
pub mod decision;
pub mod early_data;
mod error;
pub mod error_shape;
#[doc(hidden)]
pub mod fuzz_support;
pub mod identity;
pub mod jwt;
pub mod metrics;
mod policy_set;
pub mod rate_limit;
mod redis_link;
pub mod request_id;
pub mod revocation;
mod runtime;
mod steps;

// Lets the shared test helpers (tests/support, also compiled into the unit tests) name
// this crate the same way from inside and outside.
#[cfg(test)]
extern crate self as gateway_plugins;
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
pub(crate) mod test_support;

pub use chain::Chain;
pub use client_ip::ClientIpResolver;
pub use config::{redact_url, PluginsConfig, RoutePolicy};
pub use decision::{ChainOutcome, HeaderEdits, PolicyResponse};
pub use early_data::{EarlyData, EarlyDataOutcome};
pub use error::RuntimeError;
pub use error_shape::{ErrorKind, GrpcCode};
pub use identity::Identity;
pub use metrics::PolicyMetrics;
pub use policy_set::{PolicyHealth, PolicySet};
pub use runtime::PolicyRuntime;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The downstream protocol a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
    Http3,
}

impl Protocol {
    /// The label used in metrics and access logs: `h1`, `h2`, `h3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "h1",
            Protocol::Http2 => "h2",
            Protocol::Http3 => "h3",
        }
    }
}

/// What the TLS (or QUIC) handshake established, if the request came over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2`, `TLSv1.3`.
    pub version: Option<&'static str>,
    /// Shared with the connection: every request on it reads the same strings.
    pub sni: Option<Arc<str>>,
    pub alpn: Option<Arc<str>>,
}

/// Everything about a request that is not in its `http::request::Parts`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The transport peer (TCP or UDP) as the edge saw it.
    pub peer_addr: Option<SocketAddr>,
    /// The client address after [`client_ip::ClientIpResolver`] (trusted proxies applied).
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub tls: Option<TlsInfo>,
    /// The id of the route that matched (from the edge config).
    pub route_id: Arc<str>,
    /// True for `content-type: application/grpc*`: errors must be gRPC-shaped.
    pub grpc: bool,
    /// Where the request goes, as the service will see it: what the identity assertion
    /// is bound to.
    pub upstream: UpstreamTarget,
}

/// The service a request is forwarded to and the request target it will receive there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// The service's name (`identity_audience` of the route's cluster).
    pub audience: Arc<str>,
    /// Path and query after the route's rewrite, byte for byte what the edge sends.
    pub path_and_query: String,
}
