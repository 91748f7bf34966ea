// Unit tests of the trunk form's logic (src/trunks.ts): kind presets as
// docs/API.md's table gives them, the form to TrunkInput body, the
// advancedSettings check, and where a server error sends the admin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  actionOutcome, applyPreset, buildBody, errorField, FormError, newTrunkValues, parseAdvanced, tabOfField, trunkToValues,
  KINDS, TABS, type Trunk,
} from '../src/trunks.ts';

// docs/API.md "Kind presets", written out again here on purpose: a change of
// the mirrored table in src/trunks.ts that the docs do not make fails.
const TABLE: Record<string, [boolean, boolean, boolean, boolean, number, string, boolean]> = {
  nat_provider: [true, true, true, true, 60, 'pcmu, pcma', false],
  no_nat: [true, false, false, false, 60, 'pcmu, pcma', false],
  pbx_lan: [false, false, false, false, 30, 'pcmu, pcma, g722', true],
  corporate: [true, true, true, true, 60, 'pcmu, pcma, g722', true],
  custom: [false, false, true, false, 0, 'pcmu, pcma', false],
};

test('choosing a kind fills exactly its preset fields', () => {
  const base = { ...newTrunkValues(), name: 'Main', host: '127.0.0.1', port: '5080', priority: '3', dtmfMode: 'info', sessionTimers: 'no' };
  assert.deepEqual([...KINDS].sort(), Object.keys(TABLE).sort());
  for (const kind of KINDS) {
    const v = applyPreset(base, kind);
    const [reg, sym, rport, rewrite, qualify, codecs, pai] = TABLE[kind];
    assert.deepEqual(
      [v.sendsRegistration, v.rtpSymmetric, v.forceRport, v.rewriteContact, Number(v.qualifyFrequency), v.codecs, v.sendPai],
      [reg, sym, rport, rewrite, qualify, codecs, pai], kind);
    assert.equal(v.trustRemotePartyId, pai, `${kind}: trustRemotePartyId goes with sendPai`);
    assert.equal(v.dtmfMode, 'rfc4733', `${kind}: all kinds rfc4733`);
    assert.equal(v.sessionTimers, 'yes', `${kind}: all kinds session timers yes`);
    assert.equal(v.kind, kind);
    // What is not in the preset is left as the admin set it.
    assert.deepEqual([v.name, v.host, v.port, v.priority], ['Main', '127.0.0.1', '5080', '3'], kind);
  }
  assert.equal(applyPreset(base, 'bogus').rtpSymmetric, base.rtpSymmetric, 'an unknown kind changes nothing but the kind');
});

test('a new trunk form sends the defaults and the custom preset', () => {
  const body = buildBody({ ...newTrunkValues(), name: ' Carrier A ', host: ' 127.0.0.1 ' });
  assert.equal(body.name, 'Carrier A');
  assert.equal(body.host, '127.0.0.1');
  assert.equal(body.kind, 'custom');
  assert.equal(body.port, 5060);
  assert.equal(body.maxChannels, 10);
  assert.equal(body.priority, 10);
  assert.equal(body.status, 'active');
  assert.deepEqual(body.codecs, ['pcmu', 'pcma']);
  assert.equal(body.forceRport, true);
  assert.equal(body.description, null, 'empty optional text is null');
  assert.equal(body.registrationServerUri, null);
  assert.ok(!('outboundAuthPassword' in body), 'an empty password is left out (kept)');
  assert.ok(!('inboundAuthPassword' in body));
  assert.deepEqual(body.inboundMatch, []);
  assert.deepEqual(body.advancedSettings, {});
  for (const k of ['id', 'hasSecret', 'registered', 'totalCalls', 'createdAt']) assert.ok(!(k in body), `read-only ${k} not sent`);
});

test('form values become typed fields; bad ones name their field', () => {
  const v = {
    ...newTrunkValues(), name: 'x', host: 'h.test', port: '', priority: '7', codecs: 'opus,  pcmu g722',
    inboundMatch: '127.0.0.1\n10.0.0.0/8 ,  pbx.test\n', outboundAuthPassword: 'se cret ', advancedSettings: ' {"a": [1]} ',
  };
  const body = buildBody(v);
  assert.ok(!('port' in body), 'an empty number is left out');
  assert.equal(body.priority, 7);
  assert.deepEqual(body.codecs, ['opus', 'pcmu', 'g722']);
  assert.deepEqual(body.inboundMatch, ['127.0.0.1', '10.0.0.0/8', 'pbx.test']);
  assert.equal(body.outboundAuthPassword, 'se cret ', 'a password is sent as typed');
  assert.deepEqual(body.advancedSettings, { a: [1] });
  const cleared = buildBody({ ...v, clearOutboundPassword: true, clearInboundPassword: true, inboundAuthPassword: 'x' });
  assert.equal(cleared.outboundAuthPassword, null, '"remove" sends null even with something typed');
  assert.equal(cleared.inboundAuthPassword, null);
  for (const k of ['clearOutboundPassword', 'clearInboundPassword']) assert.ok(!(k in cleared), `${k} is the form's, not the API's`);

  const fieldOf = (patch: Record<string, string>) => {
    try {
      buildBody({ ...v, ...patch });
    } catch (err) {
      assert.ok(err instanceof FormError);
      return err.field;
    }
    return null;
  };
  assert.equal(fieldOf({ port: '50a' }), 'port');
  assert.equal(fieldOf({ priority: '-1' }), 'priority');
  assert.equal(fieldOf({ sessionMinSe: '1.5' }), 'sessionMinSe');
  assert.equal(fieldOf({ codecs: ' , ' }), 'codecs');
  assert.equal(fieldOf({ name: '  ' }), 'name');
  assert.equal(fieldOf({ host: '' }), 'host');
  assert.equal(fieldOf({ advancedSettings: '{"a":' }), 'advancedSettings');
});

test('advancedSettings must be a JSON object of at most 16 KiB', () => {
  assert.deepEqual(parseAdvanced(''), {});
  assert.deepEqual(parseAdvanced('  \n'), {});
  assert.deepEqual(parseAdvanced('{"x": {"y": true}}'), { x: { y: true } });
  for (const bad of ['[]', '1', '"s"', 'null', '{bad}', '{"a":1}}']) {
    assert.throws(() => parseAdvanced(bad), (e: unknown) => e instanceof FormError && e.field === 'advancedSettings', bad);
  }
  assert.doesNotThrow(() => parseAdvanced(JSON.stringify({ k: 'x'.repeat(16 * 1024 - 20) })));
  assert.throws(() => parseAdvanced(JSON.stringify({ k: 'x'.repeat(16 * 1024) })), /16 KiB/);
  // Bytes, not characters: the server counts the UTF-8 text.
  assert.throws(() => parseAdvanced(JSON.stringify({ k: 'ñ'.repeat(9000) })), /16 KiB/);
});

const SAVED: Trunk = {
  id: 4, name: 'Twilio Main', description: null, provider: 'twilio', kind: 'nat_provider', host: 'sip.example.test', port: 5061,
  transport: 'tls', sendsAuth: true, outboundAuthUsername: 'AC12', outboundAuthRealm: null, hasSecret: true, acceptsAuth: false,
  inboundAuthUsername: null, hasInboundSecret: false, inboundMatch: ['192.0.2.0/24'], sendsRegistration: true,
  acceptsRegistrations: false, registrationServerUri: null, registrationClientUri: 'sip:AC12@sip.example.test',
  registrationExpiration: 3600, registrationRetryInterval: 60, registrationMaxRetries: 10, registrationForbiddenRetryInterval: 0,
  codecs: ['pcmu', 'pcma'], dtmfMode: 'rfc4733', rtpSymmetric: true, forceRport: true, rewriteContact: true, qualifyFrequency: 60,
  mediaAddress: null, sessionTimers: 'yes', sessionExpires: 1800, sessionMinSe: 90, fromUser: '+15551234567', fromDomain: null,
  pai: null, sendPai: false, trustRemotePartyId: false, maxChannels: 0, priority: 1, status: 'maintenance', registered: true,
  lastRegisteredAt: '2026-01-01T00:00:00Z', lastError: 'timeout', lastErrorAt: '2026-01-01T00:00:00Z', totalCalls: 9,
  successfulCalls: 7, failedCalls: 2, advancedSettings: { note: 'x' }, createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z',
};

test('a saved trunk read into the form and sent back keeps every field, and no password', () => {
  const v = trunkToValues(SAVED);
  assert.equal(v.outboundAuthPassword, '', 'write-only: the form never holds the stored password');
  const body = buildBody(v);
  const readOnly = new Set(['id', 'hasSecret', 'hasInboundSecret', 'registered', 'lastRegisteredAt', 'lastError', 'lastErrorAt',
    'totalCalls', 'successfulCalls', 'failedCalls', 'createdAt', 'updatedAt']);
  for (const [k, value] of Object.entries(SAVED)) {
    if (readOnly.has(k)) assert.ok(!(k in body), `${k} is not sent`);
    else assert.deepEqual(body[k], value, k);
  }
  assert.ok(!('outboundAuthPassword' in body) && !('inboundAuthPassword' in body));
});

test('a server error sends the admin to the field and its tab', () => {
  assert.equal(errorField('port: must be between 1 and 65535'), 'port');
  assert.equal(errorField('outboundAuthPassword: is required when sendsAuth is true'), 'outboundAuthPassword');
  assert.equal(errorField('username: too long'), 'outboundAuthUsername', "seeds/001's alias");
  assert.equal(errorField('json: object'), null, 'not a form field');
  assert.equal(errorField('a trunk with this name already exists'), null);
  assert.equal(tabOfField('port'), 'basic');
  assert.equal(tabOfField('outboundAuthPassword'), 'auth');
  assert.equal(tabOfField('registrationExpiration'), 'registration');
  assert.equal(tabOfField('qualifyFrequency'), 'media');
  assert.equal(tabOfField('sessionMinSe'), 'advanced');
  assert.equal(tabOfField('advancedSettings'), 'custom');
  assert.equal(tabOfField('nope'), null);
  // Every field of the form has a tab.
  for (const k of Object.keys(newTrunkValues())) assert.ok(TABS.includes(tabOfField(k)!), k);
});

test('test / force register answers map to what the panel says', () => {
  assert.equal(actionOutcome(404, 'route_not_found'), 'unavailable');
  assert.equal(actionOutcome(404, 'trunk_not_found'), 'not_found');
  assert.equal(actionOutcome(409, 'trunk_not_registering'), 'not_registering');
  assert.equal(actionOutcome(503, 'sip_unavailable'), 'no_sip');
  assert.equal(actionOutcome(409, 'other'), 'error');
  assert.equal(actionOutcome(500, 'internal'), 'error');
});
