//! The command line: `check`, the embedded default, the demo server.

use std::process::Command;

use crate::support::{client_script, free_port, Gateway, TempDir};

#[test]
fn check_names_file_line_and_field() {
    let dir = TempDir::new("check");
    let f = dir.0.join("bad.toml");
    std::fs::write(&f, "[gateway]\nlisten = \"127.0.0.1:1\"\n\n[[upstream]]\nname = \"a\"\ntransport = \"http\"\nurl = \"ftp://x\"\n").expect("write");
    let out = crate::support::mcpgw_check(&f);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:7") && err.contains("upstream[0].url"),
        "{err}"
    );

    std::fs::write(&f, "[gateway]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n").expect("write");
    let out = crate::support::mcpgw_check(&f);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.toml:3") && err.contains("listen_port"),
        "{err}"
    );

    // An empty file (a write caught half-way) is refused, not run as "all defaults".
    std::fs::write(&f, "\n  \n").expect("write");
    let out = crate::support::mcpgw_check(&f);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is empty"), "{err}");

    let ok = crate::support::root().join("examples/demo.toml");
    let out = crate::support::mcpgw_check(&ok);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mcpgw run` with no config serves the demo tools (listen moved by the env override).
#[test]
fn embedded_default_serves_demo_tools() {
    let dir = TempDir::new("default");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    // No --config and no MCPGW_CONFIG: the embedded default is used.
    let child = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .arg("run")
        .env("MCPGW_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("MCPGW_CONFIG")
        .env("XDG_DATA_HOME", dir.0.join("data"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut gw = Gateway::adopt(child, addr, dir);
    let steps = client_script(
        &gw.url(),
        serde_json::json!([
            ["call", "demo__add", {"a": 1, "b": 2}],
            ["call", "demo__reverse", {"text": "abc"}],
            ["read", "mcpgw://demo/demo://greeting/world"],
        ]),
    );
    assert_eq!(steps[0]["structured"]["sum"], 3, "{}", steps[0]);
    assert_eq!(steps[1]["text"][0], "cba", "{}", steps[1]);
    assert_eq!(
        steps[2]["contents"][0]["text"], "Hello, world!",
        "{}",
        steps[2]
    );
    assert!(gw.stop().success());
}
