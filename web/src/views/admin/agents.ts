// Agents page (seeds/004): stats cards, searchable and filterable table with
// live SIP status, add agent, credentials shown once, regenerate, deactivate, delete.
import { h, mount } from '../../dom';
import { t, tDynamic, type Key } from '../../i18n';
import { api, ApiError, type DialPermission, type User } from '../../api';
import type { View } from '../../router';
import { confirmDialog, openDialog, showCredentials } from '../../dialogs';
import { subscribeEvents } from '../../events';
import { currentUser } from '../../session';
import { errorBox, field, pageHeader, pager, statCard } from '../common';

const LIMIT = 25;

function sipCell(u: User): HTMLElement {
  if (!u.sip) return h('span', { class: 'badge badge-neutral', testid: 'sip-status', 'data-registered': 'none' }, t('agents.noSip'));
  return u.sip.registered
    ? h('span', { class: 'badge badge-ok', testid: 'sip-status', 'data-registered': 'true' }, h('span', { class: 'dot dot-ok', 'aria-hidden': 'true' }), t('agents.registered'))
    : h('span', { class: 'badge badge-neutral', testid: 'sip-status', 'data-registered': 'false' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), t('agents.notRegistered'));
}

export function agentsView(): View {
  return {
    render(root) {
      const isAdmin = currentUser()?.role === 'admin';
      let offset = 0;
      let reloadTimer: number | null = null;
      const statsBox = h('div', { class: 'stats-grid', testid: 'agent-stats' });
      const tableBox = h('div', { testid: 'agents-table-box' }, t('common.loading'));
      const liveBadge = h('span', { class: 'live-badge', testid: 'live-badge' }, t('agents.live'));

      const search = h('input', { type: 'search', testid: 'agents-search', placeholder: t('agents.searchPlaceholder'), 'aria-label': t('common.search') });
      const role = h('select', { testid: 'filter-role', 'aria-label': t('agents.filterRole') },
        h('option', { value: '' }, `${t('agents.filterRole')}: ${t('common.all')}`),
        (['agent', 'supervisor', 'admin'] as const).map((r) => h('option', { value: r }, t(`role.${r}` as Key))));
      const hasSip = h('select', { testid: 'filter-sip', 'aria-label': t('agents.filterSip') },
        h('option', { value: '' }, `${t('agents.filterSip')}: ${t('common.all')}`),
        h('option', { value: 'true' }, t('agents.withSip')),
        h('option', { value: 'false' }, t('agents.withoutSip')));
      const active = h('select', { testid: 'filter-active', 'aria-label': t('agents.filterActive') },
        h('option', { value: '' }, `${t('agents.filterActive')}: ${t('common.all')}`),
        h('option', { value: 'true' }, t('agents.activeOnly')),
        h('option', { value: 'false' }, t('agents.inactiveOnly')));

      const load = async () => {
        try {
          const [list, stats] = await Promise.all([
            api.agents({ search: search.value.trim(), role: role.value, hasSip: hasSip.value, active: active.value, limit: LIMIT, offset, order: 'name' }),
            api.agentStats(),
          ]);
          const s = stats.stats;
          mount(statsBox,
            statCard('agents.statsTotal', s.totalUsers, 'stat-users'),
            statCard('agents.statsAgents', s.agents, 'stat-agents'),
            statCard('agents.statsActive', s.active, 'stat-active', 'tone-ok'),
            statCard('agents.statsSip', s.agentsWithSip, 'stat-sip'),
            statCard('agents.statsRegistered', s.registered, 'stat-registered', 'tone-ok'));
          mount(tableBox, table(list.agents), pager(list.total, offset, LIMIT, (o) => {
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

      const act = async (fn: () => Promise<void>) => {
        try {
          await fn();
        } catch (err) {
          const msg = err instanceof ApiError ? err.message : String(err);
          await confirmDialog(t('common.error', { msg }), t('common.close'));
        }
        void load();
      };

      const table = (agents: User[]) => {
        if (!agents.length) return h('p', { class: 'empty', testid: 'agents-empty' }, t('common.none'));
        return h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'agents-table' },
          h('thead', null, h('tr', null,
            h('th', { scope: 'col' }, t('agents.name')),
            h('th', { scope: 'col' }, t('agents.login')),
            h('th', { scope: 'col' }, t('agents.role')),
            h('th', { scope: 'col' }, t('agents.extension')),
            h('th', { scope: 'col' }, t('agents.sipStatus')),
            h('th', { scope: 'col' }, t('agents.status')),
            h('th', { scope: 'col' }, t('agents.recording')),
            h('th', { scope: 'col' }, t('agents.dialing'),
              // "Default" is the dial plan's; admins can go and see or change it.
              isAdmin ? h('div', { class: 'th-hint' }, h('a', { href: '/admin/dialplan', 'data-link': true, testid: 'agents-dialplan-link' }, t('agents.dialing.defaultLink'))) : null),
            isAdmin ? h('th', { scope: 'col', class: 'actions-col' }, t('common.actions')) : null)),
          h('tbody', null, agents.map((u) => h('tr', { testid: 'agent-row', 'data-login': u.login ?? '', 'data-id': u.id, 'data-extension': u.sip?.extension ?? '' },
            h('td', null, h('strong', null, u.name), u.email ? h('div', { class: 'muted small' }, u.email) : null),
            h('td', { class: 'mono' }, u.login ?? '—'),
            h('td', null, tDynamic('role', u.role)),
            h('td', null, h('span', { class: 'mono', testid: 'agent-extension' }, u.sip?.extension ?? '—'),
              u.sip ? h('div', { class: 'muted small mono', title: t('agents.sipUser') }, u.sip.username) : null),
            h('td', null, sipCell(u)),
            h('td', null, u.active
              ? h('span', { class: 'badge badge-ok' }, t('agents.active'))
              : h('span', { class: 'badge badge-bad' }, t('agents.inactive'))),
            h('td', null, recordingSetting(u, isAdmin, act)),
            h('td', null, dialingSetting(u, isAdmin, act)),
            isAdmin ? h('td', null, h('div', { class: 'row-actions' },
              h('button', {
                type: 'button', class: 'btn btn-small', testid: 'agent-regenerate',
                onclick: () => void act(async () => {
                  const ask = u.sip ? t('agents.confirmRegenerate', { name: u.name }) : t('agents.confirmCreateSip', { name: u.name });
                  if (!(await confirmDialog(ask, u.sip ? t('agents.regenerate') : t('agents.createSip')))) return;
                  const res = await api.regenerateSip(u.id);
                  await showCredentials(res.sipCredentials, u.name);
                }),
              }, u.sip ? t('agents.regenerate') : t('agents.createSip')),
              u.active && u.id !== currentUser()?.id ? h('button', {
                type: 'button', class: 'btn btn-small', testid: 'agent-deactivate',
                onclick: () => void act(async () => {
                  if (!(await confirmDialog(t('agents.confirmDeactivate', { name: u.name }), t('agents.deactivate'), true))) return;
                  await api.deactivateAgent(u.id);
                }),
              }, t('agents.deactivate')) : null,
              u.id !== currentUser()?.id ? h('button', {
                type: 'button', class: 'btn btn-small btn-danger-ghost', testid: 'agent-delete',
                onclick: () => void act(async () => {
                  if (!(await confirmDialog(t('agents.confirmDelete', { name: u.name }), t('agents.delete'), true))) return;
                  await api.deleteAgent(u.id);
                }),
              }, t('agents.delete')) : null)) : null)))));
      };

      const addBtn = isAdmin ? h('button', { type: 'button', class: 'btn btn-primary', testid: 'add-agent', onclick: () => openAddAgent(() => void load()) }, '+ ', t('agents.add')) : null;

      search.addEventListener('input', () => {
        offset = 0;
        reloadSoon();
      });
      for (const sel of [role, hasSip, active]) sel.addEventListener('change', () => {
        offset = 0;
        void load();
      });

      root.append(
        pageHeader('agents.title', 'agents.subtitle', liveBadge, addBtn),
        statsBox,
        h('section', { class: 'card' },
          h('div', { class: 'toolbar', role: 'search' }, search, role, hasSip, active),
          tableBox),
      );
      void load();

      // Live SIP status: events when the socket is up, polling as a fallback.
      const unsub = subscribeEvents((ev) => {
        if (ev.type === 'registration' || ev.type === 'agent') reloadSoon();
      }, (up) => {
        liveBadge.classList.toggle('is-live', up);
      });
      const poll = window.setInterval(() => void load(), 10000);
      return () => {
        unsub();
        window.clearInterval(poll);
        if (reloadTimer !== null) window.clearTimeout(reloadTimer);
      };
    },
  };
}

/** The agent's recording override: the system default, always, never (admins change it). */
function recordingSetting(u: User, isAdmin: boolean, act: (fn: () => Promise<void>) => Promise<void>): HTMLElement {
  const value = u.recordCalls === true ? 'always' : u.recordCalls === false ? 'never' : 'default';
  if (!isAdmin) return h('span', { class: 'muted', testid: 'agent-recording', 'data-value': value }, t(`agents.recording.${value}` as Key));
  const select = h('select', { testid: 'agent-recording', 'data-value': value, 'aria-label': `${t('agents.recording')}: ${u.name}` },
    (['default', 'always', 'never'] as const).map((v) => h('option', { value: v, selected: v === value }, t(`agents.recording.${v}` as Key))));
  select.addEventListener('change', () => void act(async () => {
    const recordCalls = select.value === 'always' ? true : select.value === 'never' ? false : null;
    await api.updateAgent(u.id, { recordCalls });
  }));
  return select;
}

/** What the agent may dial beyond the extensions (toll-fraud gate); admins change it. */
function dialingSetting(u: User, isAdmin: boolean, act: (fn: () => Promise<void>) => Promise<void>): HTMLElement {
  const value = u.dialPermission ?? 'default';
  if (!isAdmin) return h('span', { class: 'muted', testid: 'agent-dialing', 'data-value': value }, t(`agents.dialing.${value}` as Key));
  const select = h('select', { testid: 'agent-dialing', 'data-value': value, 'aria-label': `${t('agents.dialing')}: ${u.name}` },
    (['default', 'internal', 'national', 'international'] as const).map((v) => h('option', { value: v, selected: v === value }, t(`agents.dialing.${v}` as Key))));
  select.addEventListener('change', () => void act(async () => {
    const dialPermission = select.value === 'default' ? null : select.value as DialPermission;
    await api.updateAgent(u.id, { dialPermission });
  }));
  return select;
}

function openAddAgent(done: () => void): void {
  const name = h('input', { required: true, maxlength: 120, testid: 'agent-form-name', autocomplete: 'off' });
  const login = h('input', { maxlength: 64, testid: 'agent-form-login', autocomplete: 'off' });
  const email = h('input', { type: 'email', maxlength: 200, testid: 'agent-form-email', autocomplete: 'off' });
  const phoneNo = h('input', { type: 'tel', maxlength: 40, testid: 'agent-form-phone', autocomplete: 'off' });
  const password = h('input', { type: 'password', required: true, minlength: 8, testid: 'agent-form-password', autocomplete: 'new-password' });
  const role = h('select', { testid: 'agent-form-role' },
    (['agent', 'supervisor', 'admin'] as const).map((r) => h('option', { value: r }, t(`role.${r}` as Key))));
  const createSip = h('input', { type: 'checkbox', checked: true, testid: 'agent-form-sip', id: 'agent-form-sip' });
  // Agents get a SIP account by default; other roles only when asked (docs/API.md).
  role.addEventListener('change', () => {
    createSip.checked = role.value === 'agent';
  });
  const error = h('p', { class: 'alert alert-error', role: 'alert', testid: 'agent-form-error', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'agent-form-submit' }, t('agents.form.submit'));

  openDialog((close) => [
    h('form', {
      class: 'form-grid', testid: 'agent-form',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        error.hidden = true;
        if (!login.value.trim() && !email.value.trim()) {
          error.textContent = t('agents.form.loginOrEmail');
          error.hidden = false;
          return;
        }
        const body: Record<string, unknown> = { name: name.value.trim(), password: password.value, role: role.value, createSip: createSip.checked };
        if (login.value.trim()) body.login = login.value.trim();
        if (email.value.trim()) body.email = email.value.trim();
        if (phoneNo.value.trim()) body.phone = phoneNo.value.trim();
        submit.disabled = true;
        try {
          const res = await api.createAgent(body);
          close();
          done();
          if (res.sipCredentials) await showCredentials(res.sipCredentials, res.agent.name);
          done();
        } catch (err) {
          error.textContent = t('common.error', { msg: err instanceof Error ? err.message : String(err) });
          error.hidden = false;
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h2', { id: 'agent-form-title' }, t('agents.form.title')),
    field(t('agents.form.name'), name),
    h('div', { class: 'field-row' }, field(t('agents.form.login'), login), field(t('agents.form.email'), email)),
    h('div', { class: 'field-row' }, field(t('agents.form.phone'), phoneNo), field(t('agents.form.role'), role)),
    field(t('agents.form.password'), password),
    h('label', { class: 'check', for: 'agent-form-sip' }, createSip, ' ', t('agents.form.createSip')),
    error,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn', testid: 'agent-form-cancel', onclick: close }, t('common.cancel')),
      submit)),
  ], 'agent-dialog', 'agent-form-title');
  name.focus();
}
