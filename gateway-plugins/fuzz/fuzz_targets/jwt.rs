//! The `Authorization` header and the bearer JWT in it (bearer.rs, verify.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_plugins::fuzz_support::fuzz_jwt(data);
});
