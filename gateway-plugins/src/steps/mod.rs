//! The steps a [`Chain`](crate::Chain) is made of: one value per step, in chain order.
//!
//! A step looks at the request and the [`ChainState`] left by the steps before it, and
//! either lets the request go on ([`StepOutcome::Continue`]) or answers it now
//! ([`StepOutcome::Respond`]). Steps are an enum rather than `dyn` trait objects so that
//! the per-request `apply` is a plain `match` with no boxed future per step.
//!
//! Each step lives in its own module with its tests; the order and its reasons are in
//! [`crate::chain`].

mod cors;
mod identity;
mod jwt;
mod rate_limit;
mod request_id;
mod revocation;

#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use http::request::Parts;

use crate::decision::{ChainOutcome, PolicyResponse};
use crate::jwt::VerifiedToken;
use crate::rate_limit::LimitVerdict;
use crate::RequestContext;

pub(crate) use cors::CorsStep;
pub(crate) use identity::IdentityStep;
pub(crate) use jwt::JwtStep;
pub(crate) use rate_limit::RateLimitStep;
pub(crate) use request_id::RequestIdStep;
pub(crate) use revocation::RevocationStep;

/// The end of a step: go on, or answer now.
#[derive(Debug)]
pub(crate) enum StepOutcome {
    Continue,
    Respond(PolicyResponse),
}

/// What a request has gathered so far on its way through the chain.
pub(crate) struct ChainState {
    /// Response headers, upstream edits and the caller, as handed to the edge.
    pub(crate) outcome: ChainOutcome,
    /// The bearer token the JWT step accepted (`None`: anonymous so far).
    pub(crate) token: Option<Arc<VerifiedToken>>,
    /// The tightest rate-limit verdict so far, reported in the `RateLimit-*` headers.
    pub(crate) reported: Option<LimitVerdict>,
}

impl ChainState {
    pub(crate) fn new() -> Self {
        Self {
            outcome: ChainOutcome::proceed(),
            token: None,
            reported: None,
        }
    }
}

/// One step of a chain.
pub(crate) enum Step {
    RequestId(RequestIdStep),
    Cors(CorsStep),
    RateLimit(RateLimitStep),
    Jwt(JwtStep),
    Revocation(RevocationStep),
    Identity(IdentityStep),
}

impl Step {
    pub(crate) async fn apply(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
        state: &mut ChainState,
    ) -> StepOutcome {
        match self {
            Step::RequestId(step) => step.apply(parts, state),
            Step::Cors(step) => step.apply(parts, state),
            Step::RateLimit(step) => step.apply(ctx, state).await,
            Step::Jwt(step) => step.apply(parts, ctx, state).await,
            Step::Revocation(step) => step.apply(ctx, state).await,
            Step::Identity(step) => step.apply(parts, ctx, state),
        }
    }

    /// A short name, for tests and debugging.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Step::RequestId(_) => "request_id",
            Step::Cors(_) => "cors",
            Step::RateLimit(step) if step.keyed_by_identity() => "identity_rate_limits",
            Step::RateLimit(_) => "ip_rate_limits",
            Step::Jwt(_) => "jwt",
            Step::Revocation(_) => "revocation",
            Step::Identity(_) => "identity",
        }
    }
}
