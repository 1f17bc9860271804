//! `[plugins]` / `[routes.plugins]` as JSON, validation and URL redaction (config.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_plugins::fuzz_support::fuzz_plugins_config(data);
});
