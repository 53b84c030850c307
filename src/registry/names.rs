//! Namespacing: how upstream names become gateway names and back.
//!
//! Tools and prompts are exposed as `<upstream><sep><name>`. When that exceeds the 64
//! characters many clients accept for a tool name, it is shortened to a prefix plus a hash
//! of the full name: stable across restarts (same input, same output) and checked for
//! collisions by the catalog builder. The way back is never by parsing: the snapshot maps
//! each exposed name to its upstream and original name.
//!
//! Resource URIs become `mcpgw://<upstream>/<original uri>`; templates the same way, so
//! `{var}` expressions stay intact and an expanded template maps back by stripping the prefix.

/// Longest exposed tool or prompt name.
pub const MAX_NAME: usize = 64;

/// Scheme of rewritten resource URIs.
pub const URI_PREFIX: &str = "mcpgw://";

/// The exposed name of `name` from upstream `upstream`; `salt` > 0 asks for another
/// shortening after a collision.
pub fn expose(upstream: &str, sep: &str, name: &str, salt: u32) -> String {
    let full = format!("{upstream}{sep}{name}");
    if full.chars().count() <= MAX_NAME && salt == 0 {
        return full;
    }
    let mut h = fnv1a(full.as_bytes());
    if salt > 0 {
        h = fnv1a(&[&h.to_le_bytes()[..], &salt.to_le_bytes()[..]].concat());
    }
    let tag = format!("_{:08x}", (h ^ (h >> 32)) as u32);
    let keep = MAX_NAME - tag.len();
    let prefix: String = full.chars().take(keep).collect();
    format!("{prefix}{tag}")
}

/// `mcpgw://<upstream>/<uri>`.
pub fn expose_uri(upstream: &str, uri: &str) -> String {
    format!("{URI_PREFIX}{upstream}/{uri}")
}

/// Splits an exposed URI into (upstream, original uri).
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(URI_PREFIX)?;
    let (up, orig) = rest.split_once('/')?;
    (!up.is_empty() && !orig.is_empty()).then_some((up, orig))
}

/// 64-bit FNV-1a: small, stable across platforms and releases (unlike `DefaultHasher`).
fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_prefixed() {
        assert_eq!(expose("gh", "__", "create_issue", 0), "gh__create_issue");
    }

    #[test]
    fn long_names_shorten_stably_within_limit() {
        let long = "x".repeat(80);
        let a = expose("up", "__", &long, 0);
        assert_eq!(a.chars().count(), MAX_NAME);
        assert_eq!(a, expose("up", "__", &long, 0));
        let b = expose("up", "__", &format!("{long}y"), 0);
        assert_ne!(a, b, "different names, same prefix, must differ");
        assert_ne!(a, expose("up", "__", &long, 1), "salt gives another name");
    }

    #[test]
    fn uris_round_trip() {
        for orig in ["file:///etc/x", "demo://greeting/{name}", "a:b/c?d=e#f"] {
            let e = expose_uri("up-1", orig);
            assert_eq!(split_uri(&e), Some(("up-1", orig)));
        }
        assert_eq!(split_uri("file:///x"), None);
        assert_eq!(split_uri("mcpgw://up"), None);
    }
}
