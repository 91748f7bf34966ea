// Unit tests of the dial plan form's logic (src/dialplan.ts): the lines
// of the textareas to arrays, the form to a PUT body and back, which
// field a 422 names, and when the form differs from what is in force.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildDialplanBody, buildRouteBody, dialplanErrorField, errorDetail, DialplanFormError, formDiffers, newRoute, sameSettings,
  settingsToValues, splitLines, splitPrefixes, type DialplanSettings,
} from '../src/dialplan.ts';

const SPAIN: DialplanSettings = {
  countryCode: '34', internationalPrefix: '00', nationalPrefix: '', outboundPatterns: ['_+X.', '_XXXXXX.'], strip: 0, prepend: '',
  agentPermission: 'national', maxConcurrentOutbound: 2, maxOutboundPerHour: 120, blockedPrefixes: ['870', '881', '34803'],
  routes: [],
};

test('patterns are one per line, trimmed, blank lines dropped; a set keeps its comma', () => {
  assert.deepEqual(splitLines('_+X.\n  _XXXXXX.  \r\n\n\r_9[1-4,7]X.\n   \n'), ['_+X.', '_XXXXXX.', '_9[1-4,7]X.']);
  assert.deepEqual(splitLines(''), []);
  assert.deepEqual(splitLines(' \n \n'), []);
});

test('blocked prefixes split on lines, commas, semicolons and spaces', () => {
  assert.deepEqual(splitPrefixes('803\n806, 807;905  +881\n\n'), ['803', '806', '807', '905', '+881']);
  assert.deepEqual(splitPrefixes('  \n'), []);
});

test('saved settings fill the form and come back unchanged', () => {
  const v = settingsToValues(SPAIN);
  assert.equal(v.outboundPatterns, '_+X.\n_XXXXXX.');
  assert.equal(v.blockedPrefixes, '870\n881\n34803');
  assert.equal(v.strip, '0');
  assert.equal(v.maxOutboundPerHour, '120');
  assert.deepEqual(buildDialplanBody(v), SPAIN);
  assert.equal(formDiffers(v, SPAIN), false);
});

test('the body sends every field, text trimmed, lists as typed, counts as numbers', () => {
  const body = buildDialplanBody({
    countryCode: ' 44 ', internationalPrefix: ' 00,011 ', nationalPrefix: ' 0 ', outboundPatterns: '_0NXXXXXXXXX\n\n _00X. ',
    strip: ' 1 ', prepend: ' +44 ', agentPermission: 'international', maxConcurrentOutbound: '0', maxOutboundPerHour: ' 30 ',
    blockedPrefixes: '4470\n449\n', routes: [],
  });
  assert.deepEqual(body, {
    countryCode: '44', internationalPrefix: '00,011', nationalPrefix: '0', outboundPatterns: ['_0NXXXXXXXXX', '_00X.'], strip: 1,
    prepend: '+44', agentPermission: 'international', maxConcurrentOutbound: 0, maxOutboundPerHour: 30, blockedPrefixes: ['4470', '449'],
    routes: [],
  });
  assert.deepEqual(Object.keys(body).sort(), Object.keys(SPAIN).sort(), 'every field, nothing else');
});

test('a count that is not a whole number is stopped with its field; patterns and digits are left to the server', () => {
  const base = settingsToValues(SPAIN);
  for (const [field, bad] of [['strip', '-1'], ['maxConcurrentOutbound', '2.5'], ['maxOutboundPerHour', ''], ['maxOutboundPerHour', 'ten']] as const) {
    assert.throws(() => buildDialplanBody({ ...base, [field]: bad }), (e: unknown) => e instanceof DialplanFormError && e.field === field, `${field}=${bad}`);
  }
  // The server owns the notation and the ranges: these are sent as typed.
  const sent = buildDialplanBody({ ...base, outboundPatterns: '_9Q.', countryCode: '+34', maxOutboundPerHour: '999999' });
  assert.deepEqual(sent.outboundPatterns, ['_9Q.']);
  assert.equal(sent.countryCode, '+34');
  assert.equal(sent.maxOutboundPerHour, 999999);
});

test('a 422 message names its field, from the checks or from the JSON decoder', () => {
  assert.equal(dialplanErrorField('outboundPatterns: pattern "_9Q.": unknown character Q'), 'outboundPatterns');
  assert.equal(dialplanErrorField('agentPermission: "all": internal, national or international'), 'agentPermission');
  assert.equal(dialplanErrorField('blockedPrefixes: "80a": digits only, at most 15'), 'blockedPrefixes');
  assert.equal(
    dialplanErrorField('Failed to deserialize the JSON body into the target type: strip: invalid value: integer `-1`, expected u32 at line 1 column 9'),
    'strip');
  assert.equal(dialplanErrorField('Failed to deserialize the JSON body into the target type: outboundPatterns[0]: invalid type'), 'outboundPatterns');
  assert.equal(dialplanErrorField('name: nope'), null);
  assert.equal(dialplanErrorField('missing field `strip`'), null);
  assert.equal(errorDetail('outboundPatterns: pattern "_9Q.": bad', 'outboundPatterns'), 'pattern "_9Q.": bad');
  assert.equal(errorDetail('something else', 'strip'), 'something else');
});

test('the form differs from the settings in force when any field does', () => {
  const v = settingsToValues(SPAIN);
  assert.equal(formDiffers({ ...v, blockedPrefixes: '870\n881' }, SPAIN), true);
  assert.equal(formDiffers({ ...v, blockedPrefixes: '881\n870\n34803' }, SPAIN), true, 'order is kept, so it counts');
  assert.equal(formDiffers({ ...v, maxOutboundPerHour: '121' }, SPAIN), true);
  assert.equal(formDiffers({ ...v, maxOutboundPerHour: 'x' }, SPAIN), true, 'an unreadable form is a change');
  assert.equal(formDiffers({ ...v, outboundPatterns: '  _+X.\n\n_XXXXXX.  ' }, SPAIN), false, 'blank lines and spaces are no change');
  assert.equal(sameSettings(SPAIN, { ...SPAIN, agentPermission: 'internal' }), false);
  assert.equal(sameSettings(SPAIN, { ...SPAIN, outboundPatterns: [...SPAIN.outboundPatterns] }), true);
});

const ROUTED: DialplanSettings = {
  ...SPAIN,
  routes: [
    { name: 'mobiles', patterns: ['_6XXXXXXXX', '_7XXXXXXXX'], strip: 0, prepend: '', trunkIds: [3, 1] },
    { name: 'outside line', patterns: ['_9NXXXXXXXX'], strip: 1, prepend: '+34', trunkIds: [] },
  ],
};

test('routes fill their editors and come back unchanged, in order', () => {
  const v = settingsToValues(ROUTED);
  assert.deepEqual(v.routes[0], { name: 'mobiles', patterns: '_6XXXXXXXX\n_7XXXXXXXX', strip: '0', prepend: '', trunkIds: [3, 1] });
  assert.deepEqual(buildDialplanBody(v), ROUTED);
  assert.equal(formDiffers(v, ROUTED), false);
  assert.equal(formDiffers(v, SPAIN), true, 'routes count');
  assert.equal(formDiffers({ ...v, routes: [v.routes[1], v.routes[0]] }, ROUTED), true, 'their order counts');
  assert.equal(formDiffers({ ...v, routes: [{ ...v.routes[0], trunkIds: [1, 3] }, v.routes[1]] }, ROUTED), true, 'and the trunks order');
  assert.equal(formDiffers({ ...v, routes: [...v.routes, newRoute()] }, ROUTED), true, 'an added route');
  assert.equal(sameSettings(ROUTED, { ...ROUTED, routes: ROUTED.routes.map((r) => ({ ...r })) }), true);
  // Settings from a server that sends no routes read as none.
  const { routes: _, ...old } = SPAIN;
  assert.deepEqual(settingsToValues(old as DialplanSettings).routes, []);
});

test('a route body trims its text, splits its patterns and stops a strip that is no whole number', () => {
  assert.deepEqual(
    buildRouteBody({ name: ' mobiles ', patterns: ' _6X.\n\n_7X. ', strip: ' 2 ', prepend: ' +34 ', trunkIds: [2] }),
    { name: 'mobiles', patterns: ['_6X.', '_7X.'], strip: 2, prepend: '+34', trunkIds: [2] });
  assert.throws(
    () => buildDialplanBody({ ...settingsToValues(ROUTED), routes: [{ ...newRoute(), strip: 'x' }] }),
    (e: unknown) => e instanceof DialplanFormError && e.field === 'routes');
  // Empty names and patterns are the server's to refuse (its 422 names the route).
  assert.deepEqual(buildRouteBody(newRoute()), { name: '', patterns: [], strip: 0, prepend: '', trunkIds: [] });
});

test('a 422 about a route names the routes field', () => {
  const msg = 'routes: route 2 ("mobiles"): patterns: pattern "_6Q": unknown character (use digits, X Z N [ ] . !)';
  assert.equal(dialplanErrorField(msg), 'routes');
  assert.equal(errorDetail(msg, 'routes'), 'route 2 ("mobiles"): patterns: pattern "_6Q": unknown character (use digits, X Z N [ ] . !)');
  assert.equal(
    dialplanErrorField('Failed to deserialize the JSON body into the target type: routes[0].strip: invalid value: integer `-1`, expected u32'),
    'routes');
});
