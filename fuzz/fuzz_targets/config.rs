//! Arbitrary bytes as a configuration file: fulcrum's (`fulcrum::config::fuzzing`) and a
//! standalone L7 pool's (`fulcrum::l7::fuzzing::standalone_config`); see each for what is
//! checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fulcrum::config::fuzzing::run(data);
    fulcrum::l7::fuzzing::standalone_config(data);
});
