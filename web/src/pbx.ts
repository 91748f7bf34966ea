// The generated PBX configuration (mode = "asterisk") without the DOM: the
// shapes of GET /api/telephony/pbx/config and GET /api/telephony/status
// (docs/API.md), and how the page reads them. The page is
// src/views/admin/pbx.ts.

/** One file the engine writes for the PBX, secrets masked. */
export interface PbxConfigFile {
  name: string;
  /** Where it is written. */
  path: string;
  content: string;
}

/** The last reload the engine asked of the PBX. */
export interface PbxReload {
  /** RFC 3339. */
  at: string;
  ok: boolean;
  /** The PBX's own words, or why it could not be asked. */
  message: string;
}

export interface PbxConfigView {
  files: PbxConfigFile[];
  lastReload: PbxReload | null;
}

export interface PbxConfigAnswer {
  success: boolean;
  config: PbxConfigView;
}

export interface TelephonyStatus {
  connected: boolean;
  activeCalls: number;
  callsInProgress?: number;
  registeredContacts: number;
  /** The configured mode: builtin, asterisk or relay. */
  mode: string;
  /** The running engine's name, null when none runs. */
  engine: string | null;
}

/** The error code of the 409 an engine that generates no PBX configuration answers. */
export const NO_PBX_CONFIG = 'no_pbx_config';

/** What the page shows about the last reload. */
export type ReloadState = 'none' | 'ok' | 'failed';

export function reloadState(r: PbxReload | null | undefined): ReloadState {
  if (!r) return 'none';
  return r.ok ? 'ok' : 'failed';
}

/**
 * Why a mode needs no generated configuration, as a key suffix of
 * `pbx.none.*`: the builtin engine is the PBX; the relay passes the
 * browsers' SIP to a PBX configured by its own means.
 */
export type NoConfigReason = 'builtin' | 'relay' | 'other';

export function noConfigReason(mode: string | null | undefined): NoConfigReason {
  if (mode === 'builtin' || mode === 'relay') return mode;
  return 'other';
}

/** Lines and bytes of a file, for its heading. */
export function fileSize(content: string): { lines: number; bytes: number } {
  const bytes = new TextEncoder().encode(content).length;
  if (!content) return { lines: 0, bytes };
  const lines = content.split('\n').length - (content.endsWith('\n') ? 1 : 0);
  return { lines, bytes };
}
