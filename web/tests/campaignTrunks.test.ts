// Unit tests of the campaign trunks panel's logic (src/campaignTrunks.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildCampaignTrunksBody, CampaignTrunksFormError, newRow, parseCampaignId, rowsFromList,
} from '../src/campaignTrunks.ts';

test('a campaign id is a positive whole number', () => {
  assert.equal(parseCampaignId(' 7 '), 7);
  for (const bad of ['', '0', '-3', '2.5', 'x', '1e3', '9'.repeat(16)]) assert.equal(parseCampaignId(bad), null, bad);
});

test('a saved list fills the rows and comes back as the same body', () => {
  const list = { campaignId: 7, total: 2, trunks: [{ trunkId: 3, trunkName: 'B', priority: 1 }, { trunkId: 1, trunkName: 'A', priority: 20 }] };
  const rows = rowsFromList(list);
  assert.deepEqual(rows, [{ trunkId: '3', priority: '1' }, { trunkId: '1', priority: '20' }]);
  assert.deepEqual(buildCampaignTrunksBody(rows), { trunks: [{ trunkId: 3, priority: 1 }, { trunkId: 1, priority: 20 }] });
});

test('rows without a trunk are left out; a priority that is no whole number names its row', () => {
  assert.deepEqual(buildCampaignTrunksBody([{ trunkId: '', priority: '5' }, { trunkId: '2', priority: ' 0 ' }]), { trunks: [{ trunkId: 2, priority: 0 }] });
  assert.deepEqual(buildCampaignTrunksBody([]), { trunks: [] }, 'an empty list removes the campaign\'s own trunks');
  assert.throws(
    () => buildCampaignTrunksBody([{ trunkId: '2', priority: '1' }, { trunkId: '4', priority: 'x' }]),
    (e: unknown) => e instanceof CampaignTrunksFormError && e.row === 1);
  // Duplicates go to the server, whose 422 says so.
  assert.equal(buildCampaignTrunksBody([{ trunkId: '2', priority: '1' }, { trunkId: '2', priority: '2' }]).trunks.length, 2);
});

test('a new row comes after the last one', () => {
  assert.deepEqual(newRow([]), { trunkId: '', priority: '10' });
  assert.deepEqual(newRow([{ trunkId: '1', priority: '15' }]), { trunkId: '', priority: '25' });
  assert.deepEqual(newRow([{ trunkId: '1', priority: '995' }]), { trunkId: '', priority: '1000' });
  assert.deepEqual(newRow([{ trunkId: '1', priority: 'x' }]), { trunkId: '', priority: '10' });
});
