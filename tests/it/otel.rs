//! Traces: W3C trace context from the client through the gateway to the upstream, and the
//! gateway's spans received by an OTLP/HTTP (JSON) collector: a small HTTP listener here
//! that decodes each export with the OTLP schema (`opentelemetry-proto`, generated from the
//! official protos) and keeps the spans.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::Arc,
};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use serde_json::Value;

use crate::{
    faulty::Faulty,
    support::{initialize, post, wait_for, Gateway, Raw},
};

/// Receives OTLP/HTTP JSON exports; keeps every span it is sent.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
        let keep = spans.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(c.try_clone().expect("clone"));
                    let mut w = c;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut len = 0;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end().to_ascii_lowercase();
                            if h.is_empty() {
                                break;
                            }
                            if let Some(v) = h.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        if line.starts_with("POST /v1/traces") {
                            match serde_json::from_slice::<ExportTraceServiceRequest>(&body) {
                                Ok(req) => keep.lock().extend(spans_of(&req)),
                                Err(e) => keep.lock().push(serde_json::json!({
                                    "invalid_export": e.to_string(),
                                    "body": String::from_utf8_lossy(&body),
                                })),
                            }
                        }
                        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
                    }
                });
            }
        });
        Collector { addr, spans }
    }

    fn span(&self, span_id: &str) -> Option<Value> {
        let bad: Vec<Value> = self
            .spans
            .lock()
            .iter()
            .filter(|s| s.get("invalid_export").is_some())
            .cloned()
            .collect();
        assert!(
            bad.is_empty(),
            "exports that are not valid OTLP/JSON: {bad:?}"
        );
        self.spans
            .lock()
            .iter()
            .find(|s| s["spanId"].as_str() == Some(span_id))
            .cloned()
    }
}

/// The spans of one export as JSON: ids in hex, attributes and the resource's attributes as
/// `{key: string value}`.
fn spans_of(req: &ExportTraceServiceRequest) -> Vec<Value> {
    use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
    let attrs = |kvs: &[KeyValue]| -> Value {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
                    Some(any_value::Value::IntValue(i)) => Value::from(*i),
                    Some(other) => Value::String(format!("{other:?}")),
                    None => Value::Null,
                };
                (kv.key.clone(), v)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .map_or(Value::Null, |r| attrs(&r.attributes));
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                out.push(serde_json::json!({
                    "traceId": hex(&sp.trace_id),
                    "spanId": hex(&sp.span_id),
                    "parentSpanId": hex(&sp.parent_span_id),
                    "name": sp.name,
                    "attributes": attrs(&sp.attributes),
                    "service": service,
                }));
            }
        }
    }
    out
}

fn call(gw: &Gateway, sid: &str, headers: &[&str], meta: &str) -> Value {
    let mut c = Raw::connect(gw.addr);
    let mut h = vec![format!("Mcp-Session-Id: {sid}")];
    h.extend(headers.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = h.iter().map(String::as_str).collect();
    c.send(&post(
        &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"f__get_thing","arguments":{{}}{meta}}}}}"#),
        &refs,
    ));
    let r = c.read().expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// (trace id, span id) of the traceparent the upstream received.
fn upstream_saw(f: &Faulty) -> (String, String) {
    let tp = f.last_meta()["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {}", f.last_meta()))
        .to_string();
    assert_eq!(
        f.last_traceparent().as_deref(),
        Some(tp.as_str()),
        "the same traceparent as an HTTP header"
    );
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[3], "01");
    (parts[1].to_string(), parts[2].to_string())
}

#[test]
fn trace_context_crosses_the_gateway_and_spans_reach_the_collector() {
    let collector = Collector::start();
    let f = Faulty::start();
    let gw = Gateway::start(
        "",
        &format!(
            "[[upstream]]\nname = \"f\"\ntransport = \"http\"\nurl = \"{}\"\n\n[telemetry]\notlp_endpoint = \"http://{}\"\nservice_name = \"mcpgw-test\"\n",
            f.url(),
            collector.addr
        ),
        "auto",
    );
    let sid = initialize(gw.addr, "2025-11-25");
    let (trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");

    // The client's traceparent header: the upstream gets the same trace, with the gateway's
    // span as its parent, in params._meta (which the client left out).
    let v = call(
        &gw,
        &sid,
        &[&format!("traceparent: 00-{trace}-{client_span}-01")],
        "",
    );
    assert!(v["result"].is_object(), "{v}");
    let (t, gw_span) = upstream_saw(&f);
    assert_eq!(t, trace);
    assert_ne!(gw_span, client_span);

    // A traceparent in the client's own _meta (beside a progress token) is honoured and
    // replaced, the rest of _meta kept.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let v = call(
        &gw,
        &sid,
        &[],
        &format!(
            r#","_meta":{{"progressToken":"p1","traceparent":"00-{other}-b7ad6b7169203331-01"}}"#
        ),
    );
    assert!(v["result"].is_object(), "{v}");
    let (t2, gw_span2) = upstream_saw(&f);
    assert_eq!(t2, other);
    assert!(
        f.last_meta()["progressToken"].is_number(),
        "{}",
        f.last_meta()
    );

    // No trace context: the gateway starts a trace.
    call(&gw, &sid, &[], "");
    let (t3, gw_span3) = upstream_saw(&f);
    assert!(t3 != trace && t3 != other && t3.len() == 32);

    // Spans arrive at the collector (batched off the workers), linked to the client's.
    assert!(
        wait_for(20, || collector.span(&gw_span3).is_some()),
        "spans received: {:?}",
        collector.spans.lock()
    );
    let s = collector.span(&gw_span).expect("first span");
    assert_eq!(s["traceId"], trace);
    assert_eq!(s["parentSpanId"], client_span);
    assert_eq!(s["name"], "f__get_thing");
    assert_eq!(s["attributes"]["mcp.upstream"], "f", "{s}");
    assert_eq!(s["service"]["service.name"], "mcpgw-test", "{s}");
    let s2 = collector.span(&gw_span2).expect("second span");
    assert_eq!(s2["parentSpanId"], "b7ad6b7169203331");
    let s3 = collector.span(&gw_span3).expect("third span");
    assert_eq!(s3["traceId"], t3);
    assert!(
        s3["parentSpanId"].as_str().unwrap_or("").is_empty(),
        "a root span: {s3}"
    );
}
