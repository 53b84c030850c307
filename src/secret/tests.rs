use super::*;

fn key() -> SecretKey {
    SecretKey::generate().expect("key")
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::with(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[test]
fn encrypt_decrypt_round_trip_with_fresh_nonces() {
    let k = key();
    let a = k.encrypt("Bearer s3cret-ü").expect("encrypt");
    let b = k.encrypt("Bearer s3cret-ü").expect("encrypt");
    assert!(a.starts_with(ENC_PREFIX), "{a}");
    assert_ne!(a, b, "a fresh nonce per value");
    assert!(!a.contains("s3cret"));
    assert_eq!(k.decrypt(&a).expect("decrypt").expose(), "Bearer s3cret-ü");
    assert_eq!(
        resolve(&b, &Env::default(), Some(&k))
            .expect("resolve")
            .expose(),
        "Bearer s3cret-ü"
    );
    // Empty values survive too.
    let e = k.encrypt("").expect("encrypt");
    assert_eq!(k.decrypt(&e).expect("decrypt").expose(), "");
}

#[test]
fn wrong_key_fails_and_says_so() {
    let sealed = key().encrypt("token").expect("encrypt");
    let err = key().decrypt(&sealed).expect_err("other key");
    assert_eq!(err, SecretError::Decrypt);
    assert!(err.to_string().contains(KEY_ENV), "{err}");
    assert_eq!(
        resolve(&sealed, &Env::default(), None).expect_err("no key"),
        SecretError::NoKey
    );
}

#[test]
fn tampered_values_fail() {
    let k = key();
    let sealed = k.encrypt("token").expect("encrypt");
    let mut raw = general_purpose::STANDARD
        .decode(&sealed[ENC_PREFIX.len()..])
        .expect("b64");
    for i in [0, NONCE_LEN, raw.len() - 1] {
        raw[i] ^= 1;
        let t = format!("{ENC_PREFIX}{}", general_purpose::STANDARD.encode(&raw));
        assert_eq!(k.decrypt(&t).expect_err("tampered"), SecretError::Decrypt);
        raw[i] ^= 1;
    }
    // Truncated, not base64, unknown version.
    let short = format!(
        "{ENC_PREFIX}{}",
        general_purpose::STANDARD.encode(&raw[..20])
    );
    assert_eq!(
        k.decrypt(&short).expect_err("short"),
        SecretError::Malformed
    );
    assert_eq!(
        k.decrypt("enc:v1:***").expect_err("b64"),
        SecretError::Malformed
    );
    assert_eq!(
        resolve("enc:v2:AAAA", &Env::default(), Some(&k)).expect_err("v2"),
        SecretError::UnknownFormat
    );
}

#[test]
fn env_references_and_plain_values() {
    let e = env(&[("API_TOKEN", "from-env"), ("EMPTY", "")]);
    assert_eq!(
        resolve("env:API_TOKEN", &e, None).expect("env").expose(),
        "from-env"
    );
    assert_eq!(
        resolve("env:NOPE", &e, None).expect_err("unset"),
        SecretError::EnvMissing("NOPE".into())
    );
    assert!(resolve("env:EMPTY", &e, None).is_err());
    assert_eq!(
        resolve("env:", &e, None).expect_err("no name"),
        SecretError::EnvName
    );
    assert_eq!(
        resolve("plain value", &e, None).expect("plain").expose(),
        "plain value"
    );
    assert!(is_stored_form("env:X") && is_stored_form("enc:v1:x"));
    assert!(!is_stored_form("Bearer x"));
}

#[test]
fn keys_parse_from_hex_and_base64_and_come_from_env() {
    let k = key();
    let b64 = k.to_base64();
    let hex: String = k.0.iter().map(|b| format!("{b:02x}")).collect();
    let sealed = k.encrypt("x").expect("encrypt");
    for text in [b64.as_str(), hex.as_str(), &format!("  {}\n", b64.as_str())] {
        let again = SecretKey::parse(text).expect("parse");
        assert_eq!(again.decrypt(&sealed).expect("same key").expose(), "x");
    }
    let url = general_purpose::URL_SAFE_NO_PAD.encode(&k.0[..]);
    assert!(SecretKey::parse(&url).is_ok());
    for bad in [
        "",
        "abcd",
        &hex[..62],
        &general_purpose::STANDARD.encode([0u8; 16]),
    ] {
        assert_eq!(
            SecretKey::parse(bad).expect_err("bad"),
            SecretError::BadKey,
            "{bad:?}"
        );
    }
    assert!(SecretKey::from_env(&env(&[])).expect("unset").is_none());
    assert!(SecretKey::from_env(&env(&[(KEY_ENV, &hex)]))
        .expect("set")
        .is_some());
    assert_eq!(
        SecretKey::from_env(&env(&[(KEY_ENV, "short")])).expect_err("bad"),
        SecretError::BadKey
    );
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
    assert_eq!(s.prefixed("Bearer ").expose(), "Bearer hunter2");
    assert_eq!(format!("{:?}", key()), "SecretKey(***)");
    for e in [
        SecretError::Decrypt,
        SecretError::Malformed,
        SecretError::EnvMissing("V".into()),
    ] {
        assert!(!e.to_string().contains("hunter2"));
    }
}
