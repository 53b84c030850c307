//! The `mcpgw` command line: its arguments (`cli/args.rs`), what each subcommand does
//! ([`execute`], `cli/commands.rs`), and the admin API client behind
//! `mcpgw upstreams|servers|tools|keys|guard` (`cli/admin.rs`).
//!
//! Starting the gateway is not here: `execute` hands `run` to the function `main.rs` passes.

mod admin;
mod args;
mod commands;

pub use args::Cli;
pub use commands::execute;
