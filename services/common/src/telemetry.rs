//! JSON logs on stdout, one object per line, with the fields of the enclosing request span
//! (notably `request_id`) flattened in. `RUST_LOG` filters as usual (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init_json_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // try_init: a second call (tests, or a library that already set one) must not panic.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .try_init();
}
