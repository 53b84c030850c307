//! JSON-RPC envelope handling on the request path, against naive baselines.
//!
//! `frame_1k_call_parse`: our parse (one validating pass over the bytes + structural scan for spans) of a
//! `tools/call` with 1 KiB of arguments, beside `serde_json::Value` and a typed serde struct
//! with a `RawValue` for params. `frame_1k_call_splice`: rewriting id and tool name by
//! splicing, beside decoding to a `Value`, editing and serializing again.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mcpgw::jsonrpc::Parser;

fn call_body(arg_bytes: usize) -> Bytes {
    let text: String = "x".repeat(arg_bytes);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"up__echo","arguments":{{"text":"{text}"}},"_meta":{{"progressToken":7}}}}}}"#
    ))
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Envelope<'a> {
    jsonrpc: &'a str,
    id: serde_json::Value,
    method: &'a str,
    #[serde(borrow)]
    params: Option<&'a serde_json::value::RawValue>,
}

/// A 2026-07-28 `tools/call`: `_meta` with version, capabilities and client info, and
/// 16 arguments of about 64 bytes each.
fn modern_call_body() -> Bytes {
    let args: Vec<String> = (0..16)
        .map(|i| format!(r#""field_{i}":"{}""#, "v".repeat(56)))
        .collect();
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"up__echo","arguments":{{{}}},"_meta":{{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{"elicitation":{{}},"sampling":{{}}}},"io.modelcontextprotocol/clientInfo":{{"name":"bench","version":"1.0.0"}}}}}}}}"#,
        args.join(",")
    ))
}

fn parse_modern(c: &mut Criterion) {
    let body = modern_call_body();
    let mut g = c.benchmark_group("frame_modern_call_parse");
    let mut parser = Parser::default();
    g.bench_function("mcpgw_frame", |b| {
        b.iter(|| {
            let f = parser.parse_one(black_box(body.clone())).expect("valid");
            black_box(f.param("name"));
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let body = call_body(1024);
    let mut g = c.benchmark_group("frame_1k_call_parse");
    let mut parser = Parser::default();
    g.bench_function("mcpgw_frame", |b| {
        b.iter(|| {
            let f = parser.parse_one(black_box(body.clone())).expect("valid");
            black_box(f.param("name"));
        })
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&body)).expect("valid");
            black_box(v["params"]["name"].as_str().map(str::len));
        })
    });
    g.bench_function("serde_typed_rawvalue", |b| {
        b.iter(|| {
            let v: Envelope = serde_json::from_slice(black_box(&body)).expect("valid");
            black_box(v.params.map(|p| p.get().len()));
        })
    });
    g.finish();
}

fn splice(c: &mut Criterion) {
    let body = call_body(1024);
    let mut parser = Parser::default();
    let f = parser.parse_one(body.clone()).expect("valid");
    let (id, name) = (f.id_span().expect("id"), f.param("name").expect("name"));
    let mut g = c.benchmark_group("frame_1k_call_splice");
    g.bench_function("mcpgw_splice", |b| {
        b.iter(|| black_box(f.splice(&mut [(id, &b"1234567"[..]), (name, &b"\"echo\""[..])])))
    });
    g.bench_function("serde_json_reserialize", |b| {
        b.iter(|| {
            let mut v: serde_json::Value = serde_json::from_slice(black_box(&body)).expect("valid");
            v["id"] = serde_json::json!(1234567);
            v["params"]["name"] = serde_json::json!("echo");
            black_box(serde_json::to_vec(&v).expect("serialize"))
        })
    });
    g.finish();
}

criterion_group!(benches, parse, parse_modern, splice);
criterion_main!(benches);
