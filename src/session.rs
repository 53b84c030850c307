//! Client sessions (`Mcp-Session-Id`), shared by all workers.
//!
//! `SO_REUSEPORT` spreads a client's connections over workers, so any worker must find any
//! session: the table is a sharded `DashMap`, touched once per request. A session id is 128
//! random bits from the OS (hex), unguessable. Sessions end on `DELETE`, on idle expiry (swept
//! by the control plane) and never otherwise.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use dashmap::DashMap;

/// A session id as issued (32 lowercase hex characters).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Box<str>);

impl SessionId {
    /// 128 bits from the OS random source.
    pub fn random() -> std::io::Result<Self> {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut s = String::with_capacity(32);
        for x in b {
            s.push(char::from(HEX[usize::from(x >> 4)]));
            s.push(char::from(HEX[usize::from(x & 15)]));
        }
        Ok(Self(s.into()))
    }

    /// Parses a header value; only the shape the gateway issues is accepted.
    pub fn parse(v: &[u8]) -> Option<Self> {
        (v.len() == 32 && v.iter().all(|c| HEX.contains(c)))
            .then(|| std::str::from_utf8(v).ok().map(|s| Self(s.into())))
            .flatten()
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are bearer secrets: log only a prefix.
        write!(f, "{}…", self.0.get(..8).unwrap_or(""))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Protocol revisions the gateway speaks with clients, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The newest revision, answered when a client asks for one the gateway does not know.
pub const LATEST_VERSION: &str = "2025-11-25";

/// Whether batches are allowed in `version` (only 2025-03-26 had them).
pub fn batches_allowed(version: &str) -> bool {
    version == "2025-03-26"
}

/// One client session.
pub struct Session {
    /// Negotiated protocol revision.
    pub version: &'static str,
    /// Last use, ms since the gateway's clock origin.
    last_seen_ms: AtomicU64,
    /// Dropped with the session: every [`Session::ended`] receiver then wakes (disconnected).
    _alive: flume::Sender<()>,
    ended: flume::Receiver<()>,
}

impl Session {
    /// Marks the session used now.
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// A receiver that resolves (as disconnected) once the session is gone: ended by the
    /// client, expired, or the gateway stopping. Streams of the session wait on it instead
    /// of polling the table.
    pub fn ended(&self) -> flume::Receiver<()> {
        self.ended.clone()
    }
}

/// All sessions.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<SessionId, Arc<Session>>,
}

impl Sessions {
    /// Creates a session for `version`.
    pub fn create(&self, version: &'static str, now_ms: u64) -> std::io::Result<SessionId> {
        let id = SessionId::random()?;
        let (alive, ended) = flume::bounded(1);
        self.map.insert(
            id.clone(),
            Arc::new(Session {
                version,
                last_seen_ms: AtomicU64::new(now_ms),
                _alive: alive,
                ended,
            }),
        );
        Ok(id)
    }

    /// The session, if it exists.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.map.get(id).map(|s| s.clone())
    }

    /// Ends a session; false when it did not exist.
    pub fn remove(&self, id: &SessionId) -> bool {
        self.map.remove(id).is_some()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Ends sessions idle longer than `idle`; returns how many.
    pub fn expire(&self, now_ms: u64, idle: Duration) -> usize {
        let before = self.map.len();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        self.map.retain(|_, s| {
            now_ms.saturating_sub(s.last_seen_ms.load(Ordering::Relaxed)) <= idle_ms
        });
        before - self.map.len()
    }
}

/// The revision to answer a client's `initialize` with.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_parse_back() {
        let a = SessionId::random().expect("random");
        let b = SessionId::random().expect("random");
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str().as_bytes()), Some(a));
        assert_eq!(SessionId::parse(b"short"), None);
        assert_eq!(SessionId::parse(&[b'G'; 32]), None);
    }

    #[test]
    fn expiry_and_removal() {
        let s = Sessions::default();
        let a = s.create("2025-11-25", 0).expect("create");
        let b = s.create("2025-11-25", 0).expect("create");
        let a_ended = s.get(&a).expect("a").ended();
        s.get(&b).expect("b").touch(5_000);
        assert!(matches!(
            a_ended.try_recv(),
            Err(flume::TryRecvError::Empty)
        ));
        assert_eq!(s.expire(6_000, Duration::from_secs(2)), 1);
        assert!(s.get(&a).is_none());
        assert!(matches!(
            a_ended.try_recv(),
            Err(flume::TryRecvError::Disconnected)
        ));
        assert!(s.remove(&b));
        assert!(!s.remove(&b));
        assert!(s.is_empty());
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
        assert!(batches_allowed("2025-03-26") && !batches_allowed("2025-06-18"));
    }
}
