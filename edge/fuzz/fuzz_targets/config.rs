//! The text of an `edge.toml` (config/load.rs: TOML -> EdgeConfig, problems with file, line, key).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::fuzz_config(data);
});
