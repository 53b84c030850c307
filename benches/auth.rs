//! The per-request cost of client authentication and authorization, each beside a naive
//! baseline:
//!
//! - `auth_api_key_check`: one salted SHA-256 and a constant-time compare (ours) vs
//!   re-hashing the presented key against every stored key in turn (100 keys).
//! - `auth_jwt_verify_es256` / `auth_jwt_verify_hs256`: a JWT verified against a key loaded
//!   once (ours) vs parsing the PEM key for every token.
//! - `auth_rbac_tool`: the grant of a role set looked up once and matched by glob (ours) vs
//!   rebuilding the grant from the role names for every call.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mcpgw::auth::{
    credentials::{self, KeyHash},
    jwt,
    policy::{Role, Roles},
};
use serde_json::json;

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/auth/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("test key")
}

fn bench_keys(c: &mut Criterion) {
    let keys: Vec<credentials::NewKey> = (0..100)
        .map(|_| credentials::new_key().expect("key"))
        .collect();
    let presented = keys[57].key.clone();
    let stored: std::collections::HashMap<String, KeyHash> = keys
        .iter()
        .map(|k| (k.id.clone(), k.hash.clone()))
        .collect();
    let mut g = c.benchmark_group("auth_api_key_check");
    g.bench_function("ours_id_lookup", |b| {
        b.iter(|| {
            let (id, secret) = credentials::split_key(black_box(&presented)).expect("shape");
            stored.get(id).is_some_and(|h| h.matches(secret))
        })
    });
    g.bench_function("naive_try_every_key", |b| {
        b.iter(|| {
            let (_, secret) = credentials::split_key(black_box(&presented)).expect("shape");
            stored.values().any(|h| h.matches(secret))
        })
    });
    g.finish();
}

fn bench_jwt(c: &mut Criterion) {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = json!({"iss": "https://issuer.test", "sub": "bench", "aud": "mcp", "exp": exp, "roles": ["all"]});
    let rules = jwt::Rules {
        issuer: Some("https://issuer.test".into()),
        audiences: vec!["mcp".into()],
        ..Default::default()
    };
    let ec_pem = testdata("ec_public.pem");
    let ec_token = {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&testdata("ec_private.pem")).expect("ec");
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &key,
        )
        .expect("sign")
    };
    let hs_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"a bench secret of some length"),
    )
    .expect("sign");
    let ec_keys = jwt::KeySet::from_pem(&ec_pem, None).expect("keys");
    let hs_keys = jwt::KeySet::from_secret(b"a bench secret of some length", None);
    let mut g = c.benchmark_group("auth_jwt_verify_es256");
    g.bench_function("ours_cached_key", |b| {
        b.iter(|| jwt::verify(black_box(&ec_token), &ec_keys, &rules).expect("valid"))
    });
    g.bench_function("naive_parse_key_per_token", |b| {
        b.iter(|| {
            let keys = jwt::KeySet::from_pem(black_box(&ec_pem), None).expect("keys");
            jwt::verify(&ec_token, &keys, &rules).expect("valid")
        })
    });
    g.finish();
    let mut g = c.benchmark_group("auth_jwt_verify_hs256");
    g.bench_function("ours_cached_key", |b| {
        b.iter(|| jwt::verify(black_box(&hs_token), &hs_keys, &rules).expect("valid"))
    });
    g.finish();
}

fn bench_rbac(c: &mut Criterion) {
    let role = |tools: &[&str]| Role {
        tools: tools.iter().map(|s| s.to_string()).collect(),
        prompts: vec![],
        resources: vec![],
    };
    let roles = Roles::new([
        (
            "reader".to_string(),
            role(&["github__get_*", "github__list_*", "docs__*"]),
        ),
        ("dev".to_string(), role(&["github__*", "ci__run_*"])),
        ("ops".to_string(), role(&["k8s__*", "pager__ack"])),
    ]);
    let names = vec!["reader".to_string(), "ops".to_string()];
    let grant = roles.grant(&names);
    let mut g = c.benchmark_group("auth_rbac_tool");
    g.bench_function("ours_grant_once", |b| {
        b.iter(|| grant.tool(black_box("k8s__get_pods")))
    });
    g.bench_function("naive_grant_per_call", |b| {
        b.iter(|| {
            let fresh = Roles::new([
                (
                    "reader".to_string(),
                    role(&["github__get_*", "github__list_*", "docs__*"]),
                ),
                ("dev".to_string(), role(&["github__*", "ci__run_*"])),
                ("ops".to_string(), role(&["k8s__*", "pager__ack"])),
            ]);
            fresh.grant(black_box(&names)).tool("k8s__get_pods")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_keys, bench_jwt, bench_rbac);
criterion_main!(benches);
