//! Step 2: CORS. A preflight carries no credentials, so it is answered here.

use http::request::Parts;

use super::{ChainState, StepOutcome};
use crate::config::CorsPolicy;
use crate::cors::{CorsAction, CorsPlugin};
use crate::error::RuntimeError;

pub(crate) struct CorsStep {
    cors: CorsPlugin,
}

impl CorsStep {
    pub(crate) fn new(policy: &CorsPolicy) -> Result<Self, RuntimeError> {
        let cors = CorsPlugin::new(policy).map_err(|e| RuntimeError::config(e.path, e.message))?;
        Ok(Self { cors })
    }

    pub(crate) fn apply(&self, parts: &Parts, state: &mut ChainState) -> StepOutcome {
        match self.cors.evaluate(&parts.method, &parts.headers) {
            Some(CorsAction::Preflight(response)) => return StepOutcome::Respond(response),
            Some(CorsAction::Actual(headers)) => state.outcome.response_headers.extend(headers),
            None => {}
        }
        StepOutcome::Continue
    }
}
