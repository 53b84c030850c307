use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().expect("cidr")).collect()
}

fn file_policy() -> AddressPolicy {
    AddressPolicy::new(vec![
        (sa("127.0.0.1:8080"), Listener::Mcp),
        (sa("127.0.0.1:8081"), Listener::Admin),
    ])
}

fn admin_policy() -> AddressPolicy {
    file_policy().within(nets(DEFAULT_UPSTREAM_NETWORKS))
}

#[test]
fn always_refused_whatever_the_networks() {
    let wide = file_policy().within(nets(&["0.0.0.0/0", "::/0"]));
    for p in [file_policy(), admin_policy(), wide] {
        for (addr, want) in [
            ("169.254.169.254:80", Deny::LinkLocal),
            ("169.254.170.2:80", Deny::LinkLocal),
            ("[fe80::1]:80", Deny::LinkLocal),
            ("[febf:ffff::1]:80", Deny::LinkLocal),
            // IPv4-mapped and NAT64 forms of the metadata address.
            ("[::ffff:169.254.169.254]:80", Deny::LinkLocal),
            ("[::ffff:a9fe:a9fe]:80", Deny::LinkLocal),
            ("[64:ff9b::a9fe:a9fe]:80", Deny::LinkLocal),
            ("[fd00:ec2::254]:80", Deny::Metadata),
            ("100.100.100.200:80", Deny::Metadata),
            ("168.63.129.16:80", Deny::Metadata),
            ("0.0.0.0:80", Deny::Unspecified),
            ("0.1.2.3:80", Deny::Unspecified),
            ("[::]:80", Deny::Unspecified),
            ("[::ffff:0.0.0.0]:80", Deny::Unspecified),
            ("255.255.255.255:80", Deny::Broadcast),
            ("224.0.0.1:80", Deny::Multicast),
            ("239.255.255.250:1900", Deny::Multicast),
            ("[ff02::1]:80", Deny::Multicast),
            ("[::ffff:224.0.0.1]:80", Deny::Multicast),
            ("127.0.0.1:0", Deny::Port),
            ("127.0.0.1:8080", Deny::OwnListener(Listener::Mcp)),
            ("127.0.0.1:8081", Deny::OwnListener(Listener::Admin)),
            ("[::ffff:127.0.0.1]:8080", Deny::OwnListener(Listener::Mcp)),
        ] {
            assert_eq!(p.check(sa(addr)), Err(want), "{addr}");
        }
    }
}

#[test]
fn own_listeners_are_matched_on_address_and_port() {
    let p = file_policy();
    // Same address, other port; same port, other address: not the gateway.
    assert_eq!(p.check(sa("127.0.0.1:8082")), Ok(()));
    assert_eq!(p.check(sa("127.0.0.2:8080")), Ok(()));
    assert_eq!(p.check(sa("[::1]:8080")), Ok(()));
    // A wildcard listener takes its port on every local address, loopback included.
    let any4 = AddressPolicy::new(vec![(sa("0.0.0.0:9000"), Listener::Mcp)]);
    for a in [
        "127.0.0.1:9000",
        "127.3.2.1:9000",
        "[::ffff:127.0.0.1]:9000",
    ] {
        assert_eq!(
            any4.check(sa(a)),
            Err(Deny::OwnListener(Listener::Mcp)),
            "{a}"
        );
    }
    assert_eq!(any4.check(sa("127.0.0.1:9001")), Ok(()));
    // 0.0.0.0 is IPv4 only; `::` is dual-stack.
    assert_eq!(any4.check(sa("[::1]:9000")), Ok(()));
    let any6 = AddressPolicy::new(vec![(sa("[::]:9000"), Listener::Admin)]);
    for a in ["127.0.0.1:9000", "[::1]:9000"] {
        assert_eq!(
            any6.check(sa(a)),
            Err(Deny::OwnListener(Listener::Admin)),
            "{a}"
        );
    }
    // A wildcard listener does not cover other hosts (TEST-NET-3 is never local).
    assert_eq!(any4.check(sa("203.0.113.7:9000")), Ok(()));
}

#[test]
fn networks_limit_the_admin_policy() {
    let p = admin_policy();
    for ok in [
        "127.0.0.1:9000",
        "127.9.9.9:9000",
        "[::1]:9000",
        "10.1.2.3:443",
        "172.16.0.1:80",
        "172.31.255.255:80",
        "192.168.1.1:80",
        "[fd12:3456::1]:80",
        "[::ffff:10.0.0.1]:80",
    ] {
        assert_eq!(p.check(sa(ok)), Ok(()), "{ok}");
    }
    for out in [
        "8.8.8.8:443",
        "172.32.0.1:80",
        "100.64.0.1:80",
        "[2001:db8::1]:443",
        "[::ffff:8.8.8.8]:443",
        "[64:ff9b::808:808]:443",
    ] {
        assert_eq!(p.check(sa(out)), Err(Deny::OutsideNetworks), "{out}");
    }
    assert!(p.limited() && !file_policy().limited());
    // The config file's policy is not limited to networks.
    assert_eq!(file_policy().check(sa("8.8.8.8:443")), Ok(()));
    // An empty list allows nothing.
    let none = file_policy().within(Vec::new());
    assert_eq!(none.check(sa("127.0.0.1:9")), Err(Deny::OutsideNetworks));
}

#[test]
fn literal_authorities_are_checked_and_names_pass() {
    let p = admin_policy();
    assert_eq!(p.check_authority("127.0.0.1:9000"), Ok(()));
    assert_eq!(p.check_authority("[::1]:9000"), Ok(()));
    assert_eq!(p.check_authority("mcp.internal:443"), Ok(()));
    assert_eq!(p.check_authority("localhost:8080"), Ok(()));
    for (a, want) in [
        ("127.0.0.1:99999", Deny::Port),
        ("127.0.0.1:0", Deny::Port),
        ("name:65536", Deny::Port),
        ("name:", Deny::Port),
        ("169.254.169.254:80", Deny::LinkLocal),
        ("[fe80::1]:80", Deny::LinkLocal),
        ("[::ffff:169.254.169.254]:80", Deny::LinkLocal),
        ("127.0.0.1:8080", Deny::OwnListener(Listener::Mcp)),
        ("8.8.8.8:443", Deny::OutsideNetworks),
    ] {
        assert_eq!(p.check_authority(a), Err(want), "{a}");
    }
}

#[test]
fn resolved_names_are_refused_when_any_address_is() {
    let p = file_policy();
    let e = p.resolve("localhost:8080").expect_err("own listener");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    let msg = e.to_string();
    assert!(
        msg.contains("outbound address policy") && msg.contains("MCP listener"),
        "{msg}"
    );
    assert!(p.resolve("localhost:8082").is_ok());
    assert!(p.resolve("127.0.0.1:8082").is_ok());
    let mixed = [sa("10.0.0.1:80"), sa("169.254.169.254:80")];
    let e = admin_policy().allow_all(&mixed).expect_err("mixed");
    assert!(e.to_string().contains("169.254.169.254:80"), "{e}");
    let loopback_excluded = file_policy().within(nets(&["10.0.0.0/8"]));
    let e = loopback_excluded
        .resolve("localhost:9000")
        .expect_err("loopback outside the networks");
    assert!(e.to_string().contains("upstream_networks"), "{e}");
}

#[test]
fn ureq_requests_to_refused_addresses_never_connect() {
    // A listener the policy names as the gateway's own: the request must fail before any
    // connection is made to it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let own = l.local_addr().expect("addr");
    let p = std::sync::Arc::new(AddressPolicy::new(vec![(own, Listener::Admin)]));
    let a = agent(
        ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(5)))
            .proxy(None)
            .build(),
        p,
    );
    let e = a
        .get(&format!("http://localhost:{}/jwks", own.port()))
        .call()
        .expect_err("refused");
    assert!(e.to_string().contains("outbound address policy"), "{e}");
    assert_eq!(
        l.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the refused listener was connected to"
    );
}
