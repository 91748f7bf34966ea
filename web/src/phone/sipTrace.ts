// Records every SIP message that crosses the softphone's WebSocket, grouped
// by Call-ID, so the "Call details" view can show the flow of a call
// (INVITE → 100 Trying → 180 Ringing → 200 OK → ACK → BYE …).

export interface TraceEntry {
  at: number;
  dir: 'out' | 'in';
  /** "INVITE" for requests, "180 Ringing" for responses. */
  label: string;
  isRequest: boolean;
  status: number | null;
  cseq: string;
  callId: string;
  raw: string;
}

const MAX_CALL_IDS = 40;
const MAX_PER_CALL = 200;
const byCallId = new Map<string, TraceEntry[]>();
const listeners = new Set<(callId: string) => void>();

function header(lines: string[], names: string[]): string {
  for (const line of lines) {
    if (line === '') break;
    const idx = line.indexOf(':');
    if (idx <= 0) continue;
    const name = line.slice(0, idx).trim().toLowerCase();
    if (names.includes(name)) return line.slice(idx + 1).trim();
  }
  return '';
}

export function parseSipMessage(dir: 'out' | 'in', raw: string, at = Date.now()): TraceEntry | null {
  const lines = raw.split(/\r?\n/);
  const first = lines[0]?.trim() ?? '';
  if (!first) return null;
  let label: string;
  let isRequest: boolean;
  let status: number | null = null;
  const resp = /^SIP\/2\.0\s+(\d{3})\s*(.*)$/.exec(first);
  if (resp) {
    isRequest = false;
    status = Number(resp[1]);
    label = `${resp[1]} ${resp[2]}`.trim();
  } else {
    const req = /^([A-Z]+)\s+\S+\s+SIP\/2\.0$/.exec(first);
    if (!req) return null;
    isRequest = true;
    label = req[1];
  }
  const callId = header(lines.slice(1), ['call-id', 'i']);
  const cseq = header(lines.slice(1), ['cseq']);
  if (!callId) return null;
  return { at, dir, label, isRequest, status, cseq, callId, raw };
}

export function record(dir: 'out' | 'in', data: unknown): void {
  let raw: string;
  if (typeof data === 'string') raw = data;
  else if (data instanceof ArrayBuffer) raw = new TextDecoder().decode(data);
  else return;
  const entry = parseSipMessage(dir, raw);
  if (!entry) return;
  // Keep only dialog traffic: REGISTER and OPTIONS keep-alives are noise here.
  const method = entry.cseq.split(/\s+/)[1] ?? '';
  if (method === 'REGISTER' || method === 'OPTIONS') return;
  let list = byCallId.get(entry.callId);
  if (!list) {
    list = [];
    byCallId.set(entry.callId, list);
    while (byCallId.size > MAX_CALL_IDS) {
      const oldest = byCallId.keys().next().value;
      if (oldest === undefined) break;
      byCallId.delete(oldest);
    }
  }
  if (list.length < MAX_PER_CALL) list.push(entry);
  for (const fn of listeners) fn(entry.callId);
}

export function flowFor(callId: string | null | undefined): TraceEntry[] {
  if (!callId) return [];
  return byCallId.get(callId) ?? [];
}

export function onTrace(fn: (callId: string) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
