// Live view: SIP registrations and calls in progress.
import { h, mount, formatDateTime, formatDuration } from '../../dom';
import { t, tDynamic, locale } from '../../i18n';
import { api } from '../../api';
import type { View } from '../../router';
import { subscribeEvents } from '../../events';
import { errorBox, pageHeader } from '../common';

export function liveView(): View {
  return {
    render(root) {
      const regBox = h('div', { testid: 'live-registrations' }, t('common.loading'));
      const callBox = h('div', { testid: 'live-calls' }, t('common.loading'));
      const liveBadge = h('span', { class: 'live-badge', testid: 'live-badge' }, t('agents.live'));
      let timer: number | null = null;

      const load = async () => {
        try {
          const [regs, calls] = await Promise.all([api.registrations(), api.activeCalls()]);
          mount(regBox, regs.registrations.length === 0 ? h('p', { class: 'empty' }, t('live.noRegistrations')) : h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'registrations-table' },
            h('thead', null, h('tr', null,
              h('th', { scope: 'col' }, t('agents.extension')),
              h('th', { scope: 'col' }, t('agents.sipUser')),
              h('th', { scope: 'col' }, t('live.transport')),
              h('th', { scope: 'col' }, t('live.source')),
              h('th', { scope: 'col' }, t('live.userAgent')),
              h('th', { scope: 'col' }, t('live.expires')))),
            h('tbody', null, regs.registrations.map((r) => h('tr', { testid: 'registration-row', 'data-username': r.username },
              h('td', { class: 'mono' }, r.extension),
              h('td', { class: 'mono small' }, r.username),
              h('td', null, r.transport),
              h('td', { class: 'mono small' }, r.source),
              h('td', { class: 'small' }, r.userAgent ?? '—'),
              h('td', { class: 'small' }, formatDateTime(r.expiresAt, locale()))))))));
          const now = Date.now();
          mount(callBox, calls.calls.length === 0 ? h('p', { class: 'empty' }, t('live.noCalls')) : h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'active-calls-table' },
            h('thead', null, h('tr', null,
              h('th', { scope: 'col' }, t('calls.from')),
              h('th', { scope: 'col' }, t('calls.to')),
              h('th', { scope: 'col' }, t('calls.agent')),
              h('th', { scope: 'col' }, t('live.state')),
              h('th', { scope: 'col', class: 'num' }, t('calls.duration')))),
            h('tbody', null, calls.calls.map((c) => h('tr', { testid: 'active-call-row', 'data-state': c.state },
              h('td', { class: 'mono' }, c.callerNumber),
              h('td', { class: 'mono' }, c.calleeNumber),
              h('td', null, c.agent?.name ?? '—'),
              h('td', null, tDynamic('callState', c.state)),
              h('td', { class: 'num' }, formatDuration((now - new Date(c.answerTime ?? c.startTime).getTime()) / 1000))))))));
        } catch (err) {
          mount(regBox, errorBox(err));
          callBox.replaceChildren();
        }
      };
      const soon = () => {
        if (timer !== null) window.clearTimeout(timer);
        timer = window.setTimeout(() => {
          timer = null;
          void load();
        }, 200);
      };

      root.append(
        pageHeader('live.title', 'live.subtitle', liveBadge),
        h('section', { class: 'card' }, h('h2', null, t('live.activeCalls')), callBox),
        h('section', { class: 'card' }, h('h2', null, t('live.registrations')), regBox),
      );
      void load();
      const unsub = subscribeEvents((ev) => {
        if (ev.type === 'registration' || ev.type === 'call') soon();
      }, (up) => liveBadge.classList.toggle('is-live', up));
      const poll = window.setInterval(() => void load(), 5000);
      return () => {
        unsub();
        window.clearInterval(poll);
        if (timer !== null) window.clearTimeout(timer);
      };
    },
  };
}
