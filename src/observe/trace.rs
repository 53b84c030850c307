//! Distributed tracing: W3C trace context taken from clients and passed to upstreams, and one
//! span per forwarded call exported over OTLP/HTTP (JSON) when `[telemetry] otlp_endpoint` is
//! set.
//!
//! A call continues the client's trace (its `traceparent` header, or `params._meta.traceparent`)
//! and follows its sampling decision; a call without one starts a trace, sampled at
//! `sample_ratio`. The upstream receives `traceparent` naming the gateway's span as parent (in
//! `params._meta`, where MCP carries request metadata), so its own spans join the trace.
//! Spans are built when a call ends and handed to the OpenTelemetry SDK's batch processor,
//! which exports from its own thread: the workers never wait on the collector. With
//! tracing off the request path pays one `Option` check.

use std::time::{Duration, SystemTime};

use opentelemetry::{
    trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer as _, TracerProvider as _,
    },
    Context, KeyValue,
};

/// A parsed W3C `traceparent` (version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The caller's span id.
    pub parent: [u8; 8],
    /// The caller's sampling decision.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids and version `ff` are invalid.
    /// Later versions are read by their version-00 prefix, as the spec asks.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let b = s.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex::<1>(&s[0..2])?[0];
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let trace_id = hex::<16>(&s[3..35])?;
        let parent = hex::<8>(&s[36..52])?;
        let flags = hex::<1>(&s[53..55])?[0];
        if trace_id == [0; 16] || parent == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent,
            sampled: flags & 1 == 1,
        })
    }
}

/// Formats a `traceparent` value.
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    crate::text::push_hex(&mut s, trace_id);
    s.push('-');
    crate::text::push_hex(&mut s, span_id);
    s.push_str(if sampled { "-01" } else { "-00" });
    s
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The gateway's span of one call: its ids, its parent, and when it began.
#[derive(Clone, Debug)]
pub struct CallTrace {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The gateway's span id (the upstream's parent).
    pub span_id: [u8; 8],
    /// The client's span, if it sent one.
    pub parent: Option<[u8; 8]>,
    /// Start.
    pub started: SystemTime,
}

impl CallTrace {
    /// `traceparent` for the upstream.
    pub fn traceparent(&self) -> String {
        traceparent(&self.trace_id, &self.span_id, true)
    }
}

/// What a finished call's span says.
pub struct CallEnd<'a> {
    /// Span name: the method and target (`tools/call github__search`).
    pub name: &'a str,
    /// Upstream name.
    pub upstream: &'a str,
    /// Outcome label (`ok`, `timeout`, ...).
    pub outcome: &'a str,
    /// Session id prefix.
    pub session: &'a str,
    /// Principal name.
    pub principal: &'a str,
    /// Request and response sizes.
    pub bytes: (usize, usize),
}

/// The OTLP exporter and the sampling settings.
pub struct Tracing {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    ratio: f64,
}

impl Tracing {
    /// Exports to `endpoint` (an OTLP/HTTP base URL such as `http://127.0.0.1:4318`, or the
    /// full `/v1/traces` URL) as service `service`.
    pub fn start(endpoint: &str, service: &str, ratio: f64) -> anyhow::Result<Self> {
        use opentelemetry_otlp::WithExportConfig as _;
        let url = if endpoint.ends_with("/v1/traces") {
            endpoint.to_string()
        } else {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(5))
            .build()?;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service.to_string())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("mcpgw");
        Ok(Self {
            provider,
            tracer,
            ratio: ratio.clamp(0.0, 1.0),
        })
    }

    /// The span of a call that came with `incoming` trace context (if any); `None` when the
    /// call is not sampled.
    pub fn begin(&self, incoming: Option<TraceParent>) -> Option<CallTrace> {
        let span_id = nonzero_u64().to_be_bytes();
        let (trace_id, parent) = match incoming {
            Some(p) if !p.sampled => return None,
            Some(p) => (p.trace_id, Some(p.parent)),
            None => {
                let draw = (crate::resilience::jitter() >> 11) as f64 / (1u64 << 53) as f64;
                if draw >= self.ratio {
                    return None;
                }
                let mut t = [0u8; 16];
                t[..8].copy_from_slice(&nonzero_u64().to_be_bytes());
                t[8..].copy_from_slice(&crate::resilience::jitter().to_be_bytes());
                (t, None)
            }
        };
        Some(CallTrace {
            trace_id,
            span_id,
            parent,
            started: SystemTime::now(),
        })
    }

    /// Records the call's span (exported later, off this thread).
    pub fn finish(&self, t: &CallTrace, end: &CallEnd<'_>) {
        let parent_cx = match t.parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(t.trace_id),
                SpanId::from_bytes(p),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let status = if end.outcome == "ok" {
            Status::Ok
        } else {
            Status::error(end.outcome.to_string())
        };
        let mut span = self
            .tracer
            .span_builder(end.name.to_string())
            .with_trace_id(TraceId::from_bytes(t.trace_id))
            .with_span_id(SpanId::from_bytes(t.span_id))
            .with_kind(SpanKind::Server)
            .with_start_time(t.started)
            .with_status(status)
            .with_attributes([
                KeyValue::new("mcp.upstream", end.upstream.to_string()),
                KeyValue::new("mcp.outcome", end.outcome.to_string()),
                KeyValue::new("mcp.session", end.session.to_string()),
                KeyValue::new("enduser.id", end.principal.to_string()),
                KeyValue::new("mcp.request.bytes", end.bytes.0 as i64),
                KeyValue::new("mcp.response.bytes", end.bytes.1 as i64),
            ])
            .start_with_context(&self.tracer, &parent_cx);
        opentelemetry::trace::Span::end(&mut span);
    }

    /// Exports what is buffered and stops (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP exporter did not shut down cleanly");
        }
    }
}

fn nonzero_u64() -> u64 {
    crate::resilience::jitter().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(s).expect("valid");
        assert!(p.sampled);
        assert_eq!(traceparent(&p.trace_id, &p.parent, true), s);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        // A later version is read by its version-00 prefix.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-zz")
                .is_some_and(|p| !p.sampled)
        );
    }
}
