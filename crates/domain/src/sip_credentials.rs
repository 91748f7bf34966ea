//! Pure helpers for SIP credentials: HTTP digest computations (RFC 2617,
//! RFC 7616; MD5 and SHA-256), password generation and username slugs.
//! No I/O, no clock; the SIP server reuses the digest functions.

use md5::{Digest as _, Md5};
use rand::RngCore;
use sha2::Sha256;

/// Digest algorithms we support (RFC 7616 names `MD5`, `SHA-256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    /// Parses the `algorithm=` parameter (case-insensitive). `-sess`
    /// variants are reported by [`parse_algorithm`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Hex length of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 => 64,
        }
    }
}

/// Parses an `algorithm=` value: returns the hash and whether it is a
/// `-sess` variant. A missing parameter means MD5 (RFC 2617).
pub fn parse_algorithm(value: Option<&str>) -> Option<(DigestAlgorithm, bool)> {
    let v = value.unwrap_or("MD5").trim().trim_matches('"');
    let (base, sess) = match v.len().checked_sub(5).and_then(|i| v.get(i..)) {
        Some(tail) if tail.eq_ignore_ascii_case("-sess") => (&v[..v.len() - 5], true),
        _ => (v, false),
    };
    let alg = if base.eq_ignore_ascii_case("MD5") {
        DigestAlgorithm::Md5
    } else if base.eq_ignore_ascii_case("SHA-256") {
        DigestAlgorithm::Sha256
    } else {
        return None;
    };
    Some((alg, sess))
}

/// Lowercase hex of the hash of `data`.
pub fn hash_hex(alg: DigestAlgorithm, data: &[u8]) -> String {
    match alg {
        DigestAlgorithm::Md5 => hex::encode(Md5::digest(data)),
        DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(data)),
    }
}

/// HA1 = H(username:realm:password).
pub fn ha1(alg: DigestAlgorithm, username: &str, realm: &str, password: &str) -> String {
    hash_hex(alg, format!("{username}:{realm}:{password}").as_bytes())
}

/// HA1 for `-sess` algorithms: H(H(username:realm:password):nonce:cnonce).
pub fn ha1_sess(alg: DigestAlgorithm, ha1: &str, nonce: &str, cnonce: &str) -> String {
    hash_hex(alg, format!("{ha1}:{nonce}:{cnonce}").as_bytes())
}

/// HA2 = H(method:uri) (qop=auth or no qop).
pub fn ha2(alg: DigestAlgorithm, method: &str, uri: &str) -> String {
    hash_hex(alg, format!("{method}:{uri}").as_bytes())
}

/// The expected `response=` value. With `qop` (e.g. "auth"):
/// H(HA1:nonce:nc:cnonce:qop:HA2); without: H(HA1:nonce:HA2) (RFC 2069).
pub fn response(
    alg: DigestAlgorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    ha2: &str,
) -> String {
    match qop {
        Some((nc, cnonce, qop)) => hash_hex(
            alg,
            format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes(),
        ),
        None => hash_hex(alg, format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Compares two strings in time independent of where they differ (lengths
/// may leak, contents do not).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new SIP password: 16 bytes from the thread-local CSPRNG as 32
/// lowercase hex characters.
pub fn generate_password() -> String {
    random_hex(16)
}

/// `n` random bytes from the CSPRNG, hex encoded.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Longest SIP username we generate.
pub const MAX_USERNAME_LEN: usize = 32;

/// The SIP username base for a display name: lowercase ASCII letters and
/// digits, every other run of characters becomes one `_`, trimmed of `_`,
/// at most 32 characters. Names with nothing usable give `agent`; an
/// all-digit result gets an `agent_` prefix so it can never be mistaken
/// for an extension.
pub fn username_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_USERNAME_LEN));
    for c in name.chars() {
        let c = fold_latin(c);
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        if out.len() >= MAX_USERNAME_LEN {
            break;
        }
    }
    out.truncate(MAX_USERNAME_LEN);
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() {
        return "agent".to_string();
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let mut s = format!("agent_{trimmed}");
        s.truncate(MAX_USERNAME_LEN);
        return s;
    }
    trimmed.to_string()
}

/// `base` with numeric suffix `n` (n >= 2), shortened so the whole fits in
/// [`MAX_USERNAME_LEN`].
pub fn username_with_suffix(base: &str, n: u32) -> String {
    let suffix = n.to_string();
    let keep = MAX_USERNAME_LEN
        .saturating_sub(suffix.len())
        .min(base.len());
    let head = base[..keep].trim_end_matches('_');
    format!("{head}{suffix}")
}

/// Folds the common Latin-1 and Latin Extended-A letters of Spanish,
/// Portuguese and French names to ASCII (José -> jose, Núñez -> nunez).
fn fold_latin(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'Á' | 'À' | 'Â' | 'Ä' | 'Ã' | 'Å' => 'a',
        'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' | 'Í' | 'Ì' | 'Î' | 'Ï' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'Ó' | 'Ò' | 'Ô' | 'Ö' | 'Õ' => 'o',
        'ú' | 'ù' | 'û' | 'ü' | 'Ú' | 'Ù' | 'Û' | 'Ü' => 'u',
        'ñ' | 'Ñ' => 'n',
        'ç' | 'Ç' => 'c',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_section_3_5_vector() {
        let h1 = ha1(
            DigestAlgorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let h2 = ha2(DigestAlgorithm::Md5, "GET", "/dir/index.html");
        let r = response(
            DigestAlgorithm::Md5,
            &h1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b", "auth")),
            &h2,
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    const NONCE_7616: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE_7616: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn rfc7616(alg: DigestAlgorithm) -> String {
        let h1 = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        let h2 = ha2(alg, "GET", "/dir/index.html");
        response(
            alg,
            &h1,
            NONCE_7616,
            Some(("00000001", CNONCE_7616, "auth")),
            &h2,
        )
    }

    #[test]
    fn rfc7616_section_3_9_1_md5_vector() {
        assert_eq!(
            rfc7616(DigestAlgorithm::Md5),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn rfc7616_section_3_9_1_sha256_vector() {
        assert_eq!(
            rfc7616(DigestAlgorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn algorithm_parsing() {
        assert_eq!(parse_algorithm(None), Some((DigestAlgorithm::Md5, false)));
        assert_eq!(
            parse_algorithm(Some("sha-256")),
            Some((DigestAlgorithm::Sha256, false))
        );
        assert_eq!(
            parse_algorithm(Some("MD5-sess")),
            Some((DigestAlgorithm::Md5, true))
        );
        assert_eq!(parse_algorithm(Some("SHA-512-256")), None);
        assert_eq!(parse_algorithm(Some("")), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }

    #[test]
    fn passwords_are_32_hex_and_differ() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn slugs() {
        assert_eq!(username_slug("John Doe"), "john_doe");
        assert_eq!(username_slug("  José  Núñez-Pérez "), "jose_nunez_perez");
        assert_eq!(username_slug("!!!"), "agent");
        assert_eq!(username_slug("1234"), "agent_1234");
        assert_eq!(username_slug("李"), "agent");
        let long = username_slug("A very long name that goes on and on and on");
        assert!(long.len() <= MAX_USERNAME_LEN, "{long}");
        assert!(!long.ends_with('_'));
        assert_eq!(username_with_suffix("john_doe", 2), "john_doe2");
        let s = username_with_suffix(&"x".repeat(32), 12);
        assert_eq!(s.len(), 32);
        assert!(s.ends_with("12"));
    }
}
