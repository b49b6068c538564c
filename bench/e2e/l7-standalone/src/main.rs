//! `fulcrum-l7-standalone CONFIG`: serves the `l7` services of CONFIG on host sockets
//! with fulcrum's L7 pool until SIGINT/SIGTERM (SIGHUP reloads). The YAML shape is the
//! one documented in `fulcrum::l7` (an `l7:` section and `services` with `listen`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

/// The same allocator as the `fulcrum` binary's (src/main.rs).
#[global_allocator]
static GLOBAL: fulcrum_alloc::Mimalloc = fulcrum_alloc::Mimalloc;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(config), None) = (args.next(), args.next()) else {
        eprintln!("usage: fulcrum-l7-standalone CONFIG");
        return ExitCode::from(2);
    };
    match fulcrum::l7::run_standalone(&PathBuf::from(config), None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum-l7-standalone: {e}");
            ExitCode::FAILURE
        }
    }
}
