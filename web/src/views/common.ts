// Pieces shared by several views: page header, stats cards, call table, pager.
import { h, formatDateTime, formatDuration } from '../dom';
import { t, tDynamic, locale, type Key } from '../i18n';
import type { Call, CallStats } from '../api';
import { qualityLines, recordingUrl } from '../quality';

export function pageHeader(titleKey: Key, subtitleKey: Key, ...actions: (HTMLElement | null)[]): HTMLElement {
  return h('header', { class: 'page-head' },
    h('div', null, h('h1', null, t(titleKey)), h('p', { class: 'muted' }, t(subtitleKey))),
    h('div', { class: 'page-actions' }, actions));
}

export function statCard(labelKey: Key, value: string | number, testid: string, tone = ''): HTMLElement {
  return h('div', { class: `stat-card ${tone}`, testid },
    h('span', { class: 'stat-label' }, t(labelKey)),
    h('strong', { class: 'stat-value', testid: `${testid}-value` }, String(value)));
}

export function callStatsCards(stats: CallStats): HTMLElement {
  return h('div', { class: 'stats-grid', testid: 'call-stats' },
    statCard('stats.total', stats.totalCalls, 'stat-total'),
    statCard('stats.answered', stats.answered, 'stat-answered', 'tone-ok'),
    statCard('stats.busy', stats.busy, 'stat-busy', 'tone-warn'),
    statCard('stats.noAnswer', stats.noAnswer, 'stat-noanswer', 'tone-warn'),
    statCard('stats.cancelled', stats.cancelled, 'stat-cancelled'),
    statCard('stats.failed', stats.failed, 'stat-failed', 'tone-bad'),
    statCard('stats.answerRate', `${stats.answerRate ?? '0'} %`, 'stat-answer-rate'),
    statCard('stats.avgBillsec', formatDuration(stats.avgBillsec), 'stat-avg-billsec'));
}

export function dispositionBadge(d: string | null): HTMLElement {
  const tone = d === 'ANSWERED' ? 'ok' : d === 'BUSY' || d === 'NO ANSWER' ? 'warn' : d === 'FAILED' ? 'bad' : 'neutral';
  return h('span', { class: `badge badge-${tone}`, 'data-disposition': d ?? '' }, tDynamic('disp', d));
}

/** Who took part: "Ana → Bruno" for a call between two agents. */
function agentsOf(c: Call): string {
  const from = c.agent?.name;
  const to = c.calleeAgent?.name;
  if (from && to) return `${from} → ${to}`;
  return from ?? to ?? '—';
}

/** Direction as the viewing agent lived it: their own outgoing or incoming call. */
function directionFor(c: Call, meId: number | undefined): string {
  // An agent's own call, even one that reached nobody (unknown number), is
  // outgoing for the agent who placed it.
  if (meId !== undefined) {
    if (c.agentId === meId) return tDynamic('dir', 'outbound');
    if (c.calleeAgentId === meId) return tDynamic('dir', 'inbound');
  }
  return tDynamic('dir', c.direction);
}

/** good / fair / poor from the call's worst MOS; every leg's figures on hover. */
export function qualityBadge(c: Call): HTMLElement | string {
  const q = c.quality;
  if (!q) return '';
  const tone = q.class === 'good' ? 'ok' : q.class === 'fair' ? 'warn' : 'bad';
  const title = qualityLines(q, {
    leg: t('quality.leg'),
    inbound: t('quality.inbound'),
    outbound: t('quality.outbound'),
    loss: t('quality.loss'),
    jitter: t('quality.jitter'),
    rtt: t('quality.rtt'),
  }).join('\n');
  return h('span', { class: `badge badge-${tone}`, testid: 'call-quality', 'data-quality': q.class, 'data-mos': q.worstMos.toFixed(2), title },
    `${t(`quality.${q.class}` as Key)} · ${q.worstMos.toFixed(1)}`);
}

/**
 * A "listen" button that becomes a player: the audio element is made on
 * demand (one request per listen, not one per row shown) and loads the
 * recording straight from the API, same origin, so the session cookie
 * authenticates it and the browser seeks with Range requests.
 */
export function recordingCell(c: Call): HTMLElement | string {
  if (!c.hasRecording) return '';
  const dropped = c.recording?.droppedFrames ?? 0;
  const cell = h('div', { class: 'recording-cell', testid: 'call-recording' });
  const button = h('button', {
    type: 'button', class: 'btn btn-small', testid: 'recording-play',
    onclick: () => {
      const audio = h('audio', { controls: true, preload: 'metadata', src: recordingUrl(c.callId), testid: 'recording-audio' });
      cell.replaceChildren(audio);
      void audio.play().catch(() => undefined);
    },
  }, `▶ ${t('recording.play')}`);
  cell.append(button);
  if (dropped > 0) cell.append(h('small', { class: 'muted', title: t('recording.dropped', { n: dropped }) }, ' ⚠'));
  return cell;
}

/** The trunk a call used and the DID it dialled, in one compact cell; empty for calls between agents. */
export function trunkCell(c: Call): HTMLElement {
  const name = c.trunk ? (c.trunk.name ?? t('calls.unknownTrunk', { id: c.trunk.id })) : null;
  return h('td', { testid: 'call-trunk', 'data-trunk-id': c.trunk?.id ?? '', 'data-did': c.did ?? '' },
    name ? h('div', { testid: 'call-trunk-name' }, name) : null,
    c.did ? h('div', { class: 'muted small mono', testid: 'call-did' }, c.did) : null);
}

export function callsTable(calls: Call[], showAgent: boolean, meId?: number): HTMLElement {
  if (!calls.length) return h('p', { class: 'empty', testid: 'calls-empty' }, t('common.none'));
  // Only pages with a trunk call get the column: internal-only histories stay as narrow as before.
  const showTrunk = calls.some((c) => c.trunk || c.did);
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', testid: 'calls-table' },
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('calls.start')),
        h('th', { scope: 'col' }, t('calls.direction')),
        h('th', { scope: 'col' }, t('calls.from')),
        h('th', { scope: 'col' }, t('calls.to')),
        showAgent ? h('th', { scope: 'col' }, t('calls.agent')) : null,
        showTrunk ? h('th', { scope: 'col' }, t('calls.trunk')) : null,
        h('th', { scope: 'col', class: 'num' }, t('calls.duration')),
        h('th', { scope: 'col', class: 'num' }, t('calls.billsec')),
        h('th', { scope: 'col' }, t('calls.disposition')),
        h('th', { scope: 'col' }, t('calls.cause')),
        h('th', { scope: 'col' }, t('calls.quality')),
        h('th', { scope: 'col' }, t('calls.recording')))),
      h('tbody', null, calls.map((c) => h('tr', { testid: 'call-row', 'data-call-id': c.callId, 'data-disposition': c.disposition ?? '', 'data-billsec': c.billsec ?? '' },
        h('td', null, formatDateTime(c.startTime, locale())),
        h('td', null, directionFor(c, meId)),
        h('td', { class: 'mono' }, c.callerNumber),
        h('td', { class: 'mono' }, c.calleeNumber),
        showAgent ? h('td', null, agentsOf(c)) : null,
        showTrunk ? trunkCell(c) : null,
        h('td', { class: 'num' }, formatDuration(c.duration)),
        h('td', { class: 'num', testid: 'call-billsec' }, formatDuration(c.billsec)),
        h('td', null, dispositionBadge(c.disposition)),
        h('td', { class: 'muted', title: c.hangupCause ?? '' }, c.hangupCause ? tDynamic('cause', c.hangupCause) : ''),
        h('td', null, qualityBadge(c)),
        h('td', null, recordingCell(c)))))));
}

export function pager(total: number, offset: number, limit: number, go: (offset: number) => void): HTMLElement {
  const from = total === 0 ? 0 : offset + 1;
  const to = Math.min(offset + limit, total);
  return h('nav', { class: 'pager', 'aria-label': 'pagination' },
    h('button', { type: 'button', class: 'btn btn-small', disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, t('common.prev')),
    h('span', { class: 'muted', testid: 'pager-info' }, t('common.pageInfo', { from, to, total })),
    h('button', { type: 'button', class: 'btn btn-small', disabled: to >= total, onclick: () => go(offset + limit) }, t('common.next')));
}

export function errorBox(err: unknown): HTMLElement {
  const msg = err instanceof Error ? err.message : String(err);
  return h('p', { class: 'alert alert-error', role: 'alert', testid: 'error' }, t('common.error', { msg }));
}

export function field(labelText: string, input: HTMLElement, hint?: string): HTMLElement {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' },
    h('label', { for: id, class: 'label' }, labelText),
    input,
    hint ? h('small', { id: `${id}-hint`, class: 'hint' }, hint) : null);
}

/** yyyy-mm-dd of a date input to an RFC 3339 bound (start or end of that day, local time). */
export function dayBound(value: string, end: boolean): string | undefined {
  if (!value) return undefined;
  const d = new Date(`${value}T${end ? '23:59:59' : '00:00:00'}`);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
