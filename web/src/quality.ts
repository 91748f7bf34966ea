// Call quality and recordings as the call history shows them: the pure
// text of the quality tooltip (unit-tested) and the recording's URL.

import type { QualityClass } from './phone/quality';

export type { QualityClass };

export interface LegQuality {
  leg: number;
  direction: 'inbound' | 'outbound';
  packets: number;
  lost: number;
  lossPercent: number;
  jitterMs: number;
  rttMs: number | null;
  mos: number;
  class: QualityClass;
  codec: string;
}

export interface CallQuality {
  class: QualityClass;
  worstMos: number;
  legs: LegQuality[];
}

/** Words of the tooltip, in the console's language. */
export interface QualityWords {
  leg: string;
  inbound: string;
  outbound: string;
  loss: string;
  jitter: string;
  rtt: string;
}

/** One line per leg and direction: "Leg 1 in: MOS 3.80, loss 1.96 %, jitter 4.5 ms, RTT 30 ms (PCMU)". */
export function qualityLines(q: CallQuality, w: QualityWords): string[] {
  return q.legs.map((l) => {
    const dir = l.direction === 'inbound' ? w.inbound : w.outbound;
    const rtt = l.rttMs === null ? '' : `, ${w.rtt} ${Math.round(l.rttMs)} ms`;
    return `${w.leg} ${l.leg} ${dir}: MOS ${l.mos.toFixed(2)}, ${w.loss} ${l.lossPercent.toFixed(2)} %, `
      + `${w.jitter} ${l.jitterMs.toFixed(1)} ms${rtt} (${l.codec})`;
  });
}

/** The recording of a call; the session cookie authenticates it (same origin). */
export function recordingUrl(callId: string): string {
  return `/api/telephony/calls/${encodeURIComponent(callId)}/recording`;
}
