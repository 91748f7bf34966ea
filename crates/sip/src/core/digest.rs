//! Server-side HTTP digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760).
//!
//! Nonces are stateless: `hex(issued_ms) || hex(random) || hex(HMAC-SHA256(secret, issued_ms || random))[..32]`,
//! so any nonce we issued can be checked without a table; a small table keeps
//! the highest nonce-count seen per nonce to reject replays. Time is passed in.

use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// HA1 = H(username:realm:password) in lowercase hex.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// One stored secret: both HA1 forms, optionally expiring (softphone credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha1 {
    pub md5: String,
    pub sha256: String,
    pub expires_at_ms: Option<u64>,
}

/// Parsed `Authorization` / `Proxy-Authorization` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: String,
    pub cnonce: String,
    pub qop: String,
    pub nc: String,
}

/// Parses `Digest k=v, k="v"`; `None` if it is not a digest header.
pub fn parse_authorization(v: &str) -> Option<Credentials> {
    let v = v.trim();
    let (scheme, rest) = v.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut c = Credentials::default();
    for item in crate::core::msg::split_list(rest) {
        let Some((k, val)) = item.split_once('=') else {
            continue;
        };
        let val = val.trim();
        let val = val
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(val)
            .to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "username" => c.username = val,
            "realm" => c.realm = val,
            "nonce" => c.nonce = val,
            "uri" => c.uri = val,
            "response" => c.response = val.to_ascii_lowercase(),
            "algorithm" => c.algorithm = val,
            "cnonce" => c.cnonce = val,
            "qop" => c.qop = val,
            "nc" => c.nc = val,
            _ => {}
        }
    }
    Some(c)
}

/// Constant-time comparison of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The expected `response` for qop=auth.
pub fn expected_response(alg: Algorithm, ha1_hex: &str, method: &str, c: &Credentials) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{}", c.uri).as_bytes());
    alg.hash_hex(
        format!(
            "{ha1_hex}:{}:{}:{}:{}:{ha2}",
            c.nonce, c.nc, c.cnonce, c.qop
        )
        .as_bytes(),
    )
}

/// The response every secret of a request is checked against, with the
/// part that does not depend on the secret (`:nonce:nc:cnonce:qop:HA2`)
/// computed once: each request checks at least [`MIN_SECRETS_CHECKED`]
/// secrets, and this keeps each check to one hash without allocating.
struct Expected {
    alg: Algorithm,
    tail: Vec<u8>,
}

impl Expected {
    fn new(alg: Algorithm, method: &str, c: &Credentials) -> Self {
        let ha2 = alg.hash_hex(format!("{method}:{}", c.uri).as_bytes());
        let tail = format!(":{}:{}:{}:{}:{ha2}", c.nonce, c.nc, c.cnonce, c.qop).into_bytes();
        Expected { alg, tail }
    }

    /// Whether `response` is the answer for `ha1_hex`, in constant time.
    fn matches(&self, ha1_hex: &str, response: &str) -> bool {
        let mut hex_buf = [0u8; 64];
        let hex_out = match self.alg {
            Algorithm::Md5 => {
                let d = Md5::new()
                    .chain_update(ha1_hex.as_bytes())
                    .chain_update(&self.tail)
                    .finalize();
                let out = &mut hex_buf[..32];
                // Cannot fail: 16 bytes fill exactly 32 hex digits.
                let _ = hex::encode_to_slice(d, &mut *out);
                &hex_buf[..32]
            }
            Algorithm::Sha256 => {
                let d = Sha256::new()
                    .chain_update(ha1_hex.as_bytes())
                    .chain_update(&self.tail)
                    .finalize();
                let _ = hex::encode_to_slice(d, &mut hex_buf[..]);
                &hex_buf[..]
            }
        };
        ct_eq(hex_out, response.as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// The nonce was ours but has expired: challenge again with stale=true.
    Stale,
    /// Wrong password, forged nonce, replayed nc, unknown user: challenge again.
    Fail,
}

/// Responses computed per check at least: one long-lived secret plus the
/// short-lived softphone ones an account keeps (`DomainConfig::ephemeral_keep`, 5).
pub const MIN_SECRETS_CHECKED: usize = 6;
/// Stand-ins for the padding: not the hash of anything (all `f`), so no
/// answer matches them; the result is discarded anyway.
const PAD_HA1_MD5: &str = "ffffffffffffffffffffffffffffffff";
const PAD_HA1_SHA256: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// Issues and checks nonces and keeps the nonce-count table.
pub struct NonceKeeper {
    secret: [u8; 32],
    /// Responses computed so far (tests check that every path does the same work).
    pub digests: u64,
    lifetime_ms: u64,
    counter: u64,
    /// nonce key -> (issued_ms, highest nc accepted, transaction that used it)
    seen: HashMap<u128, (u64, u32, u64)>,
}

impl NonceKeeper {
    pub fn new(secret: [u8; 32], lifetime_ms: u64) -> Self {
        NonceKeeper {
            secret,
            digests: 0,
            lifetime_ms,
            counter: 0,
            seen: HashMap::new(),
        }
    }

    fn mac(&self, issued: u64, salt: u64) -> [u8; 16] {
        // new_from_slice accepts any key length for HMAC.
        let mut m = match HmacSha256::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => return [0; 16],
        };
        m.update(&issued.to_be_bytes());
        m.update(&salt.to_be_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A fresh nonce. `salt` comes from the caller's RNG so this stays deterministic in tests.
    pub fn issue(&mut self, now_ms: u64, salt: u64) -> String {
        self.counter = self.counter.wrapping_add(1);
        let salt = salt ^ self.counter;
        let mac = self.mac(now_ms, salt);
        format!("{now_ms:016x}{salt:016x}{}", hex::encode(mac))
    }

    /// Checks that `nonce` is ours and fresh: Ok(issued_ms, salt) or the verdict.
    fn open(&self, nonce: &str, now_ms: u64) -> Result<(u64, u64), Verdict> {
        if nonce.len() != 64 || !nonce.is_ascii() {
            return Err(Verdict::Fail);
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).map_err(|_| Verdict::Fail)?;
        let salt = u64::from_str_radix(&nonce[16..32], 16).map_err(|_| Verdict::Fail)?;
        let mac = hex::encode(self.mac(issued, salt));
        if !ct_eq(mac.as_bytes(), &nonce.as_bytes()[32..]) {
            return Err(Verdict::Fail);
        }
        if issued > now_ms + 5_000 {
            return Err(Verdict::Fail);
        }
        if now_ms.saturating_sub(issued) > self.lifetime_ms {
            return Err(Verdict::Stale);
        }
        Ok((issued, salt))
    }

    /// Verifies a response against any of the secrets. On success the nc is
    /// recorded so the same or a lower nc is refused afterwards, except for a
    /// retransmission of the very request that used it (same `txn`, a hash of
    /// its branch and Call-ID; 0 means unknown): that one is answered again.
    pub fn verify(
        &mut self,
        c: &Credentials,
        method: &str,
        realm: &str,
        secrets: &[Ha1],
        now_ms: u64,
        txn: u64,
    ) -> Verdict {
        let alg = if c.algorithm.is_empty() || c.algorithm.eq_ignore_ascii_case("MD5") {
            Algorithm::Md5
        } else if c.algorithm.eq_ignore_ascii_case("SHA-256") {
            Algorithm::Sha256
        } else {
            return Verdict::Fail;
        };
        if c.realm != realm || !c.qop.eq_ignore_ascii_case("auth") || c.cnonce.is_empty() {
            return Verdict::Fail;
        }
        let Ok(nc) = u32::from_str_radix(&c.nc, 16) else {
            return Verdict::Fail;
        };
        if c.nc.len() != 8 || nc == 0 {
            return Verdict::Fail;
        }
        let (issued, salt) = match self.open(&c.nonce, now_ms) {
            Ok(x) => x,
            Err(v) => return v,
        };
        let key = ((issued as u128) << 64) | salt as u128;
        if let Some((_, last, used_by)) = self.seen.get(&key) {
            let retransmission = nc == *last && txn != 0 && txn == *used_by;
            if nc <= *last && !retransmission {
                return Verdict::Fail;
            }
        }
        let expected = Expected::new(alg, method, c);
        let mut ok = false;
        // Every secret is evaluated, and at least MIN_SECRETS_CHECKED
        // responses are computed (padding with a secret nobody knows), so
        // the time taken tells neither which secret matched nor how many an
        // account has, nor whether it exists (unknown users have none).
        for i in 0..secrets.len().max(MIN_SECRETS_CHECKED) {
            let live = secrets
                .get(i)
                .filter(|s| s.expires_at_ms.is_none_or(|e| e > now_ms));
            let h = match (live, alg) {
                (Some(s), Algorithm::Md5) => s.md5.as_str(),
                (Some(s), Algorithm::Sha256) => s.sha256.as_str(),
                (None, Algorithm::Md5) => PAD_HA1_MD5,
                (None, Algorithm::Sha256) => PAD_HA1_SHA256,
            };
            self.digests = self.digests.wrapping_add(1);
            ok |= expected.matches(h, &c.response) & live.is_some();
        }
        if !ok {
            return Verdict::Fail;
        }
        self.seen.insert(key, (issued, nc, txn));
        Verdict::Ok
    }

    /// Forgets nonce counts of expired nonces.
    pub fn purge(&mut self, now_ms: u64) {
        let life = self.lifetime_ms;
        self.seen
            .retain(|_, (issued, _, _)| now_ms.saturating_sub(*issued) <= life);
        super::compact::map(&mut self.seen);
    }

    pub fn tracked(&self) -> usize {
        self.seen.len()
    }
}

/// The `WWW-Authenticate`/`Proxy-Authenticate` values to send: always MD5,
/// and SHA-256 (first, as RFC 8760 orders them) only when `offer_sha256`.
/// See `crates/sip/README.md` ("Challenges") for why MD5 alone is the default.
pub fn challenges(realm: &str, nonce: &str, stale: bool, offer_sha256: bool) -> Vec<String> {
    let stale = if stale { ", stale=true" } else { "" };
    let md5 =
        format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}");
    if !offer_sha256 {
        return vec![md5];
    }
    vec![
        format!(
            "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"{stale}"
        ),
        md5,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_vector() {
        // RFC 2617 section 3.5 (MD5, qop=auth).
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            qop: "auth".into(),
            nc: "00000001".into(),
            cnonce: "0a4f113b".into(),
            ..Default::default()
        };
        assert_eq!(
            expected_response(Algorithm::Md5, &ha1, "GET", &c),
            "6629fae49393a05397450978507c4ef1"
        );
        // The per-request form the verifier uses agrees, and refuses others.
        let e = Expected::new(Algorithm::Md5, "GET", &c);
        assert!(e.matches(&ha1, "6629fae49393a05397450978507c4ef1"));
        assert!(!e.matches(&ha1, "6629fae49393a05397450978507c4ef0"));
        assert!(!e.matches(&ha1, "6629fae49393a05397450978507c4ef"));
        assert!(!e.matches(PAD_HA1_MD5, "6629fae49393a05397450978507c4ef1"));
        let e = Expected::new(Algorithm::Sha256, "GET", &c);
        let want = expected_response(Algorithm::Sha256, &ha1, "GET", &c);
        assert!(e.matches(&ha1, &want));
        assert!(!e.matches(&ha1, &want[..63]));
    }

    #[test]
    fn rfc7616_sha256_vector() {
        // RFC 7616 section 3.9.1.
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let c = Credentials {
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            qop: "auth".into(),
            nc: "00000001".into(),
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into(),
            ..Default::default()
        };
        assert_eq!(
            expected_response(Algorithm::Sha256, &ha1, "GET", &c),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    fn client(
        nk: &mut NonceKeeper,
        alg: Algorithm,
        pass: &str,
        nonce: &str,
        nc: &str,
    ) -> Credentials {
        let h = ha1(alg, "alice", "pbx", pass);
        let mut c = Credentials {
            username: "alice".into(),
            realm: "pbx".into(),
            nonce: nonce.into(),
            uri: "sip:pbx".into(),
            algorithm: alg.name().into(),
            cnonce: "abc".into(),
            qop: "auth".into(),
            nc: nc.into(),
            response: String::new(),
        };
        c.response = expected_response(alg, &h, "REGISTER", &c);
        let _ = nk;
        c
    }

    fn secret(pass: &str) -> Ha1 {
        Ha1 {
            md5: ha1(Algorithm::Md5, "alice", "pbx", pass),
            sha256: ha1(Algorithm::Sha256, "alice", "pbx", pass),
            expires_at_ms: None,
        }
    }

    #[test]
    fn accept_replay_stale_forgery() {
        let mut nk = NonceKeeper::new([7; 32], 30_000);
        let n = nk.issue(1_000, 42);
        let s = [secret("pw")];
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let c = client(
                &mut nk,
                alg,
                "pw",
                &n,
                if alg == Algorithm::Md5 {
                    "00000001"
                } else {
                    "00000002"
                },
            );
            assert_eq!(nk.verify(&c, "REGISTER", "pbx", &s, 2_000, 0), Verdict::Ok);
            // Same nc again: replay.
            assert_eq!(
                nk.verify(&c, "REGISTER", "pbx", &s, 2_000, 0),
                Verdict::Fail
            );
        }
        let c = client(&mut nk, Algorithm::Md5, "pw", &n, "00000003");
        assert_eq!(nk.verify(&c, "REGISTER", "pbx", &s, 2_000, 0), Verdict::Ok);
        // Wrong password.
        let c = client(&mut nk, Algorithm::Md5, "bad", &n, "00000004");
        assert_eq!(
            nk.verify(&c, "REGISTER", "pbx", &s, 2_000, 0),
            Verdict::Fail
        );
        // Expired nonce is stale, not a failure.
        let c = client(&mut nk, Algorithm::Md5, "pw", &n, "00000005");
        assert_eq!(
            nk.verify(&c, "REGISTER", "pbx", &s, 40_000, 0),
            Verdict::Stale
        );
        // A nonce we never issued (tampered MAC).
        let mut forged = n.clone();
        forged.replace_range(63.., if n.ends_with('0') { "1" } else { "0" });
        let c = client(&mut nk, Algorithm::Md5, "pw", &forged, "00000001");
        assert_eq!(
            nk.verify(&c, "REGISTER", "pbx", &s, 2_000, 0),
            Verdict::Fail
        );
        nk.purge(100_000);
        assert_eq!(nk.tracked(), 0);
    }

    #[test]
    fn a_retransmission_of_the_same_transaction_is_not_a_replay() {
        let mut nk = NonceKeeper::new([3; 32], 30_000);
        let n = nk.issue(0, 9);
        let s = [secret("pw")];
        let c = client(&mut nk, Algorithm::Md5, "pw", &n, "00000001");
        assert_eq!(nk.verify(&c, "REGISTER", "pbx", &s, 1, 77), Verdict::Ok);
        assert_eq!(nk.verify(&c, "REGISTER", "pbx", &s, 2, 77), Verdict::Ok);
        assert_eq!(nk.verify(&c, "REGISTER", "pbx", &s, 3, 78), Verdict::Fail);
    }

    #[test]
    fn any_unexpired_secret_matches() {
        let mut nk = NonceKeeper::new([1; 32], 30_000);
        let n = nk.issue(0, 1);
        let mut short = secret("eph");
        short.expires_at_ms = Some(10_000);
        let s = [secret("long"), short];
        let c = client(&mut nk, Algorithm::Sha256, "eph", &n, "00000001");
        assert_eq!(nk.verify(&c, "REGISTER", "pbx", &s, 5_000, 0), Verdict::Ok);
        let c = client(&mut nk, Algorithm::Sha256, "eph", &n, "00000002");
        assert_eq!(
            nk.verify(&c, "REGISTER", "pbx", &s, 11_000, 0),
            Verdict::Fail
        );
    }

    #[test]
    fn parses_header() {
        let c = parse_authorization(
            "Digest username=\"bob\", realm=\"pbx\", nonce=\"n\", uri=\"sip:pbx\", response=\"AB\", qop=auth, nc=00000001, cnonce=\"x,y\"",
        )
        .expect("digest");
        assert_eq!(c.username, "bob");
        assert_eq!(c.cnonce, "x,y");
        assert_eq!(c.response, "ab");
        assert!(parse_authorization("Basic abc").is_none());
    }
}
