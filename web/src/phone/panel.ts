// The softphone panel: status, dial pad, call controls. Built once and
// updated in place from the phone's snapshots, outside the routed views.
import { h, formatDuration } from '../dom';
import { t, locale, onLangChange, type Key } from '../i18n';
import type { Reason } from './causes';
import { phone, type PhoneSnapshot, type ConnState } from './softphone';
import type { CallQuality } from './quality';

/** After a call ends its outcome stays in the main status line this long. */
const ENDED_VISIBLE_MS = 6000;

const KEYS: [string, string][] = [
  ['1', ''], ['2', 'ABC'], ['3', 'DEF'],
  ['4', 'GHI'], ['5', 'JKL'], ['6', 'MNO'],
  ['7', 'PQRS'], ['8', 'TUV'], ['9', 'WXYZ'],
  ['*', ''], ['0', '+'], ['#', ''],
];

export function reasonText(r: Reason | null): string {
  return r ? t(r.key, r.vars) : '';
}

export function connLabel(conn: ConnState): string {
  const map: Record<ConnState, Key> = {
    unconfigured: 'conn.noSip',
    disconnected: 'conn.disconnected',
    connecting: 'conn.connecting',
    registering: 'conn.registering',
    registered: 'conn.registered',
    failed: 'conn.failed',
  };
  return t(map[conn]);
}

/** The quality indicator's details line: MOS, loss, jitter, RTT, codec. */
export function qualityDetails(q: CallQuality): string {
  const fmt = (v: number, digits: number) => v.toLocaleString(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return t('phone.quality.details', {
    mos: fmt(q.mos, 1),
    loss: fmt(q.lossPct, q.lossPct > 0 && q.lossPct < 10 ? 1 : 0),
    // Loopback and LAN figures are below a millisecond: keep a decimal there.
    jitter: fmt(q.jitterMs, q.jitterMs < 10 ? 1 : 0),
    rtt: q.rttMs === null ? '—' : fmt(q.rttMs, q.rttMs < 10 ? 1 : 0),
    codec: q.codec ?? '—',
  });
}

/** The phone's overall state in the words of seeds/000. */
export function overallState(s: PhoneSnapshot, now = Date.now()): string {
  const c = s.call;
  if (c) {
    const finished = c.phase === 'ended' || c.phase === 'failed';
    if (!finished || (c.endedAt !== null && now - c.endedAt < ENDED_VISIBLE_MS)) return c.phase;
  }
  switch (s.conn) {
    case 'registered':
      return 'registered';
    case 'connecting':
    case 'registering':
      return 'registering';
    case 'failed':
      return 'failed';
    default:
      return 'idle';
  }
}

export function createPhonePanel(): HTMLElement {
  const root = h('aside', { class: 'phone', testid: 'softphone', 'aria-labelledby': 'phone-title' });
  let number = '';
  let unsub: (() => void) | null = null;
  let ticker: number | null = null;

  const build = () => {
    unsub?.();
    root.replaceChildren();

    const identity = h('p', { class: 'phone-identity', testid: 'phone-identity' });
    const stateDot = h('span', { class: 'dot', 'aria-hidden': 'true' });
    const stateText = h('span', { testid: 'phone-state-text' });
    const stateLine = h('div', { class: 'phone-state', testid: 'phone-state', role: 'status', 'aria-live': 'polite' }, stateDot, stateText);
    const reasonLine = h('p', { class: 'phone-reason', testid: 'phone-reason' });
    const noSip = h('p', { class: 'phone-hint', testid: 'phone-nosip' }, t('phone.noSipHint'), ' ',
      h('a', { href: '/connection', 'data-link': true }, t('nav.connection')));
    const reconnectBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'phone-reconnect', onclick: () => void phone.reconnect() }, t('phone.reconnect'));

    // Call card.
    const peerLabel = h('p', { class: 'call-peer-label' });
    const peerName = h('p', { class: 'call-peer', testid: 'call-peer' });
    const peerNumber = h('p', { class: 'call-peer-number', testid: 'call-peer-number' });
    const timer = h('p', { class: 'call-timer', testid: 'call-timer', 'aria-label': t('details.duration') }, '0:00');
    // Live quality next to the timer: colour and a word, the figures in a
    // tooltip that shows on hover and on keyboard focus (aria-describedby
    // gives it to screen readers too).
    const qualityText = h('span', { class: 'call-quality-text', testid: 'call-quality-text' });
    const qualityTip = h('span', { class: 'call-quality-tip', id: 'call-quality-details', role: 'tooltip', testid: 'call-quality-details' });
    const quality = h('span', {
      class: 'call-quality', testid: 'call-quality', tabindex: '0', 'aria-describedby': 'call-quality-details',
    }, h('span', { class: 'dot', 'aria-hidden': 'true' }), qualityText, qualityTip);
    const timerRow = h('div', { class: 'call-timer-row' }, timer, quality);
    const outcome = h('p', { class: 'call-outcome', testid: 'call-outcome' });
    const answerBtn = h('button', { type: 'button', class: 'btn btn-answer', testid: 'btn-answer', onclick: () => phone.answer() }, t('phone.answer'));
    const rejectBtn = h('button', { type: 'button', class: 'btn btn-danger', testid: 'btn-reject', onclick: () => phone.reject() }, t('phone.reject'));
    const hangupBtn = h('button', { type: 'button', class: 'btn btn-danger', testid: 'btn-hangup', onclick: () => phone.hangup() }, t('phone.hangup'));
    const holdBtn = h('button', { type: 'button', class: 'btn', testid: 'btn-hold', 'aria-pressed': 'false', onclick: () => phone.toggleHold() }, t('phone.hold'));
    const muteBtn = h('button', { type: 'button', class: 'btn', testid: 'btn-mute', 'aria-pressed': 'false', onclick: () => phone.toggleMute() }, t('phone.mute'));
    const dismissBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-small', testid: 'btn-dismiss', onclick: () => phone.dismissCall() }, t('common.close'));
    const detailsLink = h('a', { href: '/call-details', 'data-link': true, class: 'phone-details-link', testid: 'link-call-details' }, t('phone.details'));
    const callCard = h('section', { class: 'call-card', testid: 'call-card', 'aria-label': t('details.title') },
      peerLabel, peerName, peerNumber, timerRow,
      h('div', { class: 'call-actions' }, answerBtn, rejectBtn, holdBtn, muteBtn, hangupBtn),
      outcome,
      h('div', { class: 'call-card-foot' }, detailsLink, dismissBtn));

    // Number field and dial pad.
    const input = h('input', {
      id: 'phone-number', type: 'tel', inputmode: 'tel', autocomplete: 'off', class: 'phone-number',
      testid: 'phone-number', value: number, placeholder: '1000',
    });
    input.addEventListener('input', () => {
      number = input.value;
    });
    const numberLabel = h('label', { for: 'phone-number', class: 'label' }, t('phone.number'));
    const callBtn = h('button', { type: 'submit', class: 'btn btn-call', testid: 'btn-call' }, t('phone.call'));
    const backBtn = h('button', {
      type: 'button', class: 'btn btn-ghost key-back', testid: 'btn-backspace', 'aria-label': t('phone.backspace'),
      onclick: () => {
        number = number.slice(0, -1);
        input.value = number;
      },
    }, '⌫');
    const pad = h('div', { class: 'dialpad', role: 'group', 'aria-label': t('phone.keypad') },
      KEYS.map(([digit, letters]) => h('button', {
        type: 'button', class: 'key', testid: `key-${digit === '*' ? 'star' : digit === '#' ? 'hash' : digit}`,
        'aria-label': digit,
        onclick: () => {
          const c = phone.state.call;
          if (c && c.phase === 'in-call') {
            phone.sendDtmf(digit);
          } else {
            number += digit;
            input.value = number;
          }
        },
      }, h('span', { class: 'key-digit' }, digit), h('span', { class: 'key-letters', 'aria-hidden': 'true' }, letters))));
    const form = h('form', {
      class: 'dial-form', testid: 'dial-form',
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        phone.call(input.value);
      },
    },
    numberLabel,
    h('div', { class: 'number-row' }, input, backBtn),
    pad,
    callBtn);
    const notice = h('p', { class: 'phone-notice', testid: 'phone-notice', 'aria-live': 'polite' });

    root.append(
      h('header', { class: 'phone-head' },
        h('h2', { id: 'phone-title' }, t('phone.title')),
        identity),
      stateLine, reasonLine, noSip, reconnectBtn, callCard, form, notice,
    );

    const update = (s: PhoneSnapshot) => {
      const now = Date.now();
      const overall = overallState(s, now);
      root.dataset.state = overall;
      stateLine.dataset.state = overall;
      stateLine.className = `phone-state state-${overall}`;
      let stateKey: Key = `state.${overall}` as Key;
      if (overall === 'failed' && !s.call) stateKey = 'state.regFailed';
      if (overall === 'idle' && s.conn === 'unconfigured') stateKey = 'conn.noSip';
      if (overall === 'on-hold' && s.call?.remoteHold && !s.call.localHold) stateKey = 'state.remote-hold';
      stateText.textContent = t(stateKey);

      identity.textContent = !s.identity ? ''
        : s.identity.manual ? t('phone.youManual', { name: s.identity.displayName, uri: `${s.identity.username}@${s.identity.domain}` })
        : t('phone.you', { name: s.identity.displayName, ext: s.identity.extension });
      const c = s.call;
      const callActive = !!c && c.phase !== 'ended' && c.phase !== 'failed';
      reasonLine.textContent = callActive ? '' : reasonText(s.connReason);
      noSip.hidden = s.conn !== 'unconfigured';
      reconnectBtn.hidden = !(s.conn === 'failed' || s.conn === 'disconnected') || !s.identity && s.conn === 'disconnected';

      callCard.hidden = !c;
      if (c) {
        callCard.dataset.phase = c.phase;
        callCard.dataset.direction = c.direction;
        peerLabel.textContent = !callActive ? t('phone.lastCall')
          : c.answeredAt ? t('phone.talkingWith')
          : c.direction === 'incoming' ? t('phone.incomingFrom') : t('phone.calling');
        peerName.textContent = c.peerName ?? c.peer;
        peerNumber.textContent = c.peerName ? c.peer : '';
        peerNumber.hidden = !c.peerName;
        const end = c.endedAt ?? now;
        timer.textContent = formatDuration(c.answeredAt ? (end - c.answeredAt) / 1000 : 0);
        timer.hidden = !c.answeredAt;
        const q = callActive ? c.quality : null;
        quality.hidden = !q;
        if (q) {
          quality.dataset.quality = q.class;
          qualityText.textContent = t(`phone.quality.${q.class}` as Key);
          qualityTip.textContent = qualityDetails(q);
        } else {
          delete quality.dataset.quality;
          qualityText.textContent = '';
          qualityTip.textContent = '';
        }
        answerBtn.hidden = c.phase !== 'incoming';
        rejectBtn.hidden = c.phase !== 'incoming';
        hangupBtn.hidden = !callActive || c.phase === 'incoming';
        const talking = c.phase === 'in-call' || c.phase === 'on-hold';
        holdBtn.hidden = !talking;
        muteBtn.hidden = !talking;
        holdBtn.textContent = c.localHold ? t('phone.unhold') : t('phone.hold');
        holdBtn.setAttribute('aria-pressed', String(c.localHold));
        muteBtn.textContent = c.muted ? t('phone.unmute') : t('phone.mute');
        muteBtn.setAttribute('aria-pressed', String(c.muted));
        dismissBtn.hidden = callActive;
        outcome.hidden = callActive;
        outcome.dataset.phase = c.phase;
        outcome.dataset.reason = c.reason?.key.replace('reason.', '') ?? '';
        outcome.textContent = callActive ? '' : `${t(`state.${c.phase}` as Key)} — ${reasonText(c.reason)}`;
      }
      callBtn.disabled = callActive || s.conn !== 'registered';
      numberLabel.textContent = c?.phase === 'in-call' ? t('phone.keypadDtmf') : t('phone.number');
      // The tab title tells an agent working in another tab that a call is coming in.
      document.title = overall === 'incoming' ? `☎ ${t('state.incoming')} — ${t('app.name')}`
        : callActive ? `${t(stateKey)} — ${t('app.name')}` : t('app.name');
      // Nothing to dial with until a SIP account is connected.
      form.hidden = s.conn === 'unconfigured' && !c;
      notice.textContent = reasonText(s.notice);
    };

    unsub = phone.subscribe(update);
    if (ticker !== null) window.clearInterval(ticker);
    // Call timer and the fade-out of the last call's outcome.
    ticker = window.setInterval(() => update(phone.state), 1000);
  };

  build();
  onLangChange(build);
  return root;
}
