//! `mcpgw-fixture`: parse flags and serve until killed (see `mcpgw_load::fixture`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    mcpgw_load::fixture::run(mcpgw_load::fixture::Args::parse())
}
