//! Arbitrary frames through two engines on a snapshot with every forwarding mode; see
//! `fulcrum::engine::fuzzing` for the input format and the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::engine::fuzzing::run(data));
