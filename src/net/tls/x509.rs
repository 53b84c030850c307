//! The name a client certificate gives its holder: the subject's common name (CN), else
//! the first subject alternative name (DNS name, e-mail, URI or IP address).
//!
//! A small DER walk over a certificate rustls has already verified; it reads only the
//! subject and the SAN extension and never judges validity. Anything it cannot read gives
//! `None` (the client is then treated as having no certificate identity).

use std::net::{Ipv4Addr, Ipv6Addr};

/// The identity `cert` (DER) names, if it names one.
pub fn identity(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = element(cert, SEQUENCE)?;
    let (_, tbs, _) = element(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT (absent in v1), serialNumber, signature, issuer, validity.
    let (tag, _, after) = next(rest)?;
    rest = if tag == 0xa0 { next(after)?.2 } else { after };
    for _ in 0..3 {
        rest = next(rest)?.2;
    }
    let (_, subject, mut rest) = element(rest, SEQUENCE)?;
    if let Some(cn) = common_name(subject) {
        return Some(cn);
    }
    rest = next(rest)?.2; // subjectPublicKeyInfo
                          // issuerUniqueID [1], subjectUniqueID [2], extensions [3].
    while let Some((tag, body, after)) = next(rest) {
        if tag == 0xa3 {
            return first_san(body);
        }
        rest = after;
    }
    None
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element: (tag, contents, what follows it).
fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// [`next`], requiring `tag`.
fn element(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    next(input).filter(|(t, _, _)| *t == tag)
}

/// The CN of a Name (the last one, the most specific, when there are several).
fn common_name(name: &[u8]) -> Option<String> {
    let mut found = None;
    let mut rdns = name;
    while let Some((_, set, after)) = element(rdns, SET) {
        let mut atvs = set;
        while let Some((_, atv, more)) = element(atvs, SEQUENCE) {
            let (_, oid, value) = element(atv, OID)?;
            if oid == OID_CN {
                let (tag, v, _) = next(value)?;
                found = directory_string(tag, v).or(found);
            }
            atvs = more;
        }
        rdns = after;
    }
    found.filter(|s: &String| !s.is_empty())
}

/// A DirectoryString's text: UTF8String, PrintableString, IA5String, TeletexString (read
/// as Latin-1) or BMPString (UTF-16BE).
fn directory_string(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(v).ok().map(str::to_string),
        0x14 => Some(v.iter().map(|b| char::from(*b)).collect()),
        0x1e if v.len().is_multiple_of(2) => {
            let units: Vec<u16> = v
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The first usable GeneralName of the SAN extension in `[3] { Extensions }`.
fn first_san(exts: &[u8]) -> Option<String> {
    let (_, mut list, _) = element(exts, SEQUENCE)?;
    while let Some((_, ext, after)) = element(list, SEQUENCE) {
        let (_, oid, mut rest) = element(ext, OID)?;
        if oid == OID_SAN {
            // critical BOOLEAN DEFAULT FALSE, then the OCTET STRING wrapping the value.
            if rest.first() == Some(&0x01) {
                rest = next(rest)?.2;
            }
            let (_, value, _) = element(rest, OCTET_STRING)?;
            let (_, mut names, _) = element(value, SEQUENCE)?;
            while let Some((tag, v, more)) = next(names) {
                let name = match tag {
                    // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]: IA5String.
                    0x81 | 0x82 | 0x86 => std::str::from_utf8(v).ok().map(str::to_string),
                    // iPAddress [7].
                    0x87 => match v.len() {
                        4 => <[u8; 4]>::try_from(v)
                            .ok()
                            .map(|a| Ipv4Addr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(v)
                            .ok()
                            .map(|a| Ipv6Addr::from(a).to_string()),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(n) = name.filter(|n| !n.is_empty()) {
                    return Some(n);
                }
                names = more;
            }
            return None;
        }
        list = after;
    }
    None
}
