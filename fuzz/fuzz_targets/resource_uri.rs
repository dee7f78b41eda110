//! libFuzzer entry point; the invariant lives in `warden_fuzz::resource_uri` (shared with the
//! stable `replay` harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_fuzz::resource_uri(data));
