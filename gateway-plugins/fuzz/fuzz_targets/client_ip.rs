//! Trusted networks, peer and `X-Forwarded-For` lines (client_ip.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_plugins::fuzz_support::fuzz_client_ip(data);
});
