// Manual connection (seeds/000 and seeds/002): display name, extension or SIP
// URI, SIP password, WebSocket URL. Kept in memory only, never stored.
import { h } from '../dom';
import { t } from '../i18n';
import type { View } from '../router';
import { phone } from '../phone/softphone';
import { field, pageHeader } from './common';

function defaultWsUrl(): string {
  const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${window.location.host}/ws`;
}

export function connectionView(hasOwnAccount: boolean): View {
  return {
    render(root) {
      const id = phone.state.identity;
      const name = h('input', { name: 'displayName', autocomplete: 'name', testid: 'conn-display-name', value: id?.manual ? id.displayName : '' });
      const target = h('input', { name: 'extension', required: true, autocomplete: 'username', testid: 'conn-extension', value: id?.manual ? `${id.username}@${id.domain}` : '' });
      const password = h('input', { name: 'sipPassword', type: 'password', required: true, autocomplete: 'current-password', testid: 'conn-password' });
      const ws = h('input', { name: 'wsUrl', type: 'url', required: true, testid: 'conn-ws-url', value: id?.manual ? id.wsUri : defaultWsUrl() });
      const msg = h('p', { class: 'alert', role: 'status', testid: 'conn-message', hidden: true });

      const form = h('form', {
        class: 'card form-grid', testid: 'connection-form',
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          msg.hidden = false;
          if (!/^wss?:\/\//i.test(ws.value.trim())) {
            msg.className = 'alert alert-error';
            msg.textContent = t('conn.form.invalid', { msg: t('conn.form.wsUrl') });
            return;
          }
          try {
            phone.startManual({ displayName: name.value, target: target.value, password: password.value, wsUrl: ws.value });
            msg.className = 'alert alert-ok';
            msg.textContent = t('conn.form.active');
          } catch (err) {
            msg.className = 'alert alert-error';
            msg.textContent = t('conn.form.invalid', { msg: err instanceof Error ? err.message : String(err) });
          }
        },
      },
      field(t('conn.form.displayName'), name),
      field(t('conn.form.extension'), target, t('conn.form.extensionHint')),
      field(t('conn.form.password'), password, t('conn.form.passwordHint')),
      field(t('conn.form.wsUrl'), ws),
      msg,
      h('div', { class: 'form-actions' },
        hasOwnAccount ? h('button', {
          type: 'button', class: 'btn', testid: 'conn-use-mine',
          onclick: () => {
            void phone.startAuto();
            msg.hidden = true;
          },
        }, t('conn.form.useMine')) : null,
        h('button', { type: 'submit', class: 'btn btn-primary', testid: 'conn-submit' }, t('conn.form.connect'))));

      root.append(pageHeader('conn.form.title', 'conn.form.subtitle'), form);
    },
  };
}
