//! The outbound address policy: which addresses the gateway may open a connection to.
//!
//! One [`AddressPolicy`] is checked against every address the gateway connects to on its own
//! initiative: HTTP upstreams and their replicas (`upstream::http`, on the worker, per new
//! connection), OAuth token endpoints and JWKS URLs (`ureq`, through [`PolicyResolver`]).
//! Config loading and the admin API check the literal addresses of the same URLs
//! ([`AddressPolicy::check_authority`]); a host name passes there and is checked on each
//! address it resolves to, every time it is resolved, so a name that later resolves to a
//! refused address fails the connect instead of reaching it.
//!
//! Always refused ([`Deny`]): port 0, unspecified (`0.0.0.0/8`, `::`), broadcast, multicast,
//! link-local (`169.254.0.0/16`, `fe80::/10`), cloud metadata addresses ([`METADATA`]) and the
//! gateway's own listeners (IP and port; a wildcard listener covers its port on every local
//! address). IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::/96`) IPv6 addresses are
//! judged by the IPv4 address they carry. A policy with `networks` (the admin API's, from
//! `[gateway] upstream_networks`) also refuses anything outside them.
//!
//! Imports nothing above `net`; never logs (callers name the upstream or URL in theirs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;

/// Cloud metadata and host-service addresses outside link-local, refused like link-local:
/// AWS IMDS over IPv6 (`fd00:ec2::254`, inside the ULA range), Alibaba Cloud
/// (`100.100.100.200`), Azure's WireServer (`168.63.129.16`). The IPv4 metadata address of
/// AWS, GCP, Azure, OpenStack and others (`169.254.169.254`) is link-local.
pub const METADATA: &[IpAddr] = &[
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
];

/// The default `[gateway] upstream_networks`: loopback, the RFC 1918 private ranges and IPv6
/// unique-local addresses. Sidecars and services on a private network are reachable through
/// the admin API; the internet, link-local and metadata addresses are not.
pub const DEFAULT_UPSTREAM_NETWORKS: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
];

/// Why an address is refused. `Display` completes "<address> is ...", for errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    /// Port 0, or (in a URL) no port from 1 to 65535.
    #[error("not on a port from 1 to 65535")]
    Port,
    /// `0.0.0.0/8` or `::`.
    #[error("an unspecified address")]
    Unspecified,
    /// `255.255.255.255`.
    #[error("the broadcast address")]
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    #[error("a multicast address")]
    Multicast,
    /// `169.254.0.0/16`, `fe80::/10`.
    #[error("a link-local address (cloud metadata services live there)")]
    LinkLocal,
    /// One of [`METADATA`].
    #[error("a cloud metadata address")]
    Metadata,
    /// The gateway's own listener.
    #[error("the gateway's own {0} listener")]
    OwnListener(Listener),
    /// Outside the policy's networks.
    #[error("outside [gateway] upstream_networks")]
    OutsideNetworks,
}

/// Which of the gateway's listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The MCP endpoint (`gateway.listen`).
    Mcp,
    /// The admin API (`admin.listen`).
    Admin,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::Mcp => "MCP",
            Listener::Admin => "admin",
        })
    }
}

/// What the gateway may connect to. Cheap to check; built once per configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPolicy {
    /// The gateway's own listeners.
    own: Vec<(SocketAddr, Listener)>,
    /// Allowed networks; `None`: any address the always-refused set leaves.
    networks: Option<Vec<IpNet>>,
}

impl AddressPolicy {
    /// Refuses the always-refused set and `own` listeners; allows the rest.
    pub fn new(own: Vec<(SocketAddr, Listener)>) -> Self {
        Self {
            own,
            networks: None,
        }
    }

    /// The same, also refusing what lies outside `networks`.
    pub fn within(mut self, networks: Vec<IpNet>) -> Self {
        self.networks = Some(networks);
        self
    }

    /// Whether it is limited to networks (the admin API's policy).
    pub fn limited(&self) -> bool {
        self.networks.is_some()
    }

    /// Whether the gateway may connect to `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Deny> {
        if addr.port() == 0 {
            return Err(Deny::Port);
        }
        let ip = canonical(addr.ip());
        refused_ip(ip)?;
        // NAT64 hands the IPv4 address it carries to the IPv4 side.
        if let Some(v4) = nat64(ip) {
            refused_ip(IpAddr::V4(v4))?;
        }
        for (l, which) in &self.own {
            if l.port() == addr.port() && same_host(canonical(l.ip()), ip) {
                return Err(Deny::OwnListener(*which));
            }
        }
        if let Some(nets) = &self.networks {
            if !nets.iter().any(|n| n.contains(&ip)) {
                return Err(Deny::OutsideNetworks);
            }
        }
        Ok(())
    }

    /// Checks the literal address of a URL authority's `host:port` (`[v6]:port` for IPv6);
    /// a host name passes (its addresses are checked when it is resolved). A port that is not
    /// 1 to 65535 is refused either way.
    pub fn check_authority(&self, host_port: &str) -> Result<(), Deny> {
        let (host, port) = split_host_port(host_port).ok_or(Deny::Port)?;
        match host.parse::<IpAddr>() {
            Ok(ip) => self.check(SocketAddr::new(ip, port)),
            Err(_) => Ok(()),
        }
    }

    /// Resolves `host:port` (blocking, as `TcpStream::connect` would) and checks every
    /// address: a name is refused when any address it resolves to is, so that a mixed answer
    /// cannot smuggle a refused one in. `Err` names the address and why.
    pub fn resolve(&self, host_port: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = match host_port.parse::<SocketAddr>() {
            Ok(a) => vec![a],
            Err(_) => host_port.to_socket_addrs()?.collect(),
        };
        self.allow_all(&addrs)?;
        Ok(addrs)
    }

    /// `Ok` when every address of `addrs` is allowed; else the first refused one, as a
    /// `PermissionDenied` error ([`Refused`] inside).
    pub fn allow_all(&self, addrs: &[SocketAddr]) -> std::io::Result<()> {
        for a in addrs {
            if let Err(deny) = self.check(*a) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    Refused { addr: *a, deny },
                ));
            }
        }
        Ok(())
    }
}

/// An address refused by the outbound address policy (inside an `io::Error` at connect time).
#[derive(Debug, thiserror::Error)]
#[error("refused by the outbound address policy: {addr} is {deny}")]
pub struct Refused {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub deny: Deny,
}

// === ureq ===

/// ureq's resolver with every resolved address checked by a policy: what the OAuth and
/// JWKS fetch threads connect through (redirects included). A refused address fails the
/// request with an IO error naming it ([`Refused`]). Through an HTTP proxy (`HTTPS_PROXY`
/// and the like), only the proxy's address is resolved here.
#[derive(Debug)]
pub struct PolicyResolver {
    policy: std::sync::Arc<AddressPolicy>,
    inner: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.policy.allow_all(&addrs).map_err(ureq::Error::Io)?;
        Ok(addrs)
    }
}

/// A ureq agent with `config` whose connections pass `policy`.
pub fn agent(config: ureq::config::Config, policy: std::sync::Arc<AddressPolicy>) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        PolicyResolver {
            policy,
            inner: Default::default(),
        },
    )
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; other addresses unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address inside a NAT64 well-known-prefix address (`64:ff9b::/96`).
fn nat64(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let o = v6.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// The always-refused set, for a canonical address.
fn refused_ip(ip: IpAddr) -> Result<(), Deny> {
    if METADATA.contains(&ip) {
        return Err(Deny::Metadata);
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.octets()[0] == 0 {
                Err(Deny::Unspecified)
            } else if v4.is_broadcast() {
                Err(Deny::Broadcast)
            } else if v4.is_multicast() {
                Err(Deny::Multicast)
            } else if v4.is_link_local() {
                Err(Deny::LinkLocal)
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Err(Deny::Unspecified)
            } else if v6.is_multicast() {
                Err(Deny::Multicast)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Err(Deny::LinkLocal)
            } else {
                Ok(())
            }
        }
    }
}

/// Whether a connection to `ip` reaches a listener bound to `listener` (both canonical):
/// the same address, or any local address for a wildcard listener (`0.0.0.0` takes IPv4,
/// `::` both families, as Linux binds it dual-stack by default).
fn same_host(listener: IpAddr, ip: IpAddr) -> bool {
    if listener == ip {
        return true;
    }
    let wildcard_covers = match listener {
        IpAddr::V4(l) => l.is_unspecified() && ip.is_ipv4(),
        IpAddr::V6(l) => l.is_unspecified(),
    };
    wildcard_covers && is_local(ip)
}

/// Whether `ip` is one of this host's addresses: loopback, or an address a socket can be
/// bound to (binding a UDP socket to port 0 sends nothing).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// `host:port` or `[v6]:port` split; `None` unless the port is 1 to 65535.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (port != 0).then_some((host, port))
}

#[cfg(test)]
mod tests;
