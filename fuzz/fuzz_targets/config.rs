//! Arbitrary bytes as a configuration file; see `fulcrum::config::fuzzing` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::config::fuzzing::run(data));
