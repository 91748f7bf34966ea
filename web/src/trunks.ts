// Trunk form logic without the DOM (docs/API.md "Trunks (issue 11)"): the
// kind presets, the form's values to a TrunkInput body, the JSON check of
// advancedSettings, and which field and tab a server error names. Kept
// pure so web/tests/trunks.test.ts runs it under node.

export const PROVIDERS = ['twilio', 'vonage', 'bandwidth', 'custom'] as const;
export const KINDS = ['nat_provider', 'no_nat', 'pbx_lan', 'corporate', 'custom'] as const;
export const TRANSPORTS = ['udp', 'tcp', 'tls'] as const;
export const STATUSES = ['active', 'inactive', 'maintenance', 'error'] as const;
export const DTMF_MODES = ['rfc4733', 'info', 'inband', 'auto'] as const;
export const SESSION_TIMERS = ['no', 'yes', 'required', 'always'] as const;
export const CODECS = ['pcmu', 'pcma', 'opus', 'g722', 'g729'] as const;
export const TABS = ['basic', 'auth', 'registration', 'media', 'advanced', 'custom'] as const;
export type Tab = (typeof TABS)[number];
export type Kind = (typeof KINDS)[number];

/** Mirrors docs/API.md's advancedSettings limit, so the form says it before the server does. */
export const MAX_ADVANCED_BYTES = 16 * 1024;

export interface Trunk {
  id: number;
  name: string;
  description: string | null;
  provider: string;
  kind: string;
  host: string;
  port: number;
  transport: string;
  sendsAuth: boolean;
  outboundAuthUsername: string | null;
  outboundAuthRealm: string | null;
  hasSecret: boolean;
  acceptsAuth: boolean;
  inboundAuthUsername: string | null;
  hasInboundSecret: boolean;
  inboundMatch: string[];
  sendsRegistration: boolean;
  acceptsRegistrations: boolean;
  registrationServerUri: string | null;
  registrationClientUri: string | null;
  registrationExpiration: number;
  registrationRetryInterval: number;
  registrationMaxRetries: number;
  registrationForbiddenRetryInterval: number;
  codecs: string[];
  dtmfMode: string;
  rtpSymmetric: boolean;
  forceRport: boolean;
  rewriteContact: boolean;
  qualifyFrequency: number;
  mediaAddress: string | null;
  sessionTimers: string;
  sessionExpires: number;
  sessionMinSe: number;
  fromUser: string | null;
  fromDomain: string | null;
  pai: string | null;
  sendPai: boolean;
  trustRemotePartyId: boolean;
  maxChannels: number;
  priority: number;
  status: string;
  registered: boolean;
  lastRegisteredAt: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
  totalCalls: number;
  successfulCalls: number;
  failedCalls: number;
  advancedSettings: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** The live registration of force_register and test_connection. */
export interface TrunkRegistration {
  state: 'registering' | 'registered' | 'rejected' | 'failed' | 'unregistered' | string;
  since: string;
  lastRegisteredAt: string | null;
  expiresAt: string | null;
  nextAttemptAt: string | null;
  failures: number;
  lastError: string | null;
}

export interface TrunkTestResult {
  options: { status: number; reason: string; rttMs: number } | null;
  registration: TrunkRegistration | null;
  error: string | null;
}

export interface TrunkPreview {
  trunk: string;
  section: string;
  config: string;
  settings: Record<string, unknown>;
}

export interface Preset {
  sendsRegistration: boolean;
  rtpSymmetric: boolean;
  forceRport: boolean;
  rewriteContact: boolean;
  qualifyFrequency: number;
  codecs: string[];
  sendPai: boolean;
  trustRemotePartyId: boolean;
  dtmfMode: string;
  sessionTimers: string;
}

// docs/API.md "Kind presets". The server applies these to the fields a body
// leaves out; the form mirrors them so the admin sees, before saving, what
// choosing a kind does (and the form then sends what it shows).
const preset = (reg: boolean, nat: [boolean, boolean, boolean], qualify: number, codecs: string[], pai: boolean): Preset => ({
  sendsRegistration: reg,
  rtpSymmetric: nat[0],
  forceRport: nat[1],
  rewriteContact: nat[2],
  qualifyFrequency: qualify,
  codecs,
  sendPai: pai,
  trustRemotePartyId: pai,
  dtmfMode: 'rfc4733',
  sessionTimers: 'yes',
});

export const PRESETS: Record<Kind, Preset> = {
  nat_provider: preset(true, [true, true, true], 60, ['pcmu', 'pcma'], false),
  no_nat: preset(true, [false, false, false], 60, ['pcmu', 'pcma'], false),
  pbx_lan: preset(false, [false, false, false], 30, ['pcmu', 'pcma', 'g722'], true),
  corporate: preset(true, [true, true, true], 60, ['pcmu', 'pcma', 'g722'], true),
  custom: preset(false, [false, true, false], 0, ['pcmu', 'pcma'], false),
};

export function isKind(k: string): k is Kind {
  return (KINDS as readonly string[]).includes(k);
}

/**
 * Everything the form edits, as the inputs hold it: text for text and
 * number inputs (so a half-typed value is never lost), booleans for boxes.
 */
export interface TrunkFormValues {
  name: string;
  description: string;
  provider: string;
  kind: string;
  host: string;
  port: string;
  transport: string;
  status: string;
  maxChannels: string;
  priority: string;
  codecs: string;
  sendsAuth: boolean;
  outboundAuthUsername: string;
  outboundAuthPassword: string;
  outboundAuthRealm: string;
  fromUser: string;
  fromDomain: string;
  acceptsAuth: boolean;
  inboundAuthUsername: string;
  inboundAuthPassword: string;
  sendsRegistration: boolean;
  acceptsRegistrations: boolean;
  registrationServerUri: string;
  registrationClientUri: string;
  registrationExpiration: string;
  registrationRetryInterval: string;
  registrationMaxRetries: string;
  registrationForbiddenRetryInterval: string;
  rtpSymmetric: boolean;
  forceRport: boolean;
  rewriteContact: boolean;
  qualifyFrequency: string;
  mediaAddress: string;
  dtmfMode: string;
  sessionTimers: string;
  sessionExpires: string;
  sessionMinSe: string;
  pai: string;
  sendPai: boolean;
  trustRemotePartyId: boolean;
  inboundMatch: string;
  advancedSettings: string;
  /** Remove the stored password (sends `null`); only offered when one is stored. */
  clearOutboundPassword: boolean;
  clearInboundPassword: boolean;
}

export type BoolField = { [K in keyof TrunkFormValues]: TrunkFormValues[K] extends boolean ? K : never }[keyof TrunkFormValues];
export type TextField = Exclude<keyof TrunkFormValues, BoolField>;

/** Applies a kind's preset to form values (a copy). */
export function applyPreset(v: TrunkFormValues, kind: string): TrunkFormValues {
  if (!isKind(kind)) return { ...v, kind };
  const p = PRESETS[kind];
  return {
    ...v,
    kind,
    sendsRegistration: p.sendsRegistration,
    rtpSymmetric: p.rtpSymmetric,
    forceRport: p.forceRport,
    rewriteContact: p.rewriteContact,
    qualifyFrequency: String(p.qualifyFrequency),
    codecs: p.codecs.join(', '),
    sendPai: p.sendPai,
    trustRemotePartyId: p.trustRemotePartyId,
    dtmfMode: p.dtmfMode,
    sessionTimers: p.sessionTimers,
  };
}

/** A new trunk's form: the defaults of docs/API.md with the `custom` preset (the server's default kind). */
export function newTrunkValues(): TrunkFormValues {
  return applyPreset({
    name: '', description: '', provider: 'custom', kind: 'custom', host: '', port: '5060', transport: 'udp',
    status: 'active', maxChannels: '10', priority: '10', codecs: '',
    sendsAuth: false, outboundAuthUsername: '', outboundAuthPassword: '', outboundAuthRealm: '', fromUser: '', fromDomain: '',
    acceptsAuth: false, inboundAuthUsername: '', inboundAuthPassword: '',
    sendsRegistration: false, acceptsRegistrations: false, registrationServerUri: '', registrationClientUri: '',
    registrationExpiration: '3600', registrationRetryInterval: '60', registrationMaxRetries: '10', registrationForbiddenRetryInterval: '0',
    rtpSymmetric: false, forceRport: false, rewriteContact: false, qualifyFrequency: '0', mediaAddress: '', dtmfMode: 'rfc4733',
    sessionTimers: 'yes', sessionExpires: '1800', sessionMinSe: '90', pai: '', sendPai: false, trustRemotePartyId: false,
    inboundMatch: '', advancedSettings: '{}', clearOutboundPassword: false, clearInboundPassword: false,
  }, 'custom');
}

/** A saved trunk's form; passwords stay empty (write-only: empty keeps the stored one). */
export function trunkToValues(tr: Trunk): TrunkFormValues {
  const s = (x: string | null | undefined) => x ?? '';
  return {
    name: tr.name, description: s(tr.description), provider: tr.provider, kind: tr.kind, host: tr.host,
    port: String(tr.port), transport: tr.transport, status: tr.status, maxChannels: String(tr.maxChannels),
    priority: String(tr.priority), codecs: tr.codecs.join(', '),
    sendsAuth: tr.sendsAuth, outboundAuthUsername: s(tr.outboundAuthUsername), outboundAuthPassword: '',
    outboundAuthRealm: s(tr.outboundAuthRealm), fromUser: s(tr.fromUser), fromDomain: s(tr.fromDomain),
    acceptsAuth: tr.acceptsAuth, inboundAuthUsername: s(tr.inboundAuthUsername), inboundAuthPassword: '',
    sendsRegistration: tr.sendsRegistration, acceptsRegistrations: tr.acceptsRegistrations,
    registrationServerUri: s(tr.registrationServerUri), registrationClientUri: s(tr.registrationClientUri),
    registrationExpiration: String(tr.registrationExpiration), registrationRetryInterval: String(tr.registrationRetryInterval),
    registrationMaxRetries: String(tr.registrationMaxRetries), registrationForbiddenRetryInterval: String(tr.registrationForbiddenRetryInterval),
    rtpSymmetric: tr.rtpSymmetric, forceRport: tr.forceRport, rewriteContact: tr.rewriteContact,
    qualifyFrequency: String(tr.qualifyFrequency), mediaAddress: s(tr.mediaAddress), dtmfMode: tr.dtmfMode,
    sessionTimers: tr.sessionTimers, sessionExpires: String(tr.sessionExpires), sessionMinSe: String(tr.sessionMinSe),
    pai: s(tr.pai), sendPai: tr.sendPai, trustRemotePartyId: tr.trustRemotePartyId,
    inboundMatch: tr.inboundMatch.join('\n'),
    advancedSettings: JSON.stringify(tr.advancedSettings ?? {}, null, 2),
    clearOutboundPassword: false, clearInboundPassword: false,
  };
}

/** A check the form makes before sending; `field` is the TrunkInput field it is about. */
export class FormError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** The advancedSettings textarea: empty is `{}`, otherwise a JSON object of at most 16 KiB. */
export function parseAdvanced(text: string): Record<string, unknown> {
  const trimmed = text.trim();
  if (!trimmed) return {};
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch (err) {
    throw new FormError('advancedSettings', `not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FormError('advancedSettings', 'must be a JSON object');
  if (new TextEncoder().encode(JSON.stringify(value)).length > MAX_ADVANCED_BYTES) {
    throw new FormError('advancedSettings', `must be at most ${MAX_ADVANCED_BYTES / 1024} KiB`);
  }
  return value as Record<string, unknown>;
}

/** "pcmu, pcma" (commas or spaces) to a list; an unknown name is the server's to refuse (it accepts aliases). */
export function parseList(text: string): string[] {
  return text.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

const INT_FIELDS = [
  'port', 'maxChannels', 'priority', 'registrationExpiration', 'registrationRetryInterval', 'registrationMaxRetries',
  'registrationForbiddenRetryInterval', 'qualifyFrequency', 'sessionExpires', 'sessionMinSe',
] as const;
const NULLABLE_TEXT = [
  'description', 'outboundAuthUsername', 'outboundAuthRealm', 'fromUser', 'fromDomain', 'inboundAuthUsername',
  'registrationServerUri', 'registrationClientUri', 'mediaAddress', 'pai',
] as const;
const PLAIN = ['name', 'provider', 'kind', 'host', 'transport', 'status', 'dtmfMode', 'sessionTimers'] as const;
const BOOLS = [
  'sendsAuth', 'acceptsAuth', 'sendsRegistration', 'acceptsRegistrations', 'rtpSymmetric', 'forceRport', 'rewriteContact',
  'sendPai', 'trustRemotePartyId',
] as const;

/**
 * The TrunkInput body for the form's values: every field, as the PUT of
 * seeds/003 sends it. Numbers must be whole (the ranges are the server's);
 * an empty number is left out (create: preset or default; update: kept);
 * an empty optional text is `null` (cleared); an empty password is left
 * out (kept), a typed one replaces it, "remove" sends `null`.
 */
export function buildBody(v: TrunkFormValues): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const k of PLAIN) body[k] = v[k].trim();
  for (const k of NULLABLE_TEXT) body[k] = v[k].trim() === '' ? null : v[k].trim();
  for (const k of BOOLS) body[k] = v[k];
  for (const k of INT_FIELDS) {
    const raw = v[k].trim();
    if (raw === '') continue;
    if (!/^\d+$/.test(raw)) throw new FormError(k, 'must be a whole number');
    body[k] = Number(raw);
  }
  const codecs = parseList(v.codecs);
  if (!codecs.length) throw new FormError('codecs', 'name at least one codec');
  body.codecs = codecs;
  body.inboundMatch = parseList(v.inboundMatch);
  body.advancedSettings = parseAdvanced(v.advancedSettings);
  if (v.clearOutboundPassword) body.outboundAuthPassword = null;
  else if (v.outboundAuthPassword !== '') body.outboundAuthPassword = v.outboundAuthPassword;
  if (v.clearInboundPassword) body.inboundAuthPassword = null;
  else if (v.inboundAuthPassword !== '') body.inboundAuthPassword = v.inboundAuthPassword;
  if (!body.name) throw new FormError('name', 'is required');
  if (!body.host) throw new FormError('host', 'is required');
  return body;
}

/** The field a 422 message names first ("port: must be between 1 and 65535"), if it is a form field. */
export function errorField(message: string): string | null {
  const m = /^([A-Za-z]+)\s*:/.exec(message);
  if (!m) return null;
  const f = m[1];
  const alias: Record<string, string> = { username: 'outboundAuthUsername', password: 'outboundAuthPassword' };
  const name = alias[f] ?? f;
  return name in TAB_OF ? name : null;
}

const TAB_OF: Record<string, Tab> = {
  name: 'basic', description: 'basic', provider: 'basic', kind: 'basic', host: 'basic', port: 'basic', transport: 'basic',
  status: 'basic', maxChannels: 'basic', priority: 'basic', codecs: 'basic',
  sendsAuth: 'auth', outboundAuthUsername: 'auth', outboundAuthPassword: 'auth', outboundAuthRealm: 'auth', fromUser: 'auth',
  fromDomain: 'auth', acceptsAuth: 'auth', inboundAuthUsername: 'auth', inboundAuthPassword: 'auth',
  clearOutboundPassword: 'auth', clearInboundPassword: 'auth',
  sendsRegistration: 'registration', acceptsRegistrations: 'registration', registrationServerUri: 'registration',
  registrationClientUri: 'registration', registrationExpiration: 'registration', registrationRetryInterval: 'registration',
  registrationMaxRetries: 'registration', registrationForbiddenRetryInterval: 'registration',
  rtpSymmetric: 'media', forceRport: 'media', rewriteContact: 'media', qualifyFrequency: 'media', mediaAddress: 'media',
  dtmfMode: 'media',
  sessionTimers: 'advanced', sessionExpires: 'advanced', sessionMinSe: 'advanced', pai: 'advanced', sendPai: 'advanced',
  trustRemotePartyId: 'advanced', inboundMatch: 'advanced',
  advancedSettings: 'custom',
};

export function tabOfField(field: string): Tab | null {
  return TAB_OF[field] ?? null;
}

/**
 * What a test_connection or force_register answer means for the panel:
 * the endpoints are new (404 while they are not routed), 409 says the trunk
 * does not register, 503 that no SIP server runs.
 */
export type ActionOutcome = 'ok' | 'unavailable' | 'not_registering' | 'no_sip' | 'not_found' | 'error';

export function actionOutcome(status: number, code: string): ActionOutcome {
  if (status === 404) return code === 'trunk_not_found' ? 'not_found' : 'unavailable';
  if (status === 405) return 'unavailable';
  if (status === 409 && code === 'trunk_not_registering') return 'not_registering';
  if (status === 503) return 'no_sip';
  return 'error';
}
