//! Who a client is ([`Principal`]) and what it may do ([`Grant`]): roles compiled from
//! `[[role]]`, and client address lists.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::text::glob_match;

/// How a client proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// No credentials (allowed only with `auth.anonymous_roles`, or when auth is off).
    Anonymous,
    /// An API key.
    ApiKey,
    /// HTTP Basic.
    Basic,
    /// A JWT bearer token.
    Jwt,
    /// A verified TLS client certificate (`[[auth.cert]]`).
    Certificate,
}

impl Method {
    /// Its name in logs and the audit log.
    pub fn label(self) -> &'static str {
        match self {
            Method::Anonymous => "anonymous",
            Method::ApiKey => "api_key",
            Method::Basic => "basic",
            Method::Jwt => "jwt",
            Method::Certificate => "certificate",
        }
    }
}

/// An authenticated client.
#[derive(Debug)]
pub struct Principal {
    /// Its name (key name, user, or the token's user claim).
    pub name: Arc<str>,
    /// How it authenticated.
    pub method: Method,
    /// Its team, if any.
    pub team: Option<Arc<str>>,
    /// What it may do.
    pub grant: Arc<Grant>,
    /// `<method>:<name>`: what rate limits and quotas count by (two credentials issued
    /// under one name share them).
    pub key: Box<str>,
    /// The credential it proved: an API key's id, a Basic user, a token's issuer and
    /// subject, a certificate's subject. A session (and a parked call) belongs to exactly
    /// this credential, not to a name another credential may carry too.
    pub credential: Box<str>,
}

impl Principal {
    /// A principal named `name`, authenticated by `method`, with `grant`.
    pub fn new(name: &str, method: Method, team: Option<&str>, grant: Arc<Grant>) -> Self {
        let key: Box<str> = format!("{}:{name}", method.label()).into();
        Self {
            credential: key.clone(),
            key,
            name: name.into(),
            method,
            team: team.map(Into::into),
            grant,
        }
    }

    /// This principal, bound to `credential` (see [`Principal::credential`]).
    pub fn with_credential(mut self, credential: String) -> Self {
        self.credential = credential.into();
        self
    }
}

/// What a principal may call, get and read: the union of its roles.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct Grant {
    /// Everything (auth off, or a role with `*` everywhere).
    all: bool,
    tools: Vec<String>,
    prompts: Vec<String>,
    resources: Vec<String>,
    /// Sorted role names it came from (identifies the grant in caches and logs).
    pub roles: Vec<String>,
}

impl Grant {
    /// Everything allowed (authentication off).
    pub fn everything() -> Arc<Self> {
        Arc::new(Self {
            all: true,
            ..Default::default()
        })
    }

    /// Whether nothing is restricted.
    pub fn is_everything(&self) -> bool {
        self.all
    }

    /// Whether tool `name` (gateway name, as the view shows it) may be called and listed.
    pub fn tool(&self, name: &str) -> bool {
        self.all || self.tools.iter().any(|g| glob_match(g, name))
    }

    /// Whether prompt `name` may be got and listed.
    pub fn prompt(&self, name: &str) -> bool {
        self.all || self.prompts.iter().any(|g| glob_match(g, name))
    }

    /// Whether resource `uri` (gateway form) may be read and listed.
    pub fn resource(&self, uri: &str) -> bool {
        self.all || self.resources.iter().any(|g| glob_match(g, uri))
    }
}

/// `[[role]]` entries by name, and the grants made of them (cached per role set: tokens with
/// the same roles share one grant).
#[derive(Default)]
pub struct Roles {
    by_name: HashMap<String, Role>,
    grants: dashmap::DashMap<Vec<String>, Arc<Grant>>,
    /// Roles of each team (`[[auth.team]]`).
    teams: HashMap<String, Vec<String>>,
}

/// One role.
#[derive(Clone, Debug)]
pub struct Role {
    /// Tool globs.
    pub tools: Vec<String>,
    /// Prompt globs.
    pub prompts: Vec<String>,
    /// Resource URI globs.
    pub resources: Vec<String>,
}

impl Roles {
    /// From `[[role]]`.
    pub fn new(roles: impl IntoIterator<Item = (String, Role)>) -> Self {
        Self {
            by_name: roles.into_iter().collect(),
            grants: Default::default(),
            teams: HashMap::new(),
        }
    }

    /// With the roles every member of each team gets.
    pub fn with_teams(mut self, teams: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        self.teams = teams.into_iter().collect();
        self
    }

    /// The grant of a principal holding `names` in `team` (its team's roles added).
    pub fn grant_for(&self, names: &[String], team: Option<&str>) -> Arc<Grant> {
        match team.and_then(|t| self.teams.get(t)) {
            Some(extra) if !extra.is_empty() => {
                let mut all = names.to_vec();
                all.extend(extra.iter().cloned());
                self.grant(&all)
            }
            _ => self.grant(names),
        }
    }

    /// Whether a role of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The grant of a set of roles (unknown role names grant nothing).
    pub fn grant(&self, names: &[String]) -> Arc<Grant> {
        let mut key: Vec<String> = names.to_vec();
        key.sort();
        key.dedup();
        if let Some(g) = self.grants.get(&key) {
            return g.clone();
        }
        let mut g = Grant {
            roles: key.clone(),
            ..Default::default()
        };
        for r in key.iter().filter_map(|n| self.by_name.get(n)) {
            g.tools.extend(r.tools.iter().cloned());
            g.prompts.extend(r.prompts.iter().cloned());
            g.resources.extend(r.resources.iter().cloned());
        }
        let g = Arc::new(g);
        // Role sets come from tokens too: keep the cache bounded.
        if self.grants.len() < 4096 {
            self.grants.insert(key, g.clone());
        }
        g
    }
}

/// Client address rules: allowed networks (empty: all) minus denied ones.
#[derive(Clone, Debug, Default)]
pub struct IpRules {
    allow: Vec<ipnet::IpNet>,
    deny: Vec<ipnet::IpNet>,
}

impl IpRules {
    /// From CIDR (or plain address) lists; errors name the entry.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let nets = |v: &[String]| -> Result<Vec<ipnet::IpNet>, String> {
            v.iter()
                .map(|s| {
                    let s = s.trim();
                    s.parse::<ipnet::IpNet>()
                        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| format!("{s:?} is not an address or CIDR network"))
                })
                .collect()
        };
        Ok(Self {
            allow: nets(allow)?,
            deny: nets(deny)?,
        })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `ip` may connect. IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
            && !self.deny.iter().any(|n| n.contains(&ip))
    }

    /// Whether `ip` is in the allow list (for trusted proxies: the list is the proxies).
    pub fn lists(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_unions_of_roles() {
        let roles = Roles::new([
            (
                "reader".to_string(),
                Role {
                    tools: vec!["demo__echo".into()],
                    prompts: vec![],
                    resources: vec!["mcpgw://demo/*".into()],
                },
            ),
            (
                "dev".to_string(),
                Role {
                    tools: vec!["github__*".into()],
                    prompts: vec!["*".into()],
                    resources: vec![],
                },
            ),
        ]);
        let g = roles.grant(&["dev".into(), "reader".into(), "nope".into()]);
        assert!(g.tool("demo__echo") && g.tool("github__create_issue"));
        assert!(!g.tool("demo__add"));
        assert!(g.prompt("anything") && g.resource("mcpgw://demo/x"));
        assert!(!g.resource("mcpgw://other/x"));
        let again = roles.grant(&["reader".into(), "dev".into(), "nope".into()]);
        assert!(Arc::ptr_eq(&g, &again), "one grant per role set");
        assert!(!roles.grant(&[]).tool("demo__echo"));
        let roles = roles.with_teams([("platform".to_string(), vec!["reader".to_string()])]);
        assert!(roles.grant_for(&[], Some("platform")).tool("demo__echo"));
        assert!(!roles.grant_for(&[], Some("other")).tool("demo__echo"));
        assert!(!roles.grant_for(&[], None).tool("demo__echo"));
        assert!(Grant::everything().tool("x"));
    }

    #[test]
    fn ip_rules() {
        let r = IpRules::parse(
            &["10.0.0.0/8".into(), "::1".into(), "127.0.0.1".into()],
            &["10.6.0.0/16".into()],
        )
        .expect("parse");
        assert!(r.allows("10.1.2.3".parse().expect("ip")));
        assert!(!r.allows("10.6.2.3".parse().expect("ip")));
        assert!(!r.allows("192.168.1.1".parse().expect("ip")));
        assert!(r.allows("::1".parse().expect("ip")));
        assert!(r.allows("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(IpRules::parse(&["10.0.0.0/33".into()], &[]).is_err());
        assert!(IpRules::default().allows("1.2.3.4".parse().expect("ip")));
    }
}
