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

/// A routed call as the audit log records it: plain fields, so that a worker builds no JSON
/// tree per call (the writer serializes it).
#[derive(Debug, serde::Serialize)]
pub struct CallRecord {
    /// The client session's id prefix (8 characters).
    pub session: String,
    /// The client principal's name.
    pub principal: String,
    /// Tool name or method.
    pub target: String,
    /// Upstream name.
    pub upstream: String,
    /// Outcome label.
    pub outcome: &'static str,
    /// Gateway latency, µs.
    pub latency_us: u64,
    /// Request size, bytes.
    pub request_bytes: usize,
    /// Answer size, bytes.
    pub response_bytes: usize,
    /// The call's arguments as sent upstream (only with `[audit] arguments = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Box<serde_json::value::RawValue>>,
}

/// What goes to the writer.
enum Event {
    Call(CallRecord, u64),
    Other(Value),
}

/// A call line as written (`event` first is not guaranteed: keys are in this order).
#[derive(serde::Serialize)]
struct CallLine<'a> {
    event: &'static str,
    #[serde(flatten)]
    call: &'a CallRecord,
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

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Lowercase hex of `d` (digests, salts, key ids): the one encoder the gateway uses.
pub fn hex(d: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(d.len() * 2);
    for b in d {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 15)]));
    }
    s
}

/// The hash that the next line must carry as `prev`.
fn last_hash(path: &Path) -> anyhow::Result<String> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok("0".repeat(64));
    };
    let mut last = None;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.is_empty() {
            last = Some(line);
        }
    }
    Ok(last.map_or_else(|| "0".repeat(64), |l| hex(&Sha256::digest(l.as_bytes()))))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn write_loop(
    file: std::fs::File,
    rx: flume::Receiver<Event>,
    mut prev: String,
    stop: &std::sync::atomic::AtomicBool,
) {
    // Buffered: a line is one write call only when the channel runs dry (each batch is
    // flushed as a whole), not two or more per line.
    let mut file = std::io::BufWriter::with_capacity(64 << 10, file);
    loop {
        // Wake on a timer, not per event: a writer blocked in `recv` is woken by every send,
        // a futex call and a context switch per audited call on the sending worker's core.
        // Lines reach the file within BATCH of their event instead.
        let mut wrote = false;
        for event in rx.try_iter() {
            let line = match event {
                Event::Call(call, time_ms) => serde_json::to_string(&CallLine {
                    event: "call",
                    call: &call,
                    time_ms,
                    prev: &prev,
                })
                .unwrap_or_default(),
                Event::Other(mut v) => {
                    if let Value::Object(m) = &mut v {
                        m.insert("prev".into(), Value::String(prev.clone()));
                    }
                    v.to_string()
                }
            };
            prev = hex(&Sha256::digest(line.as_bytes()));
            if let Err(e) = writeln!(file, "{line}") {
                tracing::error!(error = %e, "audit log write failed");
            }
            wrote = true;
        }
        if wrote {
            let _ = file.flush();
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
    let mut expected = "0".repeat(64);
    let mut n = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))?;
        if v.get("prev").and_then(Value::as_str) != Some(expected.as_str()) {
            anyhow::bail!(
                "{}:{}: the chain is broken here (the line before it was changed, removed or reordered, or this one was)",
                path.display(),
                i + 1
            );
        }
        expected = hex(&Sha256::digest(line.as_bytes()));
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            session: "abcd1234".into(),
            principal: "ann".into(),
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
