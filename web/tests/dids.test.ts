// Unit tests of the DID form's logic (src/dids.ts): what kind of number an
// entry is, the form to a DidInput body, and which field a 422 names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDidBody, didErrorField, didToValues, DidFormError, newDidValues, numberKind, type Did } from '../src/dids.ts';

test('numbers are read as the server ranks them', () => {
  const cases: [string, string][] = [
    ['+34911234567', 'exact'], ['34911234567', 'exact'], [' 600 ', 'exact'],
    ['_3491XXXXXXX', 'pattern'], ['_[1-4]X.', 'pattern'],
    ['*', 'any'], [' * ', 'any'],
    ['12ab', 'unknown'], ['+', 'unknown'], ['', 'unknown'], ['**', 'unknown'],
  ];
  for (const [n, kind] of cases) assert.equal(numberKind(n), kind, JSON.stringify(n));
});

test('a new agent DID sends every field, trimmed, any trunk as null', () => {
  const body = buildDidBody({ ...newDidValues(), number: ' +34911234567 ', description: '  Sales  ', destination: '1001' });
  assert.deepEqual(body, {
    number: '+34911234567', description: 'Sales', destinationType: 'agent', destination: '1001', trunkId: null, enabled: true,
  });
});

test('reject sends no destination; a trunk is sent as its id; an empty description clears it', () => {
  const body = buildDidBody({ number: '*', description: '', destinationType: 'reject', destination: '1001', trunkId: '7', enabled: false });
  assert.deepEqual(body, { number: '*', description: null, destinationType: 'reject', trunkId: 7, enabled: false });
});

test('the form stops an empty number and an agent DID without an agent', () => {
  assert.throws(() => buildDidBody({ ...newDidValues(), number: '  ', destination: '1001' }), (e: unknown) => e instanceof DidFormError && e.field === 'number');
  assert.throws(() => buildDidBody({ ...newDidValues(), number: '600' }), (e: unknown) => e instanceof DidFormError && e.field === 'destination');
  // The number's notation is the server's to judge: a bad one is sent.
  assert.equal(buildDidBody({ ...newDidValues(), number: '12ab', destination: '1001' }).number, '12ab');
});

test('a saved DID fills the form and sends back what it holds', () => {
  const d: Did = {
    id: 3, number: '_3491XXXXXXX', description: null, destinationType: 'agent', destination: '1002', trunkId: 4, enabled: true,
    createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z',
  };
  const v = didToValues(d);
  assert.deepEqual(v, { number: '_3491XXXXXXX', description: '', destinationType: 'agent', destination: '1002', trunkId: '4', enabled: true });
  assert.deepEqual(buildDidBody(v), { number: d.number, description: null, destinationType: 'agent', destination: '1002', trunkId: 4, enabled: true });
  assert.equal(didToValues({ ...d, trunkId: null }).trunkId, '');
});

test('a 422 message names its form field', () => {
  assert.equal(didErrorField('number: "12ab": digits with an optional leading +, a _pattern, or *'), 'number');
  assert.equal(didErrorField('destination: an agent\'s extension (letters, digits, . _ -)'), 'destination');
  assert.equal(didErrorField('trunkId: no trunk 9'), 'trunkId');
  assert.equal(didErrorField('destinationType: "queue": agent or reject'), 'destinationType');
  assert.equal(didErrorField('name: nope'), null);
  assert.equal(didErrorField('unknown field `foo`'), null);
});
