//! `mcpgw-load`: parse flags, run, exit 0 (clean), 3 (the run saw errors) or 1 (could not run).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = mcpgw_load::load::Args::parse();
    match mcpgw_load::load::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mcpgw-load: {e:#}");
            ExitCode::from(1)
        }
    }
}
