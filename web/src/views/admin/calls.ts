// Call history for everyone, with filters, stats and CSV export.
import { h, mount } from '../../dom';
import { t, type Key } from '../../i18n';
import { api, historyCsvUrl, type User } from '../../api';
import type { View } from '../../router';
import { callStatsCards, callsTable, dayBound, errorBox, pageHeader, pager } from '../common';

const LIMIT = 50;
const DISPOSITIONS = ['ANSWERED', 'NO ANSWER', 'BUSY', 'FAILED', 'CANCELLED'];

export function callsView(): View {
  return {
    render(root) {
      let offset = 0;
      const from = h('input', { type: 'date', testid: 'calls-from', 'aria-label': t('calls.dateFrom') });
      const to = h('input', { type: 'date', testid: 'calls-to', 'aria-label': t('calls.dateTo') });
      const agent = h('select', { testid: 'calls-agent', 'aria-label': t('calls.agent') }, h('option', { value: '' }, `${t('calls.agent')}: ${t('common.all')}`));
      const disposition = h('select', { testid: 'calls-disposition', 'aria-label': t('calls.disposition') },
        h('option', { value: '' }, `${t('calls.disposition')}: ${t('common.all')}`),
        DISPOSITIONS.map((d) => h('option', { value: d }, t(`disp.${d}` as Key))));
      const search = h('input', { type: 'search', testid: 'calls-search', placeholder: t('common.search'), 'aria-label': t('common.search') });
      const csv = h('a', { class: 'btn', testid: 'calls-csv', download: 'calls.csv', href: '#' }, t('calls.exportCsv'));
      const statsBox = h('div', { testid: 'calls-stats' });
      const listBox = h('div', null, t('common.loading'));

      const query = () => ({
        from: dayBound(from.value, false),
        to: dayBound(to.value, true),
        agentId: agent.value || undefined,
        disposition: disposition.value || undefined,
        search: search.value.trim() || undefined,
      });
      const load = async () => {
        const q = query();
        csv.setAttribute('href', historyCsvUrl(q));
        try {
          const [hist, stats] = await Promise.all([
            api.callHistory({ ...q, limit: LIMIT, offset, order: '-startTime' }),
            api.callStats({ startDate: q.from, endDate: q.to, agentId: q.agentId }),
          ]);
          mount(statsBox, callStatsCards(stats.stats));
          mount(listBox, callsTable(hist.calls, true), pager(hist.total, offset, LIMIT, (o) => {
            offset = o;
            void load();
          }));
        } catch (err) {
          mount(listBox, errorBox(err));
        }
      };
      const form = h('form', {
        class: 'toolbar', role: 'search', testid: 'calls-filters',
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          offset = 0;
          void load();
        },
      },
      h('label', { class: 'inline-label' }, t('calls.dateFrom'), from),
      h('label', { class: 'inline-label' }, t('calls.dateTo'), to),
      agent, disposition, search,
      h('button', { type: 'submit', class: 'btn btn-primary', testid: 'calls-apply' }, t('calls.filter')));

      root.append(pageHeader('calls.title', 'calls.subtitle', csv), statsBox, h('section', { class: 'card' }, form, listBox));
      api.agents({ limit: 500, order: 'name' }).then((r) => {
        agent.append(...r.agents.filter((u: User) => u.sip).map((u) => h('option', { value: u.id }, `${u.name} (${u.sip?.extension})`)));
      }).catch(() => undefined);
      void load();
    },
  };
}
