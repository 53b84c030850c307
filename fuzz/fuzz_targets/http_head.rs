#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpgw::fuzz::http_head(data));
