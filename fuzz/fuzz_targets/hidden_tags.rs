//! libFuzzer entry point; the invariant lives in `warden_fuzz::hidden_tags` (shared with the
//! stable `replay` harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_fuzz::hidden_tags(data));
