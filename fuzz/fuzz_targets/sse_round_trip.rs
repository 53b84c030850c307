#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw::fuzz::sse_round_trip(data));
