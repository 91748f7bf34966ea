import { h } from '../dom';
import { t } from '../i18n';
import { api, ApiError, type User } from '../api';
import type { View } from '../router';

export function loginView(onLoggedIn: (u: User) => void): View {
  return {
    render(root) {
      const loginInput = h('input', { id: 'login', name: 'login', autocomplete: 'username', required: true, testid: 'login-user' });
      const passInput = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, testid: 'login-password' });
      const error = h('p', { class: 'alert alert-error', role: 'alert', testid: 'login-error', hidden: true });
      const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', testid: 'login-submit' }, t('login.submit'));
      const form = h('form', {
        class: 'login-card card', testid: 'login-form',
        onsubmit: async (ev: Event) => {
          ev.preventDefault();
          error.hidden = true;
          submit.disabled = true;
          try {
            const { user } = await api.login(loginInput.value.trim(), passInput.value);
            onLoggedIn(user);
          } catch (err) {
            const msg = err instanceof ApiError && err.status === 401 ? t('login.invalid')
              : err instanceof ApiError && err.status === 429 ? t('login.rateLimited')
              : t('login.error', { msg: err instanceof Error ? err.message : String(err) });
            error.textContent = msg;
            error.hidden = false;
            passInput.select();
          } finally {
            submit.disabled = false;
          }
        },
      },
      h('div', { class: 'login-brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, 'C'), h('span', null, t('app.name'))),
      h('h1', null, t('login.title')),
      h('p', { class: 'muted' }, t('login.subtitle')),
      h('div', { class: 'field' }, h('label', { for: 'login', class: 'label' }, t('login.login')), loginInput),
      h('div', { class: 'field' }, h('label', { for: 'password', class: 'label' }, t('login.password')), passInput),
      error,
      submit);
      root.append(h('div', { class: 'login-wrap' }, form));
      loginInput.focus();
    },
  };
}
