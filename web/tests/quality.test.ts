// Unit tests of the softphone's E-model port (src/phone/quality.ts). The
// known points are those of crates/media/src/core/quality.rs's tests, so a
// change on one side that the other does not follow fails here or there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  delayImpairment,
  effectiveEquipmentImpairment,
  estimate,
  G711_NO_PLC,
  G711_PLC,
  impairmentFor,
  mosFromR,
  OPUS,
  qualityFromStats,
} from '../src/phone/quality.ts';

const near = (a: number, b: number, eps: number, what: string) => assert.ok(Math.abs(a - b) < eps, `${what}: ${a} vs ${b}`);

function g711(loss: number, jitterMs: number, rttMs: number | null) {
  return estimate({ impairment: G711_PLC, loss, jitterMs, rttMs, ptimeMs: 20 });
}

test('MOS formula at known points (G.107 Annex B)', () => {
  near(mosFromR(93.2), 4.41, 0.005, 'R 93.2');
  assert.equal(mosFromR(0), 1);
  assert.equal(mosFromR(-5), 1);
  assert.equal(mosFromR(100), 4.5);
  near(mosFromR(50), 2.575, 1e-9, 'R 50');
});

test('G.711 without loss or delay is about 4.4 and good', () => {
  const e = estimate({ impairment: G711_PLC, loss: 0, jitterMs: 0, rttMs: 0, ptimeMs: 0 });
  assert.equal(e.r, 93.2);
  near(e.mos, 4.41, 0.01, 'MOS');
  assert.equal(e.class, 'good');
});

test('a clean loopback call reads good', () => {
  // No RTT known, 1 ms jitter, 20 ms ptime: d = 20 + 20 + 20 = 60 ms.
  const e = g711(0, 1, null);
  assert.equal(e.delayMs, 60);
  assert.ok(e.mos >= 4.3, String(e.mos));
  assert.equal(e.class, 'good');
});

test('loss lowers the score and heavy loss is poor', () => {
  const clean = g711(0, 2, 40);
  const five = g711(0.05, 2, 40);
  const heavy = g711(0.2, 2, 40);
  assert.ok(five.mos < clean.mos - 0.3, `${five.mos} vs ${clean.mos}`);
  near(five.ieEff, 15.78, 0.01, 'Ie_eff at 5 %');
  assert.equal(five.class, 'fair');
  assert.equal(heavy.class, 'poor');
  assert.ok(heavy.mos < 3.1, String(heavy.mos));
  assert.ok(effectiveEquipmentImpairment(G711_NO_PLC, 0.05) > 50);
});

test('long delay is poor and Id is continuous at the knee', () => {
  const e = g711(0, 5, 600);
  assert.ok(e.id > 20, String(e.id));
  assert.equal(e.class, 'poor');
  near(delayImpairment(177.3), 0.024 * 177.3, 1e-9, 'Id at 177.3 ms');
});

test('nonsense inputs stay in range', () => {
  for (const [loss, jitter] of [[NaN, 0], [-1, -5], [7, 1e9], [0.5, Infinity], [0, NaN]]) {
    const e = g711(loss, jitter, 1_000_000);
    assert.ok(e.mos >= 1 && e.mos <= 4.5, JSON.stringify(e));
  }
  assert.equal(impairmentFor('audio/telephone-event'), null);
  assert.deepEqual(impairmentFor('audio/PCMA'), G711_PLC);
  assert.deepEqual(impairmentFor('audio/opus'), OPUS);
});

// Shapes of Chromium's getStats() dictionaries (only the fields we read).
function report(opts: { received: number; lost: number; jitter?: number; remote?: { rtt: number; fractionLost: number; jitter: number } | null; pairRtt?: number }) {
  const stats: Record<string, unknown>[] = [
    { type: 'codec', id: 'C1', mimeType: 'audio/PCMU', clockRate: 8000 },
    { type: 'inbound-rtp', id: 'I1', kind: 'audio', packetsReceived: opts.received, packetsLost: opts.lost, jitter: opts.jitter ?? 0.001, codecId: 'C1' },
    { type: 'transport', id: 'T1', selectedCandidatePairId: 'P1' },
    { type: 'candidate-pair', id: 'P1', state: 'succeeded', nominated: true, currentRoundTripTime: opts.pairRtt ?? 0.002 },
  ];
  if (opts.remote) {
    stats.push({ type: 'remote-inbound-rtp', id: 'R1', kind: 'audio', roundTripTime: opts.remote.rtt, fractionLost: opts.remote.fractionLost, jitter: opts.remote.jitter });
  }
  return stats as Iterable<{ type: string }>;
}

test('figures from getStats: nothing before audio arrives', () => {
  assert.equal(qualityFromStats(report({ received: 0, lost: 0 }), null), null);
  assert.equal(qualityFromStats([], null), null);
});

test('figures from getStats: a clean call is good, with codec, jitter and the ICE RTT', () => {
  const q = qualityFromStats(report({ received: 250, lost: 0, jitter: 0.0015 }), null);
  assert.ok(q);
  assert.equal(q.class, 'good');
  assert.equal(q.codec, 'PCMU');
  assert.equal(q.lossPct, 0);
  near(q.jitterMs, 1.5, 1e-9, 'jitter ms');
  near(q.rttMs ?? -1, 2, 1e-9, 'RTT from the candidate pair');
  assert.ok(q.mos >= 4.3, String(q.mos));
  assert.deepEqual(q.counters, { packetsReceived: 250, packetsLost: 0 });
});

test('figures from getStats: loss is measured over the interval since the last sample', () => {
  const first = qualityFromStats(report({ received: 1000, lost: 0 }), null);
  assert.ok(first);
  // 100 packets expected since, 10 of them lost: 10 %, poor (cumulative would be 1 %).
  const second = qualityFromStats(report({ received: 1090, lost: 10 }), first.counters);
  assert.ok(second);
  near(second.lossPct, 10, 1e-9, 'interval loss');
  assert.equal(second.class, 'poor');
  // Nothing received in the interval (hold): the cumulative ratio.
  const held = qualityFromStats(report({ received: 1090, lost: 10 }), second.counters);
  assert.ok(held);
  near(held.lossPct, 10 / 1100 * 100, 1e-9, 'cumulative loss');
});

test('figures from getStats: the worse direction wins and RTCP RTT is preferred', () => {
  const q = qualityFromStats(report({ received: 500, lost: 0, remote: { rtt: 0.04, fractionLost: 0.05, jitter: 0.002 } }), null);
  assert.ok(q);
  near(q.rttMs ?? -1, 40, 1e-9, 'RTCP RTT');
  near(q.lossPct, 5, 1e-9, 'sent-direction loss');
  assert.equal(q.class, 'fair', 'like the server: 5 % loss, 40 ms RTT is fair');
  near(q.mos, g711(0.05, 2, 40).mos, 1e-9, 'MOS of the worse direction');
});
