//! A JWKS document (jwt/keys.rs parse_jwks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_plugins::fuzz_support::fuzz_jwks(data);
});
