// Thin client for the centralita HTTP API (docs/API.md). Every error comes
// back as an ApiError carrying the HTTP status and the server's error code.
import type { CallQuality } from './quality';
import type { Trunk, TrunkPreview, TrunkRegistration, TrunkTestResult } from './trunks';
import type { Did } from './dids';
import type { DialplanAnswer, DialplanSettings } from './dialplan';
import type { PbxConfigAnswer, TelephonyStatus } from './pbx';
import type { CampaignTrunkList, CampaignTrunksBody } from './campaignTrunks';

export interface SipInfo {
  username: string;
  extension: string;
  status: string;
  registered: boolean;
  lastRegisteredAt: string | null;
  userAgent: string | null;
  ipAddress: string | null;
  contacts: number;
}

export interface User {
  id: number;
  name: string;
  login: string | null;
  email: string | null;
  phone: string | null;
  role: 'admin' | 'supervisor' | 'agent';
  active: boolean;
  createdAt: string;
  updatedAt?: string;
  lastLoginAt: string | null;
  hasSipCredentials: boolean;
  sip: SipInfo | null;
  /** null: the system default (media.recording). */
  recordCalls?: boolean | null;
  /** What the agent may dial; null: the system default (dialplan.agent_permission). */
  dialPermission?: DialPermission | null;
}

export type DialPermission = 'internal' | 'national' | 'international';

export interface SipCredentials {
  username: string;
  password: string;
  extension: string;
  domain?: string;
}

export interface ProvisionedCredentials {
  sipServer?: string;
  sipPort?: number;
  username: string;
  password: string;
  extension: string;
  displayName: string;
  domain: string;
  wsUri: string;
  expiresAt: string;
  iceServers: RTCIceServer[];
}

export interface Call {
  id: number;
  callId: string;
  direction: string;
  callerNumber: string;
  calleeNumber: string;
  agentId: number | null;
  agent: { id: number; name: string } | null;
  calleeAgentId?: number | null;
  calleeAgent?: { id: number; name: string } | null;
  startTime: string;
  answerTime: string | null;
  endTime: string | null;
  duration: number | null;
  billsec: number | null;
  disposition: string | null;
  hangupCause: string | null;
  hasRecording?: boolean;
  recording?: { bytes: number; durationMs: number; droppedFrames: number } | null;
  quality?: CallQuality | null;
  /** The trunk the call came in or went out through; `name` is null once the trunk is deleted. */
  trunk?: { id: number; name: string | null } | null;
  /** The number the carrier's caller dialled (calls from a trunk). */
  did?: string | null;
}

export interface CallStats {
  totalCalls: number;
  answered: number;
  noAnswer: number;
  busy: number;
  failed: number;
  cancelled: number;
  totalDuration: number;
  totalBillsec: number;
  avgDuration: number;
  avgBillsec: number;
  answerRate: string;
}

export interface ActiveCall {
  callId: string;
  state: string;
  startTime: string;
  answerTime: string | null;
  direction: string;
  callerNumber: string;
  calleeNumber: string;
  agent: { id: number; name: string } | null;
}

export interface Registration {
  username: string;
  extension: string;
  contact: string;
  transport: string;
  source: string;
  userAgent: string | null;
  expiresAt: string;
  registeredAt: string;
}

export interface WebrtcConfig {
  stunServer: string | null;
  turnServer: string | null;
  turnUsername: string | null;
  hasTurnPassword?: boolean;
  wsUrl: string;
  asteriskWsUrl?: string;
  iceServers: RTCIceServer[];
}

export interface AgentStats {
  totalUsers: number;
  agents: number;
  active: number;
  agentsWithSip: number;
  registered: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Query = Record<string, string | number | boolean | undefined | null>;

function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/** Called when any request answers 401, so the app can go back to login. */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export async function request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  let res: Response;
  try {
    res = await fetch(withQuery(path, query), {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? { Accept: 'application/json' } : { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, 'network_error', err instanceof Error ? err.message : String(err));
  }
  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const envelope = data as { error?: { code?: string; message?: string }; message?: string } | null;
    const code = envelope?.error?.code ?? `http_${res.status}`;
    const message = envelope?.error?.message ?? envelope?.message ?? res.statusText;
    if (res.status === 401 && onUnauthorized && !path.startsWith('/api/auth/login')) onUnauthorized();
    throw new ApiError(res.status, code, message);
  }
  return data as T;
}

export const api = {
  login: (login: string, password: string) =>
    request<{ user: User }>('POST', '/api/auth/login', { login, password }),
  logout: () => request<unknown>('POST', '/api/auth/logout'),
  me: () => request<{ user: User }>('GET', '/api/auth/me'),

  sipCredentials: () => request<{ credentials: ProvisionedCredentials }>('GET', '/api/telephony/sip/credentials'),

  agents: (q: Query) => request<{ total: number; agents: User[] }>('GET', '/api/agents', undefined, q),
  agentStats: () => request<{ stats: AgentStats }>('GET', '/api/agents/stats'),
  createAgent: (body: Record<string, unknown>) =>
    request<{ agent: User; sipCredentials: SipCredentials | null }>('POST', '/api/agents', body),
  updateAgent: (id: number, body: Record<string, unknown>) =>
    request<{ agent: User }>('PATCH', `/api/agents/${id}`, body),
  deactivateAgent: (id: number) => request<{ agent: User }>('POST', `/api/agents/${id}/deactivate`),
  regenerateSip: (id: number) => request<{ sipCredentials: SipCredentials }>('POST', `/api/agents/${id}/regenerate-sip`),
  deleteAgent: (id: number) => request<unknown>('DELETE', `/api/agents/${id}`),

  webrtcConfig: () => request<{ config: WebrtcConfig }>('GET', '/hr/webrtc-config'),
  saveWebrtcConfig: (body: Record<string, unknown>) => request<{ config: WebrtcConfig }>('PUT', '/hr/webrtc-config', body),

  call: (callId: string) => request<{ call: Call }>('GET', `/api/telephony/calls/${encodeURIComponent(callId)}`),
  callHistory: (q: Query) => request<{ total: number; calls: Call[] }>('GET', '/api/telephony/calls/history', undefined, q),
  callStats: (q: Query) => request<{ stats: CallStats }>('GET', '/api/telephony/calls/stats', undefined, q),
  activeCalls: () => request<{ count: number; calls: ActiveCall[] }>('GET', '/api/telephony/calls/active'),
  registrations: () => request<{ total: number; registrations: Registration[] }>('GET', '/api/telephony/registrations'),

  trunks: (q: Query) => request<{ total: number; trunks: Trunk[] }>('GET', '/api/telephony/trunks', undefined, q),
  trunk: (id: number) => request<{ trunk: Trunk }>('GET', `/api/telephony/trunks/${id}`),
  createTrunk: (body: Record<string, unknown>) => request<{ trunk: Trunk }>('POST', '/api/telephony/trunks', body),
  updateTrunk: (id: number, body: Record<string, unknown>) => request<{ trunk: Trunk }>('PUT', `/api/telephony/trunks/${id}`, body),
  deleteTrunk: (id: number) => request<unknown>('DELETE', `/api/telephony/trunks/${id}`),
  trunkPreview: (id: number) => request<TrunkPreview>('GET', `/api/telephony/trunks/${id}/preview_config`),
  previewTrunkInput: (body: Record<string, unknown>) => request<TrunkPreview>('POST', '/api/telephony/trunks/preview_config', body),
  testTrunk: (id: number) => request<{ result: TrunkTestResult }>('POST', `/api/telephony/trunks/${id}/test_connection`),
  forceRegisterTrunk: (id: number) => request<{ registration: TrunkRegistration }>('POST', `/api/telephony/trunks/${id}/force_register`),
  campaignTrunks: (campaignId: number) => request<CampaignTrunkList>('GET', `/api/telephony/campaigns/${campaignId}/trunks`),
  saveCampaignTrunks: (campaignId: number, body: CampaignTrunksBody) =>
    request<CampaignTrunkList>('PUT', `/api/telephony/campaigns/${campaignId}/trunks`, body),

  dids: () => request<{ total: number; dids: Did[] }>('GET', '/api/telephony/dids'),
  did: (id: number) => request<{ did: Did }>('GET', `/api/telephony/dids/${id}`),
  createDid: (body: Record<string, unknown>) => request<{ did: Did }>('POST', '/api/telephony/dids', body),
  updateDid: (id: number, body: Record<string, unknown>) => request<{ did: Did }>('PATCH', `/api/telephony/dids/${id}`, body),
  deleteDid: (id: number) => request<unknown>('DELETE', `/api/telephony/dids/${id}`),

  dialplan: () => request<DialplanAnswer>('GET', '/api/telephony/dialplan'),
  saveDialplan: (body: DialplanSettings) => request<DialplanAnswer>('PUT', '/api/telephony/dialplan', body),
  resetDialplan: () => request<DialplanAnswer>('DELETE', '/api/telephony/dialplan'),

  telephonyStatus: () => request<{ status: TelephonyStatus }>('GET', '/api/telephony/status'),
  pbxConfig: () => request<PbxConfigAnswer>('GET', '/api/telephony/pbx/config'),
  regeneratePbxConfig: () => request<PbxConfigAnswer>('POST', '/api/telephony/pbx/config/regenerate'),
};

export function historyCsvUrl(q: Query): string {
  return withQuery('/api/telephony/calls/history', { ...q, format: 'csv' });
}
