//! The client side of digest authentication (RFC 2617, RFC 7616, RFC 8760):
//! reading a registrar's `WWW-Authenticate` / `Proxy-Authenticate`
//! challenges and answering one. The hash math is `digest.rs`'s; what is
//! here is what a server never needs: choosing among challenges, cnonce
//! and nonce-count, echoing `opaque`.

use crate::core::digest::{ha1, Algorithm};
use crate::core::msg::split_list;

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The algorithm token as the server wrote it (echoed back), or `None`
    /// when the challenge named none (MD5 by default, and then none is sent).
    pub algorithm_token: Option<String>,
    /// `qop=auth` offered: answer with cnonce and nc. Without qop the
    /// RFC 2069 form is used.
    pub qop_auth: bool,
    pub stale: bool,
}

/// Parses one `Digest ...` challenge value. `None` for another scheme, a
/// challenge without realm or nonce, an algorithm we do not compute
/// (`MD5-sess`, `SHA-512-256`...) or a qop list without `auth`
/// (`auth-int` alone: we would have to hash bodies we do not send).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let (mut realm, mut nonce, mut opaque, mut alg, mut qop, mut stale) =
        (None, None, None, None, None, false);
    for item in split_list(rest) {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v)
            .to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(v),
            "nonce" => nonce = Some(v),
            "opaque" => opaque = Some(v),
            "algorithm" => alg = Some(v),
            "qop" => qop = Some(v),
            "stale" => stale = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let algorithm = match alg.as_deref() {
        None => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
        Some(_) => return None,
    };
    let qop_auth = match &qop {
        None => false,
        Some(list) => {
            if !list
                .split(',')
                .any(|q| q.trim().eq_ignore_ascii_case("auth"))
            {
                return None;
            }
            true
        }
    };
    Some(Challenge {
        realm: realm?,
        nonce: nonce.filter(|n| !n.is_empty())?,
        opaque,
        algorithm,
        algorithm_token: alg,
        qop_auth,
        stale,
    })
}

/// The challenge to answer among `values` (every challenge header of one
/// response): SHA-256 before MD5 (RFC 8760 asks clients to prefer the
/// strongest they support), restricted to `realm` when one is configured.
pub fn choose<'a>(values: impl Iterator<Item = &'a str>, realm: Option<&str>) -> Option<Challenge> {
    let mut best: Option<Challenge> = None;
    for c in values.filter_map(parse_challenge) {
        if realm.is_some_and(|r| r != c.realm) {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => b.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256,
        };
        if better {
            best = Some(c);
        }
    }
    best
}

/// What goes into one `Authorization` header besides the challenge.
pub struct Answer<'a> {
    pub username: &'a str,
    pub secret: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    /// Nonce count for this nonce (1 for the first use).
    pub nc: u32,
    pub cnonce: &'a str,
}

/// The `Authorization` (or `Proxy-Authorization`) value answering `c`.
pub fn authorization(c: &Challenge, a: &Answer<'_>) -> String {
    let alg = c.algorithm;
    let h1 = ha1(alg, a.username, &c.realm, a.secret);
    let h2 = alg.hash_hex(format!("{}:{}", a.method, a.uri).as_bytes());
    let nc = format!("{:08x}", a.nc);
    let response = if c.qop_auth {
        alg.hash_hex(format!("{h1}:{}:{nc}:{}:auth:{h2}", c.nonce, a.cnonce).as_bytes())
    } else {
        alg.hash_hex(format!("{h1}:{}:{h2}", c.nonce).as_bytes())
    };
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\"",
        a.username, c.realm, c.nonce, a.uri
    );
    if let Some(t) = &c.algorithm_token {
        v.push_str(", algorithm=");
        v.push_str(t);
    }
    if c.qop_auth {
        v.push_str(&format!(", qop=auth, cnonce=\"{}\", nc={nc}", a.cnonce));
    }
    if let Some(o) = &c.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::digest::{expected_response, parse_authorization};

    #[test]
    fn parses_and_prefers_sha256_within_the_realm() {
        let md5 = "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
        let sha = "Digest realm=\"carrier\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth,auth-int\", opaque=\"op\", stale=TRUE";
        let other = "Digest realm=\"elsewhere\", nonce=\"n3\", algorithm=SHA-256, qop=\"auth\"";
        let c = choose([md5, sha].into_iter(), None).expect("a challenge");
        assert_eq!(c.nonce, "n2");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.opaque.as_deref(), Some("op"));
        assert!(c.stale && c.qop_auth);
        let c = choose([other, md5].into_iter(), Some("carrier")).expect("a challenge");
        assert_eq!(c.nonce, "n1");
        assert!(choose([other].into_iter(), Some("carrier")).is_none());
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        for v in [
            "Basic realm=\"x\"",
            "Digest realm=\"x\", nonce=\"n\", algorithm=MD5-sess, qop=\"auth\"",
            "Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"x\", nonce=\"\"",
        ] {
            assert!(parse_challenge(v).is_none(), "{v}");
        }
    }

    #[test]
    fn answer_is_what_the_server_side_expects() {
        // The server-side check (digest.rs) accepts what the client computes.
        for alg in ["MD5", "SHA-256"] {
            let c = parse_challenge(&format!(
                "Digest realm=\"carrier\", nonce=\"abc\", algorithm={alg}, qop=\"auth\", opaque=\"xyz\""
            ))
            .expect("challenge");
            let v = authorization(
                &c,
                &Answer {
                    username: "trunk1",
                    secret: "s3cret",
                    method: "REGISTER",
                    uri: "sip:carrier.test",
                    nc: 2,
                    cnonce: "cn",
                },
            );
            let creds = parse_authorization(&v).expect("parsable");
            assert_eq!(creds.nc, "00000002");
            assert_eq!(creds.algorithm, alg);
            assert!(v.contains("opaque=\"xyz\""));
            let h1 = ha1(c.algorithm, "trunk1", "carrier", "s3cret");
            assert_eq!(
                creds.response,
                expected_response(c.algorithm, &h1, "REGISTER", &creds)
            );
            let wrong = ha1(c.algorithm, "trunk1", "carrier", "other");
            assert_ne!(
                creds.response,
                expected_response(c.algorithm, &wrong, "REGISTER", &creds)
            );
        }
    }

    #[test]
    fn rfc2069_form_without_qop() {
        // RFC 2069 style: response = H(HA1:nonce:HA2), no cnonce/nc.
        let c = parse_challenge("Digest realm=\"r\", nonce=\"n\"").expect("challenge");
        assert!(!c.qop_auth);
        let v = authorization(
            &c,
            &Answer {
                username: "u",
                secret: "p",
                method: "REGISTER",
                uri: "sip:r",
                nc: 1,
                cnonce: "x",
            },
        );
        let h1 = ha1(Algorithm::Md5, "u", "r", "p");
        let h2 = Algorithm::Md5.hash_hex(b"REGISTER:sip:r");
        let want = Algorithm::Md5.hash_hex(format!("{h1}:n:{h2}").as_bytes());
        assert!(v.contains(&format!("response=\"{want}\"")), "{v}");
        assert!(!v.contains("cnonce") && !v.contains("algorithm"));
    }
}
