// Inbound numbers page (issue 11): the DIDs with their destination (the
// agent by name and extension, from /api/agents) and trunk (by name, from
// /api/telephony/trunks), the create / edit dialog and delete. Admins only.
import { h, mount } from '../../dom';
import { t, tDynamic, type Key } from '../../i18n';
import { api, ApiError } from '../../api';
import type { View } from '../../router';
import { confirmDialog, openDialog } from '../../dialogs';
import { errorBox, field, pageHeader } from '../common';
import {
  buildDidBody, didErrorField, didToValues, DidFormError, newDidValues, numberKind, DESTINATION_TYPES,
  type AgentChoice, type Did, type DidFormValues,
} from '../../dids';
import type { Trunk } from '../../trunks';

/** What the page joins DIDs with; either may be missing when its request failed. */
interface Lookups {
  agents: AgentChoice[] | null;
  trunks: Trunk[] | null;
}

async function loadLookups(): Promise<Lookups> {
  // The list is still useful without the names: a failed lookup shows the
  // raw extension or trunk id instead of hiding the DIDs.
  const [agents, trunks] = await Promise.all([
    api.agents({ hasSip: 'true', limit: 500, order: 'name' })
      .then((r) => r.agents.flatMap((u) => (u.sip ? [{ id: u.id, name: u.name, extension: u.sip.extension, active: u.active }] : [])))
      .catch(() => null),
    api.trunks({ limit: 500, order: 'name' }).then((r) => r.trunks).catch(() => null),
  ]);
  return { agents, trunks };
}

function kindBadge(number: string): HTMLElement {
  const kind = numberKind(number);
  return h('span', { class: 'badge badge-neutral', testid: 'did-kind', 'data-kind': kind }, tDynamic('didKind', kind));
}

function destinationCell(d: Did, lk: Lookups): HTMLElement {
  if (d.destinationType !== 'agent') {
    return h('td', { testid: 'did-destination', 'data-type': d.destinationType },
      h('span', { class: 'badge badge-warn' }, tDynamic('destType', d.destinationType)));
  }
  const agent = lk.agents?.find((a) => a.extension === d.destination);
  return h('td', { testid: 'did-destination', 'data-type': 'agent', 'data-extension': d.destination },
    agent
      ? [h('strong', { testid: 'did-agent-name' }, agent.name), ' ', h('span', { class: 'muted mono' }, `(${d.destination})`),
        agent.active ? null : h('div', { class: 'muted small' }, t('dids.inactiveAgent'))]
      : [h('span', { class: 'mono' }, d.destination),
        // Only when the list loaded: then a missing extension is a real problem (calls are refused 404).
        lk.agents ? h('div', { class: 'small text-bad', testid: 'did-agent-missing' }, t('dids.unknownAgent', { ext: d.destination })) : null]);
}

function trunkName(id: number | null, lk: Lookups): string {
  if (id === null) return t('dids.anyTrunk');
  return lk.trunks?.find((tr) => tr.id === id)?.name ?? t('dids.unknownTrunk', { id });
}

export function didsView(): View {
  return {
    render(root) {
      const tableBox = h('div', { testid: 'dids-table-box' }, t('common.loading'));
      let lookups: Lookups = { agents: null, trunks: null };

      const load = async () => {
        try {
          const [list, lk] = await Promise.all([api.dids(), loadLookups()]);
          lookups = lk;
          mount(tableBox, table(list.dids));
        } catch (err) {
          mount(tableBox, errorBox(err));
        }
      };

      const act = async (fn: () => Promise<void>) => {
        try {
          await fn();
        } catch (err) {
          const msg = err instanceof ApiError ? err.message : String(err);
          await confirmDialog(t('common.error', { msg }), t('common.close'));
        }
        void load();
      };

      const table = (dids: Did[]) => {
        if (!dids.length) return h('p', { class: 'empty', testid: 'dids-empty' }, t('dids.empty'));
        return h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'dids-table' },
          h('thead', null, h('tr', null,
            h('th', { scope: 'col' }, t('dids.number')),
            h('th', { scope: 'col' }, t('dids.description')),
            h('th', { scope: 'col' }, t('dids.destination')),
            h('th', { scope: 'col' }, t('dids.trunk')),
            h('th', { scope: 'col' }, t('dids.enabled')),
            h('th', { scope: 'col', class: 'actions-col' }, t('common.actions')))),
          h('tbody', null, dids.map((d) => h('tr', { testid: 'did-row', 'data-id': d.id, 'data-number': d.number },
            h('td', null, h('strong', { class: 'mono', testid: 'did-number' }, d.number), ' ', kindBadge(d.number)),
            h('td', { testid: 'did-description' }, d.description ?? ''),
            destinationCell(d, lookups),
            h('td', { testid: 'did-trunk', 'data-trunk-id': d.trunkId ?? '', class: d.trunkId === null ? 'muted' : undefined }, trunkName(d.trunkId, lookups)),
            h('td', null, h('span', { class: `badge ${d.enabled ? 'badge-ok' : 'badge-neutral'}`, testid: 'did-enabled', 'data-enabled': String(d.enabled) },
              t(d.enabled ? 'dids.on' : 'dids.off'))),
            h('td', null, h('div', { class: 'row-actions' },
              h('button', { type: 'button', class: 'btn btn-small', testid: 'did-edit', onclick: () => void act(async () => {
                const [fresh, lk] = await Promise.all([api.did(d.id), loadLookups()]);
                openDidForm(fresh.did, lk, () => void load());
              }) }, t('dids.edit')),
              h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', testid: 'did-delete', onclick: () => void act(async () => {
                if (!(await confirmDialog(t('dids.confirmDelete', { number: d.number }), t('dids.delete'), true))) return;
                await api.deleteDid(d.id);
              }) }, t('dids.delete')))))))));
      };

      const addBtn = h('button', {
        type: 'button', class: 'btn btn-primary', testid: 'add-did',
        onclick: () => void act(async () => openDidForm(null, await loadLookups(), () => void load())),
      }, '+ ', t('dids.add'));

      root.append(pageHeader('dids.title', 'dids.subtitle', addBtn), h('section', { class: 'card' }, tableBox));
      void load();
    },
  };
}

/** The create / edit dialog; it closes once the server has saved, and stays open with the server's error otherwise. */
function openDidForm(initial: Did | null, lk: Lookups, changed: () => void): void {
  const uid = Math.random().toString(36).slice(2, 8);
  const v = initial ? didToValues(initial) : newDidValues();

  const number = h('input', { testid: 'did-form-number', autocomplete: 'off', spellcheck: 'false', class: 'mono', maxlength: 64, value: v.number });
  const description = h('input', { testid: 'did-form-description', autocomplete: 'off', maxlength: 200, value: v.description });
  const destinationType = h('select', { testid: 'did-form-destinationType' },
    DESTINATION_TYPES.map((d) => h('option', { value: d }, tDynamic('destType', d))));
  destinationType.value = v.destinationType;

  const agents = lk.agents ?? [];
  const destination = h('select', { testid: 'did-form-destination' },
    h('option', { value: '' }, agents.length ? t('didForm.chooseAgent') : t('didForm.noAgents')),
    agents.map((a) => h('option', { value: a.extension }, `${a.name} (${a.extension})${a.active ? '' : ` — ${t('dids.inactiveAgent')}`}`)),
    // A saved extension no listed agent has stays choosable, so saving other fields keeps it.
    v.destination && !agents.some((a) => a.extension === v.destination)
      ? h('option', { value: v.destination }, `${v.destination} — ${t('dids.unknownAgent', { ext: v.destination })}`)
      : null);
  destination.value = v.destination;

  const trunks = lk.trunks ?? [];
  const trunkId = h('select', { testid: 'did-form-trunkId' },
    h('option', { value: '' }, t('dids.anyTrunk')),
    trunks.map((tr) => h('option', { value: tr.id }, tr.name)),
    v.trunkId && !trunks.some((tr) => String(tr.id) === v.trunkId)
      ? h('option', { value: v.trunkId }, t('dids.unknownTrunk', { id: v.trunkId }))
      : null);
  trunkId.value = v.trunkId;

  const enabled = h('input', { type: 'checkbox', testid: 'did-form-enabled', id: `did-enabled-${uid}`, checked: v.enabled });
  const inputs: Record<keyof DidFormValues, HTMLInputElement | HTMLSelectElement> = { number, description, destinationType, destination, trunkId, enabled };

  // What the typed number is read as, while typing (the server has the last word).
  const kindLine = h('p', { class: 'hint', testid: 'did-form-kind', 'aria-live': 'polite' });
  const showKind = () => {
    const kind = numberKind(number.value);
    kindLine.dataset.kind = number.value.trim() ? kind : '';
    kindLine.textContent = number.value.trim() ? t('didForm.readAs', { kind: tDynamic('didKind', kind) }) : '';
  };
  number.addEventListener('input', showKind);
  showKind();

  const agentField = field(t('didForm.agent'), destination);
  const showDestination = () => {
    agentField.hidden = destinationType.value !== 'agent';
  };
  destinationType.addEventListener('change', showDestination);
  showDestination();

  const titleId = `did-form-title-${uid}`;
  const error = h('p', { class: 'alert alert-error', role: 'alert', testid: 'did-form-error', hidden: true });
  const clearInvalid = () => {
    for (const el of Object.values(inputs)) el.removeAttribute('aria-invalid');
  };
  const showError = (msg: string, fieldName: keyof DidFormValues | null, err: unknown) => {
    clearInvalid();
    error.textContent = msg;
    error.dataset.field = fieldName ?? '';
    error.dataset.code = err instanceof ApiError ? err.code : '';
    error.dataset.status = err instanceof ApiError ? String(err.status) : '';
    error.hidden = false;
    if (!fieldName) return;
    inputs[fieldName].setAttribute('aria-invalid', 'true');
    inputs[fieldName].focus();
  };
  // Errors name the field by its label in the form, not by its API name.
  const LABELS: Record<keyof DidFormValues, Key> = {
    number: 'didForm.number', description: 'didForm.description', destinationType: 'didForm.destinationType',
    destination: 'didForm.agent', trunkId: 'didForm.trunk', enabled: 'didForm.enabled',
  };
  const failed = (err: unknown) => {
    if (err instanceof DidFormError) {
      showError(t('didForm.invalid', { field: t(LABELS[err.field]), msg: err.message.slice(err.field.length + 2) }), err.field, err);
    } else if (err instanceof ApiError && err.code === 'duplicate_did') {
      showError(t('didForm.duplicate'), 'number', err);
    } else if (err instanceof ApiError && (err.status === 422 || err.status === 400)) {
      // A refused value (422; 400 for a body the server could not take): its message names the field.
      const f = didErrorField(err.message);
      showError(f ? t('didForm.invalid', { field: t(LABELS[f]), msg: err.message.slice(err.message.indexOf(':') + 1).trim() }) : t('common.error', { msg: err.message }), f, err);
    } else {
      showError(t('common.error', { msg: err instanceof Error ? err.message : String(err) }), null, err);
    }
  };

  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'did-form-submit' }, t(initial ? 'didForm.submitSave' : 'didForm.submitCreate'));
  const read = (): DidFormValues => ({
    number: number.value, description: description.value, destinationType: destinationType.value,
    destination: destination.value, trunkId: trunkId.value, enabled: enabled.checked,
  });

  openDialog((close) => [
    h('form', {
      class: 'did-form', testid: 'did-form', novalidate: true,
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        error.hidden = true;
        clearInvalid();
        submit.disabled = true;
        try {
          const body = buildDidBody(read());
          if (initial) await api.updateDid(initial.id, body);
          else await api.createDid(body);
          changed();
          close();
        } catch (err) {
          failed(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h2', { id: titleId, testid: 'did-form-title' }, initial ? t('didForm.editTitle', { number: initial.number }) : t('didForm.newTitle')),
    field(t('didForm.number'), number, t('didForm.numberHint')),
    kindLine,
    field(t('didForm.description'), description),
    h('div', { class: 'field-row' }, field(t('didForm.destinationType'), destinationType), agentField),
    field(t('didForm.trunk'), trunkId, t('didForm.trunkHint')),
    h('label', { class: 'check', for: enabled.id }, enabled, ' ', t('didForm.enabled')),
    error,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn', testid: 'did-form-cancel', onclick: close }, t('common.cancel')),
      submit)),
  ], 'did-dialog', titleId);
  number.focus();
}
