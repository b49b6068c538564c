//! A client's bytes through the whole L7 request path (hyper, the handler, the upstream
//! pool) to an upstream on loopback; see `fulcrum::l7::fuzzing::request_path` for the
//! input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fulcrum::l7::fuzzing::request_path(data);
});
