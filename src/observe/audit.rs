//! The audit log: one JSON line per routed call and per admin change, hash-chained.
//!
//! Each line carries `prev`, the SHA-256 (hex) of the line before it (64 zeros for the
//! first), so removing, reordering or editing a line breaks the chain; `mcpgw audit verify
//! FILE` finds the first broken line. Results are never written, arguments only when
//! `[audit] arguments = true`. Lines are written by one thread off the workers, fed through a
//! bounded channel: when it is full the event is dropped and counted
//! (`mcpgw_audit_dropped_total`) and a worker never waits, unless `on_full = "block"`: then
//! the worker waits for room (nothing is lost; its calls stall meanwhile).

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use anyhow::Context;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::text::hex_into;

/// Events queued for the writer before new ones are dropped.
const QUEUE: usize = 65_536;

/// The handle workers and the admin API record through.
#[derive(Clone)]
pub struct Audit {
    tx: flume::Sender<Event>,
    dropped: Arc<AtomicU64>,
    /// Wait for room instead of dropping.
    block: bool,
    /// Calls' arguments are written.
    arguments: bool,
    /// Asks the writer to write what is queued and stop.
    stop: Arc<std::sync::atomic::AtomicBool>,
    writer: Arc<parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// A routed call as the audit log records it. Built on a worker per call and dropped on the
/// writer thread, so it holds no heap string of its own: names are shared (`Arc<str>`, a
/// reference count each), the session tag is inline.
#[derive(Debug)]
pub struct CallRecord {
    /// The client session's id prefix (8 characters).
    pub session: SessionTag,
    /// The client principal's name.
    pub principal: Arc<str>,
    /// Tool name or method.
    pub target: Arc<str>,
    /// Upstream name.
    pub upstream: Arc<str>,
    /// Outcome label.
    pub outcome: &'static str,
    /// Gateway latency, µs.
    pub latency_us: u64,
    /// Request size, bytes.
    pub request_bytes: usize,
    /// Answer size, bytes.
    pub response_bytes: usize,
    /// The call's arguments as sent upstream (only with `[audit] arguments = true`).
    pub arguments: Option<Box<serde_json::value::RawValue>>,
}

/// The first 8 characters of a session id (ASCII), kept inline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionTag([u8; 8]);

impl SessionTag {
    /// The tag of session id `id` (its first 8 bytes; shorter ids are padded with nothing).
    pub fn of(id: &str) -> Self {
        let mut t = [0u8; 8];
        for (d, s) in t.iter_mut().zip(id.bytes().filter(u8::is_ascii)) {
            *d = s;
        }
        SessionTag(t)
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|b| *b == 0).unwrap_or(8);
        std::str::from_utf8(&self.0[..n]).unwrap_or("")
    }
}

/// What goes to the writer.
enum Event {
    Call(CallRecord, u64),
    Other(Value),
}

/// A call line as written (keys in this order).
#[derive(serde::Serialize)]
struct CallLine<'a> {
    event: &'static str,
    session: &'a str,
    principal: &'a str,
    target: &'a str,
    upstream: &'a str,
    outcome: &'static str,
    latency_us: u64,
    request_bytes: usize,
    response_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a serde_json::value::RawValue>,
    time_ms: u64,
    prev: &'a str,
}

impl Audit {
    /// Starts the writer thread appending to the file of `settings` (continuing its chain if
    /// it exists).
    pub fn start(settings: &crate::config::AuditSettings) -> anyhow::Result<Audit> {
        let path: &Path = &settings.path;
        let prev = last_hash(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        let (tx, rx) = flume::bounded::<Event>(QUEUE);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let writer = std::thread::Builder::new()
            .name("mcpgw-audit".into())
            .spawn(move || write_loop(file, rx, prev, &flag))?;
        Ok(Audit {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            block: settings.block,
            arguments: settings.arguments,
            stop,
            writer: Arc::new(parking_lot::Mutex::new(Some(writer))),
        })
    }

    /// Queues an event (adds `time_ms`); blocks only with `on_full = "block"`.
    pub fn record(&self, mut event: Value) {
        if let Value::Object(m) = &mut event {
            m.insert("time_ms".into(), json!(now_ms()));
        }
        self.queue(Event::Other(event));
    }

    /// Queues a routed call's line; blocks only with `on_full = "block"`.
    pub fn record_call(&self, call: CallRecord) {
        self.queue(Event::Call(call, now_ms()));
    }

    fn queue(&self, event: Event) {
        let sent = if self.block {
            // Chosen by the operator: completeness over latency. The writer drains every
            // BATCH, so a wait lasts at most that long per full queue.
            self.tx.send(event).is_ok()
        } else {
            self.tx.try_send(event).is_ok()
        };
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether calls' arguments are to be recorded.
    pub fn wants_arguments(&self) -> bool {
        self.arguments
    }

    /// Writes everything queued and stops the writer (at shutdown; later events are lost).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.writer.lock().take() {
            let _ = t.join();
        }
    }

    /// Events waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The hex SHA-256 of a line: what the next line carries as `prev`.
type LineHash = [u8; 64];

fn line_hash(line: &[u8]) -> LineHash {
    let mut h = [0u8; 64];
    hex_into(&Sha256::digest(line), &mut h);
    h
}

/// The hash a first line carries as `prev`.
const FIRST: LineHash = [b'0'; 64];

/// Appends `event`'s line (without the newline) to `buf` and returns its hash.
fn encode(buf: &mut Vec<u8>, event: Event, prev: &LineHash) -> LineHash {
    let start = buf.len();
    let prev_s = std::str::from_utf8(prev).unwrap_or("");
    let r = match event {
        Event::Call(c, time_ms) => serde_json::to_writer(
            &mut *buf,
            &CallLine {
                event: "call",
                session: c.session.as_str(),
                principal: &c.principal,
                target: &c.target,
                upstream: &c.upstream,
                outcome: c.outcome,
                latency_us: c.latency_us,
                request_bytes: c.request_bytes,
                response_bytes: c.response_bytes,
                arguments: c.arguments.as_deref(),
                time_ms,
                prev: prev_s,
            },
        ),
        Event::Other(mut v) => {
            if let Value::Object(m) = &mut v {
                m.insert("prev".into(), Value::String(prev_s.to_owned()));
            }
            serde_json::to_writer(&mut *buf, &v)
        }
    };
    if let Err(e) = r {
        // Only a serializer bug gets here (writing to a Vec cannot fail): the line is
        // skipped whole and the chain continues from the line before it.
        tracing::error!(error = %e, "audit line not encoded");
        buf.truncate(start);
        return *prev;
    }
    line_hash(&buf[start..])
}

/// Encodes one call line the way the writer does and returns its length: for benches.
#[doc(hidden)]
pub fn encode_call_for_bench(buf: &mut Vec<u8>, call: CallRecord) -> usize {
    buf.clear();
    encode(buf, Event::Call(call, 1_764_115_200_000), &FIRST);
    buf.len()
}

/// The hash that the next line must carry as `prev`.
fn last_hash(path: &Path) -> anyhow::Result<LineHash> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(FIRST);
    };
    let mut last = None;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.is_empty() {
            last = Some(line);
        }
    }
    Ok(last.map_or(FIRST, |l| line_hash(l.as_bytes())))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn write_loop(
    mut file: std::fs::File,
    rx: flume::Receiver<Event>,
    mut prev: LineHash,
    stop: &std::sync::atomic::AtomicBool,
) {
    // One buffer for a whole batch, written with one call: no allocation per line.
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        // Wake on a timer, not per event: a writer blocked in `recv` is woken by every send,
        // a futex call and a context switch per audited call on the sending worker's core.
        // Lines reach the file within BATCH of their event instead. `drain` takes the
        // channel's lock once for everything queued.
        for event in rx.drain() {
            prev = encode(&mut buf, event, &prev);
            buf.push(b'\n');
        }
        if !buf.is_empty() {
            if let Err(e) = file.write_all(&buf) {
                tracing::error!(error = %e, "audit log write failed");
            }
            buf.clear();
            // A burst's buffer is not kept for good.
            buf.shrink_to(64 << 10);
        }
        // (The stop flag is read before the next drain: events queued before shutdown() are
        // written by that drain.)
        if rx.is_empty() && (rx.is_disconnected() || stop.load(Ordering::Acquire)) {
            return;
        }
        // A dedicated thread with nothing to wait on but time.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(BATCH);
    }
}

/// How long the writer sleeps between batches.
const BATCH: std::time::Duration = std::time::Duration::from_millis(5);

/// Checks the chain of an audit log; `Err` names the first line that breaks it.
pub fn verify(path: &Path) -> anyhow::Result<usize> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut expected = FIRST;
    let mut n = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))?;
        if v.get("prev").and_then(Value::as_str).map(str::as_bytes) != Some(&expected[..]) {
            anyhow::bail!(
                "{}:{}: the chain is broken here (the line before it was changed, removed or reordered, or this one was)",
                path.display(),
                i + 1
            );
        }
        expected = line_hash(line.as_bytes());
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::hex;

    #[test]
    fn chain_verifies_and_tampering_is_found() {
        let dir = std::env::temp_dir().join(format!("mcpgw-audit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let settings = crate::config::AuditSettings {
            path: path.clone(),
            block: false,
            arguments: false,
        };
        let a = Audit::start(&settings).expect("start");
        for i in 0..5 {
            a.record(json!({"event": "tool_call", "n": i}));
        }
        drop(a);
        assert!(wait_lines(&path, 5));
        assert_eq!(verify(&path).expect("valid"), 5);
        // A restart continues the chain.
        // Blocking mode: the same lines, nothing dropped.
        let b = Audit::start(&crate::config::AuditSettings {
            block: true,
            ..settings
        })
        .expect("restart");
        b.record(json!({"event": "tool_call", "n": 5}));
        b.record_call(CallRecord {
            session: SessionTag::of("abcd1234ffff"),
            principal: "ann \"the\" admin".into(),
            arguments: None,
            target: "demo__echo".into(),
            upstream: "demo".into(),
            outcome: "ok",
            latency_us: 120,
            request_bytes: 80,
            response_bytes: 90,
        });
        // shutdown() writes what is queued before it returns.
        b.shutdown();
        assert_eq!(
            std::fs::read_to_string(&path)
                .map(|t| t.lines().count())
                .unwrap_or(0),
            7
        );
        assert_eq!(verify(&path).expect("still valid"), 7);
        let text = std::fs::read_to_string(&path).expect("read");
        let call: Value = serde_json::from_str(text.lines().last().unwrap_or("")).expect("json");
        assert_eq!(call["event"], "call");
        assert_eq!(call["target"], "demo__echo");
        assert_eq!(call["upstream"], "demo");
        assert_eq!(call["session"], "abcd1234");
        assert_eq!(call["principal"], "ann \"the\" admin");
        assert_eq!(call["latency_us"], 120);
        assert!(call["time_ms"].as_u64().is_some_and(|t| t > 0));
        assert_eq!(call["prev"].as_str().map(str::len), Some(64));
        // Edit line 3: line 4 no longer matches.
        let text = std::fs::read_to_string(&path).expect("read");
        let edited = text.replacen("\"n\":2", "\"n\":7", 1);
        std::fs::write(&path, edited).expect("write");
        let e = verify(&path).expect_err("tampered");
        assert!(e.to_string().contains(":4:"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
    #[test]
    fn session_tags_keep_eight_ascii_characters() {
        assert_eq!(SessionTag::of("0123456789abcdef").as_str(), "01234567");
        assert_eq!(SessionTag::of("abc").as_str(), "abc");
        assert_eq!(SessionTag::of("").as_str(), "");
        assert_eq!(SessionTag::of("é1234567890").as_str(), "12345678");
    }

    #[test]
    fn hex_is_lowercase_and_line_hashes_match_verify() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        let h = line_hash(b"{}");
        assert_eq!(
            std::str::from_utf8(&h).ok(),
            Some(hex(&Sha256::digest(b"{}")).as_str())
        );
    }

    /// Waits (at most 5 s) until `path` has `n` lines.
    fn wait_lines(path: &Path, n: usize) -> bool {
        for _ in 0..500 {
            if std::fs::read_to_string(path).is_ok_and(|t| t.lines().count() >= n) {
                return true;
            }
            std::thread::park_timeout(std::time::Duration::from_millis(10));
        }
        false
    }
}
