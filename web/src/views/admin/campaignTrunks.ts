// Campaign trunks panel of the Trunks page (issue 11): a campaign's own
// trunks, in their priority order, used instead of the dial plan's for
// the calls originated with its campaignId. The admin types a campaign id,
// sees its list, edits the rows (trunk, priority), adds and removes, and
// saves the whole list (PUT); the server's refusal is shown and the rows
// keep what was typed.
import { h, mount } from '../../dom';
import { t } from '../../i18n';
import { api, ApiError } from '../../api';
import { field } from '../common';
import {
  buildCampaignTrunksBody, newRow, parseCampaignId, rowsFromList, CampaignTrunksFormError,
  type CampaignTrunkList, type CampaignTrunkRow,
} from '../../campaignTrunks';

export function campaignTrunksPanel(): HTMLElement {
  const idInput = h('input', { testid: 'campaign-trunks-id', inputmode: 'numeric', class: 'mono', maxlength: 15, autocomplete: 'off' }) as HTMLInputElement;
  const body = h('div', { testid: 'campaign-trunks-body' });
  const message = h('p', { role: 'status', 'aria-live': 'polite', testid: 'campaign-trunks-message', hidden: true });
  const say = (tone: 'ok' | 'error', text: string, err?: unknown) => {
    message.className = `alert alert-${tone}`;
    message.textContent = text;
    message.dataset.code = err instanceof ApiError ? err.code : '';
    message.dataset.status = err instanceof ApiError ? String(err.status) : '';
    message.hidden = false;
  };
  const errorText = (err: unknown) => t('common.error', { msg: err instanceof Error ? err.message : String(err) });

  /** The campaign shown, its rows and the trunks to choose from. */
  let campaign: number | null = null;
  let rows: CampaignTrunkRow[] = [];
  let trunks: { id: number; name: string }[] = [];
  let readers: (() => CampaignTrunkRow)[] = [];
  const read = () => readers.map((r) => r());

  const render = () => {
    readers = [];
    if (campaign === null) {
      mount(body);
      return;
    }
    const lines = rows.map((r, i) => {
      const known = trunks.some((tr) => String(tr.id) === r.trunkId);
      const select = h('select', { testid: `campaign-trunks-trunk-${i}`, 'aria-label': t('campaignTrunks.trunk') },
        h('option', { value: '' }, t('campaignTrunks.choose')),
        trunks.map((tr) => h('option', { value: String(tr.id) }, tr.name)),
        r.trunkId && !known ? h('option', { value: r.trunkId }, `#${r.trunkId}`) : null) as HTMLSelectElement;
      select.value = r.trunkId;
      const priority = h('input', { testid: `campaign-trunks-priority-${i}`, value: r.priority, inputmode: 'numeric', class: 'mono', maxlength: 4,
        'aria-label': t('campaignTrunks.priority') }) as HTMLInputElement;
      readers.push(() => ({ trunkId: select.value, priority: priority.value }));
      return h('tr', { testid: 'campaign-trunks-row' },
        h('td', null, select),
        h('td', { class: 'num' }, priority),
        h('td', null, h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', testid: `campaign-trunks-remove-${i}`, onclick: () => {
          rows = read();
          rows.splice(i, 1);
          render();
        } }, t('campaignTrunks.remove'))));
    });
    const add = h('button', { type: 'button', class: 'btn btn-small', testid: 'campaign-trunks-add', onclick: () => {
      rows = read();
      rows.push(newRow(rows));
      render();
    } }, t('campaignTrunks.add'));
    const save = h('button', { type: 'button', class: 'btn btn-primary', testid: 'campaign-trunks-save', onclick: async () => {
      if (campaign === null) return;
      message.hidden = true;
      rows = read();
      let payload;
      try {
        payload = buildCampaignTrunksBody(rows);
      } catch (err) {
        if (err instanceof CampaignTrunksFormError) say('error', t('campaignTrunks.wholeNumber', { n: (err.row ?? 0) + 1 }));
        return;
      }
      save.disabled = true;
      try {
        const saved = await api.saveCampaignTrunks(campaign, payload);
        show(saved);
        say('ok', t('campaignTrunks.saved', { id: saved.campaignId, n: saved.total }));
      } catch (err) {
        save.disabled = false;
        say('error', errorText(err), err);
      }
    } }, t('campaignTrunks.save'));
    mount(body,
      h('p', { class: 'muted small', testid: 'campaign-trunks-summary', 'data-campaign': campaign, 'data-total': rows.length },
        rows.length ? t('campaignTrunks.summary', { id: campaign }) : t('campaignTrunks.none', { id: campaign })),
      rows.length ? h('table', { class: 'table campaign-trunks-table', testid: 'campaign-trunks-table' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, t('campaignTrunks.trunk')),
          h('th', { scope: 'col', class: 'num' }, t('campaignTrunks.priority')),
          h('th', { scope: 'col' }))),
        h('tbody', null, lines)) : null,
      h('div', { class: 'form-actions' }, add, h('span', { class: 'spacer' }), save));
  };

  const show = (list: CampaignTrunkList) => {
    campaign = list.campaignId;
    rows = rowsFromList(list);
    render();
  };

  const load = async () => {
    message.hidden = true;
    const id = parseCampaignId(idInput.value);
    if (id === null) {
      say('error', t('campaignTrunks.badId'));
      idInput.setAttribute('aria-invalid', 'true');
      return;
    }
    idInput.removeAttribute('aria-invalid');
    try {
      const [list, all] = await Promise.all([api.campaignTrunks(id), api.trunks({ limit: 500, order: 'priority' })]);
      trunks = all.trunks.map((tr) => ({ id: tr.id, name: tr.name }));
      show(list);
    } catch (err) {
      say('error', errorText(err), err);
    }
  };

  const form = h('form', { class: 'toolbar campaign-trunks-toolbar', novalidate: true, onsubmit: (ev: Event) => {
    ev.preventDefault();
    void load();
  } },
  field(t('campaignTrunks.campaignId'), idInput),
  h('button', { type: 'submit', class: 'btn', testid: 'campaign-trunks-load' }, t('campaignTrunks.load')));

  return h('section', { class: 'card campaign-trunks', testid: 'campaign-trunks' },
    h('h2', null, t('campaignTrunks.title')),
    h('p', { class: 'hint' }, t('campaignTrunks.hint')),
    form, body, message);
}
