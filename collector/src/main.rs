//! strata: observes every TCP/UDP conversation on a Linux host, from the kernel, without touching
//! the applications.

mod cli;
mod test_enosys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes. Usage errors are clap's 2; the rest say whether the node or strata is at fault.
mod exit {
    pub const OK: u8 = 0;
    /// Something failed while running (I/O on the output, the kernel's buffer).
    pub const FAILURE: u8 = 1;
    /// A bad argument value detected after parsing.
    pub const USAGE: u8 = 2;
    /// The node cannot run the capture: missing capability, kernel feature, tracefs, BTF.
    pub const ENVIRONMENT: u8 = 3;
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
    Run(cli::run::RunArgs),
    /// Capture like `run`, into a compressed capture file for `strata replay`.
    Record(cli::run::RecordArgs),
    /// Run the pipeline on a capture file (no root needed); same outputs as `run`.
    Replay(cli::replay::ReplayArgs),
    /// Tell what this node's kernel supports, which capture tier strata would run, and why.
    /// Exit code: 0 full fidelity, 10 degraded (no BPF tier), 11 unsupported.
    CompatCheck(cli::compat::CompatArgs),
    /// BTF for kernels without their own.
    #[command(subcommand)]
    Btf(cli::btf::BtfCommand),
    /// strata's kernel module, for kernels where BPF cannot attach to syscalls.
    #[command(subcommand)]
    Kmod(cli::kmod::KmodCommand),
}

fn main() -> ExitCode {
    // First of all, before any thread starts: tests emulating older kernels (see test_enosys.rs).
    let emulated = test_enosys::install_from_env();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).format_target(false).init();
    match emulated {
        Ok(None) => {}
        Ok(Some(calls)) => log::warn!(
            "{} is set: {} answer ENOSYS in this process, as on a kernel without them. This emulates older \
             kernels for tests; never set it in production",
            test_enosys::VAR,
            calls.join(", ")
        ),
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(exit::USAGE);
        }
    }
    let cli = Cli::parse();
    btf_cache::fetch::install_crypto_provider();
    let code = match cli.command {
        Command::CompatCheck(args) => cli::compat::run(&args).unwrap_or_else(|e| {
            log::error!("{e}");
            exit::USAGE
        }),
        Command::Replay(args) => match cli::replay::replay(&args) {
            Ok(()) => exit::OK,
            Err(e) => {
                log::error!("{e}");
                exit::FAILURE
            }
        },
        Command::Btf(cmd) => cli::btf::command(&cmd),
        Command::Kmod(cmd) => cli::kmod::command(&cmd),
        Command::Record(args) => run_result(cli::run::record(args)),
        Command::Run(args) => run_result(cli::run::run(args)),
    };
    ExitCode::from(code)
}

fn run_result(result: Result<(), cli::run::RunError>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            log::error!("{e}");
            e.exit_code()
        }
    }
}
