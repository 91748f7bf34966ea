// Modal dialogs built on <dialog>: focus trapping and Escape come for free.
import { h } from './dom';
import { t } from './i18n';
import type { SipCredentials } from './api';

export function openDialog(content: (close: () => void) => (HTMLElement | null)[], testid: string, labelledBy?: string): HTMLDialogElement {
  const dlg = h('dialog', { class: 'dialog', testid, 'aria-labelledby': labelledBy });
  const close = () => {
    dlg.close();
  };
  dlg.append(...content(close).filter((el): el is HTMLElement => el !== null));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

export function confirmDialog(message: string, confirmLabel: string, danger = false): Promise<boolean> {
  return new Promise((resolve) => {
    let result = false;
    const dlg = openDialog((close) => [
      h('p', { class: 'dialog-message', id: 'confirm-msg' }, message),
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'btn', testid: 'confirm-cancel', onclick: close }, t('common.cancel')),
        h('button', {
          type: 'button', class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, testid: 'confirm-ok',
          onclick: () => {
            result = true;
            close();
          },
        }, confirmLabel)),
    ], 'confirm-dialog', 'confirm-msg');
    dlg.addEventListener('close', () => resolve(result));
  });
}

async function copy(text: string, btn: HTMLButtonElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API unavailable (insecure context): select-and-copy fallback.
    const ta = h('textarea', { class: 'sr-only' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  const old = btn.textContent;
  btn.textContent = t('common.copied');
  window.setTimeout(() => {
    btn.textContent = old;
  }, 1500);
}

/** The once-only SIP credentials dialog of seeds/004. */
export function showCredentials(creds: SipCredentials, who: string): Promise<void> {
  return new Promise((resolve) => {
    const row = (labelKey: 'creds.username' | 'creds.password' | 'creds.extension' | 'creds.domain', value: string, testid: string) => {
      const btn = h('button', { type: 'button', class: 'btn btn-small', testid: `${testid}-copy` }, t('common.copy'));
      btn.addEventListener('click', () => void copy(value, btn));
      return h('div', { class: 'cred-row' },
        h('span', { class: 'cred-label' }, t(labelKey)),
        h('code', { class: 'cred-value', testid }, value),
        btn);
    };
    const dlg = openDialog((close) => [
      h('h2', { id: 'creds-title' }, t('creds.title')),
      h('p', { class: 'muted' }, who),
      h('p', { class: 'alert alert-warn', role: 'alert', testid: 'creds-warning' }, '⚠ ', t('creds.warning')),
      row('creds.username', creds.username, 'creds-username'),
      row('creds.password', creds.password, 'creds-password'),
      row('creds.extension', creds.extension, 'creds-extension'),
      creds.domain ? row('creds.domain', creds.domain, 'creds-domain') : null,
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'btn btn-primary', testid: 'creds-done', onclick: close }, t('creds.done'))),
    ], 'credentials-dialog', 'creds-title');
    dlg.addEventListener('close', () => resolve());
  });
}
