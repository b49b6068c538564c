//! A client's bytes through the framing watch, whole and in pieces; see
//! `fulcrum::l7::fuzzing` for the input format and what is compared.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::l7::fuzzing::request_framing(data));
