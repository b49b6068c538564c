//! The `fulcrum` command.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the L7 pool allocates per request (hyper's heads, bodies, tasks), where
/// glibc's malloc and free were 9% of an HTTP/1.1 request's instructions; mimalloc's
/// per-thread free lists cost about a third of that. The L4 data path allocates nothing
/// per packet, so it is the same either way. `fulcrum_alloc` calls mimalloc's plain
/// `mi_malloc` where its alignment suffices (the `mimalloc` crate asked for an aligned
/// block every time, which mimalloc 3 over-allocates above 1 KiB).
#[global_allocator]
static GLOBAL: fulcrum_alloc::Mimalloc = fulcrum_alloc::Mimalloc;

/// A userspace L4 load balancer on DPDK.
#[derive(Parser)]
#[command(name = "fulcrum", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the data plane and run until SIGINT/SIGTERM.
    Run {
        /// The YAML configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Reload when the file, or a certificate, key or ticket key file it names,
        /// changes on disk; polled every INTERVAL (`2s` when none is given; `500ms`, `1m`).
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s", value_parser = watch_interval)]
        watch: Option<std::time::Duration>,
    },
    /// Validate the configuration file and print a one-line summary.
    Check {
        /// The YAML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A live view of per-service and per-backend rates from the admin API.
    Top {
        /// The admin listener (`admin.listen`).
        #[arg(long, default_value = "127.0.0.1:9100")]
        admin: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long)]
        iterations: Option<u32>,
        /// Bearer token (`admin.token`).
        #[arg(long)]
        token: Option<String>,
    },
    /// Run the L7 pool on its own, on the host's sockets (each service's `listen`).
    L7 {
        /// The L7 YAML file (see the README's L7 section).
        #[arg(short, long)]
        config: PathBuf,
        /// Reload when the file, or a certificate, key or ticket key file it names,
        /// changes on disk; polled every INTERVAL (`2s` when none is given; `500ms`, `1m`).
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s", value_parser = watch_interval)]
        watch: Option<std::time::Duration>,
    },
    /// Print a service's Maglev lookup table, one backend address per line.
    Maglev {
        /// The YAML configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The service name.
        #[arg(long)]
        service: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config, watch } => run(&config, watch),
        Command::Maglev { config, service } => maglev(&config, &service),
        Command::Top {
            admin,
            interval,
            iterations,
            token,
        } => {
            let every = std::time::Duration::from_secs_f64(interval.max(0.1));
            match fulcrum::admin::run_top(&admin, every, iterations, token) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fulcrum top: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::L7 { config, watch } => match fulcrum::l7::run_standalone(&config, watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fulcrum l7: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `fulcrum check -c FILE`: the summary and exit 0, or each problem on stderr and exit 2.
fn check(path: &std::path::Path) -> ExitCode {
    match fulcrum::config::check_file(path) {
        Ok(summary) => {
            for warning in &summary.warnings {
                eprintln!("{warning}");
            }
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            ExitCode::from(2)
        }
    }
}

/// `--watch`'s interval: a duration as the configuration file writes them, at least 100ms.
fn watch_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = fulcrum::config::parse_duration(text).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(100) {
        return Err(format!("{text}: at least 100ms"));
    }
    Ok(d)
}

/// `fulcrum run -c FILE [--watch]`: the data plane until SIGINT/SIGTERM.
fn run(path: &std::path::Path, watch: Option<std::time::Duration>) -> ExitCode {
    match fulcrum::runtime::run(path, watch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fulcrum::runtime::RunError::Config(diagnostics)) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("fulcrum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `fulcrum maglev -c FILE --service NAME`: the lookup table, one backend per line.
fn maglev(path: &std::path::Path, service: &str) -> ExitCode {
    let cfg = match fulcrum::config::load(path) {
        Ok(c) => c,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            return ExitCode::from(2);
        }
    };
    let Some(svc) = cfg.service(service) else {
        eprintln!(
            "fulcrum: no service named {service:?} in {}",
            path.display()
        );
        return ExitCode::from(2);
    };
    if svc.backends.is_empty() {
        eprintln!("fulcrum: service {service:?} has no backends (an l7 service?)");
        return ExitCode::from(2);
    }
    let table = match fulcrum::control::maglev_table(svc) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fulcrum: service {service:?}: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    use std::io::Write;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for &entry in table.entries() {
        let line = match svc.backends.get(entry as usize) {
            Some(b) => b.address.to_string(),
            None => "-".to_owned(),
        };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
