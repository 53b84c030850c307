//! The `mcpgw` command: parse the arguments and run them. The argument structs and the
//! subcommands live in `mcpgw::cli`, the gateway's start in `mcpgw::control`.

use clap::Parser;
use mcpgw::{cli, control};

fn main() -> std::process::ExitCode {
    // Only main.rs imports `control`: the CLI gets the gateway's start as a function.
    match cli::execute(cli::Cli::parse(), control::gateway::run_gateway) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgw: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
