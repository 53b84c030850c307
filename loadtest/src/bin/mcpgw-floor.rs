//! `mcpgw-floor`: parse flags and proxy until killed (see `mcpgw_load::floor`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    mcpgw_load::floor::run(mcpgw_load::floor::Args::parse())
}
