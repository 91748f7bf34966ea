//! Outbound dial plan and toll-fraud policy: what a dialled number that is
//! not an agent means, whether the caller may dial it, which trunks may
//! carry it and when a failed attempt moves on to the next trunk.
//!
//! Pure functions over values: no IO, no clock. The engine counts channels
//! and calls per hour (it owns the live state) and passes the figures in;
//! this module only decides. A PBX on the internet is attacked first with
//! toll fraud (a stolen or guessed agent credential dialling premium-rate
//! or satellite numbers abroad), so every refusal here names its cause.

use std::fmt;

/// The longest number accepted after separators are removed (E.164 allows
/// 15 digits; international and carrier prefixes add a few).
pub const MAX_DIGITS: usize = 20;

/// Destinations refused by default for everybody, as E.164 prefixes
/// without `+`: international networks and satellite services (ITU-T
/// E.164 "international networks" +881/+882/+883, Inmarsat +870, the
/// international premium-rate service +979) and well-known national
/// premium-rate ranges (North America 1-900 / 1-976, UK 09 and 070
/// personal numbers, Spain 803/806/807/905, France 089, Germany 0900,
/// Italy 899). These are the classic destinations of toll fraud: the
/// attacker owns the premium number and is paid per minute. An operator
/// who needs one of them removes it from `blocked_prefixes`.
pub const DEFAULT_BLOCKED_PREFIXES: &[&str] = &[
    "870", "881", "882", "883", "979", "1900", "1976", "449", "4470", "34803", "34806", "34807",
    "34905", "3389", "49900", "39899",
];

/// How numbers are written where the call center is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberingPlan {
    /// The country calling code (E.164, without `+`), e.g. `34` or `1`.
    pub country_code: String,
    /// What precedes an international number when dialled (besides `+`),
    /// e.g. `00` (most of the world) or `011` (North America).
    pub international_prefixes: Vec<String>,
    /// The trunk prefix of national numbers written in national form, e.g.
    /// `0` (UK, France, Germany); empty where there is none (Spain, and
    /// North America, where `1` is the country code).
    pub national_prefix: String,
    /// E.164 prefixes (without `+`) nobody may dial.
    pub blocked_prefixes: Vec<String>,
}

impl Default for NumberingPlan {
    fn default() -> Self {
        Self {
            country_code: "34".into(),
            international_prefixes: vec!["00".into()],
            national_prefix: String::new(),
            blocked_prefixes: DEFAULT_BLOCKED_PREFIXES
                .iter()
                .map(|p| (*p).to_string())
                .collect(),
        }
    }
}

/// Where a number leads, for permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    National,
    International,
}

/// A dialled number understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// The digits as dialled, separators removed (`+` kept if it led).
    pub dialled: String,
    /// The same number in E.164 without `+` (country code first).
    pub e164: String,
    pub reach: Reach,
}

/// Why a number cannot be dialled at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("the number is empty")]
    Empty,
    #[error("the number has {0} digits; at most {MAX_DIGITS} are accepted")]
    TooLong(usize),
    #[error("{0:?} is not a phone number (digits, an optional leading +, and the separators space - . ( ) only)")]
    NotANumber(String),
}

/// Reads a dialled string: separators (space, `-`, `.`, `(`, `)`) are
/// dropped; a leading `+` or an international prefix makes it
/// international unless it carries our own country code; a leading
/// national prefix or a bare subscriber number is national.
pub fn parse_number(plan: &NumberingPlan, raw: &str) -> Result<Number, NumberError> {
    let mut dialled = String::with_capacity(raw.len());
    for (i, c) in raw.trim().chars().enumerate() {
        match c {
            '0'..='9' => dialled.push(c),
            '+' if i == 0 => dialled.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(NumberError::NotANumber(raw.chars().take(40).collect())),
        }
    }
    let digits = dialled.trim_start_matches('+');
    if digits.is_empty() {
        return Err(NumberError::Empty);
    }
    if digits.len() > MAX_DIGITS {
        return Err(NumberError::TooLong(digits.len()));
    }
    let international = if dialled.starts_with('+') {
        Some(digits)
    } else {
        plan.international_prefixes
            .iter()
            .filter(|p| !p.is_empty())
            .find_map(|p| digits.strip_prefix(p.as_str()))
    };
    let (e164, reach) = match international {
        Some("") => return Err(NumberError::Empty),
        Some(rest) if !plan.country_code.is_empty() && rest.starts_with(&plan.country_code) => {
            (rest.to_string(), Reach::National)
        }
        Some(rest) => (rest.to_string(), Reach::International),
        None => {
            let national = if plan.national_prefix.is_empty() {
                digits
            } else {
                digits
                    .strip_prefix(plan.national_prefix.as_str())
                    .unwrap_or(digits)
            };
            (format!("{}{national}", plan.country_code), Reach::National)
        }
    };
    Ok(Number {
        dialled,
        e164,
        reach,
    })
}

/// What an agent (or a role) may dial beyond the internal extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialPermission {
    /// Other agents only: the safe default for a new agent.
    #[default]
    Internal,
    National,
    International,
}

impl DialPermission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::National => "national",
            Self::International => "international",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "internal" => Some(Self::Internal),
            "national" => Some(Self::National),
            "international" => Some(Self::International),
            _ => None,
        }
    }

    fn allows(self, reach: Reach) -> bool {
        match reach {
            Reach::National => self >= Self::National,
            Reach::International => self >= Self::International,
        }
    }
}

/// Per-agent outbound limits; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Simultaneous outbound calls.
    pub max_concurrent: u32,
    /// Outbound calls started in the last 60 minutes.
    pub max_per_hour: u32,
}

impl Default for OutboundLimits {
    /// An agent talks on one call at a time; a preview/manual dialler
    /// rarely exceeds 60 attempts an hour. A stolen credential used for
    /// fraud runs many calls at once, which these numbers stop early.
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_per_hour: 120,
        }
    }
}

/// What the engine knows about the caller's outbound activity right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundUsage {
    pub concurrent: u32,
    pub last_hour: u32,
}

/// Why an outbound call is refused. Each one goes to the CDR and to an
/// event, so an administrator sees attempted fraud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadNumber(NumberError),
    /// The destination is on the blocked list (premium rate, satellite).
    Blocked {
        prefix: String,
    },
    /// The caller's permission does not reach that far.
    NotPermitted {
        permission: DialPermission,
        reach: Reach,
    },
    TooManyConcurrent {
        limit: u32,
    },
    TooManyPerHour {
        limit: u32,
    },
    /// No dial-plan route matches the number.
    NoRoute,
    /// Every trunk of the route is inactive, unregistered or full.
    NoTrunkAvailable,
}

impl Refusal {
    /// The cause code stored with the CDR and the event.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::BadNumber(_) => "invalid_number",
            Self::Blocked { .. } => "destination_blocked",
            Self::NotPermitted { .. } => "dial_not_permitted",
            Self::TooManyConcurrent { .. } => "outbound_concurrent_limit",
            Self::TooManyPerHour { .. } => "outbound_hourly_limit",
            Self::NoRoute => "no_route",
            Self::NoTrunkAvailable => "no_trunk_available",
        }
    }

    /// The SIP answer to the caller. 403 for what policy forbids (the
    /// caller must not retry), 484 for a malformed number, 503 for a
    /// temporary lack of trunks (RFC 3261 §21.5.4), 404 when nothing routes.
    pub fn sip_status(&self) -> (u16, &'static str) {
        match self {
            Self::BadNumber(_) => (484, "Address Incomplete"),
            Self::Blocked { .. } | Self::NotPermitted { .. } => (403, "Forbidden"),
            Self::TooManyConcurrent { .. } | Self::TooManyPerHour { .. } => (403, "Forbidden"),
            Self::NoRoute => (404, "Not Found"),
            Self::NoTrunkAvailable => (503, "Service Unavailable"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadNumber(e) => write!(f, "{e}"),
            Self::Blocked { prefix } => {
                write!(f, "destinations starting with +{prefix} are blocked")
            }
            Self::NotPermitted { permission, reach } => write!(
                f,
                "dialling {} numbers needs a permission above \"{}\"",
                match reach {
                    Reach::National => "national",
                    Reach::International => "international",
                },
                permission.as_str()
            ),
            Self::TooManyConcurrent { limit } => {
                write!(f, "at most {limit} simultaneous outbound calls")
            }
            Self::TooManyPerHour { limit } => write!(f, "at most {limit} outbound calls per hour"),
            Self::NoRoute => write!(f, "no outbound route matches the number"),
            Self::NoTrunkAvailable => write!(f, "no trunk available"),
        }
    }
}

/// The toll-fraud gate of one outbound call: number, blocked list,
/// permission, limits — in that order, so the cause is the most telling.
pub fn authorize(
    plan: &NumberingPlan,
    raw: &str,
    permission: DialPermission,
    limits: OutboundLimits,
    usage: OutboundUsage,
) -> Result<Number, Refusal> {
    let number = parse_number(plan, raw).map_err(Refusal::BadNumber)?;
    if let Some(p) = plan
        .blocked_prefixes
        .iter()
        .find(|p| !p.is_empty() && number.e164.starts_with(p.as_str()))
    {
        return Err(Refusal::Blocked { prefix: p.clone() });
    }
    if !permission.allows(number.reach) {
        return Err(Refusal::NotPermitted {
            permission,
            reach: number.reach,
        });
    }
    if limits.max_concurrent > 0 && usage.concurrent >= limits.max_concurrent {
        return Err(Refusal::TooManyConcurrent {
            limit: limits.max_concurrent,
        });
    }
    if limits.max_per_hour > 0 && usage.last_hour >= limits.max_per_hour {
        return Err(Refusal::TooManyPerHour {
            limit: limits.max_per_hour,
        });
    }
    Ok(number)
}

/// A dial-plan pattern in the notation PBX administrators know (Asterisk's):
/// a literal (`900123`) matches itself; with a leading `_`, `X` is any
/// digit, `Z` 1–9, `N` 2–9, `[1-4,7]` a set, `.` one or more of anything
/// and `!` zero or more; `+` is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Literal(char),
    /// A digit set, as a 10-bit mask.
    Set(u16),
    OneOrMore,
    ZeroOrMore,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is empty")]
    Empty,
    #[error("pattern {pattern:?}: {what}")]
    Invalid { pattern: String, what: &'static str },
}

impl Pattern {
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        let invalid = |what| PatternError::Invalid {
            pattern: source.chars().take(40).collect(),
            what,
        };
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        if source.len() > 64 {
            return Err(invalid("longer than 64 characters"));
        }
        let mut items = Vec::new();
        let Some(body) = source.strip_prefix('_') else {
            for c in source.chars() {
                if !(c.is_ascii_digit() || c == '+' || c == '*' || c == '#') {
                    return Err(invalid("a literal number has digits, +, * and # only"));
                }
                items.push(Item::Literal(c));
            }
            return Ok(Self {
                source: source.to_string(),
                items,
            });
        };
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            let item = match c.to_ascii_uppercase() {
                '0'..='9' | '+' | '*' | '#' => Item::Literal(c),
                'X' => Item::Set(0b11_1111_1111),
                'Z' => Item::Set(0b11_1111_1110),
                'N' => Item::Set(0b11_1111_1100),
                '.' => Item::OneOrMore,
                '!' => Item::ZeroOrMore,
                '[' => {
                    let mut mask = 0u16;
                    let mut prev: Option<u32> = None;
                    let mut range = false;
                    loop {
                        match chars.next() {
                            None => return Err(invalid("unclosed [")),
                            Some(']') => break,
                            Some('-') if prev.is_some() => range = true,
                            Some(',') => {}
                            Some(d) if d.is_ascii_digit() => {
                                let v = d as u32 - '0' as u32;
                                match (range, prev) {
                                    (true, Some(p)) if p <= v => {
                                        for x in p..=v {
                                            mask |= 1 << x;
                                        }
                                    }
                                    (true, _) => return Err(invalid("a range runs backwards")),
                                    _ => mask |= 1 << v,
                                }
                                range = false;
                                prev = Some(v);
                            }
                            Some(_) => return Err(invalid("a [set] holds digits, - and , only")),
                        }
                    }
                    if mask == 0 || range {
                        return Err(invalid("an empty or unfinished [set]"));
                    }
                    Item::Set(mask)
                }
                _ => return Err(invalid("unknown character (use digits, X Z N [ ] . !)")),
            };
            if matches!(item, Item::OneOrMore | Item::ZeroOrMore) && chars.clone().next().is_some()
            {
                return Err(invalid(". and ! end a pattern"));
            }
            items.push(item);
        }
        if items.is_empty() {
            return Err(PatternError::Empty);
        }
        Ok(Self {
            source: source.to_string(),
            items,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How many characters of a match the pattern fixes (its literals):
    /// `_3491XXXXXXX` fixes 4. More is more specific.
    pub fn literal_len(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Literal(_)))
            .count()
    }

    pub fn matches(&self, number: &str) -> bool {
        let mut chars = number.chars();
        for item in &self.items {
            match item {
                Item::OneOrMore => return chars.next().is_some(),
                Item::ZeroOrMore => return true,
                Item::Literal(l) => {
                    if chars.next() != Some(*l) {
                        return false;
                    }
                }
                Item::Set(mask) => match chars.next().and_then(|c| c.to_digit(10)) {
                    Some(d) if mask & (1 << d) != 0 => {}
                    _ => return false,
                },
            }
        }
        chars.next().is_none()
    }
}

/// One outbound route: numbers matching any pattern go out through the
/// route's trunks, with `strip` leading characters removed and `prepend`
/// added (e.g. strip the `9` of "9 for an outside line", prepend the
/// carrier's `+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRoute {
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub strip: usize,
    pub prepend: String,
    /// Trunk ids this route may use; empty means every trunk.
    pub trunks: Vec<i64>,
}

impl OutboundRoute {
    /// The number as the trunk receives it.
    pub fn rewrite(&self, dialled: &str) -> String {
        let kept: String = dialled.chars().skip(self.strip).collect();
        format!("{}{kept}", self.prepend)
    }
}

/// The first route (in order) with a pattern matching `dialled`.
pub fn find_route<'a>(routes: &'a [OutboundRoute], dialled: &str) -> Option<&'a OutboundRoute> {
    routes
        .iter()
        .find(|r| r.patterns.iter().any(|p| p.matches(dialled)))
}

/// What trunk selection reads about one trunk (the engine's live view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkState {
    pub id: i64,
    /// Lower first (seeds: `ORDER BY priority ASC`).
    pub priority: i32,
    /// Status `active` (not inactive, maintenance or error).
    pub active: bool,
    /// The trunk registers to its carrier...
    pub registers: bool,
    /// ...and is registered now.
    pub registered: bool,
    /// 0 = unlimited.
    pub max_channels: u32,
    pub channels_in_use: u32,
}

impl TrunkState {
    fn usable(&self) -> bool {
        self.active
            && (!self.registers || self.registered)
            && (self.max_channels == 0 || self.channels_in_use < self.max_channels)
    }
}

/// The trunks to try, in order: a campaign's own trunk list when the call
/// belongs to a campaign that has one (in the list's order: the
/// campaign's priorities, seeds/001 `campaign_trunks`), else the route's
/// (or every trunk) by the trunks' priority then id; only usable trunks
/// (active, registered when they register, a free channel). Empty:
/// [`Refusal::NoTrunkAvailable`]. The channel check here is a snapshot;
/// the engine reserves the channel atomically when it tries the trunk and
/// moves on if it lost the race.
pub fn trunk_order(
    route: &OutboundRoute,
    campaign_trunks: Option<&[i64]>,
    trunks: &[TrunkState],
) -> Result<Vec<i64>, Refusal> {
    let order: Vec<i64> = match campaign_trunks {
        Some(c) if !c.is_empty() => c
            .iter()
            .filter(|id| trunks.iter().any(|t| t.id == **id && t.usable()))
            .copied()
            .collect(),
        _ => {
            let mut usable: Vec<&TrunkState> = trunks
                .iter()
                .filter(|t| (route.trunks.is_empty() || route.trunks.contains(&t.id)) && t.usable())
                .collect();
            usable.sort_by_key(|t| (t.priority, t.id));
            usable.into_iter().map(|t| t.id).collect()
        }
    };
    if order.is_empty() {
        return Err(Refusal::NoTrunkAvailable);
    }
    Ok(order)
}

/// How one attempt through a trunk ended, as far as failover cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// A final response with this status.
    Status(u16),
    /// No response at all (Timer B) or the transport failed.
    NoResponse,
}

/// Whether the next trunk is tried: the carrier failed (no answer at the
/// SIP level, 408, 5xx), not the callee. Busy, declined, not found and
/// every 6xx are the callee's answer and would only ring them again or
/// repeat the refusal through another carrier.
pub fn fails_over(end: AttemptEnd) -> bool {
    match end {
        AttemptEnd::NoResponse => true,
        AttemptEnd::Status(408) => true,
        AttemptEnd::Status(s) => (500..600).contains(&s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_es() -> NumberingPlan {
        NumberingPlan::default()
    }

    fn plan_uk() -> NumberingPlan {
        NumberingPlan {
            country_code: "44".into(),
            international_prefixes: vec!["00".into()],
            national_prefix: "0".into(),
            ..NumberingPlan::default()
        }
    }

    fn plan_us() -> NumberingPlan {
        NumberingPlan {
            country_code: "1".into(),
            international_prefixes: vec!["011".into()],
            national_prefix: String::new(),
            ..NumberingPlan::default()
        }
    }

    #[test]
    fn numbers_are_read_in_national_and_international_form() {
        let n = parse_number(&plan_es(), "912 345 678").expect("valid");
        assert_eq!((n.e164.as_str(), n.reach), ("34912345678", Reach::National));
        let n = parse_number(&plan_es(), "+34 (91) 234-5678").expect("valid");
        assert_eq!(n.dialled, "+34912345678");
        assert_eq!((n.e164.as_str(), n.reach), ("34912345678", Reach::National));
        let n = parse_number(&plan_es(), "0033 1 23 45 67 89").expect("valid");
        assert_eq!(
            (n.e164.as_str(), n.reach),
            ("33123456789", Reach::International)
        );
        let n = parse_number(&plan_uk(), "020 7946 0018").expect("valid");
        assert_eq!(
            (n.e164.as_str(), n.reach),
            ("442079460018", Reach::National)
        );
        let n = parse_number(&plan_us(), "011 52 55 1234 5678").expect("valid");
        assert_eq!(n.reach, Reach::International);
        assert_eq!(n.e164, "525512345678");
        let n = parse_number(&plan_us(), "+1 212 555 0100").expect("valid");
        assert_eq!(n.reach, Reach::National);
    }

    #[test]
    fn garbage_is_not_a_number() {
        let p = plan_es();
        assert_eq!(parse_number(&p, ""), Err(NumberError::Empty));
        assert_eq!(parse_number(&p, " + "), Err(NumberError::Empty));
        assert_eq!(parse_number(&p, "00"), Err(NumberError::Empty));
        assert!(matches!(
            parse_number(&p, "91a"),
            Err(NumberError::NotANumber(_))
        ));
        assert!(matches!(
            parse_number(&p, "9+1"),
            Err(NumberError::NotANumber(_))
        ));
        assert!(matches!(
            parse_number(&p, "sip:x@y"),
            Err(NumberError::NotANumber(_))
        ));
        assert_eq!(
            parse_number(&p, &"9".repeat(21)),
            Err(NumberError::TooLong(21))
        );
        assert!(parse_number(&p, &"9".repeat(20)).is_ok());
    }

    #[test]
    fn permissions_reach_as_far_as_they_say() {
        let p = plan_es();
        let l = OutboundLimits::default();
        let u = OutboundUsage::default();
        let national = "912345678";
        let abroad = "+33123456789";
        assert!(matches!(
            authorize(&p, national, DialPermission::Internal, l, u),
            Err(Refusal::NotPermitted {
                reach: Reach::National,
                ..
            })
        ));
        assert!(authorize(&p, national, DialPermission::National, l, u).is_ok());
        let refused = authorize(&p, abroad, DialPermission::National, l, u).expect_err("refused");
        assert_eq!(refused.cause(), "dial_not_permitted");
        assert_eq!(refused.sip_status().0, 403);
        assert!(authorize(&p, abroad, DialPermission::International, l, u).is_ok());
    }

    #[test]
    fn premium_and_satellite_are_blocked_even_for_international() {
        let p = plan_es();
        let (l, u) = (OutboundLimits::default(), OutboundUsage::default());
        for n in [
            "+881 6 1234 5678",
            "0088216123456",
            "+1 900 555 0100",
            "803 123 456",
        ] {
            let r = authorize(&p, n, DialPermission::International, l, u).expect_err("refused");
            assert_eq!(r.cause(), "destination_blocked", "{n}");
        }
        // The same list is data: an operator may allow one range again.
        let mut open = plan_es();
        open.blocked_prefixes.retain(|b| b != "1900");
        assert!(authorize(
            &open,
            "+1 900 555 0100",
            DialPermission::International,
            l,
            u
        )
        .is_ok());
    }

    #[test]
    fn limits_count_concurrent_and_hourly_calls() {
        let p = plan_es();
        let l = OutboundLimits {
            max_concurrent: 1,
            max_per_hour: 10,
        };
        let perm = DialPermission::National;
        let busy = OutboundUsage {
            concurrent: 1,
            last_hour: 0,
        };
        assert_eq!(
            authorize(&p, "912345678", perm, l, busy),
            Err(Refusal::TooManyConcurrent { limit: 1 })
        );
        let hourly = OutboundUsage {
            concurrent: 0,
            last_hour: 10,
        };
        assert_eq!(
            authorize(&p, "912345678", perm, l, hourly).map_err(|r| r.cause()),
            Err("outbound_hourly_limit")
        );
        let unlimited = OutboundLimits {
            max_concurrent: 0,
            max_per_hour: 0,
        };
        let heavy = OutboundUsage {
            concurrent: 50,
            last_hour: 5000,
        };
        assert!(authorize(&p, "912345678", perm, unlimited, heavy).is_ok());
    }

    #[test]
    fn patterns_match_like_a_pbx_dial_plan() {
        let p = |s| Pattern::parse(s).expect("valid");
        assert!(p("_9NXXXXXX").matches("92345678"));
        assert!(!p("_9NXXXXXX").matches("91345678"), "N is 2-9");
        assert!(!p("_9NXXXXXX").matches("9234567"), "too short");
        assert!(!p("_9NXXXXXX").matches("923456789"), "too long");
        assert!(p("_00.").matches("0033123"));
        assert!(!p("_00.").matches("00"), ". needs one more");
        assert!(p("_00!").matches("00"));
        assert!(p("_[6-7]XXXXXXXX").matches("612345678"));
        assert!(p("_[6-7]XXXXXXXX").matches("712345678"));
        assert!(!p("_[6-7]XXXXXXXX").matches("812345678"));
        assert!(p("_[1,3-4]X").matches("45"));
        assert!(!p("_[1,3-4]X").matches("25"));
        assert!(p("_+X.").matches("+34912"));
        assert!(p("112").matches("112"));
        assert!(!p("112").matches("1120"));
        assert!(p("_zx").matches("10"), "letters in either case");
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for bad in [
            "", "_", "_[", "_[]", "_[5-3]", "_[1-]", "_X.X", "_9Q", "abc", "_[a]",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let e = Pattern::parse("_X.X").expect_err("refused").to_string();
        assert!(e.contains("end a pattern"), "{e}");
    }

    fn route(trunks: Vec<i64>) -> OutboundRoute {
        OutboundRoute {
            name: "outside line".into(),
            patterns: vec![Pattern::parse("_9.").expect("valid")],
            strip: 1,
            prepend: "+34".into(),
            trunks,
        }
    }

    #[test]
    fn routes_rewrite_the_number_for_the_trunk() {
        let routes = vec![
            OutboundRoute {
                name: "emergency".into(),
                patterns: vec![Pattern::parse("112").expect("valid")],
                strip: 0,
                prepend: String::new(),
                trunks: vec![],
            },
            route(vec![]),
        ];
        let r = find_route(&routes, "9912345678").expect("valid");
        assert_eq!(r.name, "outside line");
        assert_eq!(r.rewrite("9912345678"), "+34912345678");
        assert_eq!(find_route(&routes, "112").expect("valid").name, "emergency");
        assert!(find_route(&routes, "5555").is_none());
    }

    fn trunk(id: i64, priority: i32) -> TrunkState {
        TrunkState {
            id,
            priority,
            active: true,
            registers: false,
            registered: false,
            max_channels: 10,
            channels_in_use: 0,
        }
    }

    #[test]
    fn trunks_are_tried_by_priority_skipping_unusable_ones() {
        let mut full = trunk(4, 0);
        full.channels_in_use = 10;
        let mut unregistered = trunk(5, 0);
        unregistered.registers = true;
        let mut registered = trunk(6, 7);
        registered.registers = true;
        registered.registered = true;
        let mut maintenance = trunk(7, 0);
        maintenance.active = false;
        let mut unlimited = trunk(8, 9);
        unlimited.max_channels = 0;
        unlimited.channels_in_use = 500;
        let all = vec![
            trunk(3, 10),
            trunk(1, 5),
            full,
            unregistered,
            registered,
            maintenance,
            trunk(2, 5),
            unlimited,
        ];
        assert_eq!(
            trunk_order(&route(vec![]), None, &all),
            Ok(vec![1, 2, 6, 8, 3])
        );
        // A route's own list narrows the choice; a campaign's list wins.
        assert_eq!(trunk_order(&route(vec![3, 2]), None, &all), Ok(vec![2, 3]));
        assert_eq!(
            trunk_order(&route(vec![3, 2]), Some(&[6]), &all),
            Ok(vec![6])
        );
        assert_eq!(
            trunk_order(&route(vec![3, 2]), Some(&[]), &all),
            Ok(vec![2, 3])
        );
        // A campaign's list keeps its own order (the campaign's
        // priorities), outside the route's list too, and still skips
        // unusable trunks (full, unregistered, in maintenance, unknown).
        assert_eq!(
            trunk_order(&route(vec![2]), Some(&[3, 4, 1, 5, 7, 99, 2]), &all),
            Ok(vec![3, 1, 2])
        );
        assert_eq!(
            trunk_order(&route(vec![]), Some(&[4, 5, 7]), &all),
            Err(Refusal::NoTrunkAvailable),
            "a campaign whose trunks are all unusable does not fall back"
        );
        assert_eq!(
            trunk_order(&route(vec![4, 5, 7]), None, &all),
            Err(Refusal::NoTrunkAvailable)
        );
        assert_eq!(Refusal::NoTrunkAvailable.sip_status().0, 503);
    }

    #[test]
    fn failover_only_when_the_carrier_failed() {
        for s in [408, 500, 502, 503, 504, 580] {
            assert!(fails_over(AttemptEnd::Status(s)), "{s}");
        }
        assert!(fails_over(AttemptEnd::NoResponse));
        for s in [404, 484, 486, 480, 403, 600, 603, 604, 606, 200, 183] {
            assert!(!fails_over(AttemptEnd::Status(s)), "{s}");
        }
    }
}
