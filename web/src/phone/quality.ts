// Live call quality for the softphone: the same E-model estimate the server
// makes, so the agent's indicator and the call history agree.
//
// This is a port of crates/media/src/core/quality.rs (read its module docs
// for the formula, the G.107/G.113 sources and why each constant is what it
// is). Keep the two in step: same R base, delay model, codec values and
// class thresholds. Only the input side differs: here the figures come from
// the browser's RTCPeerConnection.getStats() instead of our RTP statistics.

/** R0 − Is at G.107's default parameters (quality.rs `R_BASE`). */
const R_BASE = 93.2;
/** One-way network delay assumed when no round-trip time is known (quality.rs `DEFAULT_ONE_WAY_NETWORK`). */
const DEFAULT_ONE_WAY_NETWORK_MS = 20;
/** Packet time of every stream we set up (the server's `ptime_ms` argument). */
export const PTIME_MS = 20;

/** E-model codec parameters: equipment impairment Ie, packet-loss robustness Bpl. */
export interface CodecImpairment {
  ie: number;
  bpl: number;
}

/** G.711 with packet-loss concealment (G.113 Appendix I). */
export const G711_PLC: CodecImpairment = { ie: 0, bpl: 25.1 };
/** G.711 without concealment (G.113 Appendix I). */
export const G711_NO_PLC: CodecImpairment = { ie: 0, bpl: 4.3 };
/** Opus: not in G.113, rated like G.711 with PLC (see quality.rs). */
export const OPUS: CodecImpairment = { ie: 0, bpl: 25.1 };

/**
 * The values for a negotiated codec, from its MIME type ("audio/PCMU") or
 * bare name. `null` for telephone-event (no speech). A codec the server does
 * not know (the browser could offer G.722 to another browser) is rated like
 * G.711 with concealment rather than not at all: every browser conceals loss.
 */
export function impairmentFor(mimeType: string): CodecImpairment | null {
  const name = mimeType.toLowerCase().replace(/^audio\//, '');
  if (name === 'telephone-event') return null;
  if (name === 'opus') return OPUS;
  return G711_PLC;
}

export type QualityClass = 'good' | 'fair' | 'poor';

/** What the estimate is computed from, for one direction of the call. */
export interface QualityInput {
  impairment: CodecImpairment;
  /** Packet loss in 0..1. */
  loss: number;
  /** Interarrival jitter in ms (RFC 3550). */
  jitterMs: number;
  /** Round-trip time in ms, when known. */
  rttMs: number | null;
  /** Packet time in ms. */
  ptimeMs: number;
}

export interface QualityEstimate {
  /** Transmission rating factor R. */
  r: number;
  /** Estimated MOS-CQE, 1..4.5. */
  mos: number;
  class: QualityClass;
  /** One-way mouth-to-ear delay used, in ms. */
  delayMs: number;
  /** Delay impairment Id. */
  id: number;
  /** Effective equipment impairment Ie_eff. */
  ieEff: number;
}

/** The class of a transmission rating R (G.107 Annex B categories). */
export function classFromR(r: number): QualityClass {
  if (r >= 80) return 'good';
  if (r >= 70) return 'fair';
  return 'poor';
}

/** Delay impairment Id for a one-way delay in ms. */
export function delayImpairment(delayMs: number): number {
  const d = Math.max(delayMs, 0);
  let id = 0.024 * d;
  if (d > 177.3) id += 0.11 * (d - 177.3);
  return id;
}

/** Effective equipment impairment for a loss ratio (0..1), random loss. */
export function effectiveEquipmentImpairment(imp: CodecImpairment, loss: number): number {
  // NaN loss counts as none, as Rust's f64::clamp + max(0.0) turn it into 0.
  const ppl = Number.isNaN(loss) ? 0 : Math.min(Math.max(loss, 0), 1) * 100;
  if (ppl === 0) return imp.ie;
  return imp.ie + ((95 - imp.ie) * ppl) / (ppl + imp.bpl);
}

/** MOS from R (G.107 Annex B). */
export function mosFromR(r: number): number {
  if (Number.isNaN(r) || r <= 0) return 1;
  if (r >= 100) return 4.5;
  return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
}

/** Rust's `f64::max` ignores a NaN operand; Math.max would return NaN. */
function fmax(a: number, b: number): number {
  if (Number.isNaN(a)) return b;
  if (Number.isNaN(b)) return a;
  return Math.max(a, b);
}

/** The one-way delay estimate (ms) the E-model is fed. */
export function oneWayDelayMs(input: QualityInput): number {
  const network = input.rttMs === null ? DEFAULT_ONE_WAY_NETWORK_MS : input.rttMs / 2;
  const ptime = fmax(input.ptimeMs, 0);
  const jitterBuffer = fmax(2 * fmax(input.jitterMs, 0), ptime);
  return network + jitterBuffer + ptime;
}

/** The E-model estimate for one direction. */
export function estimate(input: QualityInput): QualityEstimate {
  const delayMs = oneWayDelayMs(input);
  const id = delayImpairment(delayMs);
  const ieEff = effectiveEquipmentImpairment(input.impairment, input.loss);
  const raw = R_BASE - id - ieEff;
  // f64::clamp keeps NaN; mosFromR and classFromR then read it as the worst.
  const r = Number.isNaN(raw) ? raw : Math.min(Math.max(raw, 0), 100);
  return { r, mos: mosFromR(r), class: Number.isNaN(r) ? 'poor' : classFromR(r), delayMs, id, ieEff };
}

// ---- from getStats() ------------------------------------------------------

/** The cumulative receive counters of the last sample, for interval loss. */
export interface InboundCounters {
  packetsReceived: number;
  packetsLost: number;
}

/** What the indicator shows: the worse of the two directions. */
export interface CallQuality {
  class: QualityClass;
  mos: number;
  /** Loss in percent (the worse direction). */
  lossPct: number;
  /** Jitter in ms (the worse direction). */
  jitterMs: number;
  /** Round-trip time in ms, when RTCP or ICE gave one. */
  rttMs: number | null;
  /** The codec's name ("PCMU", "opus"), when the stats name it. */
  codec: string | null;
  /** Counters to pass back as `prev` on the next sample. */
  counters: InboundCounters;
}

/** The getStats() fields we read (a subset of RTCStats dictionaries). */
interface StatLike {
  type: string;
  id?: string;
  kind?: string;
  mediaType?: string;
  packetsReceived?: number;
  packetsLost?: number;
  jitter?: number;
  codecId?: string;
  mimeType?: string;
  roundTripTime?: number;
  fractionLost?: number;
  currentRoundTripTime?: number;
  nominated?: boolean;
  state?: string;
  selectedCandidatePairId?: string;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/**
 * The indicator's figures from one getStats() report (any iterable of stats
 * dictionaries; an RTCStatsReport's `.values()`).
 *
 * Received direction: loss over the interval since `prev` (live, so a burst
 * shows now and clears later; the cumulative ratio when the interval carried
 * no packets, e.g. on hold), the inbound jitter, the codec. Sent direction:
 * what the peer's RTCP receiver reports say (remote-inbound-rtp: its
 * fractionLost for the last interval and its jitter). RTT: the RTCP one
 * (remote-inbound-rtp), else the ICE candidate pair's (consent checks
 * measure the same path). Each direction gets its own estimate, as the
 * server does per leg and direction; the indicator shows the worse.
 * `null` until audio has been received.
 */
export function qualityFromStats(stats: Iterable<StatLike>, prev: InboundCounters | null, ptimeMs = PTIME_MS): CallQuality | null {
  const all = [...stats];
  const byId = new Map<string, StatLike>();
  for (const s of all) if (s.id) byId.set(s.id, s);
  const isAudio = (s: StatLike) => s.kind === 'audio' || s.mediaType === 'audio';

  const inbound = all.find((s) => s.type === 'inbound-rtp' && isAudio(s) && (num(s.packetsReceived) ?? 0) > 0);
  if (!inbound) return null;
  const received = num(inbound.packetsReceived) ?? 0;
  // packetsLost may go negative with duplicates (RFC 3550 §6.4.1).
  const lost = Math.max(num(inbound.packetsLost) ?? 0, 0);
  const counters = { packetsReceived: received, packetsLost: lost };
  let inLoss = received + lost > 0 ? lost / (received + lost) : 0;
  if (prev) {
    const dRecv = received - prev.packetsReceived;
    const dLost = Math.max(lost - prev.packetsLost, 0);
    if (dRecv > 0 && dRecv + dLost > 0) inLoss = dLost / (dRecv + dLost);
  }
  const inJitterMs = (num(inbound.jitter) ?? 0) * 1000;

  const codecStat = inbound.codecId ? byId.get(inbound.codecId) : undefined;
  const mime = codecStat?.mimeType ?? null;
  const codec = mime ? mime.replace(/^audio\//i, '') : null;
  const impairment = (mime ? impairmentFor(mime) : null) ?? G711_PLC;

  const remote = all.find((s) => s.type === 'remote-inbound-rtp' && isAudio(s));
  let rttSecs = remote ? num(remote.roundTripTime) : null;
  if (rttSecs === null) {
    const transport = all.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = transport?.selectedCandidatePairId ? byId.get(transport.selectedCandidatePairId)
      : all.find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    rttSecs = pair ? num(pair.currentRoundTripTime) : null;
  }
  const rttMs = rttSecs === null ? null : rttSecs * 1000;

  const inEst = estimate({ impairment, loss: inLoss, jitterMs: inJitterMs, rttMs, ptimeMs });
  let worst = inEst;
  let lossPct = inLoss * 100;
  let jitterMs = inJitterMs;
  if (remote) {
    const outLoss = Math.min(Math.max(num(remote.fractionLost) ?? 0, 0), 1);
    const outJitterMs = (num(remote.jitter) ?? 0) * 1000;
    const outEst = estimate({ impairment, loss: outLoss, jitterMs: outJitterMs, rttMs, ptimeMs });
    if (outEst.mos < worst.mos) worst = outEst;
    lossPct = Math.max(lossPct, outLoss * 100);
    jitterMs = Math.max(jitterMs, outJitterMs);
  }
  return { class: worst.class, mos: worst.mos, lossPct, jitterMs, rttMs, codec, counters };
}
