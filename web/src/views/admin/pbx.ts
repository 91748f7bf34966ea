// PBX configuration page (issue 12): which engine runs (from
// /api/telephony/status), and with `mode = "asterisk"` the PJSIP files
// centralita writes for Asterisk (secrets masked), the outcome of the last
// `Reload` and a button that regenerates and reloads them. Other engines
// answer 409 `no_pbx_config`: the page says why none is needed. Admins only.
import { h, mount, formatDateTime } from '../../dom';
import { t, locale, type Key } from '../../i18n';
import { api, ApiError } from '../../api';
import type { View } from '../../router';
import { errorBox, pageHeader } from '../common';
import {
  fileSize, noConfigReason, reloadState, NO_PBX_CONFIG,
  type PbxConfigView, type PbxReload, type TelephonyStatus,
} from '../../pbx';

function engineCard(status: TelephonyStatus | null): HTMLElement {
  if (!status) return h('p', { class: 'muted', testid: 'pbx-engine', 'data-mode': '' }, t('pbx.engineUnknown'));
  const engine = status.engine ?? t('pbx.engineNone');
  return h('dl', {
    class: 'kv', testid: 'pbx-engine', 'data-mode': status.mode, 'data-engine': status.engine ?? '',
    'data-connected': String(status.connected),
  },
  h('dt', null, t('pbx.mode')), h('dd', { class: 'mono', testid: 'pbx-mode' }, status.mode),
  h('dt', null, t('pbx.engine')), h('dd', { class: 'mono', testid: 'pbx-engine-name' }, engine),
  h('dt', null, t('pbx.connected')), h('dd', null,
    h('span', { class: `badge ${status.connected ? 'badge-ok' : 'badge-bad'}`, testid: 'pbx-connected' },
      t(status.connected ? 'pbx.connectedYes' : 'pbx.connectedNo'))));
}

function reloadBlock(r: PbxReload | null): HTMLElement {
  const state = reloadState(r);
  if (!r) return h('p', { class: 'muted', testid: 'pbx-reload', 'data-state': state }, t('pbx.reloadNone'));
  return h('dl', { class: 'kv', testid: 'pbx-reload', 'data-state': state, 'data-at': r.at },
    h('dt', null, t('pbx.reloadAt')), h('dd', { testid: 'pbx-reload-at' }, formatDateTime(r.at, locale())),
    h('dt', null, t('pbx.reloadOutcome')), h('dd', null,
      h('span', { class: `badge ${r.ok ? 'badge-ok' : 'badge-bad'}`, testid: 'pbx-reload-ok', 'data-ok': String(r.ok) },
        t(r.ok ? 'pbx.reloadOk' : 'pbx.reloadFailed'))),
    h('dt', null, t('pbx.reloadMessage')), h('dd', { class: 'mono', testid: 'pbx-reload-message' }, r.message));
}

function filesBlock(config: PbxConfigView): HTMLElement[] {
  if (!config.files.length) return [h('p', { class: 'empty', testid: 'pbx-files-empty' }, t('pbx.noFiles'))];
  return config.files.map((f) => {
    const size = fileSize(f.content);
    return h('section', { class: 'card', testid: 'pbx-file', 'data-name': f.name },
      h('h2', { testid: 'pbx-file-name' }, f.name),
      h('p', { class: 'muted small' },
        h('span', { class: 'mono', testid: 'pbx-file-path' }, f.path), ' · ', t('pbx.fileSize', { lines: size.lines, bytes: size.bytes })),
      h('pre', { class: 'code-block pbx-file-content', testid: 'pbx-file-content', tabindex: '0' }, f.content));
  });
}

export function pbxView(): View {
  return {
    render(root) {
      let alive = true;
      const engineBox = h('div', { testid: 'pbx-engine-box' }, t('common.loading'));
      const body = h('div', { testid: 'pbx-body' }, t('common.loading'));
      const notice = h('p', { class: 'alert', role: 'status', testid: 'pbx-notice', hidden: true });
      const regenerate = h('button', {
        type: 'button', class: 'btn btn-primary', testid: 'pbx-regenerate', hidden: true,
        onclick: () => void doRegenerate(),
      }, t('pbx.regenerate'));

      const showConfig = (config: PbxConfigView) => {
        regenerate.hidden = false;
        mount(body,
          h('section', { class: 'card' },
            h('h2', null, t('pbx.lastReload')),
            reloadBlock(config.lastReload),
            h('p', { class: 'muted small' }, t('pbx.masked'), ' ', t('pbx.includeHint'))),
          filesBlock(config));
      };

      const showError = (err: unknown, mode: string | null) => {
        regenerate.hidden = true;
        if (err instanceof ApiError && err.status === 409 && err.code === NO_PBX_CONFIG) {
          const reason = noConfigReason(mode);
          mount(body, h('section', { class: 'card' },
            h('p', { class: 'alert alert-ok', testid: 'pbx-none', 'data-reason': reason }, t(`pbx.none.${reason}` as Key))));
        } else {
          mount(body, errorBox(err));
        }
      };

      const load = async () => {
        const [status, config] = await Promise.allSettled([api.telephonyStatus(), api.pbxConfig()]);
        if (!alive) return;
        const st = status.status === 'fulfilled' ? status.value.status : null;
        mount(engineBox, engineCard(st));
        if (config.status === 'fulfilled') showConfig(config.value.config);
        else showError(config.reason, st?.mode ?? null);
      };

      const doRegenerate = async () => {
        regenerate.disabled = true;
        notice.hidden = true;
        try {
          const res = await api.regeneratePbxConfig();
          if (!alive) return;
          showConfig(res.config);
          const r = res.config.lastReload;
          const ok = reloadState(r) === 'ok';
          notice.className = `alert ${ok ? 'alert-ok' : 'alert-warn'}`;
          notice.dataset.ok = String(ok);
          notice.textContent = ok ? t('pbx.regenerated') : t('pbx.regeneratedNotReloaded', { msg: r?.message ?? '' });
          notice.hidden = false;
        } catch (err) {
          if (!alive) return;
          if (err instanceof ApiError && err.code === NO_PBX_CONFIG) {
            showError(err, null);
          } else {
            notice.className = 'alert alert-error';
            notice.dataset.ok = 'false';
            notice.textContent = t('common.error', { msg: err instanceof Error ? err.message : String(err) });
            notice.hidden = false;
          }
        } finally {
          regenerate.disabled = false;
        }
      };

      root.append(
        pageHeader('pbx.title', 'pbx.subtitle', regenerate),
        h('section', { class: 'card' }, h('h2', null, t('pbx.engineTitle')), engineBox),
        notice,
        body);
      void load();
      return () => {
        alive = false;
      };
    },
  };
}
