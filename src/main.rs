//! The `fulcrum` command.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    },
    /// Validate the configuration file and print a one-line summary.
    Check {
        /// The YAML configuration file.
        #[arg(short, long)]
        config: PathBuf,
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
        Command::Run { .. } | Command::Maglev { .. } => {
            eprintln!("fulcrum: not yet implemented");
            ExitCode::from(2)
        }
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
