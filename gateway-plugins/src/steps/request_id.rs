//! Step 1: the request id and the trace context (first, so even a rejection carries an id).

use http::request::Parts;

use super::{ChainState, StepOutcome};

pub(crate) struct RequestIdStep;

impl RequestIdStep {
    pub(crate) fn apply(&self, parts: &Parts, state: &mut ChainState) -> StepOutcome {
        crate::request_id::apply(&parts.headers, &mut state.outcome);
        StepOutcome::Continue
    }
}
