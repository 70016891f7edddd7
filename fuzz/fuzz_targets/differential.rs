//! Backends disagreeing on a valid problem (see `radiant_fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| radiant_fuzz::run(data));
