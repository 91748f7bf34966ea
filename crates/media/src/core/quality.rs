//! Estimated call quality: a MOS from the ITU-T G.107 E-model, reduced as
//! VoIP monitors commonly do, and a good / fair / poor class.
//!
//! ```text
//! R = R0 − Is − Id − Ie_eff + A
//!
//!   R0 − Is  = 93.2   G.107 with every parameter at its default value
//!                     (Table 2: SLR 8, RLR 2, Nc −70 dBm0p, Ps/Pr 35 dB(A),
//!                     TELR 65 dB, ...) gives R = 93.2 at T = 0; we take
//!                     that as the base (it includes the default-path Idte).
//!   Id       = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)
//!                     d = one-way mouth-to-ear delay in ms, H the step
//!                     function; the usual linear fit of G.107's Id for
//!                     echo-free paths (Cole & Rosenbluth, "Voice over IP
//!                     performance monitoring", ACM CCR 2001).
//!   Ie_eff   = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)      (G.107 §7.4)
//!                     Ppl = packet loss in %, BurstR = 1 (random loss).
//!   A        = 0      advantage factor: wired/desk and browser users.
//!
//!   MOS = 1                                          R ≤ 0
//!       = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)  0 < R < 100  (G.107 Annex B)
//!       = 4.5                                        R ≥ 100
//! ```
//!
//! Codec values (Ie, Bpl) from ITU-T G.113 Appendix I: G.711 Ie = 0,
//! Bpl = 25.1 with packet-loss concealment (G.711 Appendix I PLC; every
//! browser and desk phone we meet conceals loss), 4.3 without. Opus is not
//! in G.113; on this narrowband scale we rate it like G.711 with PLC
//! (Ie = 0, Bpl = 25.1), a conservative engineering choice since opus adds
//! in-band FEC to its concealment.
//!
//! Delay `d`: half the RTCP round-trip time (or an assumed network delay
//! when there is no RTT) plus the receiver's jitter buffer, estimated as
//! twice the interarrival jitter but at least one packet time, plus the
//! packetisation time (one ptime). The class: good R ≥ 80 (G.107 Annex B
//! "satisfied"), fair 70 ≤ R < 80 ("some users dissatisfied"), poor below.

use std::time::Duration;

use super::stats::{ReceiveSnapshot, RemoteReception};
use crate::codec::Codec;

/// R0 − Is at G.107's default parameters (see the module docs).
const R_BASE: f64 = 93.2;
/// One-way network delay assumed when no round-trip time is known
/// (loopback/LAN calls, peers that send no RTCP).
const DEFAULT_ONE_WAY_NETWORK: Duration = Duration::from_millis(20);

/// E-model codec parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor Ie.
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet-loss concealment (G.113 Appendix I).
    pub const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// G.711 without concealment (G.113 Appendix I).
    pub const G711_NO_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };
    /// Opus (not in G.113; see the module docs).
    pub const OPUS: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };

    /// The values we use for a negotiated codec; `None` for
    /// telephone-event (it carries no speech).
    pub fn for_codec(codec: Codec) -> Option<Self> {
        match codec {
            Codec::Pcmu | Codec::Pcma => Some(Self::G711_PLC),
            Codec::Opus => Some(Self::OPUS),
            Codec::TelephoneEvent { .. } => None,
        }
    }
}

/// What the estimate is computed from, for one direction of a leg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInput {
    pub impairment: CodecImpairment,
    /// Packet loss in 0..=1 (interval fraction or cumulative ratio).
    pub loss: f64,
    /// Interarrival jitter in ms (RFC 3550).
    pub jitter_ms: f64,
    /// RTCP round-trip time, when known.
    pub round_trip: Option<Duration>,
    /// Packet time in ms (20 for our streams).
    pub ptime_ms: f64,
}

impl QualityInput {
    /// The direction we receive on a leg, from our own statistics
    /// (cumulative loss) and the leg's RTT if RTCP gave one. `None` for a
    /// codec that carries no speech.
    pub fn inbound(
        codec: Codec,
        received: &ReceiveSnapshot,
        round_trip: Option<Duration>,
        ptime_ms: f64,
    ) -> Option<Self> {
        Some(QualityInput {
            impairment: CodecImpairment::for_codec(codec)?,
            loss: received.loss_ratio,
            jitter_ms: received.jitter_ms,
            round_trip,
            ptime_ms,
        })
    }

    /// The direction we send, as the peer's last report describes it
    /// (its fraction lost for the last interval and its jitter).
    pub fn outbound(codec: Codec, remote: &RemoteReception, ptime_ms: f64) -> Option<Self> {
        Some(QualityInput {
            impairment: CodecImpairment::for_codec(codec)?,
            loss: remote.fraction_lost as f64 / 256.0,
            jitter_ms: remote.jitter_ms,
            round_trip: remote.round_trip,
            ptime_ms,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QualityClass {
    Good,
    Fair,
    Poor,
}

impl QualityClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityClass::Good => "good",
            QualityClass::Fair => "fair",
            QualityClass::Poor => "poor",
        }
    }

    /// The class of a transmission rating R (G.107 Annex B categories).
    pub fn from_r(r: f64) -> Self {
        if r >= 80.0 {
            QualityClass::Good
        } else if r >= 70.0 {
            QualityClass::Fair
        } else {
            QualityClass::Poor
        }
    }
}

/// The estimate and the terms it was made of (for "details on hover").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityEstimate {
    /// Transmission rating factor R.
    pub r: f64,
    /// Estimated MOS-CQE, 1.0..=4.5.
    pub mos: f64,
    pub class: QualityClass,
    /// One-way mouth-to-ear delay used, in ms.
    pub delay_ms: f64,
    /// Delay impairment Id.
    pub id: f64,
    /// Effective equipment impairment Ie_eff.
    pub ie_eff: f64,
}

/// Delay impairment Id for a one-way delay in ms.
pub fn delay_impairment(delay_ms: f64) -> f64 {
    let d = delay_ms.max(0.0);
    let mut id = 0.024 * d;
    if d > 177.3 {
        id += 0.11 * (d - 177.3);
    }
    id
}

/// Effective equipment impairment for a loss ratio (0..=1), random loss.
pub fn effective_equipment_impairment(impairment: CodecImpairment, loss: f64) -> f64 {
    let ppl = (loss.clamp(0.0, 1.0) * 100.0).max(0.0);
    let ie = impairment.ie;
    if ppl == 0.0 {
        return ie;
    }
    ie + (95.0 - ie) * ppl / (ppl + impairment.bpl)
}

/// MOS from R (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    }
}

/// The one-way delay estimate (ms) the E-model is fed.
pub fn one_way_delay_ms(input: &QualityInput) -> f64 {
    let network = input
        .round_trip
        .map_or(DEFAULT_ONE_WAY_NETWORK, |rtt| rtt / 2)
        .as_secs_f64()
        * 1000.0;
    let ptime = input.ptime_ms.max(0.0);
    let jitter_buffer = (2.0 * input.jitter_ms.max(0.0)).max(ptime);
    network + jitter_buffer + ptime
}

/// The E-model estimate for one direction.
pub fn estimate(input: &QualityInput) -> QualityEstimate {
    let delay_ms = one_way_delay_ms(input);
    let id = delay_impairment(delay_ms);
    let ie_eff = effective_equipment_impairment(input.impairment, input.loss);
    let r = (R_BASE - id - ie_eff).clamp(0.0, 100.0);
    QualityEstimate {
        r,
        mos: mos_from_r(r),
        class: QualityClass::from_r(r),
        delay_ms,
        id,
        ie_eff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g711(loss: f64, jitter_ms: f64, rtt_ms: Option<u64>) -> QualityEstimate {
        estimate(&QualityInput {
            impairment: CodecImpairment::G711_PLC,
            loss,
            jitter_ms,
            round_trip: rtt_ms.map(Duration::from_millis),
            ptime_ms: 20.0,
        })
    }

    #[test]
    fn mos_formula_known_points() {
        // R = 93.2 is the G.107 default: MOS 4.41.
        assert!((mos_from_r(93.2) - 4.41).abs() < 0.005);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        // R = 50: 1 + 1.75 + 7e-6·50·(−10)·50 = 2.575.
        assert!((mos_from_r(50.0) - 2.575).abs() < 1e-9);
    }

    #[test]
    fn g711_without_loss_or_delay_is_about_4_4() {
        let e = estimate(&QualityInput {
            impairment: CodecImpairment::G711_PLC,
            loss: 0.0,
            jitter_ms: 0.0,
            round_trip: Some(Duration::ZERO),
            ptime_ms: 0.0,
        });
        assert_eq!(e.r, 93.2);
        assert!((e.mos - 4.41).abs() < 0.01, "{}", e.mos);
        assert_eq!(e.class, QualityClass::Good);
    }

    #[test]
    fn clean_loopback_call_reads_good() {
        // No RTT known, 1 ms jitter, 20 ms ptime: d = 20 + 20 + 20 = 60 ms.
        let e = g711(0.0, 1.0, None);
        assert_eq!(e.delay_ms, 60.0);
        assert!(e.mos >= 4.3, "{}", e.mos);
        assert_eq!(e.class, QualityClass::Good);
    }

    #[test]
    fn loss_lowers_the_score_and_heavy_loss_is_poor() {
        let clean = g711(0.0, 2.0, Some(40));
        let five = g711(0.05, 2.0, Some(40));
        let heavy = g711(0.20, 2.0, Some(40));
        assert!(five.mos < clean.mos - 0.3, "{} vs {}", five.mos, clean.mos);
        // Ie_eff at 5 %: 95·5/(5 + 25.1) = 15.78.
        assert!((five.ie_eff - 15.78).abs() < 0.01);
        assert_eq!(five.class, QualityClass::Fair);
        assert_eq!(heavy.class, QualityClass::Poor);
        assert!(heavy.mos < 3.1, "{}", heavy.mos);
        // Without concealment the same loss hurts much more.
        let no_plc = effective_equipment_impairment(CodecImpairment::G711_NO_PLC, 0.05);
        assert!(no_plc > 50.0);
    }

    #[test]
    fn long_delay_is_poor() {
        // 600 ms RTT → 300 ms one way plus buffers: past the 177.3 ms knee.
        let e = g711(0.0, 5.0, Some(600));
        assert!(e.id > 20.0, "{}", e.id);
        assert_eq!(e.class, QualityClass::Poor);
        // Id is continuous at the knee.
        assert!((delay_impairment(177.3) - 0.024 * 177.3).abs() < 1e-9);
    }

    #[test]
    fn nonsense_inputs_stay_in_range() {
        for (loss, jitter) in [
            (f64::NAN, 0.0),
            (-1.0, -5.0),
            (7.0, 1e9),
            (0.5, f64::INFINITY),
        ] {
            let e = g711(loss, jitter, Some(1_000_000));
            assert!(e.mos >= 1.0 && e.mos <= 4.5, "{e:?}");
        }
        assert_eq!(
            CodecImpairment::for_codec(Codec::TelephoneEvent { clock_rate: 8000 }),
            None
        );
        assert_eq!(
            CodecImpairment::for_codec(Codec::Pcma),
            Some(CodecImpairment::G711_PLC)
        );
    }

    #[test]
    fn from_leg_statistics() {
        use crate::core::stats::ReceiveStats;
        use std::time::Instant;
        // 10 % loss measured by ReceiveStats → fair-to-poor, not good.
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new(8000);
        for n in 0..200u32 {
            if n % 10 != 3 {
                stats.record_header(
                    1,
                    n as u16,
                    n * 160,
                    160,
                    t0 + Duration::from_millis(20 * n as u64),
                );
            }
        }
        let input =
            QualityInput::inbound(Codec::Pcmu, &stats.snapshot(), None, 20.0).expect("speech");
        assert!((input.loss - 0.1).abs() < 1e-9);
        let e = estimate(&input);
        assert_eq!(e.class, QualityClass::Poor);
        let remote = RemoteReception {
            fraction_lost: 0,
            cumulative_lost: 0,
            jitter_ms: 2.0,
            round_trip: Some(Duration::from_millis(40)),
            received_at: t0,
        };
        let out = QualityInput::outbound(Codec::Opus, &remote, 20.0).expect("speech");
        assert_eq!(estimate(&out).class, QualityClass::Good);
        assert!(
            QualityInput::outbound(Codec::TelephoneEvent { clock_rate: 8000 }, &remote, 20.0)
                .is_none()
        );
    }
}
