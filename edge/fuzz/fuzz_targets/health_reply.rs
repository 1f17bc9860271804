//! A backend's gRPC health reply body (upstream.rs grpc_health_status).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::fuzz_health_reply(data);
});
