// WebRTC settings: STUN/TURN servers and the WebSocket URL (GET/PUT /hr/webrtc-config).
import { h, mount } from '../../dom';
import { t } from '../../i18n';
import { api, type WebrtcConfig } from '../../api';
import type { View } from '../../router';
import { currentUser } from '../../session';
import { errorBox, field, pageHeader } from '../common';

export function webrtcView(): View {
  return {
    render(root) {
      const box = h('div', null, t('common.loading'));
      root.append(pageHeader('webrtc.title', 'webrtc.subtitle'), box);
      const readOnly = currentUser()?.role !== 'admin';

      const show = (cfg: WebrtcConfig, flash?: string) => {
        const stun = h('input', { testid: 'webrtc-stun', value: cfg.stunServer ?? '', placeholder: 'stun:127.0.0.1:3478', disabled: readOnly });
        const turn = h('input', { testid: 'webrtc-turn', value: cfg.turnServer ?? '', placeholder: 'turn:127.0.0.1:3478', disabled: readOnly });
        const turnUser = h('input', { testid: 'webrtc-turn-user', value: cfg.turnUsername ?? '', autocomplete: 'off', disabled: readOnly });
        const turnPass = h('input', { type: 'password', testid: 'webrtc-turn-password', autocomplete: 'new-password', disabled: readOnly });
        const ws = h('input', { testid: 'webrtc-ws-url', value: cfg.wsUrl ?? '', required: true, disabled: readOnly });
        const msg = h('p', { role: 'status', testid: 'webrtc-message', class: flash ? 'alert alert-ok' : undefined, hidden: !flash }, flash ?? '');
        const ice = h('pre', { class: 'code-block', testid: 'webrtc-ice' },
          cfg.iceServers?.length ? JSON.stringify(cfg.iceServers, null, 2) : t('webrtc.noIce'));
        const form = h('form', {
          class: 'card form-grid', testid: 'webrtc-form',
          onsubmit: async (ev: Event) => {
            ev.preventDefault();
            const body: Record<string, unknown> = {
              stunServer: stun.value.trim() || null,
              turnServer: turn.value.trim() || null,
              turnUsername: turnUser.value.trim() || null,
              wsUrl: ws.value.trim(),
            };
            if (turnPass.value) body.turnPassword = turnPass.value;
            if (!turn.value.trim()) body.turnPassword = null;
            msg.hidden = false;
            try {
              const res = await api.saveWebrtcConfig(body);
              show(res.config ?? (await api.webrtcConfig()).config, t('common.saved'));
            } catch (err) {
              msg.className = 'alert alert-error';
              msg.textContent = t('common.error', { msg: err instanceof Error ? err.message : String(err) });
            }
          },
        },
        field(t('webrtc.wsUrl'), ws),
        field(t('webrtc.stun'), stun, t('webrtc.empty')),
        field(t('webrtc.turn'), turn, t('webrtc.empty')),
        h('div', { class: 'field-row' },
          field(t('webrtc.turnUser'), turnUser),
          field(t('webrtc.turnPassword'), turnPass, cfg.hasTurnPassword ? t('webrtc.turnPasswordSet') : undefined)),
        msg,
        readOnly ? null : h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', testid: 'webrtc-save' }, t('common.save'))));
        mount(box, form, h('section', { class: 'card form-grid' }, h('h2', null, t('webrtc.effective')), ice));
      };

      api.webrtcConfig().then((r) => show(r.config)).catch((err) => mount(box, errorBox(err)));
    },
  };
}
