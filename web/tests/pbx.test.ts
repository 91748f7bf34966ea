// Unit tests of the PBX configuration page's logic (src/pbx.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileSize, noConfigReason, reloadState } from '../src/pbx.ts';

test('the last reload reads as none, ok or failed', () => {
  assert.equal(reloadState(null), 'none');
  assert.equal(reloadState(undefined), 'none');
  assert.equal(reloadState({ at: '2026-01-01T00:00:00Z', ok: true, message: 'Module Reloaded.' }), 'ok');
  assert.equal(reloadState({ at: '2026-01-01T00:00:00Z', ok: false, message: 'not connected' }), 'failed');
});

test('the reason a mode has no PBX configuration', () => {
  assert.equal(noConfigReason('builtin'), 'builtin');
  assert.equal(noConfigReason('relay'), 'relay');
  assert.equal(noConfigReason('asterisk'), 'other');
  assert.equal(noConfigReason(null), 'other');
  assert.equal(noConfigReason(undefined), 'other');
});

test('a file counts its lines (a final newline ends the last one) and UTF-8 bytes', () => {
  assert.deepEqual(fileSize(''), { lines: 0, bytes: 0 });
  assert.deepEqual(fileSize('a'), { lines: 1, bytes: 1 });
  assert.deepEqual(fileSize('a\n'), { lines: 1, bytes: 2 });
  assert.deepEqual(fileSize('[x]\ntype=aor\n\n'), { lines: 3, bytes: 14 });
  assert.deepEqual(fileSize('ñ\n'), { lines: 1, bytes: 3 });
});
