// A campaign's own trunks (docs/API.md "Campaign trunks") without the DOM:
// the campaign id typed, the rows of the editor to a PUT body and back.
// The panel is src/views/admin/campaignTrunks.ts.

export interface CampaignTrunk {
  trunkId: number;
  trunkName: string;
  /** Lower first. */
  priority: number;
}

export interface CampaignTrunkList {
  campaignId: number;
  total: number;
  trunks: CampaignTrunk[];
}

export interface CampaignTrunksBody {
  trunks: { trunkId: number; priority: number }[];
}

/** One row of the editor as its inputs hold it. */
export interface CampaignTrunkRow {
  /** The selected trunk's id, '' while none is chosen. */
  trunkId: string;
  priority: string;
}

/** A check the panel makes before sending; `row` counts from 0 (null: the campaign id). */
export class CampaignTrunksFormError extends Error {
  constructor(
    readonly row: number | null,
    message: string,
  ) {
    super(message);
  }
}

/** The campaign id typed: a positive whole number, else null. */
export function parseCampaignId(text: string): number | null {
  const v = text.trim();
  if (!/^\d{1,15}$/.test(v)) return null;
  const n = Number(v);
  return n >= 1 ? n : null;
}

export function rowsFromList(list: CampaignTrunkList): CampaignTrunkRow[] {
  return list.trunks.map((tr) => ({ trunkId: String(tr.trunkId), priority: String(tr.priority) }));
}

/** A new row: no trunk yet, the next priority after the last row's (10 for the first). */
export function newRow(rows: CampaignTrunkRow[]): CampaignTrunkRow {
  const last = rows.length ? Number(rows[rows.length - 1].priority) : NaN;
  return { trunkId: '', priority: Number.isInteger(last) && last >= 0 ? String(Math.min(last + 10, 1000)) : '10' };
}

/**
 * The PUT body: every row with a trunk chosen, in order. A priority that
 * is no whole number is stopped here; a trunk listed twice or a priority
 * out of range is the server's to refuse (its 422 names the field).
 */
export function buildCampaignTrunksBody(rows: CampaignTrunkRow[]): CampaignTrunksBody {
  const trunks: CampaignTrunksBody['trunks'] = [];
  rows.forEach((r, i) => {
    if (r.trunkId === '') return;
    const p = r.priority.trim();
    if (!/^\d{1,9}$/.test(p)) throw new CampaignTrunksFormError(i, 'a whole number, 0 or more');
    trunks.push({ trunkId: Number(r.trunkId), priority: Number(p) });
  });
  return { trunks };
}
