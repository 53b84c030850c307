//! Upstream secrets: credentials the gateway sends upstream, kept encrypted at rest.
//!
//! A secret value in the configuration (an upstream's `headers` values, `auth.bearer`,
//! `auth.value`, `auth.client_secret`) is written in one of three ways:
//!
//! - `env:VAR`: read from the environment when the configuration loads;
//! - `enc:v1:<base64>`: AES-256-GCM under the key in `MCPGW_SECRET_KEY` (see [`SecretKey`]);
//! - anything else: the value itself (`env:` and `enc:` are reserved prefixes).
//!
//! Once loaded, a value is a [`Secret`]: zeroed when dropped, printed as `***` by `Debug` and
//! `Display`, so no log line, error or config dump can show it. [`Secret::expose`] is the one
//! way to its text, used where a request head is written and nowhere else.
//!
//! `enc:v1:` is standard padded base64 of `nonce (12 random bytes) || ciphertext || tag (16)`,
//! authenticated with the associated data `mcpgw-secret-v1`. A fresh nonce is drawn from the OS
//! for every value, so encrypting the same text twice gives two different strings. Decryption
//! fails (never yields garbage) on a wrong key or an altered value.
//!
//! Never on the request path except `expose`: values are resolved by config loading.

use std::{collections::BTreeMap, fmt, sync::Arc};

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use base64::{engine::general_purpose, Engine as _};
use zeroize::Zeroizing;

/// The environment variable holding the key of `enc:v1:` values.
pub const KEY_ENV: &str = "MCPGW_SECRET_KEY";

/// Prefix of encrypted values.
pub const ENC_PREFIX: &str = "enc:v1:";

/// Prefix of values read from the environment.
pub const ENV_PREFIX: &str = "env:";

/// Associated data bound to every ciphertext (format and version).
const AAD: &[u8] = b"mcpgw-secret-v1";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a secret value could not be loaded. No variant carries the value itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// `enc:v1:` without a key.
    #[error("is encrypted (enc:v1:) but {KEY_ENV} is not set")]
    NoKey,
    /// Not base64, or too short to hold a nonce and a tag.
    #[error("is not a well-formed enc:v1: value (base64 of nonce, ciphertext and tag)")]
    Malformed,
    /// Authentication failed.
    #[error("cannot be decrypted: {KEY_ENV} is not the key it was encrypted with, or the value was altered")]
    Decrypt,
    /// Decrypted, but not UTF-8 text.
    #[error("decrypts to bytes that are not UTF-8 text")]
    NotText,
    /// `enc:` with a version this build does not know.
    #[error("uses an unknown encryption format (expected enc:v1:)")]
    UnknownFormat,
    /// `env:VAR` names a variable that is unset or empty.
    #[error("env:{0}: the environment variable is not set or empty")]
    EnvMissing(String),
    /// `env:` without a name.
    #[error("env: needs a variable name (env:VAR)")]
    EnvName,
    /// The key in the environment is not 32 bytes of hex or base64.
    #[error("{KEY_ENV} must be 32 bytes written as 64 hex digits or as base64 (`mcpgw secret new-key` prints one)")]
    BadKey,
    /// The OS random source failed (encrypting, or making a key).
    #[error("cannot draw random bytes from the OS")]
    Random,
    /// Encryption refused the value (over 64 GiB).
    #[error("cannot be encrypted")]
    Encrypt,
}

// === impl Secret ===

/// A secret value in memory: zeroed on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a plain value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value. Call it only to put the value on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `prefix` followed by the value, as a new secret (e.g. `Bearer <token>`).
    pub fn prefixed(&self, prefix: &str) -> Secret {
        let mut s = Zeroizing::new(String::with_capacity(prefix.len() + self.0.len()));
        s.push_str(prefix);
        s.push_str(&self.0);
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// === impl SecretKey ===

/// The 256-bit key of `enc:v1:` values (`MCPGW_SECRET_KEY`): zeroed on drop, never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// A fresh random key from the OS.
    pub fn generate() -> Result<Self, SecretError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut k[..]).map_err(|_| SecretError::Random)?;
        Ok(Self(k))
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or not) of 32 bytes.
    /// Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let t = text.trim();
        let mut k = Zeroizing::new([0u8; 32]);
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, pair) in t.as_bytes().chunks(2).enumerate() {
                let hex = std::str::from_utf8(pair).map_err(|_| SecretError::BadKey)?;
                k[i] = u8::from_str_radix(hex, 16).map_err(|_| SecretError::BadKey)?;
            }
            return Ok(Self(k));
        }
        let engines = [
            &general_purpose::STANDARD,
            &general_purpose::STANDARD_NO_PAD,
            &general_purpose::URL_SAFE,
            &general_purpose::URL_SAFE_NO_PAD,
        ];
        for e in engines {
            if let Ok(bytes) = e.decode(t).map(Zeroizing::new) {
                if bytes.len() == 32 {
                    k.copy_from_slice(&bytes);
                    return Ok(Self(k));
                }
            }
        }
        Err(SecretError::BadKey)
    }

    /// The key named by [`KEY_ENV`] in `env`; `None` when it is unset or empty.
    pub fn from_env(env: &Env) -> Result<Option<Self>, SecretError> {
        match env.var(KEY_ENV).map(Zeroizing::new) {
            Some(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Standard base64 of the key, as `mcpgw secret new-key` prints it.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(general_purpose::STANDARD.encode(&self.0[..]))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.0).into())
    }

    /// Encrypts `plain` under a fresh random nonce: `enc:v1:<base64>`.
    pub fn encrypt(&self, plain: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|_| SecretError::Random)?;
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: AAD,
                },
            )
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{ENC_PREFIX}{}",
            general_purpose::STANDARD.encode(out)
        ))
    }

    /// Decrypts an `enc:v1:` value.
    pub fn decrypt(&self, text: &str) -> Result<Secret, SecretError> {
        let b64 = text
            .strip_prefix(ENC_PREFIX)
            .ok_or(SecretError::UnknownFormat)?;
        let raw = general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| SecretError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        match String::from_utf8(plain) {
            Ok(s) => Ok(Secret::new(s)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err(SecretError::NotText)
            }
        }
    }
}

/// Whether `raw` is a reference (`env:`) or already encrypted (`enc:`), as opposed to a
/// plain value that must be encrypted before it is stored.
pub fn is_stored_form(raw: &str) -> bool {
    raw.starts_with(ENV_PREFIX) || raw.starts_with("enc:")
}

/// Loads a configured secret value: `env:VAR`, `enc:v1:...` (needs `key`) or plain text.
pub fn resolve(raw: &str, env: &Env, key: Option<&SecretKey>) -> Result<Secret, SecretError> {
    if let Some(var) = raw.strip_prefix(ENV_PREFIX) {
        if var.is_empty() {
            return Err(SecretError::EnvName);
        }
        return match env.var(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(SecretError::EnvMissing(var.to_string())),
        };
    }
    if raw.starts_with(ENC_PREFIX) {
        return key.ok_or(SecretError::NoKey)?.decrypt(raw);
    }
    if raw.starts_with("enc:") {
        return Err(SecretError::UnknownFormat);
    }
    Ok(Secret::new(raw))
}

// === impl Env ===

/// Where `env:VAR` values and [`KEY_ENV`] are read from.
pub trait Vars: Send + Sync {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

impl Vars for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The environment config loading reads: the process's (the default), or a map (tests).
#[derive(Clone, Default)]
pub struct Env(Option<Arc<dyn Vars>>);

impl Env {
    /// Reads `vars` instead of the process environment.
    pub fn with(vars: impl Vars + 'static) -> Self {
        Self(Some(Arc::new(vars)))
    }

    /// The value of `name`, if set (and valid UTF-8).
    pub fn var(&self, name: &str) -> Option<String> {
        match &self.0 {
            Some(v) => v.var(name),
            None => std::env::var(name).ok(),
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            None => "Env(process)",
            Some(_) => "Env(map)",
        })
    }
}

#[cfg(test)]
mod tests;
