// Unit tests of the softphone's pure logic: SIP message parsing for the
// call-details flow and failure reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSipMessage } from '../src/phone/sipTrace.ts';
import { reasonFor } from '../src/phone/causes.ts';

test('SIP requests and responses are labelled for the flow view', () => {
  const inv = parseSipMessage('out', 'INVITE sip:1001@c SIP/2.0\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\nv=0', 5);
  assert.deepEqual({ label: inv?.label, req: inv?.isRequest, callId: inv?.callId, cseq: inv?.cseq, at: inv?.at }, { label: 'INVITE', req: true, callId: 'abc', cseq: '1 INVITE', at: 5 });
  const ring = parseSipMessage('in', 'SIP/2.0 180 Ringing\r\ni: abc\r\nCSeq: 1 INVITE\r\n\r\n');
  assert.equal(ring?.label, '180 Ringing');
  assert.equal(ring?.status, 180);
  assert.equal(ring?.callId, 'abc', 'compact Call-ID header');
  assert.equal(parseSipMessage('in', 'garbage'), null);
  assert.equal(parseSipMessage('in', 'SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n'), null, 'no Call-ID');
});

test('failure reasons are mapped from SIP status and JsSIP cause', () => {
  const base = { originator: 'remote' as const, cause: 'SIP Failure Code', answered: false, incoming: false };
  assert.equal(reasonFor({ ...base, statusCode: 486 }).key, 'reason.busy');
  assert.equal(reasonFor({ ...base, statusCode: 480 }).key, 'reason.unavailable');
  assert.equal(reasonFor({ ...base, statusCode: 480, rang: true }).key, 'reason.noAnswer', 'ring timeout');
  assert.equal(reasonFor({ ...base, statusCode: 404 }).key, 'reason.notFound');
  assert.equal(reasonFor({ ...base, statusCode: 408 }).key, 'reason.noAnswer');
  assert.equal(reasonFor({ ...base, statusCode: 503 }).key, 'reason.serverError');
  assert.equal(reasonFor({ ...base, statusCode: null, cause: 'Canceled', originator: 'local' }).key, 'reason.cancelled');
  assert.equal(reasonFor({ ...base, statusCode: null, cause: 'Canceled', incoming: true }).key, 'reason.remoteCancelled');
  assert.equal(reasonFor({ ...base, statusCode: null, cause: 'BYE', answered: true }).key, 'reason.hangupRemote');
  assert.equal(reasonFor({ ...base, statusCode: null, cause: 'User Denied Media Access' }).key, 'reason.micDenied');
  assert.equal(reasonFor({ ...base, statusCode: null, cause: 'Something New' }).key, 'reason.other');
  assert.equal(reasonFor({ ...base, statusCode: null, cause: 'Rejected', originator: 'local', incoming: true }).key, 'reason.rejectedLocal');
  assert.equal(reasonFor({ ...base, statusCode: 603, cause: 'Rejected' }).key, 'reason.rejected');
});

test('call quality tooltip: one line per leg and direction', async () => {
  const { qualityLines, recordingUrl } = await import('../src/quality.ts');
  const words = { leg: 'Leg', inbound: 'in', outbound: 'out', loss: 'loss', jitter: 'jitter', rtt: 'RTT' };
  const leg = { packets: 1000, lost: 20, lossPercent: 1.96, jitterMs: 4.5, codec: 'PCMU' };
  const lines = qualityLines({
    class: 'fair',
    worstMos: 3.8,
    legs: [
      { ...leg, leg: 0, direction: 'inbound', rttMs: 24.4, mos: 4.3, class: 'good' },
      { ...leg, leg: 1, direction: 'outbound', rttMs: null, mos: 3.8, class: 'fair' },
    ],
  }, words);
  assert.deepEqual(lines, [
    'Leg 0 in: MOS 4.30, loss 1.96 %, jitter 4.5 ms, RTT 24 ms (PCMU)',
    'Leg 1 out: MOS 3.80, loss 1.96 %, jitter 4.5 ms (PCMU)',
  ]);
  assert.equal(recordingUrl('a b/c@x'), '/api/telephony/calls/a%20b%2Fc%40x/recording');
});
