// "Call details": the SIP flow of the current or last call (seeds/002).
import { h, mount, formatDuration } from '../dom';
import { t, type Key } from '../i18n';
import { api, type Call } from '../api';
import type { View } from '../router';
import { currentUser } from '../session';
import { phone, type CallInfo } from '../phone/softphone';
import { flowFor, onTrace, type TraceEntry } from '../phone/sipTrace';
import { reasonText } from '../phone/panel';
import { pageHeader } from './common';

function flowRow(e: TraceEntry, t0: number): HTMLElement {
  // 401/407 are the normal digest challenge, not a failure.
  const cls = e.isRequest ? 'req' : e.status === 401 || e.status === 407 ? 'resp-auth' : e.status !== null && e.status >= 300 ? 'resp-bad' : 'resp';
  // Each row expands to the full message; collapsed it reads like a ladder diagram.
  return h('li', { class: `flow-item flow-${e.dir} ${cls}`, testid: 'sip-flow-item', 'data-label': e.label, 'data-dir': e.dir },
    h('details', null,
      h('summary', { title: t('details.showRaw') },
        h('span', { class: 'flow-time mono' }, `+${((e.at - t0) / 1000).toFixed(3)} s`),
        h('span', { class: 'flow-arrow', 'aria-label': e.dir === 'out' ? t('details.sent') : t('details.received') }, e.dir === 'out' ? '→' : '←'),
        h('span', { class: 'flow-label' }, e.label),
        h('span', { class: 'flow-cseq muted mono' }, e.cseq)),
      h('pre', { class: 'flow-raw' }, e.raw)));
}

/** How far apart the phone's and the server's start of one call may be (clocks and ringing). */
const MATCH_WINDOW_MS = 15000;

/**
 * The server's record of the phone's call, for its trunk and DID. A call
 * this phone placed has the engine's id as its Call-ID; one it received
 * came on the B2BUA's own leg (another Call-ID), so it is this agent's
 * record as callee that started closest to when the phone rang.
 */
async function findRecord(c: CallInfo): Promise<Call | null> {
  if (c.direction === 'outgoing') {
    if (!c.callId) return null;
    return (await api.call(c.callId)).call;
  }
  const me = currentUser();
  if (!me) return null;
  const list = await api.callHistory({ agentId: me.id, limit: 10, order: '-startTime' });
  const near = list.calls
    .filter((r) => r.calleeAgentId === me.id)
    .map((r) => ({ r, gap: Math.abs(Date.parse(r.startTime) - c.startedAt) }))
    .filter((x) => x.gap <= MATCH_WINDOW_MS)
    .sort((a, b) => a.gap - b.gap);
  return near[0]?.r ?? null;
}

export function callDetailsView(): View {
  return {
    render(root) {
      const summary = h('dl', { class: 'kv', testid: 'call-summary' });
      const flow = h('ol', { class: 'flow', testid: 'sip-flow', 'aria-label': t('details.subtitle') });
      const empty = h('p', { class: 'empty', testid: 'sip-flow-empty' }, t('details.empty'));

      // The flow is rebuilt only when it changes, so an expanded message stays open.
      let shownKey = '';
      // The record is looked up once while the call is up and once after it
      // ends (the server writes the trunk and DID as the call goes on).
      let record: Call | null = null;
      let recordKey = '';
      const lookUp = (c: CallInfo) => {
        const key = `${c.id}:${c.endedAt ? 'ended' : 'live'}`;
        if (key === recordKey) return;
        recordKey = key;
        if (!c.endedAt) record = null;
        findRecord(c).then((r) => {
          if (recordKey !== key) return;
          record = r;
          update();
        }).catch(() => undefined);
      };
      const update = () => {
        const c = phone.state.call;
        if (!c) {
          shownKey = '';
          empty.hidden = false;
          summary.hidden = true;
          flow.replaceChildren();
          return;
        }
        empty.hidden = true;
        summary.hidden = false;
        lookUp(c);
        const dur = c.answeredAt ? ((c.endedAt ?? Date.now()) - c.answeredAt) / 1000 : null;
        mount(summary,
          h('dt', null, t('details.peer')), h('dd', null, c.peerName ? `${c.peerName} (${c.peer})` : c.peer),
          h('dt', null, t('details.state')), h('dd', { testid: 'details-state' }, t(`state.${c.phase}` as Key), c.reason ? ` — ${reasonText(c.reason)}` : ''),
          h('dt', null, t('details.duration')), h('dd', null, formatDuration(dur)),
          h('dt', null, t('details.callId')), h('dd', { class: 'mono' }, c.callId ?? '—'),
          record?.trunk ? [h('dt', null, t('details.trunk')), h('dd', { testid: 'details-trunk' }, record.trunk.name ?? t('calls.unknownTrunk', { id: record.trunk.id }))] : null,
          record?.did ? [h('dt', null, t('details.did')), h('dd', { class: 'mono', testid: 'details-did' }, record.did)] : null);
        const entries = flowFor(c.callId);
        const key = `${c.id}:${c.callId}:${entries.length}`;
        if (key === shownKey) return;
        shownKey = key;
        const t0 = entries[0]?.at ?? c.startedAt;
        mount(flow, entries.map((e) => flowRow(e, t0)));
      };

      root.append(pageHeader('details.title', 'details.subtitle'), h('section', { class: 'card' }, empty, summary, flow));
      update();
      const unsubPhone = phone.subscribe(() => update());
      const unsubTrace = onTrace((callId) => {
        if (callId === phone.state.call?.callId) update();
      });
      const ticker = window.setInterval(() => {
        const c = phone.state.call;
        if (c && c.answeredAt && !c.endedAt) update();
      }, 1000);
      return () => {
        window.clearInterval(ticker);
        unsubPhone();
        unsubTrace();
      };
    },
  };
}
