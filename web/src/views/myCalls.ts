// Agent home: own call stats and history.
import { h, mount } from '../dom';
import { t } from '../i18n';
import { api } from '../api';
import type { View } from '../router';
import { phone } from '../phone/softphone';
import { currentUser } from '../session';
import { callStatsCards, callsTable, errorBox, pageHeader, pager } from './common';

const LIMIT = 20;

export function myCallsView(): View {
  return {
    render(root) {
      let offset = 0;
      const statsBox = h('div', { testid: 'my-stats' }, t('common.loading'));
      const listBox = h('div', { testid: 'my-history' }, t('common.loading'));
      const refreshBtn = h('button', { type: 'button', class: 'btn', testid: 'refresh-history', onclick: () => void load() }, t('common.refresh'));

      const load = async () => {
        try {
          const [stats, history] = await Promise.all([api.callStats({}), api.callHistory({ limit: LIMIT, offset, order: '-startTime' })]);
          mount(statsBox, callStatsCards(stats.stats));
          mount(listBox, callsTable(history.calls, false, currentUser()?.id), pager(history.total, offset, LIMIT, (o) => {
            offset = o;
            void load();
          }));
        } catch (err) {
          mount(listBox, errorBox(err));
          statsBox.replaceChildren();
        }
      };

      root.append(
        pageHeader('myCalls.title', 'myCalls.subtitle', refreshBtn),
        statsBox,
        h('section', { class: 'card' }, listBox),
      );
      void load();
      // Refresh after each call ends so the new row shows up by itself.
      let lastEnded: number | null = phone.state.call?.endedAt ?? null;
      const unsub = phone.subscribe((s) => {
        const ended = s.call?.endedAt ?? null;
        if (ended !== null && ended !== lastEnded) {
          lastEnded = ended;
          window.setTimeout(() => void load(), 800);
        }
      });
      return unsub;
    },
  };
}
