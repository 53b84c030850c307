//! The command line's shape: clap's argument structs for every `mcpgw` subcommand.
//!
//! Parsing only; `cli::execute` runs what they describe. Only [`Cli`] leaves the module:
//! the rest is the crate's own, so its help texts are the doc comments and nothing else.
//! Flags with `env` read the named variable when the flag is absent.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// mcpgw: one MCP endpoint in front of many MCP servers.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (the default). Without --config it serves the built-in demo server.
    Run(RunArgs),
    /// Check a config file and exit (0 when valid).
    Check {
        /// Config file to check.
        #[arg(long, short, env = "MCPGW_CONFIG")]
        config: PathBuf,
    },
    /// Run the built-in demo MCP server on stdio (used by the embedded default config).
    DemoServer,
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Credentials for `[auth]`: new API keys, password hashes.
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// Upstream secrets: encrypt a value for the config file, make a key.
    Secret {
        #[command(subcommand)]
        cmd: SecretCmd,
    },
    /// Upstreams of a running gateway (through its admin API).
    Upstreams {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: UpstreamsCmd,
    },
    /// Virtual servers of a running gateway (through its admin API).
    Servers {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: ServersCmd,
    },
    /// Tools of a running gateway (through its admin API).
    Tools {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: ToolsCmd,
    },
    /// API keys of a running gateway (through its admin API; kept in its store).
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Guardrails of a running gateway: catalog findings, pinned tool definitions,
    /// approvals (through its admin API).
    Guard {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: GuardCmd,
    },
}

#[derive(Subcommand)]
pub enum GuardCmd {
    /// Catalog scan findings, hidden items, blocked upstreams.
    Findings,
    /// Pinned tool definitions; pending changes with their diff.
    Pins,
    /// Approve a tool's pending definition (the hash `pins` shows).
    Approve {
        /// Upstream name.
        upstream: String,
        /// The upstream's own tool name.
        tool: String,
        /// The pending definition's hash.
        hash: String,
        /// Who approves (audit log). Default `admin`.
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// List API keys (never their secrets or hashes).
    List,
    /// Issue a key: prints it once; the gateway stores only its salted hash.
    Create {
        /// The principal's name.
        name: String,
        /// Role to grant (repeat).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Team, for quotas and the audit log.
        #[arg(long)]
        team: Option<String>,
    },
    /// Revoke a key issued through the admin API.
    Revoke {
        /// Its id (the 8 hex digits after `mcpgw_`).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AuthCmd {
    /// Issue an API key: prints the key (shown once) and the `[[auth.api_key]]` entry that
    /// stores only its salted hash.
    NewKey {
        /// The principal's name.
        name: String,
        /// Roles to grant (repeat the flag).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Hash a Basic password (argon2id) for `[[auth.user]]`; reads it from stdin.
    HashPassword,
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Encrypt a secret read from stdin (one trailing newline dropped) under the key in
    /// MCPGW_SECRET_KEY; prints `enc:v1:...` for the config file.
    Encrypt,
    /// Print a fresh random key (32 bytes, base64) for MCPGW_SECRET_KEY.
    NewKey,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check an audit log's hash chain; fails naming the first broken line.
    Verify {
        /// The audit log file.
        file: PathBuf,
    },
}

/// How to reach the admin API.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// Admin API URL.
    #[arg(
        long,
        env = "MCPGW_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub(crate) admin: String,
    /// Admin token.
    #[arg(long, env = "MCPGW_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub enum UpstreamsCmd {
    /// List upstreams with their health.
    List,
    /// Add an upstream (http: --url; stdio: --command and --arg).
    Add {
        /// Its name.
        name: String,
        /// Streamable HTTP endpoint; repeat it for replicas of one server (`urls`).
        #[arg(long, conflicts_with = "command")]
        url: Vec<String>,
        /// Program of a stdio upstream.
        #[arg(long)]
        command: Option<String>,
        /// Argument of the program (repeat).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// One upstream session for all clients.
        #[arg(long)]
        shared: bool,
        /// Expose its names unprefixed.
        #[arg(long)]
        no_prefix: bool,
    },
    /// Remove an upstream.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ServersCmd {
    /// List virtual servers.
    List,
    /// Add a virtual server.
    Add {
        /// Its name (served at /servers/NAME/mcp).
        name: String,
        /// Tool name or glob (repeat).
        #[arg(long = "tool")]
        tools: Vec<String>,
        /// Prompt name or glob (repeat).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// Resource URI or glob (repeat).
        #[arg(long = "resource")]
        resources: Vec<String>,
    },
    /// Remove a virtual server.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ToolsCmd {
    /// List tools with their upstream, health and enablement.
    List,
    /// Switch a tool on.
    Enable {
        /// Gateway name.
        name: String,
    },
    /// Switch a tool off (in no list, not callable).
    Disable {
        /// Gateway name.
        name: String,
    },
}

#[derive(clap::Args, Default)]
pub struct RunArgs {
    /// Config file (TOML). Default: the embedded demo config.
    #[arg(long, short, env = "MCPGW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Listen address, overrides gateway.listen.
    #[arg(long, env = "MCPGW_LISTEN")]
    pub(crate) listen: Option<String>,
    /// Worker threads, overrides gateway.workers (default: number of cores).
    #[arg(long, env = "MCPGW_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// IO driver: auto, uring or epoll; overrides gateway.driver.
    #[arg(long, env = "MCPGW_DRIVER")]
    pub(crate) driver: Option<String>,
}

// === impl RunArgs ===

impl RunArgs {
    /// The flags, plus `MCPGW_ADMIN_LISTEN` and `MCPGW_ADMIN_TOKEN` from the environment.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            workers: self.workers,
            driver: self.driver.clone(),
            admin_listen: std::env::var("MCPGW_ADMIN_LISTEN").ok(),
            admin_token: std::env::var("MCPGW_ADMIN_TOKEN").ok(),
            ..Default::default()
        }
    }
}
