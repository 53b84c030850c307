//! API keys and HTTP Basic passwords: how they are issued, stored and checked.
//!
//! An API key is `mcpgw_<id>_<secret>`: `id` (8 hex digits) names the record, `secret` (64 hex
//! digits, 256 random bits) is never stored. The record keeps `sha256:<salt>:<digest>` where
//! digest = SHA-256(salt ‖ secret), so checking a key is one hash and a constant-time compare,
//! cheap enough for every request. Basic passwords are low-entropy, so they are stored as
//! argon2id PHC strings (`$argon2id$...`); verifying one costs tens of milliseconds, which must
//! not run on a worker: [`PasswordChecker`] verifies on its own thread and remembers successes
//! for a while (by a hash of the presented header, never the password itself).

use crate::text::hex;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

/// Prefix of every API key the gateway issues.
pub const KEY_PREFIX: &str = "mcpgw_";

/// A stored API key: its id and salted hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

/// Why a stored hash could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// Not `sha256:<32 hex salt>:<64 hex digest>`.
    #[error(
        "API key hash must be sha256:<salt hex>:<digest hex> (as `mcpgw auth new-key` prints)"
    )]
    KeyHashFormat,
    /// Not an argon2 PHC string.
    #[error("password hash must be an argon2 PHC string ($argon2id$...; `mcpgw auth hash-password` prints one)")]
    PasswordHashFormat,
}

impl KeyHash {
    /// Reads `sha256:<salt hex>:<digest hex>`.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        let mut parts = s.trim().split(':');
        let (Some("sha256"), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HashError::KeyHashFormat);
        };
        Ok(Self {
            salt: unhex(salt).ok_or(HashError::KeyHashFormat)?,
            digest: unhex(digest).ok_or(HashError::KeyHashFormat)?,
        })
    }

    /// Whether `secret` is the secret this hash was made from (constant time in the digest).
    pub fn matches(&self, secret: &str) -> bool {
        let d = salted(&self.salt, secret);
        d.iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}:{}", hex(&self.salt), hex(&self.digest))
    }
}

/// A newly issued API key: the key to hand out once, and what to store.
pub struct NewKey {
    /// The record id (also inside the key).
    pub id: String,
    /// The full key, shown once.
    pub key: String,
    /// What to store.
    pub hash: KeyHash,
}

/// Issues a new API key from the OS random source.
pub fn new_key() -> std::io::Result<NewKey> {
    let mut id = [0u8; 4];
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 16];
    for b in [&mut id[..], &mut secret[..], &mut salt[..]] {
        getrandom::getrandom(b).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let (id, secret) = (hex(&id), hex(&secret));
    let digest = salted(&salt, &secret);
    Ok(NewKey {
        key: format!("{KEY_PREFIX}{id}_{secret}"),
        id,
        hash: KeyHash { salt, digest },
    })
}

/// Splits a presented key into (id, secret); `None` when it is not shaped as one.
pub fn split_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 8 && secret.len() == 64).then_some((id, secret))
}

/// An argon2id PHC string for `password` (for `mcpgw auth hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that a stored password hash is an argon2 PHC string.
pub fn check_password_hash(phc: &str) -> Result<(), HashError> {
    argon2::password_hash::PasswordHash::new(phc)
        .map(|_| ())
        .map_err(|_| HashError::PasswordHashFormat)
}

/// Verifies Basic passwords off the workers and remembers the credentials that passed.
pub struct PasswordChecker {
    tx: flume::Sender<Job>,
    /// SHA-256 of (user, password) that verified, with when they stop being trusted.
    good: DashMap<[u8; 32], Instant>,
    remember: Duration,
}

struct Job {
    phc: Arc<str>,
    password: String,
    reply: futures_channel::oneshot::Sender<bool>,
}

/// Most verifications waiting at once; more are refused (as failures) rather than queued
/// without bound by a client guessing passwords.
const QUEUE: usize = 64;

/// Most remembered credentials.
const REMEMBERED: usize = 10_000;

impl PasswordChecker {
    /// Starts the verifying thread; a verified credential is trusted for `remember`.
    pub fn start(remember: Duration) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = flume::bounded::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("mcpgw-passwords".into())
            .spawn(move || {
                use argon2::password_hash::{PasswordHash, PasswordVerifier};
                for job in rx.iter() {
                    let ok = PasswordHash::new(&job.phc).is_ok_and(|h| {
                        argon2::Argon2::default()
                            .verify_password(job.password.as_bytes(), &h)
                            .is_ok()
                    });
                    let _ = job.reply.send(ok);
                }
            })?;
        Ok(Arc::new(Self {
            tx,
            good: DashMap::new(),
            remember,
        }))
    }

    /// Whether `password` is `user`'s, whose stored hash is `phc`.
    pub async fn check(&self, user: &str, password: &str, phc: &Arc<str>) -> bool {
        let key = {
            let mut h = Sha256::new();
            h.update(phc.as_bytes());
            h.update([0]);
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            <[u8; 32]>::from(h.finalize())
        };
        if let Some(until) = self.good.get(&key).map(|e| *e) {
            if until > Instant::now() {
                return true;
            }
            self.good.remove(&key);
        }
        let (reply, answer) = futures_channel::oneshot::channel();
        let job = Job {
            phc: phc.clone(),
            password: password.to_string(),
            reply,
        };
        if self.tx.try_send(job).is_err() {
            tracing::warn!("password checks are queued to their limit: refused");
            return false;
        }
        let ok = answer.await.unwrap_or(false);
        if ok {
            if self.good.len() >= REMEMBERED {
                let now = Instant::now();
                self.good.retain(|_, until| *until > now);
            }
            if self.good.len() < REMEMBERED {
                self.good.insert(key, Instant::now() + self.remember);
            }
        }
        ok
    }
}

fn salted(salt: &[u8; 16], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_verify_and_round_trip() {
        let k = new_key().expect("key");
        let (id, secret) = split_key(&k.key).expect("shape");
        assert_eq!(id, k.id);
        let stored = KeyHash::parse(&k.hash.to_string()).expect("parse");
        assert_eq!(stored, k.hash);
        assert!(stored.matches(secret));
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        assert!(!stored.matches(&wrong));
        assert!(split_key("mcpgw_1234_short").is_none());
        assert!(split_key("Bearer x").is_none());
        assert_eq!(KeyHash::parse("md5:00:00"), Err(HashError::KeyHashFormat));
    }

    #[test]
    fn passwords_verify_off_thread_and_are_remembered() {
        let phc: Arc<str> = hash_password("correct horse").expect("hash").into();
        check_password_hash(&phc).expect("phc");
        assert!(check_password_hash("plain").is_err());
        let c = PasswordChecker::start(Duration::from_secs(60)).expect("start");
        assert!(futures_executor_block_on(c.check(
            "alice",
            "correct horse",
            &phc
        )));
        assert!(!futures_executor_block_on(c.check("alice", "wrong", &phc)));
        assert_eq!(c.good.len(), 1, "only the success is remembered");
        assert!(futures_executor_block_on(c.check(
            "alice",
            "correct horse",
            &phc
        )));
    }

    /// Polls a future to completion on this thread (the verifier answers from its own).
    fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = Box::pin(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }
}
