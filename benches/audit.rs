//! The audit log's cost per routed call (`observe::audit`), in its two halves.
//!
//! `audit_record_call`: what a worker pays: building the call record (three reference
//! counts, the moved target) and queueing it. Timed in batches of 10,000 with the writer
//! thread running (it drains every 5 ms and competes for the channel's lock as in the
//! gateway); between batches the bench waits, untimed, until the queue is empty, so nothing
//! is dropped. `audit_encode_line`: what the writer pays per line: the JSON line, its
//! SHA-256 and the hex of it (the write itself is one call per batch and not included).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use mcpgw::observe::audit::{self, Audit, CallRecord, SessionTag};

struct Names {
    principal: Arc<str>,
    upstream: Arc<str>,
    session: SessionTag,
}

fn record(n: &Names) -> CallRecord {
    CallRecord {
        session: n.session,
        principal: n.principal.clone(),
        target: "github__create_issue".into(),
        upstream: n.upstream.clone(),
        outcome: "ok",
        latency_us: 1234,
        request_bytes: 1187,
        response_bytes: 1342,
        arguments: None,
    }
}

fn names() -> Names {
    Names {
        principal: "ci-bot@example.com".into(),
        upstream: "github".into(),
        session: SessionTag::of("9f86d081884c7d65"),
    }
}

fn record_call(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("mcpgw-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let a = Audit::start(&mcpgw::config::AuditSettings {
        path: path.clone(),
        block: false,
        arguments: false,
    })
    .expect("start the audit writer");
    let n = names();
    c.bench_function("audit_record_call", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let batch = left.min(10_000);
                let t = Instant::now();
                for _ in 0..batch {
                    a.record_call(record(&n));
                }
                spent += t.elapsed();
                left -= batch;
                while a.queued() > 0 {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
            }
            spent
        })
    });
    assert_eq!(a.dropped(), 0, "the bench must not measure the drop path");
    a.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

fn encode_line(c: &mut Criterion) {
    let n = names();
    let mut buf = Vec::with_capacity(1024);
    c.bench_function("audit_encode_line", |b| {
        b.iter_batched(
            || record(&n),
            |r| black_box(audit::encode_call_for_bench(&mut buf, r)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, record_call, encode_line);
criterion_main!(benches);
