//! The `mcpgw` command: parse arguments, load config, start the control plane and the
//! workers, wait for a signal, shut down. Everything else lives in the library.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcpgw::{
    config::{Config, Overrides},
    control::ControlPlane,
    runtime::{self, worker::Worker, Chosen},
};

/// mcpgw: one MCP endpoint in front of many MCP servers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
enum GuardCmd {
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
enum KeysCmd {
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
enum AuthCmd {
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
enum SecretCmd {
    /// Encrypt a secret read from stdin (one trailing newline dropped) under the key in
    /// MCPGW_SECRET_KEY; prints `enc:v1:...` for the config file.
    Encrypt,
    /// Print a fresh random key (32 bytes, base64) for MCPGW_SECRET_KEY.
    NewKey,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check an audit log's hash chain; fails naming the first broken line.
    Verify {
        /// The audit log file.
        file: PathBuf,
    },
}

/// How to reach the admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// Admin API URL.
    #[arg(
        long,
        env = "MCPGW_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    admin: String,
    /// Admin token.
    #[arg(long, env = "MCPGW_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum UpstreamsCmd {
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
enum ServersCmd {
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
enum ToolsCmd {
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
struct RunArgs {
    /// Config file (TOML). Default: the embedded demo config.
    #[arg(long, short, env = "MCPGW_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overrides gateway.listen.
    #[arg(long, env = "MCPGW_LISTEN")]
    listen: Option<String>,
    /// Worker threads, overrides gateway.workers (default: number of cores).
    #[arg(long, env = "MCPGW_WORKERS")]
    workers: Option<usize>,
    /// IO driver: auto, uring or epoll; overrides gateway.driver.
    #[arg(long, env = "MCPGW_DRIVER")]
    driver: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    // `run` sets logging up once its config is read (it may ask for JSON lines).
    if !matches!(command, Command::Run(_)) {
        init_tracing(false);
    }
    let result = match command {
        Command::Run(args) => run(args),
        Command::Check { config } => Config::load(Some(&config), &Overrides::default()).map(|c| {
            println!("{}: ok ({} upstreams)", c.source, c.upstreams.len());
        }),
        Command::DemoServer => mcpgw::demo::run(),
        Command::Audit {
            cmd: AuditCmd::Verify { file },
        } => mcpgw::observe::audit::verify(&file).map(|n| {
            println!("{}: {n} lines, chain intact", file.display());
        }),
        Command::Auth {
            cmd: AuthCmd::NewKey { name, roles },
        } => mcpgw::auth::credentials::new_key()
            .map_err(anyhow::Error::from)
            .map(|k| {
                eprintln!("API key for {name} (shown once; keep it secret):");
                println!("{}", k.key);
                eprintln!("\nAdd to the config file:\n");
                eprintln!(
                    "[[auth.api_key]]\nname = {name:?}\nid = {:?}\nhash = \"{}\"\nroles = {roles:?}",
                    k.id, k.hash
                );
            }),
        Command::Auth {
            cmd: AuthCmd::HashPassword,
        } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(anyhow::Error::from)
                .and_then(|_| {
                    let pw = line.trim_end_matches(['\r', '\n']);
                    if pw.is_empty() {
                        anyhow::bail!("no password on stdin");
                    }
                    mcpgw::auth::credentials::hash_password(pw).map_err(anyhow::Error::msg)
                })
                .map(|h| println!("{h}"))
        }
        Command::Secret {
            cmd: SecretCmd::NewKey,
        } => mcpgw::secret::SecretKey::generate()
            .map_err(anyhow::Error::from)
            .map(|k| println!("{}", k.to_base64().as_str())),
        Command::Secret {
            cmd: SecretCmd::Encrypt,
        } => encrypt_stdin(),
        Command::Upstreams { admin, cmd } => admin_client(&admin).and_then(|a| {
            use mcpgw::cli::UpstreamCmd as C;
            let cmd = match cmd {
                UpstreamsCmd::List => C::List,
                UpstreamsCmd::Remove { name } => C::Remove(name),
                UpstreamsCmd::Add {
                    name,
                    url,
                    command,
                    args,
                    shared,
                    no_prefix,
                } => {
                    let mut spec = serde_json::json!({ "name": name });
                    match (url.len(), command) {
                        (1.., None) => {
                            spec["transport"] = "http".into();
                            if url.len() == 1 {
                                spec["url"] = url.into_iter().collect::<String>().into();
                            } else {
                                spec["urls"] = url.into();
                            }
                        }
                        (0, Some(command)) => {
                            spec["transport"] = "stdio".into();
                            spec["command"] = command.into();
                            spec["args"] = args.into();
                        }
                        _ => anyhow::bail!("give --url (http) or --command (stdio)"),
                    }
                    if shared {
                        spec["session"] = "shared".into();
                    }
                    if no_prefix {
                        spec["prefix"] = false.into();
                    }
                    C::Add(spec)
                }
            };
            mcpgw::cli::upstreams(&a, cmd)
        }),
        Command::Servers { admin, cmd } => admin_client(&admin).and_then(|a| {
            use mcpgw::cli::ServerCmd as C;
            let cmd = match cmd {
                ServersCmd::List => C::List,
                ServersCmd::Remove { name } => C::Remove(name),
                ServersCmd::Add {
                    name,
                    tools,
                    prompts,
                    resources,
                } => C::Add(serde_json::json!({
                    "name": name, "tools": tools, "prompts": prompts, "resources": resources,
                })),
            };
            mcpgw::cli::servers(&a, cmd)
        }),
        Command::Tools { admin, cmd } => admin_client(&admin).and_then(|a| {
            use mcpgw::cli::ToolCmd as C;
            let cmd = match cmd {
                ToolsCmd::List => C::List,
                ToolsCmd::Enable { name } => C::Enable(name, true),
                ToolsCmd::Disable { name } => C::Enable(name, false),
            };
            mcpgw::cli::tools(&a, cmd)
        }),
        Command::Keys { admin, cmd } => admin_client(&admin).and_then(|a| {
            use mcpgw::cli::KeyCmd as C;
            let cmd = match cmd {
                KeysCmd::List => C::List,
                KeysCmd::Revoke { id } => C::Revoke(id),
                KeysCmd::Create { name, roles, team } => {
                    let mut spec = serde_json::json!({ "name": name, "roles": roles });
                    if let Some(t) = team {
                        spec["team"] = t.into();
                    }
                    C::Create(spec)
                }
            };
            mcpgw::cli::keys(&a, cmd)
        }),
        Command::Guard { admin, cmd } => admin_client(&admin).and_then(|a| {
            use mcpgw::cli::GuardCmd as C;
            let cmd = match cmd {
                GuardCmd::Findings => C::Findings,
                GuardCmd::Pins => C::Pins,
                GuardCmd::Approve {
                    upstream,
                    tool,
                    hash,
                    by,
                } => C::Approve(upstream, tool, hash, by),
            };
            mcpgw::cli::guard(&a, cmd)
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgw: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `mcpgw secret encrypt`: stdin (less one trailing newline) -> `enc:v1:...` on stdout.
fn encrypt_stdin() -> anyhow::Result<()> {
    use mcpgw::secret::{SecretKey, KEY_ENV};
    use std::io::Read as _;
    let key = SecretKey::from_env(&Default::default())?.ok_or_else(|| {
        anyhow::anyhow!("{KEY_ENV} is not set (`mcpgw secret new-key` makes one)")
    })?;
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the secret from stdin")?;
    let plain = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if plain.is_empty() {
        anyhow::bail!("no secret on stdin");
    }
    println!("{}", key.encrypt(plain)?);
    Ok(())
}

fn admin_client(a: &AdminArgs) -> anyhow::Result<mcpgw::cli::Admin> {
    mcpgw::cli::Admin::new(&a.admin, a.token.clone(), a.json)
}

/// Log lines to stderr: pretty text, or one JSON object per line when `json` (or
/// `MCPGW_LOG_FORMAT=json`).
fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCPGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = json || std::env::var("MCPGW_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        // Colours only for a terminal: log files and collectors get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.with_ansi(ansi).init();
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let ov = Overrides {
        listen: args.listen,
        workers: args.workers,
        driver: args.driver,
        admin_listen: std::env::var("MCPGW_ADMIN_LISTEN").ok(),
        admin_token: std::env::var("MCPGW_ADMIN_TOKEN").ok(),
        ..Default::default()
    };
    let config = match Config::load(args.config.as_deref(), &ov) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            init_tracing(false);
            return Err(e);
        }
    };
    init_tracing(config.telemetry.json_logs);
    let source = mcpgw::control::Source {
        path: args.config.clone(),
        overrides: ov,
    };
    match runtime::sys::raise_fd_limit() {
        Ok(n) => {
            let g = &config.gateway;
            let want = (g.workers * g.max_connections) as u64;
            if want > n {
                tracing::warn!(
                    open_file_limit = n,
                    connections = want,
                    "workers x max_connections exceeds the open-file limit: accepts will fail \
                     (and back off) before max_connections is reached"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let chosen = runtime::choose(config.gateway.driver).context("choosing the IO driver")?;
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]);
    let mut signals = signals.context("installing signal handlers")?;

    let control = ControlPlane::start(config.clone(), source)?;
    let mut workers = Vec::new();
    for i in 0..config.gateway.workers {
        let index = u16::try_from(i).context("too many workers")?;
        match Worker::start(index, config.gateway.listen, chosen, control.shared.clone()) {
            Ok(w) => workers.push(w),
            Err(e) => {
                control.shutdown();
                return Err(e.context(format!("cannot listen on {}", config.gateway.listen)));
            }
        }
    }
    let driver = match chosen {
        Chosen::Uring(flags) => format!("io_uring {flags:?}"),
        Chosen::Epoll => "epoll".into(),
    };
    tracing::info!(
        listen = %config.gateway.listen,
        workers = workers.len(),
        %driver,
        config = %config.source,
        "mcpgw listening on http://{}/mcp",
        config.gateway.listen
    );
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            tracing::info!("SIGHUP: reloading the configuration");
            control.reload();
            continue;
        }
        tracing::info!(signal = sig, "shutting down");
        break;
    }
    control
        .shared
        .shutdown
        .store(true, std::sync::atomic::Ordering::Release);
    for w in workers {
        w.join();
    }
    if let Some(t) = &control.shared.tracing {
        t.shutdown();
    }
    if let Some(a) = &control.shared.audit {
        a.shutdown();
    }
    control.shutdown();
    tracing::info!("stopped");
    Ok(())
}
