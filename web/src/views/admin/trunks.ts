// Trunks page (issue 11, seeds/003): the list with live registration state
// and per-trunk counters, the six-tab form (create and edit), the PJSIP
// preview, test connection, force register and delete. Admins only.
import { h, mount, formatDateTime } from '../../dom';
import { t, tDynamic, locale, type Key } from '../../i18n';
import { api, ApiError } from '../../api';
import type { View } from '../../router';
import { confirmDialog, openDialog } from '../../dialogs';
import { errorBox, field, pageHeader, pager } from '../common';
import { campaignTrunksPanel } from './campaignTrunks';
import {
  actionOutcome, applyPreset, buildBody, errorField, FormError, newTrunkValues, tabOfField, trunkToValues,
  DTMF_MODES, KINDS, PROVIDERS, SESSION_TIMERS, STATUSES, TABS, TRANSPORTS,
  type BoolField, type Tab, type TextField, type Trunk, type TrunkFormValues, type TrunkRegistration, type TrunkTestResult,
} from '../../trunks';

const LIMIT = 50;

function statusBadge(status: string): HTMLElement {
  const tone = status === 'active' ? 'ok' : status === 'maintenance' ? 'warn' : status === 'error' ? 'bad' : 'neutral';
  return h('span', { class: `badge badge-${tone}`, testid: 'trunk-status', 'data-status': status }, tDynamic('trunkStatus', status));
}

function registrationCell(tr: Trunk): HTMLElement {
  const at = (iso: string | null) => formatDateTime(iso, locale());
  const lastError = tr.lastError ? t('trunks.lastError', { at: at(tr.lastErrorAt), msg: tr.lastError }) : '';
  const badge = !tr.sendsRegistration
    ? h('span', { class: 'badge badge-neutral' }, t('trunks.noRegistration'))
    : tr.registered
      ? h('span', { class: 'badge badge-ok' }, h('span', { class: 'dot dot-ok', 'aria-hidden': 'true' }), t('trunks.registered'))
      : h('span', { class: `badge ${tr.lastError ? 'badge-bad' : 'badge-neutral'}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), t('trunks.notRegistered'));
  return h('div', {
    testid: 'trunk-registration', 'data-registered': tr.sendsRegistration ? String(tr.registered) : 'none', title: lastError || undefined,
  },
  badge,
  tr.lastRegisteredAt ? h('div', { class: 'muted small', testid: 'trunk-last-registered' }, t('trunks.lastRegistered', { at: at(tr.lastRegisteredAt) })) : null,
  tr.lastError ? h('div', { class: 'small trunk-error', testid: 'trunk-last-error' }, lastError) : null);
}

export function trunksView(): View {
  return {
    render(root) {
      let offset = 0;
      let reloadTimer: number | null = null;
      const tableBox = h('div', { testid: 'trunks-table-box' }, t('common.loading'));
      const resultPanel = h('section', { class: 'card trunk-result', testid: 'trunk-result', hidden: true, 'aria-live': 'polite' });
      const search = h('input', { type: 'search', testid: 'trunks-search', placeholder: t('trunks.searchPlaceholder'), 'aria-label': t('common.search') });
      const status = h('select', { testid: 'trunks-filter-status', 'aria-label': t('trunks.filterStatus') },
        h('option', { value: '' }, `${t('trunks.filterStatus')}: ${t('common.all')}`),
        STATUSES.map((s) => h('option', { value: s }, tDynamic('trunkStatus', s))));

      const load = async () => {
        try {
          const list = await api.trunks({ search: search.value.trim(), status: status.value, limit: LIMIT, offset, order: 'priority' });
          mount(tableBox, table(list.trunks), pager(list.total, offset, LIMIT, (o) => {
            offset = o;
            void load();
          }));
        } catch (err) {
          mount(tableBox, errorBox(err));
        }
      };
      const reloadSoon = () => {
        if (reloadTimer !== null) window.clearTimeout(reloadTimer);
        reloadTimer = window.setTimeout(() => {
          reloadTimer = null;
          void load();
        }, 250);
      };

      // A later click owns the panel: an earlier answer arriving after it is dropped.
      let resultSeq = 0;
      const showResult = (action: 'test' | 'force', tr: Trunk, run: () => Promise<HTMLElement[]>) => {
        const seq = ++resultSeq;
        const title = h('h2', null, t(action === 'test' ? 'trunks.result.test' : 'trunks.result.force', { name: tr.name }));
        const close = h('button', { type: 'button', class: 'btn btn-small', testid: 'trunk-result-close', onclick: () => { resultPanel.hidden = true; } }, t('common.close'));
        const body = h('div', { testid: 'trunk-result-body' }, t('trunks.result.running'));
        resultPanel.dataset.action = action;
        resultPanel.dataset.trunkId = String(tr.id);
        resultPanel.dataset.outcome = 'running';
        mount(resultPanel, h('div', { class: 'trunk-result-head' }, title, close), body);
        resultPanel.hidden = false;
        void (async () => {
          try {
            const lines = await run();
            if (seq !== resultSeq) return;
            mount(body, ...lines);
            resultPanel.dataset.outcome = 'ok';
          } catch (err) {
            if (seq !== resultSeq) return;
            const outcome = err instanceof ApiError ? actionOutcome(err.status, err.code) : 'error';
            resultPanel.dataset.outcome = outcome;
            const msg = err instanceof Error ? err.message : String(err);
            mount(body, h('p', { class: `alert ${outcome === 'error' ? 'alert-error' : 'alert-warn'}`, testid: 'trunk-result-message' },
              outcome === 'error' ? t('trunks.result.error', { msg }) : t(`trunks.result.${outcome}` as Key)));
          }
          reloadSoon();
        })();
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

      const table = (trunks: Trunk[]) => {
        if (!trunks.length) return h('p', { class: 'empty', testid: 'trunks-empty' }, t('common.none'));
        return h('div', { class: 'table-wrap' }, h('table', { class: 'table trunks-table', testid: 'trunks-table' },
          h('thead', null, h('tr', null,
            h('th', { scope: 'col' }, t('trunks.name')),
            h('th', { scope: 'col' }, t('trunks.provider')),
            h('th', { scope: 'col' }, t('trunks.address')),
            h('th', { scope: 'col' }, t('trunks.status'), ' / ', t('trunks.registration')),
            h('th', { scope: 'col', class: 'num' }, t('trunks.channels')),
            h('th', { scope: 'col', class: 'num' }, t('trunks.priority')),
            h('th', { scope: 'col', class: 'num', title: t('trunks.countersHint') }, t('trunks.counters'), h('div', { class: 'th-hint' }, t('trunks.countersHint'))),
            h('th', { scope: 'col', class: 'actions-col' }, t('common.actions')))),
          h('tbody', null, trunks.map((tr) => h('tr', { testid: 'trunk-row', 'data-id': tr.id, 'data-name': tr.name },
            h('td', null, h('strong', { testid: 'trunk-name' }, tr.name), tr.description ? h('div', { class: 'muted small' }, tr.description) : null),
            h('td', { testid: 'trunk-kind', 'data-kind': tr.kind, 'data-provider': tr.provider },
              tDynamic('trunkProvider', tr.provider), h('div', { class: 'muted small' }, tDynamic('trunkKind', tr.kind))),
            h('td', { class: 'mono', testid: 'trunk-address' }, `${tr.host}:${tr.port}`, h('div', { class: 'muted small' }, tr.transport.toUpperCase())),
            h('td', null, h('div', { class: 'trunk-state' }, statusBadge(tr.status), registrationCell(tr))),
            h('td', { class: 'num', testid: 'trunk-channels', 'data-value': tr.maxChannels }, tr.maxChannels === 0 ? t('trunks.unlimited') : tr.maxChannels),
            h('td', { class: 'num', testid: 'trunk-priority' }, tr.priority),
            h('td', { class: 'num mono nowrap', testid: 'trunk-counters', title: t('trunks.countersHint') },
              `${tr.totalCalls} / `, h('span', { class: 'text-ok' }, tr.successfulCalls), ' / ', h('span', { class: 'text-bad' }, tr.failedCalls)),
            h('td', null, h('div', { class: 'row-actions trunk-actions' },
              h('button', { type: 'button', class: 'btn btn-small', testid: 'trunk-edit', onclick: () => void act(async () => {
                const fresh = await api.trunk(tr.id);
                openTrunkForm(fresh.trunk, () => void load());
              }) }, t('trunks.edit')),
              h('button', { type: 'button', class: 'btn btn-small', testid: 'trunk-preview', onclick: () => void act(async () => {
                const p = await api.trunkPreview(tr.id);
                showPreview(tr.name, p.config, true);
              }) }, t('trunks.preview')),
              h('button', { type: 'button', class: 'btn btn-small', testid: 'trunk-test', onclick: () => showResult('test', tr, async () => testLines((await api.testTrunk(tr.id)).result)) }, t('trunks.test')),
              h('button', { type: 'button', class: 'btn btn-small', testid: 'trunk-force-register', onclick: () => showResult('force', tr, async () => registrationLines((await api.forceRegisterTrunk(tr.id)).registration)) }, t('trunks.forceRegister')),
              h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', testid: 'trunk-delete', onclick: () => void act(async () => {
                if (!(await confirmDialog(t('trunks.confirmDelete', { name: tr.name }), t('trunks.delete'), true))) return;
                await api.deleteTrunk(tr.id);
                if (resultPanel.dataset.trunkId === String(tr.id)) resultPanel.hidden = true;
              }) }, t('trunks.delete')))))))));
      };

      const addBtn = h('button', { type: 'button', class: 'btn btn-primary', testid: 'add-trunk', onclick: () => openTrunkForm(null, () => void load()) }, '+ ', t('trunks.add'));
      search.addEventListener('input', () => {
        offset = 0;
        reloadSoon();
      });
      status.addEventListener('change', () => {
        offset = 0;
        void load();
      });

      root.append(
        pageHeader('trunks.title', 'trunks.subtitle', addBtn),
        resultPanel,
        h('section', { class: 'card' }, h('div', { class: 'toolbar', role: 'search' }, search, status), tableBox),
        campaignTrunksPanel(),
      );
      void load();
      // Registration state and counters are written by the SIP side; there is
      // no trunk event on the socket, so the list is polled.
      const poll = window.setInterval(() => void load(), 10000);
      return () => {
        window.clearInterval(poll);
        if (reloadTimer !== null) window.clearTimeout(reloadTimer);
      };
    },
  };
}

function registrationLines(r: TrunkRegistration | null): HTMLElement[] {
  if (!r) return [];
  const at = (iso: string | null) => formatDateTime(iso, locale());
  const tone = r.state === 'registered' ? 'ok' : r.state === 'registering' ? 'warn' : r.state === 'unregistered' ? 'neutral' : 'bad';
  return [
    h('p', null, h('span', { class: `badge badge-${tone}`, testid: 'trunk-result-state', 'data-state': r.state }, t('trunks.result.regState', { state: tDynamic('regState', r.state) }))),
    h('ul', { class: 'trunk-result-list' },
      r.lastRegisteredAt ? h('li', null, t('trunks.lastRegistered', { at: at(r.lastRegisteredAt) })) : null,
      r.expiresAt ? h('li', null, t('trunks.result.expires', { at: at(r.expiresAt) })) : null,
      r.nextAttemptAt ? h('li', null, t('trunks.result.nextAttempt', { at: at(r.nextAttemptAt) })) : null,
      r.failures ? h('li', null, t('trunks.result.failures', { n: r.failures })) : null,
      r.lastError ? h('li', { class: 'trunk-error' }, t('trunks.result.error', { msg: r.lastError })) : null),
  ];
}

function testLines(res: TrunkTestResult): HTMLElement[] {
  const o = res.options;
  return [
    h('p', { testid: 'trunk-result-options', 'data-status': o ? o.status : '' },
      o ? t('trunks.result.options', { status: o.status, reason: o.reason, rtt: o.rttMs }) : t('trunks.result.noOptions')),
    ...registrationLines(res.registration),
    res.error ? h('p', { class: 'alert alert-error', testid: 'trunk-result-message' }, t('trunks.result.error', { msg: res.error })) : null,
  ].filter((x): x is HTMLElement => x !== null);
}

function previewBlock(config: string, saved: boolean, testid: string): HTMLElement[] {
  return [
    h('p', { class: 'muted small' }, saved ? `${t('trunks.previewSaved')} ` : '', t('trunks.previewMasked')),
    h('pre', { class: 'code-block trunk-preview', testid }, config),
  ];
}

function showPreview(name: string, config: string, saved: boolean): void {
  openDialog((close) => [
    h('h2', { id: 'trunk-preview-title' }, t('trunks.previewTitle', { name })),
    ...previewBlock(config, saved, 'trunk-preview-config'),
    h('div', { class: 'dialog-actions' }, h('button', { type: 'button', class: 'btn btn-primary', testid: 'trunk-preview-close', onclick: close }, t('common.close'))),
  ], 'trunk-preview-dialog', 'trunk-preview-title').classList.add('dialog-wide');
}

type Inputs = { [K in TextField]: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement } & { [K in BoolField]: HTMLInputElement };

/** The create / edit dialog. After a save it stays open on the saved trunk, showing the values the server kept. */
function openTrunkForm(initial: Trunk | null, changed: () => void): void {
  let saved: Trunk | null = initial;
  const uid = Math.random().toString(36).slice(2, 8);
  const text = (k: TextField, attrs: Record<string, unknown> = {}) => h('input', { testid: `trunk-form-${k}`, autocomplete: 'off', ...attrs });
  const num = (k: TextField) => text(k, { inputmode: 'numeric' });
  const select = (k: TextField, values: readonly string[], label: (v: string) => string) =>
    h('select', { testid: `trunk-form-${k}` }, values.map((v) => h('option', { value: v }, label(v))));
  const box = (k: BoolField) => h('input', { type: 'checkbox', testid: `trunk-form-${k}`, id: `trunk-${k}-${uid}` });
  const password = (k: TextField) => h('input', { type: 'password', testid: `trunk-form-${k}`, autocomplete: 'new-password' });
  const inputs: Inputs = {
    name: text('name', { maxlength: 100 }), description: text('description', { maxlength: 500 }),
    provider: select('provider', PROVIDERS, (v) => tDynamic('trunkProvider', v)),
    kind: select('kind', KINDS, (v) => tDynamic('trunkKind', v)),
    host: text('host', { maxlength: 255 }), port: num('port'),
    transport: select('transport', TRANSPORTS, (v) => v.toUpperCase()),
    status: select('status', STATUSES, (v) => tDynamic('trunkStatus', v)),
    maxChannels: num('maxChannels'), priority: num('priority'), codecs: text('codecs'),
    sendsAuth: box('sendsAuth'), outboundAuthUsername: text('outboundAuthUsername'), outboundAuthPassword: password('outboundAuthPassword'),
    outboundAuthRealm: text('outboundAuthRealm'), fromUser: text('fromUser'), fromDomain: text('fromDomain'),
    acceptsAuth: box('acceptsAuth'), inboundAuthUsername: text('inboundAuthUsername'), inboundAuthPassword: password('inboundAuthPassword'),
    sendsRegistration: box('sendsRegistration'), acceptsRegistrations: box('acceptsRegistrations'),
    registrationServerUri: text('registrationServerUri', { placeholder: 'sip:host:5060' }),
    registrationClientUri: text('registrationClientUri', { placeholder: 'sip:user@host' }),
    registrationExpiration: num('registrationExpiration'), registrationRetryInterval: num('registrationRetryInterval'),
    registrationMaxRetries: num('registrationMaxRetries'), registrationForbiddenRetryInterval: num('registrationForbiddenRetryInterval'),
    rtpSymmetric: box('rtpSymmetric'), forceRport: box('forceRport'), rewriteContact: box('rewriteContact'),
    qualifyFrequency: num('qualifyFrequency'), mediaAddress: text('mediaAddress'),
    dtmfMode: select('dtmfMode', DTMF_MODES, (v) => v),
    sessionTimers: select('sessionTimers', SESSION_TIMERS, (v) => v),
    sessionExpires: num('sessionExpires'), sessionMinSe: num('sessionMinSe'), pai: text('pai'),
    sendPai: box('sendPai'), trustRemotePartyId: box('trustRemotePartyId'),
    inboundMatch: h('textarea', { testid: 'trunk-form-inboundMatch', rows: 3, spellcheck: 'false' }),
    advancedSettings: h('textarea', { testid: 'trunk-form-advancedSettings', rows: 10, spellcheck: 'false', class: 'mono' }),
    clearOutboundPassword: box('clearOutboundPassword'), clearInboundPassword: box('clearInboundPassword'),
  };
  const isBool = (k: keyof TrunkFormValues): k is BoolField => inputs[k] instanceof HTMLInputElement && (inputs[k] as HTMLInputElement).type === 'checkbox';

  const check = (k: BoolField, label: Key) => h('label', { class: 'check', for: inputs[k].id }, inputs[k], ' ', t(label));
  const clearOutLabel = check('clearOutboundPassword', 'trunkForm.clearPassword');
  const clearInLabel = check('clearInboundPassword', 'trunkForm.clearPassword');
  const read = (): TrunkFormValues => {
    const v = {} as Record<string, string | boolean>;
    for (const k of Object.keys(inputs) as (keyof TrunkFormValues)[]) v[k] = isBool(k) ? inputs[k].checked : inputs[k].value;
    return v as unknown as TrunkFormValues;
  };
  const write = (v: TrunkFormValues) => {
    for (const k of Object.keys(inputs) as (keyof TrunkFormValues)[]) {
      if (isBool(k)) inputs[k].checked = v[k] as boolean;
      else inputs[k].value = v[k] as string;
    }
    inputs.outboundAuthPassword.disabled = inputs.clearOutboundPassword.checked;
    inputs.inboundAuthPassword.disabled = inputs.clearInboundPassword.checked;
  };
  const setSecrets = (tr: Trunk | null) => {
    // Write-only: the form never has the stored password, only whether one exists.
    (inputs.outboundAuthPassword as HTMLInputElement).placeholder = tr?.hasSecret ? t('trunkForm.unchanged') : '';
    (inputs.inboundAuthPassword as HTMLInputElement).placeholder = tr?.hasInboundSecret ? t('trunkForm.unchanged') : '';
    inputs.outboundAuthPassword.dataset.hasSecret = String(!!tr?.hasSecret);
    inputs.inboundAuthPassword.dataset.hasSecret = String(!!tr?.hasInboundSecret);
    clearOutLabel.hidden = !tr?.hasSecret;
    clearInLabel.hidden = !tr?.hasInboundSecret;
  };
  // "Remove" and a new password exclude each other.
  for (const [pw, clear] of [[inputs.outboundAuthPassword, inputs.clearOutboundPassword], [inputs.inboundAuthPassword, inputs.clearInboundPassword]] as const) {
    clear.addEventListener('change', () => {
      pw.disabled = clear.checked;
      if (clear.checked) pw.value = '';
    });
  }
  write(initial ? trunkToValues(initial) : newTrunkValues());
  setSecrets(initial);

  const title = h('h2', { id: `trunk-form-title-${uid}`, testid: 'trunk-form-title' });
  const setTitle = () => {
    title.textContent = saved ? t('trunkForm.editTitle', { name: saved.name }) : t('trunkForm.newTitle');
  };
  setTitle();
  const notice = h('p', { class: 'alert alert-ok', role: 'status', testid: 'trunk-form-notice', hidden: true });
  const error = h('p', { class: 'alert alert-error', role: 'alert', testid: 'trunk-form-error', hidden: true });
  const previewBox = h('div', { testid: 'trunk-form-preview-box', hidden: true });
  const showNotice = (msg: string, kind: string) => {
    notice.textContent = msg;
    notice.dataset.kind = kind;
    notice.hidden = false;
  };
  const clearInvalid = () => {
    for (const el of Object.values(inputs)) el.removeAttribute('aria-invalid');
  };

  // Kind presets: choosing a kind fills its preset fields (docs/API.md's
  // table, mirrored in trunks.ts), for a new trunk and for a saved one alike,
  // so what the form shows is what gets saved.
  inputs.kind.addEventListener('change', () => {
    write(applyPreset(read(), inputs.kind.value));
    showNotice(t('trunkForm.presetApplied', { kind: tDynamic('trunkKind', inputs.kind.value) }), 'preset');
  });
  // The default port follows TLS (5061) unless the admin chose another one.
  inputs.transport.addEventListener('change', () => {
    const p = inputs.port.value.trim();
    if (inputs.transport.value === 'tls' && p === '5060') inputs.port.value = '5061';
    else if (inputs.transport.value !== 'tls' && p === '5061') inputs.port.value = '5060';
  });
  // Typing a username means authenticating, as the server's default would (the box stays editable).
  for (const [user, flag] of [[inputs.outboundAuthUsername, inputs.sendsAuth], [inputs.inboundAuthUsername, inputs.acceptsAuth]] as const) {
    let was = user.value.trim() !== '';
    user.addEventListener('input', () => {
      const now = user.value.trim() !== '';
      if (now && !was) flag.checked = true;
      was = now;
    });
  }

  // Tabs (WAI-ARIA tabs pattern): every panel stays in the form, hidden ones too, so nothing typed is lost.
  const tabButtons = new Map<Tab, HTMLButtonElement>();
  const panels = new Map<Tab, HTMLElement>();
  const selectTab = (tab: Tab, focus = false) => {
    for (const [k, b] of tabButtons) {
      const on = k === tab;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      const panel = panels.get(k);
      if (panel) panel.hidden = !on;
    }
    if (focus) tabButtons.get(tab)?.focus();
  };
  const tabList = h('div', { class: 'tabs', role: 'tablist', 'aria-label': t('trunkForm.tabs') },
    TABS.map((tab, i) => {
      const b = h('button', {
        type: 'button', role: 'tab', class: 'tab', id: `trunk-tab-${tab}-${uid}`, testid: `trunk-tab-${tab}`, 'aria-controls': `trunk-panel-${tab}-${uid}`,
        onclick: () => selectTab(tab),
        onkeydown: (ev: KeyboardEvent) => {
          const step = ev.key === 'ArrowRight' ? 1 : ev.key === 'ArrowLeft' ? -1 : 0;
          if (!step) return;
          ev.preventDefault();
          selectTab(TABS[(i + step + TABS.length) % TABS.length], true);
        },
      }, t(`trunkForm.tab.${tab}` as Key));
      tabButtons.set(tab, b);
      return b;
    }));
  const panel = (tab: Tab, ...children: (HTMLElement | null)[]) => {
    const p = h('div', { role: 'tabpanel', class: 'tab-panel', id: `trunk-panel-${tab}-${uid}`, testid: `trunk-panel-${tab}`, 'aria-labelledby': `trunk-tab-${tab}-${uid}` }, children);
    panels.set(tab, p);
    return p;
  };
  const f = (k: TextField, label: Key, hint?: Key) => field(t(label), inputs[k], hint ? t(hint) : undefined);
  const row = (...children: HTMLElement[]) => h('div', { class: 'field-row' }, children);

  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'trunk-form-submit' });
  const setSubmit = () => {
    submit.textContent = saved ? t('trunkForm.submitSave') : t('trunkForm.submitCreate');
  };
  setSubmit();

  const showError = (msg: string, fieldName: string | null) => {
    clearInvalid();
    error.textContent = msg;
    error.dataset.field = fieldName ?? '';
    error.dataset.code = '';
    error.dataset.status = '';
    error.hidden = false;
    if (!fieldName) return;
    const tab = tabOfField(fieldName);
    if (tab) selectTab(tab);
    const el = inputs[fieldName as keyof TrunkFormValues];
    if (el) {
      el.setAttribute('aria-invalid', 'true');
      el.focus();
    }
  };
  const failed = (err: unknown) => {
    if (err instanceof FormError) {
      showError(t('trunkForm.invalid', { field: err.field, msg: err.message.slice(err.field.length + 2) }), err.field);
    } else if (err instanceof ApiError && err.code === 'duplicate_trunk_name') {
      showError(t('trunkForm.duplicate'), 'name');
    } else if (err instanceof ApiError && err.status === 422) {
      const fieldName = errorField(err.message);
      showError(fieldName ? t('trunkForm.invalid', { field: fieldName, msg: err.message.slice(err.message.indexOf(':') + 1).trim() }) : t('common.error', { msg: err.message }), fieldName);
    } else {
      showError(t('common.error', { msg: err instanceof Error ? err.message : String(err) }), null);
    }
    if (err instanceof ApiError) {
      error.dataset.code = err.code;
      error.dataset.status = String(err.status);
    }
  };

  const previewBtn = h('button', {
    type: 'button', class: 'btn', testid: 'trunk-form-preview',
    onclick: async () => {
      error.hidden = true;
      clearInvalid();
      previewBtn.disabled = true;
      try {
        // A saved trunk previews what is stored (its passwords are not in the
        // form); a new one previews the form as it would be created.
        const p = saved ? await api.trunkPreview(saved.id) : await api.previewTrunkInput(buildBody(read()));
        mount(previewBox, ...previewBlock(p.config, !!saved, 'trunk-form-preview-config'));
        previewBox.hidden = false;
      } catch (err) {
        failed(err);
      } finally {
        previewBtn.disabled = false;
      }
    },
  }, t('trunkForm.preview'));

  openDialog((close) => [
    h('form', {
      class: 'trunk-form', testid: 'trunk-form', novalidate: true,
      // A preview of values since changed would mislead: it goes until asked again.
      oninput: () => { previewBox.hidden = true; },
      onchange: () => { previewBox.hidden = true; },
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        error.hidden = true;
        notice.hidden = true;
        clearInvalid();
        submit.disabled = true;
        try {
          const body = buildBody(read());
          const res = saved ? await api.updateTrunk(saved.id, body) : await api.createTrunk(body);
          saved = res.trunk;
          // Show what the server kept (presets, defaults, normalised values).
          write(trunkToValues(saved));
          setSecrets(saved);
          setTitle();
          setSubmit();
          previewBox.hidden = true;
          showNotice(t('trunkForm.saved'), 'saved');
          changed();
        } catch (err) {
          failed(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    title,
    tabList,
    panel('basic',
      row(f('name', 'trunkForm.name'), f('host', 'trunkForm.host')),
      f('description', 'trunkForm.description'),
      row(f('provider', 'trunkForm.provider'), f('kind', 'trunkForm.kind')),
      h('p', { class: 'hint' }, t('trunkForm.kindHint')),
      row(f('port', 'trunkForm.port'), f('transport', 'trunkForm.transport')),
      row(f('maxChannels', 'trunkForm.maxChannels'), f('priority', 'trunkForm.priority')),
      row(f('status', 'trunkForm.status'), f('codecs', 'trunkForm.codecs', 'trunkForm.codecsHint'))),
    panel('auth',
      h('h3', null, t('trunkForm.outbound')),
      check('sendsAuth', 'trunkForm.sendsAuth'),
      row(f('outboundAuthUsername', 'trunkForm.outboundUser'), f('outboundAuthPassword', 'trunkForm.outboundPassword', 'trunkForm.passwordHint')),
      clearOutLabel,
      f('outboundAuthRealm', 'trunkForm.realm'),
      row(f('fromUser', 'trunkForm.fromUser'), f('fromDomain', 'trunkForm.fromDomain')),
      h('h3', null, t('trunkForm.inbound')),
      check('acceptsAuth', 'trunkForm.acceptsAuth'),
      row(f('inboundAuthUsername', 'trunkForm.inboundUser'), f('inboundAuthPassword', 'trunkForm.inboundPassword', 'trunkForm.passwordHint')),
      clearInLabel),
    panel('registration',
      check('sendsRegistration', 'trunkForm.sendsRegistration'),
      f('registrationServerUri', 'trunkForm.serverUri', 'trunkForm.serverUriHint'),
      f('registrationClientUri', 'trunkForm.clientUri', 'trunkForm.clientUriHint'),
      row(f('registrationExpiration', 'trunkForm.expiration'), f('registrationRetryInterval', 'trunkForm.retryInterval')),
      row(f('registrationMaxRetries', 'trunkForm.maxRetries'), f('registrationForbiddenRetryInterval', 'trunkForm.forbiddenRetry')),
      check('acceptsRegistrations', 'trunkForm.acceptsRegistrations')),
    panel('media',
      check('rtpSymmetric', 'trunkForm.rtpSymmetric'),
      check('forceRport', 'trunkForm.forceRport'),
      check('rewriteContact', 'trunkForm.rewriteContact'),
      row(f('qualifyFrequency', 'trunkForm.qualify'), f('dtmfMode', 'trunkForm.dtmf')),
      f('mediaAddress', 'trunkForm.mediaAddress')),
    panel('advanced',
      row(f('sessionTimers', 'trunkForm.sessionTimers'), f('sessionExpires', 'trunkForm.sessionExpires')),
      row(f('sessionMinSe', 'trunkForm.sessionMinSe'), f('pai', 'trunkForm.pai')),
      check('sendPai', 'trunkForm.sendPai'),
      check('trustRemotePartyId', 'trunkForm.trustRpid'),
      f('inboundMatch', 'trunkForm.inboundMatch', 'trunkForm.inboundMatchHint')),
    panel('custom',
      f('advancedSettings', 'trunkForm.advanced', 'trunkForm.advancedHint')),
    notice,
    error,
    previewBox,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn', testid: 'trunk-form-cancel', onclick: close }, t('common.close')),
      previewBtn,
      submit)),
  ], 'trunk-dialog', `trunk-form-title-${uid}`).classList.add('dialog-wide');
  selectTab('basic');
  inputs.name.focus();
}
