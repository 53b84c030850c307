//! Routing a `tools/call` through the catalog snapshot, as a worker does per request: load
//! the current snapshot (arc-swap, with the per-thread cache) and look the exposed name up.
//!
//! `route_10k_tools_hit` / `route_1k_tools_hit`: ours; beside them the naive baseline, a
//! linear scan of the merged tool list by name.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mcpgw::{
    registry::{self, UpstreamCatalog},
    upstream::{http::HttpUpstream, Link, SessionMode, Upstream},
};
use serde_json::json;

fn snapshot(n: usize) -> registry::Snapshot {
    let ups: Vec<Arc<Upstream>> = (0..10)
        .map(|i| {
            let name = format!("up{i}");
            Arc::new(Upstream::new(
                name.clone(),
                true,
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
                SessionMode::PerClient,
                Link::Http(HttpUpstream::new(
                    name,
                    "127.0.0.1:1".into(),
                    "127.0.0.1:1".into(),
                    "/mcp".into(),
                    vec![],
                    std::time::Duration::from_secs(1),
                    None,
                )),
            ))
        })
        .collect();
    let cats: Vec<Option<UpstreamCatalog>> = (0..10)
        .map(|_| {
            let mut caps = serde_json::Map::new();
            caps.insert("tools".into(), json!({}));
            Some(UpstreamCatalog {
                capabilities: caps,
                tools: (0..n / 10)
                    .map(|t| json!({"name": format!("tool_{t:05}"), "inputSchema": {"type": "object"}}))
                    .collect(),
                ..Default::default()
            })
        })
        .collect();
    let layout = registry::Layout {
        servers: &[],
        disabled: &Default::default(),
        separator: "__",
        page_size: 1000,
        auth: mcpgw::config::Config::parse("", "bench", &Default::default())
            .expect("an empty config parses")
            .auth
            .clone(),
    };
    registry::build(1, ups, &cats, &layout, registry::Guarded::default())
}

fn route(c: &mut Criterion) {
    for n in [1_000, 10_000] {
        let shared = ArcSwap::from_pointee(snapshot(n));
        let mut cache = Cache::new(&shared);
        let names: Vec<String> = (0..64)
            .map(|i| format!("up{}__tool_{:05}", i % 10, (i * 37) % (n / 10)))
            .collect();
        let mut g = c.benchmark_group(format!("route_{}k_tools_hit", n / 1000));
        let mut i = 0usize;
        g.bench_function("snapshot_cache_load_and_map_get", |b| {
            b.iter(|| {
                i = (i + 1) % names.len();
                let snap = cache.load();
                black_box(
                    snap.tools
                        .get(black_box(names[i].as_str()))
                        .map(|t| t.upstream),
                )
            })
        });
        let flat: Vec<(String, u16)> = shared
            .load()
            .tools
            .iter()
            .map(|(k, t)| (k.clone(), t.upstream.0))
            .collect();
        g.bench_function("naive_linear_scan", |b| {
            b.iter(|| {
                i = (i + 1) % names.len();
                black_box(flat.iter().find(|(k, _)| k == &names[i]).map(|(_, u)| *u))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, route);
criterion_main!(benches);
