// Unit tests of the softphone's pure logic: SIP message parsing for the
// call-details flow, failure reasons, and digest challenge ordering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preferMd5Challenges } from '../src/phone/digestOrder.ts';
import { parseSipMessage } from '../src/phone/sipTrace.ts';
import { reasonFor } from '../src/phone/causes.ts';

const CHALLENGE_SHA_FIRST = [
  'SIP/2.0 401 Unauthorized',
  'Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK1',
  'WWW-Authenticate: Digest realm="c", nonce="n1", algorithm=SHA-256, qop="auth"',
  'WWW-Authenticate: Digest realm="c", nonce="n1", algorithm=MD5, qop="auth"',
  'Call-ID: x1',
  'Content-Length: 0',
  '',
  '',
].join('\r\n');

test('only the MD5 challenge is left for JsSIP, whatever the order', () => {
  const out = preferMd5Challenges(CHALLENGE_SHA_FIRST);
  const auth = out.split('\r\n').filter((l) => l.startsWith('WWW-Authenticate'));
  assert.deepEqual(auth, ['WWW-Authenticate: Digest realm="c", nonce="n1", algorithm=MD5, qop="auth"']);
  const md5First = CHALLENGE_SHA_FIRST.replace('algorithm=SHA-256', 'algorithm=TMP').replace('algorithm=MD5', 'algorithm=SHA-256').replace('algorithm=TMP', 'algorithm=MD5');
  const out2 = preferMd5Challenges(md5First).split('\r\n').filter((l) => l.startsWith('WWW-Authenticate'));
  assert.equal(out2.length, 1);
  assert.match(out2[0], /algorithm=MD5/);
  assert.ok(out.endsWith('\r\n\r\n'), 'message end kept');
  assert.ok(out.includes('Call-ID: x1'));
});

test('challenges folded into one header are split and reordered', () => {
  const msg = 'SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm="c", nonce="a", algorithm=SHA-256, Digest realm="c", nonce="a", algorithm=MD5\r\n\r\n';
  const lines = preferMd5Challenges(msg).split('\r\n').filter((l) => l.startsWith('Proxy-Authenticate'));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /MD5/);
});

test('messages that need no change are returned untouched', () => {
  const shaOnly = CHALLENGE_SHA_FIRST.replace('algorithm=MD5', 'algorithm=SHA-512-256');
  assert.equal(preferMd5Challenges(shaOnly), shaOnly, 'no MD5 challenge: unchanged');
  const ok = 'SIP/2.0 200 OK\r\nCall-ID: y\r\n\r\n';
  assert.equal(preferMd5Challenges(ok), ok);
  const noAlg = CHALLENGE_SHA_FIRST.replace(', algorithm=SHA-256', '');
  assert.equal(preferMd5Challenges(noAlg), noAlg, 'no algorithm means MD5: all challenges usable');
});

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
