//! Runs a parsed command line: every subcommand but `run` is handled here, `run` goes to the
//! gateway start the caller passes in (`main.rs`, the only importer of `control`).
//!
//! Output contract: results on stdout, notes and prompts on stderr; an `Err` is printed by
//! `main.rs` as `mcpgw: ...` with exit code 1.

use std::path::PathBuf;

use anyhow::Context;

use super::args::{
    AdminArgs, AuditCmd, AuthCmd, Cli, Command, GuardCmd, KeysCmd, RunArgs, SecretCmd, ServersCmd,
    ToolsCmd, UpstreamsCmd,
};
use crate::config::{Config, Overrides};

/// Runs `cli`. With no subcommand it runs `run` with default flags; `run` calls `gateway`
/// with the config path and overrides. Every other subcommand sets logging up first (`run`
/// does so itself once its config is read: it may ask for JSON lines).
pub fn execute(
    cli: Cli,
    gateway: impl FnOnce(Option<PathBuf>, Overrides) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    if !matches!(command, Command::Run(_)) {
        crate::observe::init_logging(false);
    }
    match command {
        Command::Run(args) => {
            let ov = args.overrides();
            gateway(args.config, ov)
        }
        Command::Check { config } => Config::load(Some(&config), &Overrides::default()).map(|c| {
            println!("{}: ok ({} upstreams)", c.source, c.upstreams.len());
        }),
        Command::DemoServer => crate::demo::run(),
        Command::Audit {
            cmd: AuditCmd::Verify { file },
        } => crate::observe::audit::verify(&file).map(|n| {
            println!("{}: {n} lines, chain intact", file.display());
        }),
        Command::Auth { cmd } => auth(cmd),
        Command::Secret {
            cmd: SecretCmd::NewKey,
        } => crate::secret::SecretKey::generate()
            .map_err(anyhow::Error::from)
            .map(|k| println!("{}", k.to_base64().as_str())),
        Command::Secret {
            cmd: SecretCmd::Encrypt,
        } => encrypt_stdin(),
        Command::Upstreams { admin, cmd } => {
            admin_client(&admin).and_then(|a| super::admin::upstreams(&a, upstream_cmd(cmd)?))
        }
        Command::Servers { admin, cmd } => {
            admin_client(&admin).and_then(|a| super::admin::servers(&a, server_cmd(cmd)))
        }
        Command::Tools { admin, cmd } => {
            admin_client(&admin).and_then(|a| super::admin::tools(&a, tool_cmd(cmd)))
        }
        Command::Keys { admin, cmd } => {
            admin_client(&admin).and_then(|a| super::admin::keys(&a, key_cmd(cmd)))
        }
        Command::Guard { admin, cmd } => {
            admin_client(&admin).and_then(|a| super::admin::guard(&a, guard_cmd(cmd)))
        }
    }
}

/// `mcpgw auth new-key|hash-password`.
fn auth(cmd: AuthCmd) -> anyhow::Result<()> {
    match cmd {
        AuthCmd::NewKey { name, roles } => crate::auth::credentials::new_key()
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
        AuthCmd::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(anyhow::Error::from)
                .and_then(|_| {
                    let pw = line.trim_end_matches(['\r', '\n']);
                    if pw.is_empty() {
                        anyhow::bail!("no password on stdin");
                    }
                    crate::auth::credentials::hash_password(pw).map_err(anyhow::Error::msg)
                })
                .map(|h| println!("{h}"))
        }
    }
}

/// `mcpgw secret encrypt`: stdin (less one trailing newline) -> `enc:v1:...` on stdout.
fn encrypt_stdin() -> anyhow::Result<()> {
    use crate::secret::{SecretKey, KEY_ENV};
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

fn admin_client(a: &AdminArgs) -> anyhow::Result<super::admin::Admin> {
    super::admin::Admin::new(&a.admin, a.token.clone(), a.json)
}

/// `upstreams add` builds the API's upstream spec: `--url` (once: `url`, repeated: `urls`)
/// makes an http upstream, `--command` a stdio one; neither or both is an error.
fn upstream_cmd(cmd: UpstreamsCmd) -> anyhow::Result<super::admin::UpstreamCmd> {
    use super::admin::UpstreamCmd as C;
    Ok(match cmd {
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
    })
}

fn server_cmd(cmd: ServersCmd) -> super::admin::ServerCmd {
    use super::admin::ServerCmd as C;
    match cmd {
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
    }
}

fn tool_cmd(cmd: ToolsCmd) -> super::admin::ToolCmd {
    use super::admin::ToolCmd as C;
    match cmd {
        ToolsCmd::List => C::List,
        ToolsCmd::Enable { name } => C::Enable(name, true),
        ToolsCmd::Disable { name } => C::Enable(name, false),
    }
}

fn key_cmd(cmd: KeysCmd) -> super::admin::KeyCmd {
    use super::admin::KeyCmd as C;
    match cmd {
        KeysCmd::List => C::List,
        KeysCmd::Revoke { id } => C::Revoke(id),
        KeysCmd::Create { name, roles, team } => {
            let mut spec = serde_json::json!({ "name": name, "roles": roles });
            if let Some(t) = team {
                spec["team"] = t.into();
            }
            C::Create(spec)
        }
    }
}

fn guard_cmd(cmd: GuardCmd) -> super::admin::GuardCmd {
    use super::admin::GuardCmd as C;
    match cmd {
        GuardCmd::Findings => C::Findings,
        GuardCmd::Pins => C::Pins,
        GuardCmd::Approve {
            upstream,
            tool,
            hash,
            by,
        } => C::Approve(upstream, tool, hash, by),
    }
}
