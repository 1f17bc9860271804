//! An HTTP/3 request field section, one `name value` per line (h3/headers.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::fuzz_h3_request(data);
});
