//! An upstream's bytes read whole and in pieces by the HTTP/1.1 response reader; see
//! `fulcrum::l7::fuzzing` for the input format and what is compared.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::l7::fuzzing::upstream_response(data));
