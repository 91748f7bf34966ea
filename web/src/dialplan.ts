// The dial plan (issue 11) without the DOM: the DialplanSettings shape of
// docs/API.md, the form's text to a PUT body (patterns and prefixes one
// per line), and which field a 422 names. The page is
// src/views/admin/dialplan.ts.

export const DIAL_PERMISSIONS = ['internal', 'national', 'international'] as const;
export type AgentPermission = (typeof DIAL_PERMISSIONS)[number];

/** One outbound route: the numbers it carries, their rewrite and the trunks it may use. */
export interface RouteSettings {
  name: string;
  patterns: string[];
  strip: number;
  prepend: string;
  /** Empty: every active trunk. */
  trunkIds: number[];
}

/** The configuration's `[dialplan]` keys in the API's spelling; every field is sent on PUT. */
export interface DialplanSettings {
  countryCode: string;
  /** Comma-separated (`00`, `00,011`). */
  internationalPrefix: string;
  nationalPrefix: string;
  outboundPatterns: string[];
  strip: number;
  prepend: string;
  agentPermission: AgentPermission | string;
  /** 0: no limit. */
  maxConcurrentOutbound: number;
  /** 0: no limit. */
  maxOutboundPerHour: number;
  blockedPrefixes: string[];
  /** Several routes, tried in order; when not empty they replace outboundPatterns, strip and prepend. */
  routes: RouteSettings[];
}

/** `config`: the configuration file's `[dialplan]`; `saved`: saved by an administrator. */
export type DialplanSource = 'config' | 'saved';

export interface DialplanAnswer {
  settings: DialplanSettings;
  source: DialplanSource | string;
}

export const DIALPLAN_FIELDS = [
  'countryCode', 'internationalPrefix', 'nationalPrefix', 'outboundPatterns', 'strip', 'prepend',
  'agentPermission', 'maxConcurrentOutbound', 'maxOutboundPerHour', 'blockedPrefixes',
] as const satisfies readonly (keyof DialplanSettings)[];
export type DialplanField = (typeof DIALPLAN_FIELDS)[number];

/** A field a check or a 422 can name: a form field, or the routes as a whole. */
export type DialplanErrorField = DialplanField | 'routes';

/** One route as its inputs hold it: patterns one per line, the trunks ticked. */
export interface RouteFormValues {
  name: string;
  patterns: string;
  strip: string;
  prepend: string;
  trunkIds: number[];
}

/** The form's values as the inputs hold them: text everywhere, lists one entry per line; the routes' editors. */
export type DialplanFormValues = Record<DialplanField, string> & { routes: RouteFormValues[] };

export function routeToValues(r: RouteSettings): RouteFormValues {
  return { name: r.name, patterns: r.patterns.join('\n'), strip: String(r.strip), prepend: r.prepend, trunkIds: [...r.trunkIds] };
}

/** An empty route for the "add" button. */
export function newRoute(): RouteFormValues {
  return { name: '', patterns: '', strip: '0', prepend: '', trunkIds: [] };
}

export function settingsToValues(s: DialplanSettings): DialplanFormValues {
  return {
    routes: (s.routes ?? []).map(routeToValues),
    countryCode: s.countryCode,
    internationalPrefix: s.internationalPrefix,
    nationalPrefix: s.nationalPrefix,
    outboundPatterns: s.outboundPatterns.join('\n'),
    strip: String(s.strip),
    prepend: s.prepend,
    agentPermission: s.agentPermission,
    maxConcurrentOutbound: String(s.maxConcurrentOutbound),
    maxOutboundPerHour: String(s.maxOutboundPerHour),
    blockedPrefixes: s.blockedPrefixes.join('\n'),
  };
}

/**
 * A textarea's entries: one per line, trimmed, blank lines dropped. Only
 * line breaks separate: a pattern's set (`_9[1-4,7]X.`) holds a comma.
 */
export function splitLines(text: string): string[] {
  return text.split(/\r\n|\r|\n/).map((l) => l.trim()).filter((l) => l !== '');
}

/**
 * Blocked prefixes: one per line, and a pasted "803, 806 807" is read as
 * three (prefixes are digits, so commas and spaces only separate).
 */
export function splitPrefixes(text: string): string[] {
  return text.split(/[\s,;]+/).filter((p) => p !== '');
}

/** A check the form makes before sending; `field` is the DialplanSettings field it is about. */
export class DialplanFormError extends Error {
  constructor(
    readonly field: DialplanErrorField,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** A count the API takes as an unsigned integer; the range is the server's to check. */
function wholeNumber(field: DialplanErrorField, text: string): number {
  const v = text.trim();
  if (!/^\d{1,9}$/.test(v)) throw new DialplanFormError(field, 'a whole number, 0 or more');
  return Number(v);
}

/** A route's PUT body: text trimmed, patterns split by line, trunks in the order ticked. */
export function buildRouteBody(v: RouteFormValues): RouteSettings {
  return {
    name: v.name.trim(),
    patterns: splitLines(v.patterns),
    strip: wholeNumber('routes', v.strip),
    prepend: v.prepend.trim(),
    trunkIds: [...v.trunkIds],
  };
}

/**
 * The PUT body for the form: every field, text trimmed, lists split by
 * line. Only what JSON cannot carry is stopped here (a count that is not
 * a whole number); digits, patterns and ranges are the server's to judge,
 * so its 422 names the field.
 */
export function buildDialplanBody(v: DialplanFormValues): DialplanSettings {
  return {
    countryCode: v.countryCode.trim(),
    internationalPrefix: v.internationalPrefix.trim(),
    nationalPrefix: v.nationalPrefix.trim(),
    outboundPatterns: splitLines(v.outboundPatterns),
    strip: wholeNumber('strip', v.strip),
    prepend: v.prepend.trim(),
    agentPermission: v.agentPermission,
    maxConcurrentOutbound: wholeNumber('maxConcurrentOutbound', v.maxConcurrentOutbound),
    maxOutboundPerHour: wholeNumber('maxOutboundPerHour', v.maxOutboundPerHour),
    blockedPrefixes: splitPrefixes(v.blockedPrefixes),
    routes: v.routes.map(buildRouteBody),
  };
}

/**
 * The field a 422 message names: `agentPermission: ...` from the server's
 * checks, or `... target type: strip: invalid value ...` when the body
 * itself did not fit (the JSON decoder names the path after the prefix).
 */
export function dialplanErrorField(message: string): DialplanErrorField | null {
  const m = /^([A-Za-z]+)\s*:/.exec(message) ?? /target type:\s*([A-Za-z]+)[^:\s]*\s*:/.exec(message);
  if (!m) return null;
  return ([...DIALPLAN_FIELDS, 'routes'] as readonly string[]).includes(m[1]) ? (m[1] as DialplanErrorField) : null;
}

/** The server's words after the field name ("outboundPatterns: pattern ..." → "pattern ..."). */
export function errorDetail(message: string, field: DialplanErrorField): string {
  const at = message.indexOf(`${field}:`);
  return at < 0 ? message : message.slice(at + field.length + 1).trim();
}

/** Whether two settings route calls the same (list order counts: the server keeps it). */
export function sameSettings(a: DialplanSettings, b: DialplanSettings): boolean {
  const same = (x: unknown, y: unknown) =>
    Array.isArray(x) && Array.isArray(y) ? x.length === y.length && x.every((e, i) => e === y[i]) : x === y;
  const ra = a.routes ?? [];
  const rb = b.routes ?? [];
  return DIALPLAN_FIELDS.every((f) => same(a[f], b[f]))
    && ra.length === rb.length
    && ra.every((r, i) => (['name', 'patterns', 'strip', 'prepend', 'trunkIds'] as const).every((k) => same(r[k], rb[i][k])));
}

/**
 * Whether the form holds other values than `s` (edits not saved yet); a
 * form that cannot be read (a count that is no number) counts as changed.
 */
export function formDiffers(v: DialplanFormValues, s: DialplanSettings): boolean {
  try {
    return !sameSettings(buildDialplanBody(v), s);
  } catch {
    return true;
  }
}
