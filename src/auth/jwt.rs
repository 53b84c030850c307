//! JWT bearer tokens: verifies a client's token against pre-loaded keys and [`Rules`].
//!
//! Sits in the `authenticate` phase, on the worker's request path. [`verify`] is pure
//! computation: keys are loaded beforehand ([`KeySet::from_jwks`], [`KeySet::from_pem`],
//! [`KeySet::from_secret`]) and **nothing here fetches a JWKS**; `auth::jwks` does that on
//! its own thread, and refetches early when a token names a key the set lacks.
//!
//! Signature and `exp`/`nbf`/`aud` checks are done by `jsonwebtoken`; this module picks the
//! key, pins the algorithm to the key's family, and checks what `jsonwebtoken` does not
//! (`iss` as one exact string, `iat` in the future, claims the operator requires).
//!
//! Refused always: `alg: none` or any algorithm the chosen key is not for (an RSA key never
//! verifies an HS256 token: the key-confusion attack), a `crit` header, a token without `exp`.

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::{de::IgnoredAny, Deserialize};
use serde_json::{Map, Value};

/// Leeway above this is treated as this (one day); it also keeps time arithmetic in range.
const MAX_LEEWAY_SECS: u64 = 86_400;

const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC_ALGS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

/// Why a token was refused, or why keys could not be loaded.
///
/// `Display` is short and safe to log: it never contains the token or a claim value.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum JwtError {
    /// Not three base64url parts, or a header or payload that is not the expected JSON.
    #[error("malformed token")]
    Malformed,
    /// No key in the set matches the token's `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify with any matching key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` differs from [`Rules::issuer`].
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` contains none of [`Rules::audiences`].
    #[error("wrong audience")]
    WrongAudience,
    /// `alg` is `none`, unknown, or not one the matching keys are for.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// A required claim is absent (or null); holds the claim's name from the rules.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// Keys could not be loaded; holds what was wrong with them.
    #[error("bad key: {0}")]
    BadKey(String),
}

// === KeySet ===

/// Keys a token may be signed with, by `kid`.
///
/// A token with a `kid` is tried with the keys of that `kid`; a token without one, with the
/// keys without one. A key without `kid` is also tried for any token when it is the only key.
/// Each key verifies only its own algorithms (see [`KeySet::from_jwks`]).
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// One verification key and the algorithms it may be used with.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material stays out of logs.
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish()
    }
}

impl KeySet {
    /// From a JWKS document (RFC 7517 `{"keys":[...]}`).
    ///
    /// Loads RSA (RS256/384/512, PS256/384/512), EC P-256 (ES256), EC P-384 (ES384) and OKP
    /// Ed25519 (EdDSA) keys. A key whose `alg` is given is used only with that alg. Skipped,
    /// not an error: keys with `use` other than `"sig"`, other key types and curves (including
    /// symmetric `oct` keys), and keys whose `alg` does not fit their type. An error: a document
    /// that is not a JWKS, a loadable key with missing or malformed members, or no usable key.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, JwtError> {
        let jwks: Jwks = serde_json::from_slice(json)
            .map_err(|_| JwtError::BadKey("not a JWKS document".to_owned()))?;
        let mut keys = Vec::with_capacity(jwks.keys.len());
        for jwk in &jwks.keys {
            if let Some(key) = jwk.to_key()? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(JwtError::BadKey(
                "JWKS has no usable signing key".to_owned(),
            ));
        }
        Ok(KeySet { keys })
    }

    /// One PEM public key: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC P-256/P-384, or Ed25519.
    ///
    /// Private keys and certificates are refused, and so is anything else: an HMAC secret goes
    /// through [`KeySet::from_secret`], never here. An EC key accepts ES256 and ES384 (the PEM
    /// curve is not inspected); a token of the other curve fails as [`JwtError::BadSignature`].
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<KeySet, JwtError> {
        let (key, algs) = decode_pem(pem)?;
        Ok(KeySet {
            keys: vec![Key { kid, algs, key }],
        })
    }

    /// An HMAC secret for HS256, HS384 and HS512.
    ///
    /// **An empty secret gives an empty set**, which verifies nothing: anyone could sign with it.
    pub fn from_secret(secret: &[u8], kid: Option<String>) -> KeySet {
        if secret.is_empty() {
            return KeySet::default();
        }
        let key = Key {
            kid,
            algs: HMAC_ALGS.to_vec(),
            key: DecodingKey::from_secret(secret),
        };
        KeySet { keys: vec![key] }
    }

    /// Union of both sets; on an equal `kid` (absent counts as one value), `other`'s keys win.
    pub fn merge(mut self, other: KeySet) -> KeySet {
        self.keys
            .retain(|mine| !other.keys.iter().any(|theirs| theirs.kid == mine.kid));
        self.keys.extend(other.keys);
        self
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key (and so verifies no token).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this kid is present (the control plane refetches a JWKS on an
    /// unknown kid).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// Whether `key` is to be tried for a token with this `kid`.
    fn matches(&self, key: &Key, kid: Option<&str>) -> bool {
        key.kid.as_deref() == kid || (self.keys.len() == 1 && key.kid.is_none())
    }
}

/// Loads one PEM public key with the algorithms of its type.
fn decode_pem(pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), JwtError> {
    let is_public = memchr::memmem::find(pem, b"-----BEGIN PUBLIC KEY-----").is_some()
        || memchr::memmem::find(pem, b"-----BEGIN RSA PUBLIC KEY-----").is_some();
    if !is_public {
        return Err(JwtError::BadKey("not a PEM public key".to_owned()));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, RSA_ALGS.to_vec()));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, EC_ALGS.to_vec()));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, vec![Algorithm::EdDSA]));
    }
    Err(JwtError::BadKey(
        "PEM is not an RSA, EC or Ed25519 public key".to_owned(),
    ))
}

/// A JWKS document; members other than `keys` are ignored.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// The JWK members this module reads (RFC 7517, 7518, 8037); others are ignored.
#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwk {
    /// The key, `None` when it is to be skipped, an error when it is loadable but broken.
    fn to_key(&self) -> Result<Option<Key>, JwtError> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let Some(family) = self.family() else {
            return Ok(None);
        };
        let algs = match self.alg.as_deref() {
            None => family.to_vec(),
            Some(alg) => match Algorithm::from_str(alg) {
                Ok(alg) if family.contains(&alg) => vec![alg],
                _ => return Ok(None),
            },
        };
        let key = self.decoding_key()?;
        Ok(Some(Key {
            kid: self.kid.clone(),
            algs,
            key,
        }))
    }

    /// The algorithms of this key type and curve; `None` for types not loaded.
    fn family(&self) -> Option<&'static [Algorithm]> {
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => Some(&RSA_ALGS),
            ("EC", Some("P-256")) => Some(&[Algorithm::ES256]),
            ("EC", Some("P-384")) => Some(&[Algorithm::ES384]),
            ("OKP", Some("Ed25519")) => Some(&[Algorithm::EdDSA]),
            _ => None,
        }
    }

    /// Builds the key from its members; only called for types [`Jwk::family`] accepts.
    fn decoding_key(&self) -> Result<DecodingKey, JwtError> {
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => {
                let n = self.member("n", self.n.as_deref(), None)?;
                let e = self.member("e", self.e.as_deref(), None)?;
                Ok(DecodingKey::from_rsa_raw_components(&n, &e))
            }
            ("EC", curve) => {
                let len = if curve == Some("P-256") { 32 } else { 48 };
                let mut point = vec![0x04];
                point.extend(self.member("x", self.x.as_deref(), Some(len))?);
                point.extend(self.member("y", self.y.as_deref(), Some(len))?);
                Ok(DecodingKey::from_ec_der(&point))
            }
            _ => Ok(DecodingKey::from_ed_der(&self.member(
                "x",
                self.x.as_deref(),
                Some(32),
            )?)),
        }
    }

    /// A base64url member, decoded; of exactly `len` bytes when given, else non-empty.
    fn member(
        &self,
        name: &str,
        value: Option<&str>,
        len: Option<usize>,
    ) -> Result<Vec<u8>, JwtError> {
        let bytes = value.and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        match bytes {
            Some(bytes) if len.map_or(!bytes.is_empty(), |len| bytes.len() == len) => Ok(bytes),
            _ => Err(JwtError::BadKey(format!(
                "JWK {} {}: member {name} missing or malformed",
                self.kty,
                self.kid.as_deref().unwrap_or("(no kid)")
            ))),
        }
    }
}

// === Rules ===

/// What a verified token must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `iss` must be this exact string; `None`: `iss` is not checked. Default `None`.
    pub issuer: Option<String>,
    /// The token's `aud` (a string or an array) must contain one of these; empty: `aud` is not
    /// checked. Default empty.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds. Default 60; capped at one day.
    pub leeway_secs: u64,
    /// Claims that must be present and not null, by dotted path as in [`Verified::str_claim`].
    /// `exp` is always required, whether listed or not. Default empty.
    pub required_claims: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            issuer: None,
            audiences: Vec::new(),
            leeway_secs: 60,
            required_claims: Vec::new(),
        }
    }
}

impl Rules {
    fn leeway(&self) -> u64 {
        self.leeway_secs.min(MAX_LEEWAY_SECS)
    }

    /// What `jsonwebtoken` checks: signature for `alg`, `exp`, `nbf`, `aud`.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway();
        validation.validate_nbf = true;
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        validation
    }

    /// What `jsonwebtoken` does not check, on claims whose signature verified.
    fn check(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        self.check_issuer(claims)?;
        check_not_future(
            claims,
            jsonwebtoken::get_current_timestamp() + self.leeway(),
        )?;
        for path in &self.required_claims {
            if lookup(claims, path).is_none_or(Value::is_null) {
                return Err(JwtError::MissingClaim(path.clone()));
            }
        }
        Ok(())
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        let Some(issuer) = self.issuer.as_deref() else {
            return Ok(());
        };
        match claims.get("iss") {
            None | Some(Value::Null) => Err(JwtError::MissingClaim("iss".to_owned())),
            Some(Value::String(iss)) if iss == issuer => Ok(()),
            Some(_) => Err(JwtError::WrongIssuer),
        }
    }
}

/// `nbf` and `iat`, when present, must be numbers not after `latest` (now plus leeway).
fn check_not_future(claims: &Map<String, Value>, latest: u64) -> Result<(), JwtError> {
    for name in ["nbf", "iat"] {
        match claims.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                if n.as_f64().is_some_and(|t| t > latest as f64) {
                    return Err(JwtError::NotYetValid);
                }
            }
            Some(_) => return Err(JwtError::Malformed),
        }
    }
    Ok(())
}

// === Verified ===

/// A token that passed verification.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// The payload, as signed.
    pub claims: Map<String, Value>,
    /// The `kid` of the key that verified the signature (`None` for a key without one).
    pub kid: Option<String>,
}

impl Verified {
    /// A string claim by dotted path: `"sub"`, or `"realm_access.roles"` walking objects.
    ///
    /// A key that itself contains dots (`"https://example.com/roles"`) matches whole first.
    pub fn str_claim(&self, path: &str) -> Option<&str> {
        lookup(&self.claims, path).and_then(Value::as_str)
    }

    /// A claim that is a list of strings, or one string split on spaces (OAuth `scope`), by
    /// dotted path as in [`Verified::str_claim`]. Non-string items are left out; absent or
    /// of another type: empty.
    pub fn list_claim(&self, path: &str) -> Vec<String> {
        match lookup(&self.claims, path) {
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The value at a dotted path; at each level the longest remaining path is tried as one key
/// first, then each split at a dot from the left.
fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    path.match_indices('.')
        .find_map(|(at, _)| match map.get(&path[..at]) {
            Some(Value::Object(inner)) => lookup(inner, &path[at + 1..]),
            _ => None,
        })
}

// === verify ===

/// The JOSE header members read before choosing a key.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<IgnoredAny>,
}

/// Verifies `token` (the compact JWS, without `Bearer `) against `keys` and `rules`.
///
/// The keys tried are those matching the token's `kid` that are for its `alg`; the first that
/// verifies wins. Errors name the first check that failed.
pub fn verify(token: &str, keys: &KeySet, rules: &Rules) -> Result<Verified, JwtError> {
    let (alg, kid) = read_header(token)?;
    let mut matching = keys
        .keys
        .iter()
        .filter(|key| keys.matches(key, kid.as_deref()))
        .peekable();
    if matching.peek().is_none() {
        return Err(JwtError::UnknownKey);
    }
    let mut usable = matching.filter(|key| key.algs.contains(&alg)).peekable();
    if usable.peek().is_none() {
        return Err(JwtError::AlgorithmNotAllowed);
    }
    let validation = rules.validation(alg);
    for key in usable {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => {
                rules.check(&data.claims)?;
                return Ok(Verified {
                    claims: data.claims,
                    kid: key.kid.clone(),
                });
            }
            Err(e) => match map_error(e.into_kind()) {
                JwtError::BadSignature => continue,
                other => return Err(other),
            },
        }
    }
    Err(JwtError::BadSignature)
}

/// The token's algorithm and `kid`; `none`, unknown algorithms and `crit` are refused here.
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), JwtError> {
    let mut parts = token.split('.');
    let encoded = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(_), Some(_), None) => header,
        _ => return Err(JwtError::Malformed),
    };
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwtError::Malformed)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| JwtError::Malformed)?;
    if header.crit.is_some() {
        // RFC 7515 4.1.11: extensions we do not understand must be refused.
        return Err(JwtError::Malformed);
    }
    let alg = Algorithm::from_str(&header.alg).map_err(|_| JwtError::AlgorithmNotAllowed)?;
    Ok((alg, header.kid))
}

fn map_error(kind: ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => JwtError::BadSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => JwtError::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim),
        _ => JwtError::Malformed,
    }
}

#[cfg(test)]
mod tests;
