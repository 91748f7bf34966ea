//! Call quality as the CDR keeps it: the last figures the media plane
//! reported per leg and direction (`call_quality` rows), and the call's
//! summary, its worst MOS as good / fair / poor.
//!
//! The classes are those of the media crate's E-model
//! (`media::core::quality`): good R ≥ 80, fair 70 ≤ R < 80, poor below
//! (ITU-T G.107 Annex B). The CDR stores the MOS, not R; MOS is a rising
//! function of R over 0..100, so the same boundaries in MOS are
//! MOS(80) ≈ 4.03 and MOS(70) ≈ 3.60 ([`GOOD_MIN_MOS`], [`FAIR_MIN_MOS`]).

use serde::Serialize;

use crate::call_events::{LegNo, MediaDirection};

/// MOS at R = 80 (G.107 Annex B: 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R)).
pub const GOOD_MIN_MOS: f32 = 4.024;
/// MOS at R = 70.
pub const FAIR_MIN_MOS: f32 = 3.597;

/// good | fair | poor
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QualityClass {
    Good,
    Fair,
    Poor,
}

impl QualityClass {
    pub fn from_mos(mos: f32) -> Self {
        if mos >= GOOD_MIN_MOS {
            Self::Good
        } else if mos >= FAIR_MIN_MOS {
            Self::Fair
        } else {
            Self::Poor
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Fair => "fair",
            Self::Poor => "poor",
        }
    }
}

/// The last figures of one leg in one direction.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegQuality {
    #[schema(value_type = u32)]
    pub leg: LegNo,
    /// inbound (what centralita received from this leg) | outbound (what
    /// it sent to it, as the leg's receiver reports say)
    #[schema(value_type = String)]
    pub direction: MediaDirection,
    pub packets: u64,
    pub lost: u64,
    /// lost / (packets + lost), in percent, two decimals.
    pub loss_percent: f64,
    pub jitter_ms: f32,
    pub rtt_ms: Option<f32>,
    pub mos: f32,
    pub class: QualityClass,
    pub codec: String,
}

/// A call's quality: its worst figures, and every leg's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallQuality {
    /// The class of `worstMos`.
    pub class: QualityClass,
    /// The lowest MOS over every leg and direction.
    pub worst_mos: f32,
    /// By leg, inbound before outbound.
    pub legs: Vec<LegQuality>,
}

/// Loss in percent of what should have arrived, rounded to two decimals.
pub fn loss_percent(packets: u64, lost: u64) -> f64 {
    // In f64: the sum of two u64 may not fit one.
    let expected = packets as f64 + lost as f64;
    if expected == 0.0 {
        return 0.0;
    }
    let pct = lost as f64 * 100.0 / expected;
    (pct * 100.0).round() / 100.0
}

/// The summary of a call's leg figures; `None` without any.
pub fn summarize(mut legs: Vec<LegQuality>) -> Option<CallQuality> {
    legs.sort_by_key(|l| (l.leg, l.direction));
    let worst = legs.iter().map(|l| l.mos).reduce(f32::min)?;
    Some(CallQuality {
        class: QualityClass::from_mos(worst),
        worst_mos: worst,
        legs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mos_from_r(r: f64) -> f64 {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    }

    #[test]
    fn thresholds_are_the_e_model_boundaries() {
        assert!((f64::from(GOOD_MIN_MOS) - mos_from_r(80.0)).abs() < 1e-3);
        assert!((f64::from(FAIR_MIN_MOS) - mos_from_r(70.0)).abs() < 1e-3);
        // Just either side of each boundary.
        assert_eq!(
            QualityClass::from_mos(mos_from_r(80.5) as f32),
            QualityClass::Good
        );
        assert_eq!(
            QualityClass::from_mos(mos_from_r(79.5) as f32),
            QualityClass::Fair
        );
        assert_eq!(
            QualityClass::from_mos(mos_from_r(70.5) as f32),
            QualityClass::Fair
        );
        assert_eq!(
            QualityClass::from_mos(mos_from_r(69.5) as f32),
            QualityClass::Poor
        );
        assert_eq!(QualityClass::from_mos(1.0), QualityClass::Poor);
        assert_eq!(QualityClass::from_mos(4.5), QualityClass::Good);
    }

    fn leg(leg: LegNo, direction: MediaDirection, mos: f32) -> LegQuality {
        LegQuality {
            leg,
            direction,
            packets: 100,
            lost: 0,
            loss_percent: 0.0,
            jitter_ms: 1.0,
            rtt_ms: None,
            mos,
            class: QualityClass::from_mos(mos),
            codec: "PCMU".into(),
        }
    }

    #[test]
    fn the_worst_leg_decides() {
        assert_eq!(summarize(Vec::new()), None);
        let s = summarize(vec![
            leg(1, MediaDirection::Outbound, 4.3),
            leg(0, MediaDirection::Inbound, 4.4),
            leg(1, MediaDirection::Inbound, 3.7),
        ])
        .expect("summary");
        assert_eq!((s.class, s.worst_mos), (QualityClass::Fair, 3.7));
        let order: Vec<_> = s.legs.iter().map(|l| (l.leg, l.direction)).collect();
        assert_eq!(
            order,
            [
                (0, MediaDirection::Inbound),
                (1, MediaDirection::Inbound),
                (1, MediaDirection::Outbound)
            ]
        );
    }

    #[test]
    fn loss_in_percent() {
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(97, 3), 3.0);
        assert_eq!(loss_percent(2, 1), 33.33);
        assert_eq!(loss_percent(0, 5), 100.0);
        assert_eq!(loss_percent(u64::MAX, u64::MAX), 50.0);
    }
}
