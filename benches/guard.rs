//! The cost of the guards, each screening scenario beside a naive baseline:
//!
//! - `screen_4k_result_clean`: a 4 KiB `tools/call` result (prose, a listing, a table, a
//!   git log) with no finding, all classes; ours (byte walk, anchors, skip-ahead) vs
//!   parsing into a `serde_json::Value` and running one `regex::Regex` per detector over
//!   every string.
//! - `screen_4k_result_secrets_mask`: the same result with a few secrets and PII, scanned
//!   and masked; the baseline re-serializes the document with `replace_all`.
//! - `screen_4k_result_clean_by_class`: the clean result with one class at a time, to see
//!   where the time goes.
//! - `screen_1k_arguments_clean`: 1 KiB of `params.arguments`, no finding.
//! - `catalog_scan_tool`: the catalog poisoning scan of one ~600-byte tool definition.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mcpgw::guard::screen::{Classes, Hit, Screener};
use mcpgw::guard::Scanner;
use regex::Regex;
use serde_json::{json, Value};

/// About 1 KiB of tool-result text without findings.
const PROSE: &str = "The deployment finished at 10:42 UTC on 2024-03-18. Version 2.14.3 of the \
billing service now runs on 12 pods across 3 zones; p99 latency went from 184 ms to 97 ms \
after the connection pool change (see PR #4521). Two alerts fired during the rollout: \
DiskPressure on node ip-10-0-3-17 and a brief spike of 5xx responses from the checkout \
route, both resolved without intervention. The next window is Thursday; AbstractRequestHandlerFactory \
and the RetryBudgetController were refactored, with unit tests for the backoff path.\n\
commit e83c5163316f89bfbde7d9ab23ca2e25604af290\nAuthor: release-bot\nDate: Mon Mar 18 10:40:00 2024 +0000\n\n\
    Bump uuid fixture 123e4567-e89b-12d3-a456-426614174000 and sha256 \
9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n";

/// About 1 KiB: a directory listing and a small table.
const LISTING: &str = "drwxr-xr-x  5 app staff   160 Mar 18 10:30 .\n\
-rw-r--r--  1 app staff  1024 Mar 18 10:30 README.md\n\
-rw-r--r--  1 app staff  2048 Mar 17 09:12 icon@2x.png\n\
-rw-r--r--  1 app staff   743 Mar 16 08:01 Cargo.toml\n\
drwxr-xr-x 12 app staff   384 Mar 15 17:45 src/components/Button/\n\
-rw-r--r--  1 app staff 18234 Mar 15 17:45 package-lock.json\n\
| id | region    | requests | errors | ratio  |\n\
|----|-----------|----------|--------|--------|\n\
| 1  | eu-west-1 | 1048576  | 12     | 0.0011 |\n\
| 2  | us-east-1 | 2097152  | 40     | 0.0019 |\n\
| 3  | ap-south-1| 524288   | 3      | 0.0006 |\n\
Total: 3670016 requests, 55 errors, 3 regions; 192.168.10.20 answered 99.95% of probes.\n";

/// A `tools/call` result of about `kib` KiB of clean text, as JSON bytes.
fn clean_result(kib: usize) -> Vec<u8> {
    let mut text = String::new();
    while text.len() + PROSE.len() + LISTING.len() < kib * 1024 - 200 {
        text.push_str(PROSE);
        text.push_str(LISTING);
    }
    while text.len() < kib * 1024 - 100 {
        text.push_str("All checks passed. ");
    }
    json!({"content": [{"type": "text", "text": text}], "isError": false})
        .to_string()
        .into_bytes()
}

/// A result of about 4 KiB with an AWS key, a GitHub token, an email, a card and a phone.
fn dirty_result() -> Vec<u8> {
    let mut text = String::new();
    text.push_str(PROSE);
    text.push_str("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nGITHUB_TOKEN=ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d\n");
    text.push_str(LISTING);
    text.push_str("Customer: jane.doe@example.com, +1 415 555 2671, card 4111 1111 1111 1111.\n");
    text.push_str(PROSE);
    text.push_str(LISTING);
    while text.len() < 4 * 1024 - 100 {
        text.push_str("All checks passed. ");
    }
    json!({"content": [{"type": "text", "text": text}], "isError": false})
        .to_string()
        .into_bytes()
}

/// About 1 KiB of `params.arguments`.
fn arguments() -> Vec<u8> {
    json!({
        "owner": "acme",
        "repo": "billing-service",
        "title": "Connection pool exhausted under load after 2.14.3",
        "body": "After the rollout on 2024-03-18 the checkout route returned 5xx for about \
                 four minutes. Pool size was 32, max idle 8, and the retry budget allowed \
                 3 attempts with 100 ms base backoff. Logs from ip-10-0-3-17 show the pool \
                 reaching its limit at 10:41:07 UTC. Steps to reproduce: run the load test \
                 with 400 concurrent clients against the staging cluster and watch the \
                 pool gauge. Expected: latency stays under 200 ms at p99. Actual: 5xx \
                 responses for 3% of requests until the pool recovers. Proposed fix: size \
                 the pool from the worker count and make the idle timeout configurable. \
                 Related: PR #4521, commit e83c5163316f89bfbde7d9ab23ca2e25604af290.",
        "labels": ["bug", "performance", "billing"],
        "assignees": ["release-bot"],
        "milestone": 42,
        "draft": false
    })
    .to_string()
    .into_bytes()
}

/// The naive screener: a DOM and one regex per detector.
struct Naive {
    rules: Vec<(&'static str, Regex)>,
}

impl Naive {
    fn new() -> Self {
        let rules = [
            ("aws_access_key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
            (
                "private_key",
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            ),
            ("jwt", r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
            ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})"),
            ("slack_token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
            ("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
            ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{32,}"),
            ("openai_key", r"\bsk-[A-Za-z0-9_-]{20,}"),
            ("google_api_key", r"\bAIza[A-Za-z0-9_-]{35}"),
            ("high_entropy", r"[A-Za-z0-9+/_-]{32,}"),
            ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
            ("phone", r"\+\d[\d ()-]{8,18}\d|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}"),
            ("card", r"\b(?:\d[ -]?){12,18}\d\b"),
            ("iban", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
            (
                "injection",
                r"(?i)ignore (?:all )?(?:previous|prior) instructions|disregard (?:the above|previous)|you are now a|system prompt|do not tell the user|<important>",
            ),
            ("hidden_text", "[\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2060}\u{2066}-\u{2069}\u{FEFF}\u{E0000}-\u{E007F}]"),
        ];
        Naive {
            rules: rules
                .into_iter()
                .map(|(l, r)| (l, Regex::new(r).expect("baseline regex")))
                .collect(),
        }
    }

    fn scan(&self, json: &[u8]) -> Vec<(&'static str, usize, usize)> {
        let v: Value = serde_json::from_slice(json).expect("json");
        let mut out = Vec::new();
        self.walk(&v, &mut out);
        out
    }

    fn walk(&self, v: &Value, out: &mut Vec<(&'static str, usize, usize)>) {
        match v {
            Value::String(s) => {
                for (label, re) in &self.rules {
                    out.extend(re.find_iter(s).map(|m| (*label, m.start(), m.end())));
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| self.walk(x, out)),
            _ => {}
        }
    }

    fn mask(&self, json: &[u8]) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(json).expect("json");
        self.mask_value(&mut v);
        serde_json::to_vec(&v).expect("serialize")
    }

    fn mask_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                for (label, re) in &self.rules {
                    if re.is_match(s) {
                        *s = re
                            .replace_all(s, format!("[REDACTED:{label}]").as_str())
                            .into_owned();
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.mask_value(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.mask_value(x)),
            _ => {}
        }
    }
}

fn bench_screen(c: &mut Criterion) {
    let screener = Screener::new();
    let naive = Naive::new();
    let clean = clean_result(4);
    let dirty = dirty_result();
    let args = arguments();

    let mut hits: Vec<Hit> = Vec::new();
    screener
        .scan(&clean, Classes::ALL, &mut hits)
        .expect("valid");
    assert!(hits.is_empty(), "clean result has findings: {hits:?}");
    screener
        .scan(&args, Classes::ALL, &mut hits)
        .expect("valid");
    assert!(hits.is_empty(), "clean arguments have findings: {hits:?}");
    screener
        .scan(&dirty, Classes::ALL, &mut hits)
        .expect("valid");
    assert_eq!(hits.len(), 5, "dirty result: {hits:?}");

    for (name, doc) in [
        ("screen_4k_result_clean", &clean),
        ("screen_1k_arguments_clean", &args),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.bench_function("ours_byte_walk", |b| {
            let mut hits = Vec::new();
            b.iter(|| {
                hits.clear();
                screener
                    .scan(black_box(doc), Classes::ALL, &mut hits)
                    .expect("valid");
                hits.len()
            })
        });
        g.bench_function("naive_dom_regex_per_detector", |b| {
            b.iter(|| naive.scan(black_box(doc)).len())
        });
        g.finish();
    }

    let mut g = c.benchmark_group("screen_4k_result_clean_by_class");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    for (name, classes) in [
        (
            "secrets",
            Classes {
                secrets: true,
                ..Classes::default()
            },
        ),
        (
            "pii",
            Classes {
                pii: true,
                ..Classes::default()
            },
        ),
        (
            "injection",
            Classes {
                injection: true,
                ..Classes::default()
            },
        ),
    ] {
        g.bench_function(name, |b| {
            let mut hits = Vec::new();
            b.iter(|| {
                hits.clear();
                screener
                    .scan(black_box(&clean), classes, &mut hits)
                    .expect("valid");
                hits.len()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("screen_4k_result_secrets_mask");
    g.throughput(Throughput::Bytes(dirty.len() as u64));
    g.bench_function("ours_byte_walk", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            hits.clear();
            screener
                .scan(black_box(&dirty), Classes::ALL, &mut hits)
                .expect("valid");
            screener.mask(&dirty, &hits, Classes::ALL)
        })
    });
    g.bench_function("naive_dom_regex_per_detector", |b| {
        b.iter(|| naive.mask(black_box(&dirty)))
    });
    g.finish();
}

fn bench_catalog(c: &mut Criterion) {
    let scanner = Scanner::new();
    let tool = json!({
        "name": "create_issue",
        "description": "Create a new issue in a GitHub repository. Use this when the user asks \
                        to file a bug or feature request. Returns the issue number and its URL.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "owner": {"type": "string", "description": "Repository owner (user or organization)"},
                "repo": {"type": "string", "description": "Repository name"},
                "title": {"type": "string", "description": "Issue title, one line"},
                "body": {"type": "string", "description": "Issue body in Markdown"},
                "labels": {"type": "array", "items": {"type": "string"}, "description": "Labels to apply"}
            },
            "required": ["owner", "repo", "title"]
        }
    });
    let all: Vec<(String, String)> = ["create_issue", "list_issues", "get_file", "search_code"]
        .iter()
        .map(|n| ("github".to_string(), n.to_string()))
        .chain([("jira".to_string(), "create_ticket".to_string())])
        .collect();
    let mut g = c.benchmark_group("catalog_scan_tool");
    g.throughput(Throughput::Bytes(tool.to_string().len() as u64));
    g.bench_function("scanner_scan_tool", |b| {
        b.iter(|| scanner.scan_tool("github", black_box(&tool), &all).len())
    });
    g.finish();
}

criterion_group!(benches, bench_screen, bench_catalog);
criterion_main!(benches);
