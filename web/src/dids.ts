// Inbound numbers (DIDs, issue 11) without the DOM: the Did shape of
// docs/API.md, what kind of number an entry is, the form's values to a
// DidInput body, and which field a 422 names. The page is
// src/views/admin/dids.ts.

export const DESTINATION_TYPES = ['agent', 'reject'] as const;
export type DestinationType = (typeof DESTINATION_TYPES)[number];

export interface Did {
  id: number;
  /** An exact number, a `_` pattern or `*` (every number nothing else matches). */
  number: string;
  description: string | null;
  destinationType: DestinationType | string;
  /** The agent's extension; empty for `reject`. */
  destination: string;
  /** Only calls from this trunk; null: from any trunk. */
  trunkId: number | null;
  enabled: boolean;
  createdAt: string;
  updatedAt: string;
}

/**
 * How an entry matches, as the server ranks it: `exact` over `pattern`
 * over `any`. Only a hint for the list and the form: the server decides
 * what is valid (a bad pattern is its 422 to report).
 */
export type NumberKind = 'exact' | 'pattern' | 'any' | 'unknown';

export function numberKind(number: string): NumberKind {
  const n = number.trim();
  if (n === '*') return 'any';
  if (n.startsWith('_')) return 'pattern';
  if (/^\+?\d+$/.test(n)) return 'exact';
  return 'unknown';
}

/** The form's values as the inputs hold them; `trunkId` '' is "any trunk". */
export interface DidFormValues {
  number: string;
  description: string;
  destinationType: string;
  destination: string;
  trunkId: string;
  enabled: boolean;
}

export function newDidValues(): DidFormValues {
  return { number: '', description: '', destinationType: 'agent', destination: '', trunkId: '', enabled: true };
}

export function didToValues(d: Did): DidFormValues {
  return {
    number: d.number,
    description: d.description ?? '',
    destinationType: d.destinationType,
    destination: d.destination,
    trunkId: d.trunkId === null ? '' : String(d.trunkId),
    enabled: d.enabled,
  };
}

/** A check the form makes before sending; `field` is the DidInput field it is about. */
export class DidFormError extends Error {
  constructor(
    readonly field: keyof DidFormValues,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/**
 * The DidInput body for the form: every field (so a PATCH sends what the
 * form shows). The number is trimmed and otherwise left to the server,
 * which owns the pattern notation; an empty description is `null`
 * (cleared); `reject` sends no destination (the server keeps none).
 */
export function buildDidBody(v: DidFormValues): Record<string, unknown> {
  const number = v.number.trim();
  if (!number) throw new DidFormError('number', 'is required');
  const body: Record<string, unknown> = {
    number,
    description: v.description.trim() === '' ? null : v.description.trim(),
    destinationType: v.destinationType,
    trunkId: v.trunkId === '' ? null : Number(v.trunkId),
    enabled: v.enabled,
  };
  if (v.destinationType === 'agent') {
    if (!v.destination.trim()) throw new DidFormError('destination', 'choose an agent');
    body.destination = v.destination.trim();
  }
  return body;
}

const FIELDS: readonly (keyof DidFormValues)[] = ['number', 'description', 'destinationType', 'destination', 'trunkId', 'enabled'];

/** The form field a 422 message names first ("number: ..."), if any. */
export function didErrorField(message: string): keyof DidFormValues | null {
  const m = /^([A-Za-z]+)\s*:/.exec(message);
  if (!m) return null;
  return (FIELDS as readonly string[]).includes(m[1]) ? (m[1] as keyof DidFormValues) : null;
}

/** The agents the destination picker offers: those with a SIP extension, by name. */
export interface AgentChoice {
  id: number;
  name: string;
  extension: string;
  active: boolean;
}

