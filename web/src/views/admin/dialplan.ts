// Dial plan page (issue 11): the outbound dial plan and the toll-fraud
// defaults in force, where they come from (the configuration file or an
// administrator), the form to change them (PUT) and the way back to the
// configuration's values (DELETE). Admins only. A server refusal is shown
// beside the field it names and the form keeps what was typed.
import { h, mount } from '../../dom';
import { t, type Key } from '../../i18n';
import { api, ApiError } from '../../api';
import type { View } from '../../router';
import { confirmDialog } from '../../dialogs';
import { subscribeEvents } from '../../events';
import { errorBox, field, pageHeader } from '../common';
import {
  buildDialplanBody, dialplanErrorField, errorDetail, formDiffers, newRoute, sameSettings, settingsToValues, DialplanFormError,
  DIAL_PERMISSIONS, DIALPLAN_FIELDS, type DialplanAnswer, type DialplanErrorField, type DialplanField, type DialplanFormValues,
  type RouteFormValues,
} from '../../dialplan';

/** Each field's label and help, by its API name. */
const LABELS: Record<DialplanField, [Key, Key]> = {
  countryCode: ['dialplan.countryCode', 'dialplan.countryCodeHint'],
  internationalPrefix: ['dialplan.internationalPrefix', 'dialplan.internationalPrefixHint'],
  nationalPrefix: ['dialplan.nationalPrefix', 'dialplan.nationalPrefixHint'],
  outboundPatterns: ['dialplan.outboundPatterns', 'dialplan.outboundPatternsHint'],
  strip: ['dialplan.strip', 'dialplan.stripHint'],
  prepend: ['dialplan.prepend', 'dialplan.prependHint'],
  agentPermission: ['dialplan.agentPermission', 'dialplan.agentPermissionHint'],
  maxConcurrentOutbound: ['dialplan.maxConcurrentOutbound', 'dialplan.limitHint'],
  maxOutboundPerHour: ['dialplan.maxOutboundPerHour', 'dialplan.limitHint'],
  blockedPrefixes: ['dialplan.blockedPrefixes', 'dialplan.blockedPrefixesHint'],
};

/** What is in force and where it comes from; the form below may hold edits not saved yet. */
function inForceCard(a: DialplanAnswer, notice: HTMLElement): HTMLElement {
  const s = a.settings;
  const saved = a.source === 'saved';
  return h('section', { class: 'card', testid: 'dialplan-in-force', 'data-source': a.source },
    h('div', { class: 'dialplan-in-force-head' },
      h('h2', null, t('dialplan.inForce')),
      h('span', { class: `badge ${saved ? 'badge-ok' : 'badge-neutral'}`, testid: 'dialplan-source', 'data-source': a.source },
        t(saved ? 'dialplan.source.saved' : 'dialplan.source.config'))),
    h('p', { class: 'muted small' }, t(saved ? 'dialplan.sourceHint.saved' : 'dialplan.sourceHint.config')),
    h('ul', { class: 'dialplan-summary' },
      h('li', { testid: 'dialplan-summary-permission', 'data-value': s.agentPermission },
        t('dialplan.summary.permission', { perm: t(`agents.dialing.${s.agentPermission}` as Key) })),
      h('li', { testid: 'dialplan-summary-concurrent', 'data-value': s.maxConcurrentOutbound },
        s.maxConcurrentOutbound === 0 ? t('dialplan.summary.concurrentNone') : t('dialplan.summary.concurrent', { n: s.maxConcurrentOutbound })),
      h('li', { testid: 'dialplan-summary-hour', 'data-value': s.maxOutboundPerHour },
        s.maxOutboundPerHour === 0 ? t('dialplan.summary.hourNone') : t('dialplan.summary.hour', { n: s.maxOutboundPerHour })),
      h('li', { testid: 'dialplan-summary-lists' },
        t('dialplan.summary.lists', { patterns: s.outboundPatterns.length, blocked: s.blockedPrefixes.length })),
      (s.routes ?? []).length > 0
        ? h('li', { testid: 'dialplan-summary-routes', 'data-value': s.routes.length },
          t('dialplan.summary.routes', { n: s.routes.length, names: s.routes.map((r) => r.name).join(', ') }))
        : null),
    notice);
}

export function dialplanView(): View {
  return {
    render(root) {
      const inForceBox = h('div', null);
      const formBox = h('div', { testid: 'dialplan-box' }, t('common.loading'));
      root.append(pageHeader('dialplan.title', 'dialplan.subtitle'), inForceBox, formBox);

      /** The settings the page last showed as in force, and the form's reader (once shown). */
      let current: DialplanAnswer | null = null;
      let readForm: (() => DialplanFormValues) | null = null;
      const notice = h('div', { class: 'alert alert-warn', role: 'status', testid: 'dialplan-changed', hidden: true },
        t('dialplan.changedElsewhere'), ' ',
        h('button', { type: 'button', class: 'btn btn-small', testid: 'dialplan-load-in-force', onclick: () => {
          if (current) show(current);
        } }, t('dialplan.loadInForce')));

      const showInForce = (a: DialplanAnswer) => {
        current = a;
        mount(inForceBox, inForceCard(a, notice));
      };

      const show = (a: DialplanAnswer, flash?: string) => {
        notice.hidden = true;
        showInForce(a);
        const form = dialplanForm(a, flash, {
          saved: (res, msg) => show(res, msg),
        });
        readForm = form.read;
        mount(formBox, form.el);
      };

      api.dialplan().then((a) => show(a)).catch((err) => mount(formBox, errorBox(err)));

      // Another administrator's save (or reset) reaches this page as a
      // `dialplan` event: the summary follows it, and the form, if it holds
      // other values, keeps them and says so instead of being overwritten.
      return subscribeEvents((ev) => {
        if (ev.type !== 'dialplan' || !current) return;
        api.dialplan().then((fresh) => {
          if (!current || (fresh.source === current.source && sameSettings(fresh.settings, current.settings))) return;
          showInForce(fresh);
          notice.hidden = !(readForm && formDiffers(readForm(), fresh.settings));
        }).catch(() => undefined);
      });
    },
  };
}

interface FormHooks {
  saved: (a: DialplanAnswer, flash: string) => void;
}

function dialplanForm(a: DialplanAnswer, flash: string | undefined, hooks: FormHooks): { el: HTMLElement; read: () => DialplanFormValues } {
  const v = settingsToValues(a.settings);
  const text = (f: DialplanField, attrs: Record<string, unknown> = {}) =>
    h('input', { testid: `dialplan-${f}`, name: f, value: v[f], autocomplete: 'off', spellcheck: 'false', ...attrs });
  const count = (f: DialplanField) => text(f, { inputmode: 'numeric', class: 'mono', maxlength: 9 });
  const lines = (f: DialplanField, rows: number) => {
    const ta = h('textarea', { testid: `dialplan-${f}`, name: f, rows, spellcheck: 'false', autocomplete: 'off', class: 'mono' });
    ta.value = v[f];
    return ta;
  };
  const agentPermission = h('select', { testid: 'dialplan-agentPermission', name: 'agentPermission' },
    DIAL_PERMISSIONS.map((p) => h('option', { value: p }, t(`agents.dialing.${p}` as Key))),
    // A value this console does not know stays shown, so saving other fields keeps it.
    (DIAL_PERMISSIONS as readonly string[]).includes(v.agentPermission) ? null : h('option', { value: v.agentPermission }, v.agentPermission));
  agentPermission.value = v.agentPermission;

  const inputs: Record<DialplanField, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement> = {
    countryCode: text('countryCode', { class: 'mono', maxlength: 3, inputmode: 'numeric' }),
    internationalPrefix: text('internationalPrefix', { class: 'mono', maxlength: 40 }),
    nationalPrefix: text('nationalPrefix', { class: 'mono', maxlength: 2, inputmode: 'numeric' }),
    outboundPatterns: lines('outboundPatterns', 4),
    strip: count('strip'),
    prepend: text('prepend', { class: 'mono', maxlength: 10 }),
    agentPermission,
    maxConcurrentOutbound: count('maxConcurrentOutbound'),
    maxOutboundPerHour: count('maxOutboundPerHour'),
    blockedPrefixes: lines('blockedPrefixes', 8),
  };

  // Each field carries its own error line, right under it.
  const errors = {} as Record<DialplanField, HTMLElement>;
  const fields = {} as Record<DialplanField, HTMLElement>;
  for (const f of DIALPLAN_FIELDS) {
    const [label, hint] = LABELS[f];
    const el = field(t(label), inputs[f], t(hint));
    errors[f] = h('p', { class: 'field-error', id: `${inputs[f].id}-error`, testid: `dialplan-error-${f}`, hidden: true });
    el.append(errors[f]);
    el.dataset.field = f;
    fields[f] = el;
  }

  const routes = routesEditor(v.routes, () => refreshUnsaved());
  const read = (): DialplanFormValues => {
    const out = { routes: routes.read() } as DialplanFormValues;
    for (const f of DIALPLAN_FIELDS) out[f] = inputs[f].value;
    return out;
  };

  const message = h('p', { role: 'status', 'aria-live': 'polite', testid: 'dialplan-message', class: flash ? 'alert alert-ok' : undefined, hidden: !flash }, flash ?? '');
  const unsaved = h('span', { class: 'badge badge-warn', testid: 'dialplan-unsaved', hidden: true }, t('dialplan.unsaved'));
  const refreshUnsaved = () => {
    unsaved.hidden = !formDiffers(read(), a.settings);
  };

  const clearErrors = () => {
    routes.error.hidden = true;
    routes.error.textContent = '';
    for (const f of DIALPLAN_FIELDS) {
      errors[f].hidden = true;
      errors[f].textContent = '';
      inputs[f].removeAttribute('aria-invalid');
      inputs[f].removeAttribute('aria-errormessage');
    }
  };
  const say = (tone: 'ok' | 'error', text: string, err?: unknown, fieldName?: DialplanErrorField | null) => {
    message.className = `alert alert-${tone}`;
    message.textContent = text;
    message.dataset.field = fieldName ?? '';
    message.dataset.code = err instanceof ApiError ? err.code : '';
    message.dataset.status = err instanceof ApiError ? String(err.status) : '';
    message.hidden = false;
  };
  const fieldError = (f: DialplanErrorField, detail: string, err: unknown) => {
    if (f === 'routes') {
      routes.error.textContent = detail;
      routes.error.hidden = false;
      say('error', t('dialplan.notSaved', { field: t('dialplan.routes') }), err, f);
      routes.error.scrollIntoView?.({ block: 'nearest' });
      return;
    }
    errors[f].textContent = detail;
    errors[f].hidden = false;
    inputs[f].setAttribute('aria-invalid', 'true');
    inputs[f].setAttribute('aria-errormessage', errors[f].id);
    say('error', t('dialplan.notSaved', { field: t(LABELS[f][0]) }), err, f);
    inputs[f].focus();
  };
  const failed = (err: unknown) => {
    if (err instanceof DialplanFormError) {
      fieldError(err.field, err.field === 'routes' ? t('dialplan.routeStrip') : t('dialplan.wholeNumber'), err);
      return;
    }
    const f = err instanceof ApiError && (err.status === 422 || err.status === 400) ? dialplanErrorField(err.message) : null;
    if (f && err instanceof ApiError) fieldError(f, errorDetail(err.message, f), err);
    else say('error', t('common.error', { msg: err instanceof Error ? err.message : String(err) }), err);
  };

  const save = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'dialplan-save' }, t('dialplan.save'));
  const saved = a.source === 'saved';
  const reset = h('button', {
    type: 'button', class: 'btn btn-danger-ghost', testid: 'dialplan-reset', disabled: !saved,
    title: saved ? undefined : t('dialplan.resetNothing'),
    onclick: async () => {
      if (!(await confirmDialog(t('dialplan.confirmReset'), t('dialplan.reset'), true))) return;
      reset.disabled = true;
      try {
        hooks.saved(await api.resetDialplan(), t('dialplan.resetDone'));
      } catch (err) {
        reset.disabled = false;
        say('error', t('common.error', { msg: err instanceof Error ? err.message : String(err) }), err);
      }
    },
  }, t('dialplan.reset'));

  const el = h('form', {
    class: 'card dialplan-form', testid: 'dialplan-form', novalidate: true,
    oninput: refreshUnsaved, onchange: refreshUnsaved,
    onsubmit: async (ev: Event) => {
      ev.preventDefault();
      clearErrors();
      message.hidden = true;
      save.disabled = true;
      try {
        hooks.saved(await api.saveDialplan(buildDialplanBody(read())), t('dialplan.saved'));
      } catch (err) {
        failed(err);
      } finally {
        save.disabled = false;
      }
    },
  },
  h('fieldset', null, h('legend', null, t('dialplan.numbering')),
    h('div', { class: 'field-row field-row-3' }, fields.countryCode, fields.internationalPrefix, fields.nationalPrefix)),
  h('fieldset', null, h('legend', null, t('dialplan.outbound')),
    fields.outboundPatterns,
    h('div', { class: 'field-row' }, fields.strip, fields.prepend)),
  routes.el,
  h('fieldset', null, h('legend', null, t('dialplan.fraud')),
    fields.agentPermission,
    h('p', { class: 'hint dialplan-agents-link' }, h('a', { href: '/admin/agents', 'data-link': true, testid: 'dialplan-agents-link' }, t('dialplan.agentsLink'))),
    h('div', { class: 'field-row' }, fields.maxConcurrentOutbound, fields.maxOutboundPerHour),
    fields.blockedPrefixes),
  message,
  h('div', { class: 'form-actions dialplan-actions' },
    reset, h('span', { class: 'spacer' }), unsaved, save));
  return { el, read };
}

/**
 * The outbound routes: one card per route (name, patterns one per line,
 * strip, prepend, the trunks it may use), in the order they are tried;
 * add, remove and move up. The trunks ticked come from the trunks list; a
 * route naming a trunk the list does not have keeps it, shown by id.
 */
function routesEditor(initial: RouteFormValues[], changed: () => void): { el: HTMLElement; read: () => RouteFormValues[]; error: HTMLElement } {
  let state: RouteFormValues[] = initial.map((r) => ({ ...r, trunkIds: [...r.trunkIds] }));
  let trunks: { id: number; name: string }[] = [];
  const list = h('div', { class: 'dialplan-routes', testid: 'dialplan-routes' });
  const error = h('p', { class: 'field-error', testid: 'dialplan-error-routes', role: 'alert', hidden: true });
  /** Readers of the cards on screen, in order. */
  let readers: (() => RouteFormValues)[] = [];
  const read = () => readers.map((r) => r());

  const render = () => {
    readers = [];
    const cards = state.map((r, i) => {
      const name = h('input', { testid: `dialplan-route-name-${i}`, value: r.name, maxlength: 64, autocomplete: 'off' }) as HTMLInputElement;
      const patterns = h('textarea', { testid: `dialplan-route-patterns-${i}`, rows: 2, class: 'mono', spellcheck: 'false' }) as HTMLTextAreaElement;
      patterns.value = r.patterns;
      const strip = h('input', { testid: `dialplan-route-strip-${i}`, value: r.strip, class: 'mono', inputmode: 'numeric', maxlength: 9 }) as HTMLInputElement;
      const prepend = h('input', { testid: `dialplan-route-prepend-${i}`, value: r.prepend, class: 'mono', maxlength: 10 }) as HTMLInputElement;
      const known = trunks.map((tr) => tr.id);
      const choices = [...trunks, ...r.trunkIds.filter((id) => !known.includes(id)).map((id) => ({ id, name: `#${id}` }))];
      const boxes = choices.map((tr) => {
        const box = h('input', { type: 'checkbox', testid: `dialplan-route-trunk-${i}-${tr.id}`, value: String(tr.id) }) as HTMLInputElement;
        box.checked = r.trunkIds.includes(tr.id);
        return { id: tr.id, box, el: h('label', { class: 'checkbox-inline' }, box, ' ', tr.name) };
      });
      readers.push(() => {
        const ticked = boxes.filter((b) => b.box.checked).map((b) => b.id);
        // Keep the order the route had, new ticks after.
        const kept = state[i].trunkIds.filter((id) => ticked.includes(id));
        return {
          name: name.value, patterns: patterns.value, strip: strip.value, prepend: prepend.value,
          trunkIds: [...kept, ...ticked.filter((id) => !kept.includes(id))],
        };
      });
      const act = (label: string, testid: string, fn: () => void, disabled = false) =>
        h('button', { type: 'button', class: 'btn btn-small', testid, disabled, onclick: () => {
          state = read();
          fn();
          render();
          changed();
        } }, label);
      return h('div', { class: 'card dialplan-route', testid: `dialplan-route-${i}` },
        h('div', { class: 'field-row field-row-3' },
          field(t('dialplan.routeName', { n: i + 1 }), name),
          field(t('dialplan.strip'), strip),
          field(t('dialplan.prepend'), prepend)),
        field(t('dialplan.routePatterns'), patterns),
        h('div', { class: 'field' },
          h('span', { class: 'label' }, t('dialplan.routeTrunks')),
          h('div', { class: 'checkbox-row', testid: `dialplan-route-trunks-${i}` }, boxes.length ? boxes.map((b) => b.el) : t('dialplan.routeNoTrunks')),
          h('small', { class: 'hint' }, t('dialplan.routeTrunksHint'))),
        h('div', { class: 'form-actions' },
          act(t('dialplan.routeUp'), `dialplan-route-up-${i}`, () => {
            [state[i - 1], state[i]] = [state[i], state[i - 1]];
          }, i === 0),
          act(t('dialplan.routeRemove'), `dialplan-route-remove-${i}`, () => {
            state.splice(i, 1);
          })));
    });
    mount(list, ...(cards.length ? cards : [h('p', { class: 'muted small', testid: 'dialplan-routes-none' }, t('dialplan.routesNone'))]));
  };

  const add = h('button', { type: 'button', class: 'btn', testid: 'dialplan-route-add', onclick: () => {
    state = [...read(), newRoute()];
    render();
    changed();
  } }, t('dialplan.routeAdd'));
  render();
  api.trunks({ limit: 500, order: 'priority' }).then((r) => {
    state = read();
    trunks = r.trunks.map((tr) => ({ id: tr.id, name: tr.name }));
    render();
  }).catch(() => undefined);

  const el = h('fieldset', { testid: 'dialplan-routes-fieldset' }, h('legend', null, t('dialplan.routes')),
    h('p', { class: 'hint' }, t('dialplan.routesHint')),
    list, error, h('div', { class: 'form-actions' }, add));
  return { el, read, error };
}
