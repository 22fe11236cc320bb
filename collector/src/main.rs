//! strata: observes every TCP/UDP conversation on a Linux host, from the kernel, without touching
//! the applications.

mod compat;
mod replay;
mod run;
mod source;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes. Usage errors are clap's 2; the rest say whether the node or strata is at fault.
mod exit {
    pub const OK: u8 = 0;
    /// Something failed while running (I/O on the output, the ring buffer).
    pub const FAILURE: u8 = 1;
    /// The node cannot run the capture: missing capability, kernel feature, tracefs, BTF.
    pub const ENVIRONMENT: u8 = 3;
    /// A bad argument value detected after parsing.
    pub const USAGE: u8 = 2;
}

#[derive(Parser)]
#[command(name = "strata", version, about = "Observe application traffic on this node with eBPF")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture socket traffic on this node and print it.
    Run(run::RunArgs),
    /// Capture like `run`, into a compressed capture file for `strata replay`.
    Record(run::RecordArgs),
    /// Run the pipeline on a capture file (no root needed); same outputs as `run`.
    Replay(replay::ReplayArgs),
    /// Tell what this node's kernel supports, which capture tier strata would run, and why.
    /// Exit code: 0 full fidelity, 10 degraded (no BPF tier), 11 unsupported.
    CompatCheck(compat::CompatArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).format_target(false).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("starting the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match cli.command {
        Command::CompatCheck(args) => match compat::run(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                log::error!("{e}");
                ExitCode::from(exit::USAGE)
            }
        },
        Command::Replay(args) => match replay::replay(&args) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                log::error!("{e}");
                ExitCode::from(exit::FAILURE)
            }
        },
        Command::Record(args) => exit_code(runtime.block_on(run::record(args))),
        Command::Run(args) => exit_code(runtime.block_on(run::run(args))),
    }
}

fn exit_code(result: Result<(), run::RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(match &e {
                run::RunError::Capture(c) if !c.is_environment() => exit::USAGE,
                run::RunError::Usage(_) => exit::USAGE,
                run::RunError::Capture(_) | run::RunError::NoTier(_) => exit::ENVIRONMENT,
                _ => exit::FAILURE,
            })
        }
    }
}
