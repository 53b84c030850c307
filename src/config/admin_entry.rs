//! What an `[[upstream]]` entry that came through the admin API may hold.
//!
//! The admin token manages the registry; it is not a shell and it does not read the gateway's
//! environment or files. So an admin entry is checked, before the usual validation, against
//! rules the config file alone cannot break:
//!
//! - `transport = "stdio"` runs only a `command` listed in the file's `[admin] stdio_commands`
//!   (compared as written; none listed: no stdio upstream from the admin API);
//! - `env` names are plain (`[A-Za-z_][A-Za-z0-9_]*`) and none of [`refused_env`]'s: dynamic
//!   loader, interpreter and shell start-up variables that make a program run other code;
//! - `cwd` and `tls_ca` (paths on the gateway's host) are the config file's;
//! - secret values are literal: `env:VAR` is refused, and so is any `enc:` value given by the
//!   caller ([`Origin::Request`]: the API encrypts literals itself). A stored entry
//!   ([`Origin::Store`]) holds the API's own `enc:v1:` values, but never one that the config
//!   file also holds (a ciphertext copied from the file would make the gateway send the
//!   file's secret to the caller's URL).
//!
//! The admin API refuses a request that breaks them (the field named); the store's entries
//! are checked again at every load, so an entry an older version stored is not started.
//! Pure functions over TOML tables: no IO.

use std::collections::HashSet;

use crate::secret::{ENC_PREFIX, ENV_PREFIX};

/// Where an entry comes from.
pub enum Origin<'a> {
    /// A request to the admin API, before its literal secrets are encrypted.
    Request,
    /// The registry store; `file_ciphertexts` are the `enc:` values of the config file.
    Store {
        /// Every `enc:` string of the config file.
        file_ciphertexts: &'a HashSet<String>,
    },
}

/// Why an entry is refused: HTTP status for the admin API, the field (`upstream[0].<f>`) and
/// the reason. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 403 for a stdio command the file does not allow, else 400.
    pub status: u16,
    /// `upstream[0].command`, `upstream[0].env.LD_PRELOAD`, ...
    pub field: String,
    /// What is wrong, for the caller.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Environment variable names refused in an admin entry's `env`, exactly (compared in upper
/// case).
const REFUSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "CLASSPATH",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "HOSTALIASES",
    "LOCPATH",
    "NLSPATH",
    "GETCONF_DIR",
];

/// Prefixes of environment variable names refused in an admin entry's `env` (upper case).
const REFUSED_ENV_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "GLIBC_",
    "MALLOC_",
    "GCONV_",
    "PYTHON",
    "NODE_",
    "NPM_CONFIG_",
    "PERL",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "JAVA_",
    "_JAVA_",
    "JDK_",
    "LUA_",
    "PHP",
    "DOTNET_",
    "CORECLR_",
    "COMPLUS_",
    "GIT_",
    "BASH_FUNC_",
    "MCPGW_",
];

/// Whether `name` may not be set through the admin API: the dynamic loader's variables
/// (`LD_*`, `DYLD_*`, `GLIBC_TUNABLES`, `MALLOC_*`, `GCONV_PATH`), interpreters' start-up
/// and module-path variables (`PYTHON*`, `NODE_*`, `PERL*`, `RUBY*`, `JAVA_*`, `LUA_*`, ...),
/// the shell's (`BASH_ENV`, `ENV`, `SHELLOPTS`, `PS4`, `BASH_FUNC_*`, ...), `PATH`, `HOME`,
/// `GIT_*`, `OPENSSL_CONF` and the gateway's own `MCPGW_*`.
pub fn refused_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    REFUSED_ENV.contains(&upper.as_str())
        || REFUSED_ENV_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// Whether `name` is a plain environment variable name.
fn plain_env_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks one admin `[[upstream]]` entry against the rules of this module.
pub fn check_upstream(
    entry: &toml::Table,
    stdio_commands: &[String],
    origin: Origin<'_>,
) -> Result<(), Refused> {
    let refuse = |status: u16, field: &str, reason: String| Refused {
        status,
        field: format!("upstream[0].{field}"),
        reason,
    };
    let is_stdio = entry.get("transport").and_then(toml::Value::as_str) == Some("stdio");
    if is_stdio {
        let command = entry
            .get("command")
            .and_then(toml::Value::as_str)
            .unwrap_or("");
        if !stdio_commands.iter().any(|c| c == command) {
            let reason = if stdio_commands.is_empty() {
                "the admin API cannot add stdio upstreams: the config file's [admin] stdio_commands lists no program".to_string()
            } else {
                format!("{command:?} is not one of the programs the config file's [admin] stdio_commands allows")
            };
            return Err(refuse(403, "command", reason));
        }
    }
    if let Some(env) = entry.get("env") {
        let Some(env) = env.as_table() else {
            return Err(refuse(400, "env", "must be a table of strings".into()));
        };
        for name in env.keys() {
            if !plain_env_name(name) {
                return Err(refuse(
                    400,
                    &format!("env.{name}"),
                    "not a plain variable name (letters, digits and _)".into(),
                ));
            }
            if refused_env(name) {
                return Err(refuse(
                    400,
                    &format!("env.{name}"),
                    "loader, interpreter and shell variables (LD_*, PYTHON*, NODE_OPTIONS, BASH_ENV, PATH, ...) are set only in the config file".into(),
                ));
            }
        }
    }
    for field in ["cwd", "tls_ca"] {
        if entry.contains_key(field) {
            return Err(refuse(
                400,
                field,
                "a path on the gateway's host: set only in the config file".into(),
            ));
        }
    }
    let mut secrets: Vec<(String, &toml::Value)> = Vec::new();
    if let Some(h) = entry.get("headers").and_then(toml::Value::as_table) {
        secrets.extend(h.iter().map(|(k, v)| (format!("headers.{k}"), v)));
    }
    if let Some(a) = entry.get("auth").and_then(toml::Value::as_table) {
        for f in ["bearer", "value", "client_secret"] {
            if let Some(v) = a.get(f) {
                secrets.push((format!("auth.{f}"), v));
            }
        }
    }
    for (field, v) in secrets {
        let Some(s) = v.as_str() else { continue };
        if s.starts_with(ENV_PREFIX) {
            return Err(refuse(
                400,
                &field,
                "env: references are read only from the config file; give the value itself (it is stored encrypted)".into(),
            ));
        }
        if s.starts_with("enc:") {
            match &origin {
                Origin::Request => {
                    return Err(refuse(
                        400,
                        &field,
                        "encrypted values are not taken: give the value itself (the gateway encrypts it before storing it)".into(),
                    ))
                }
                Origin::Store { file_ciphertexts } if file_ciphertexts.contains(s) => {
                    return Err(refuse(
                        400,
                        &field,
                        "holds a ciphertext of the config file".into(),
                    ))
                }
                Origin::Store { .. } if !s.starts_with(ENC_PREFIX) => {
                    return Err(refuse(400, &field, "unknown encryption format".into()))
                }
                Origin::Store { .. } => {}
            }
        }
    }
    Ok(())
}

/// Every string of `doc`'s `[[upstream]]` entries that starts with `enc:`.
pub fn file_ciphertexts(doc: &toml::Table) -> HashSet<String> {
    fn walk(v: &toml::Value, out: &mut HashSet<String>) {
        match v {
            toml::Value::String(s) if s.starts_with("enc:") => {
                out.insert(s.clone());
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            toml::Value::Table(t) => t.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    if let Some(v) = doc.get("upstream") {
        walk(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> toml::Table {
        toml::from_str(text).expect("toml")
    }

    fn field(r: Result<(), Refused>) -> Option<(u16, String)> {
        r.err().map(|e| (e.status, e.field))
    }

    #[test]
    fn stdio_commands_come_from_the_file() {
        let sh = entry("name = \"x\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\n");
        assert_eq!(
            field(check_upstream(&sh, &[], Origin::Request)),
            Some((403, "upstream[0].command".into()))
        );
        let allowed = ["/usr/bin/srv".to_string()];
        assert_eq!(
            field(check_upstream(&sh, &allowed, Origin::Request)),
            Some((403, "upstream[0].command".into()))
        );
        let ok = entry("name = \"x\"\ntransport = \"stdio\"\ncommand = \"/usr/bin/srv\"\nargs = [\"-v\"]\n[env]\nAPI_REGION = \"eu\"\n");
        assert_eq!(check_upstream(&ok, &allowed, Origin::Request), Ok(()));
        // A relative name that PATH would find is not the listed path.
        let rel = entry("name = \"x\"\ntransport = \"stdio\"\ncommand = \"srv\"\n");
        assert!(check_upstream(&rel, &allowed, Origin::Request).is_err());
    }

    #[test]
    fn loader_variables_and_paths_are_refused() {
        let allowed = ["/usr/bin/srv".to_string()];
        for name in [
            "LD_PRELOAD",
            "ld_audit",
            "DYLD_INSERT_LIBRARIES",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "BASH_ENV",
            "PATH",
            "GLIBC_TUNABLES",
            "MCPGW_SECRET_KEY",
            "A=B",
            "BASH_FUNC_x%%",
        ] {
            let e = entry(&format!(
                "name = \"x\"\ntransport = \"stdio\"\ncommand = \"/usr/bin/srv\"\n[env]\n{:?} = \"1\"\n",
                name
            ));
            assert_eq!(
                field(check_upstream(&e, &allowed, Origin::Request)),
                Some((400, format!("upstream[0].env.{name}"))),
                "{name}"
            );
        }
        let cwd =
            entry("name = \"x\"\ntransport = \"stdio\"\ncommand = \"/usr/bin/srv\"\ncwd = \"/\"\n");
        assert_eq!(
            field(check_upstream(&cwd, &allowed, Origin::Request)),
            Some((400, "upstream[0].cwd".into()))
        );
        let ca = entry("name = \"x\"\ntransport = \"http\"\nurl = \"https://x/mcp\"\ntls_ca = \"/etc/passwd\"\n");
        assert_eq!(
            field(check_upstream(&ca, &[], Origin::Request)),
            Some((400, "upstream[0].tls_ca".into()))
        );
    }

    #[test]
    fn secrets_are_literal() {
        let file = entry("[[upstream]]\nname = \"f\"\ntransport = \"http\"\nurl = \"http://x/mcp\"\n[upstream.headers]\nX-Token = \"enc:v1:FILE\"\n");
        let known = file_ciphertexts(&file);
        assert!(known.contains("enc:v1:FILE"));
        let http = |h: &str| {
            entry(&format!(
                "name = \"x\"\ntransport = \"http\"\nurl = \"http://x/mcp\"\n[headers]\nX-A = {h:?}\n"
            ))
        };
        let store = || Origin::Store {
            file_ciphertexts: &known,
        };
        assert!(check_upstream(&http("env:HOME"), &[], Origin::Request).is_err());
        assert!(check_upstream(&http("env:HOME"), &[], store()).is_err());
        assert!(check_upstream(&http("enc:v1:MINE"), &[], Origin::Request).is_err());
        assert_eq!(check_upstream(&http("enc:v1:MINE"), &[], store()), Ok(()));
        assert_eq!(
            field(check_upstream(&http("enc:v1:FILE"), &[], store())),
            Some((400, "upstream[0].headers.X-A".into()))
        );
        assert_eq!(check_upstream(&http("plain"), &[], Origin::Request), Ok(()));
        let auth = entry("name = \"x\"\ntransport = \"http\"\nurl = \"http://x/mcp\"\n[auth]\noauth_token_url = \"http://t\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\n");
        assert_eq!(
            field(check_upstream(&auth, &[], Origin::Request)),
            Some((400, "upstream[0].auth.client_secret".into()))
        );
    }
}
