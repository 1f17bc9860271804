//! Route tables and requests against them (routes.rs: host patterns, prefixes, kinds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::fuzz_route_lookup(data);
});
