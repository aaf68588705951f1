//! Arbitrary bytes as `/v2/keys` requests (see `store::v2::fuzzing`): no input may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| store::v2::fuzzing::run(data));
