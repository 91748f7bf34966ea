// The browser softphone: one JsSIP user agent, at most one call, and a
// snapshot of its state that the UI renders. It lives for the whole page, so
// moving between console pages never touches a call.
import * as JsSIP from 'jssip';
import type { RTCSession } from 'jssip/lib/RTCSession';
import { api, ApiError, type ProvisionedCredentials } from '../api';
import { reasonFor, type Reason } from './causes';
import { record } from './sipTrace';
import { keyBeep, startRingback, startRingtone, stopTone } from './ringtone';
import { subscribeEvents, type LiveEvent } from '../events';
import { qualityFromStats, type CallQuality, type InboundCounters } from './quality';

/** Connection indicator states. */
export type ConnState = 'unconfigured' | 'disconnected' | 'connecting' | 'registering' | 'registered' | 'failed';

/** Call phases, the states of seeds/000 that belong to a call. */
export type CallPhase = 'calling' | 'ringing' | 'incoming' | 'in-call' | 'on-hold' | 'ended' | 'failed';

export interface Identity {
  username: string;
  extension: string;
  displayName: string;
  domain: string;
  wsUri: string;
  manual: boolean;
}

export interface CallInfo {
  id: number;
  callId: string | null;
  direction: 'outgoing' | 'incoming';
  peer: string;
  peerName: string | null;
  phase: CallPhase;
  startedAt: number;
  answeredAt: number | null;
  endedAt: number | null;
  localHold: boolean;
  remoteHold: boolean;
  muted: boolean;
  reason: Reason | null;
  sipStatus: number | null;
  /** Live quality estimate while the call is up; null before the first sample and after it ends. */
  quality: CallQuality | null;
}

export interface PhoneSnapshot {
  conn: ConnState;
  connReason: Reason | null;
  identity: Identity | null;
  /** The current call, or the last one (ended/failed) until the next starts. */
  call: CallInfo | null;
  notice: Reason | null;
}

export interface ManualConfig {
  displayName: string;
  target: string;
  password: string;
  wsUrl: string;
}

type Listener = (s: PhoneSnapshot) => void;

const MEDIA: MediaStreamConstraints = { audio: true, video: false };
/** Wait this long after the first ICE candidate before sending the SDP: host
 * candidates arrive together, and waiting for gathering to finish can stall
 * for tens of seconds on hosts with several interfaces. */
const ICE_SETTLE_MS = 150;
/** How often the live quality indicator samples getStats() while a call is up. */
const QUALITY_POLL_MS = 2000;

// JsSIP's WebSocket transport, watched for the "Call details" view: every
// message is recorded as it crosses the wire and handed on unchanged. JsSIP
// must see exactly what the server sent (issue 7: the server offers a
// challenge stock JsSIP answers, so the console needs no rewrite of its own).
class TracingSocket extends JsSIP.WebSocketInterface {
  constructor(url: string) {
    super(url);
    // JsSIP's transport assigns `ondata` on every (re)connect; wrap whatever
    // it assigns so every incoming message is traced first.
    let handler: ((data: unknown) => void) | null = null;
    Object.defineProperty(this, 'ondata', {
      configurable: true,
      get: () => handler,
      set: (fn: ((data: unknown) => void) | null) => {
        handler = fn
          ? (data: unknown) => {
              record('in', data);
              fn(data);
            }
          : null;
      },
    });
  }

  send(message: string | ArrayBuffer): boolean {
    record('out', message);
    // JsSIP's type declarations omit send(); it exists on the JS class.
    return (JsSIP.WebSocketInterface.prototype as unknown as { send(m: unknown): boolean }).send.call(this, message);
  }
}

export class Softphone {
  private snap: PhoneSnapshot = { conn: 'disconnected', connReason: null, identity: null, call: null, notice: null };
  private listeners = new Set<Listener>();
  private ua: JsSIP.UA | null = null;
  private session: RTCSession | null = null;
  private iceServers: RTCIceServer[] = [];
  private mode: 'off' | 'auto' | 'manual' = 'off';
  /** Bumped whenever the UA is replaced, so late events of an old UA are ignored. */
  private generation = 0;
  private callSeq = 0;
  private retryTimer: number | null = null;
  private retryDelayMs = 2000;
  private lastProvisionAt = 0;
  private remoteAudio: HTMLAudioElement;
  private endedTimer: number | null = null;
  private refreshTimer: number | null = null;
  private unsubEvents: (() => void) | null = null;
  private lastProbeAt = 0;
  private rotatedDuringCall = false;
  private qualityTimer: number | null = null;

  constructor() {
    this.remoteAudio = document.createElement('audio');
    this.remoteAudio.autoplay = true;
    this.remoteAudio.setAttribute('data-testid', 'remote-audio');
    this.remoteAudio.hidden = true;
    document.body.append(this.remoteAudio);
    // Leaving the page: hang up and unregister, so the server does not keep
    // ringing a contact that is gone.
    window.addEventListener('pagehide', () => {
      if (this.ua) {
        try {
          this.ua.stop();
        } catch {
          // The page is going away anyway.
        }
      }
    });
  }

  get state(): PhoneSnapshot {
    return this.snap;
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    fn(this.snap);
    return () => this.listeners.delete(fn);
  }

  /** The peer connection of the current call (exposed for diagnostics and tests). */
  get peerConnection(): RTCPeerConnection | null {
    return (this.session?.connection as RTCPeerConnection | undefined) ?? null;
  }

  /** Whether the live quality sampling runs (only while a call is up; diagnostics and tests). */
  get qualityPolling(): boolean {
    return this.qualityTimer !== null;
  }

  get isManual(): boolean {
    return this.mode === 'manual';
  }

  private set(patch: Partial<PhoneSnapshot>): void {
    this.snap = { ...this.snap, ...patch };
    for (const fn of this.listeners) fn(this.snap);
  }

  private setCall(patch: Partial<CallInfo>): void {
    if (!this.snap.call) return;
    this.set({ call: { ...this.snap.call, ...patch } });
  }

  // ---- connection -------------------------------------------------------

  /** Logged-in agent: fetch short-lived credentials and register. */
  async startAuto(): Promise<void> {
    this.mode = 'auto';
    this.unsubEvents ??= subscribeEvents((ev) => this.onServerEvent(ev));
    await this.provisionAndStart();
  }

  /**
   * The server tells us when our SIP password was rotated or our binding went
   * away while the WebSocket stayed up; without this the phone would look
   * registered but be unreachable until its next REGISTER refresh.
   */
  private onServerEvent(ev: LiveEvent): void {
    const me = this.snap.identity;
    if (this.mode !== 'auto' || !me || me.manual) return;
    if (ev.type === 'agent' && ev.action === 'sip_rotated' && ev.sipUsername === me.username) {
      if (this.session) this.rotatedDuringCall = true;
      else void this.provisionAndStart();
      return;
    }
    if (ev.type === 'registration' && ev.username === me.username && ev.registered === false && ev.contacts === 0
      && this.snap.conn === 'registered' && this.ua) {
      // Probe with a REGISTER refresh: harmless if we are still bound, and a
      // 401 from rotated credentials leads to fresh ones (registrationFailed).
      const now = Date.now();
      if (now - this.lastProbeAt < 3000) return;
      this.lastProbeAt = now;
      this.ua.register();
    }
  }

  /** Manual connection (seeds/000 and seeds/002): the user gives the SIP account. */
  startManual(cfg: ManualConfig): void {
    this.mode = 'manual';
    this.clearRetry();
    let uri = cfg.target.trim();
    if (!uri.startsWith('sip:') && !uri.startsWith('sips:')) {
      if (!uri.includes('@')) {
        // A bare extension: the domain is the WebSocket server's host.
        uri = `${uri}@${hostOf(cfg.wsUrl)}`;
      }
      uri = `sip:${uri}`;
    }
    const parsed = JsSIP.URI.parse(uri);
    if (!parsed) throw new Error(`invalid SIP URI: ${cfg.target}`);
    const user = parsed.user ?? '';
    this.launch(
      {
        username: user,
        extension: user,
        displayName: cfg.displayName.trim() || user,
        domain: parsed.host,
        wsUri: cfg.wsUrl.trim(),
        manual: true,
      },
      cfg.password,
      [],
    );
  }

  /** Stops the user agent (logout). */
  stop(): void {
    this.mode = 'off';
    this.stopQuality();
    this.unsubEvents?.();
    this.unsubEvents = null;
    this.clearRetry();
    if (this.refreshTimer !== null) window.clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.teardownUa();
    this.set({ conn: 'disconnected', connReason: null, identity: null, notice: null });
  }

  /** Manual "reconnect" button: start over with fresh credentials. */
  async reconnect(): Promise<void> {
    if (this.mode === 'manual' && this.ua) {
      this.ua.stop();
      this.ua.start();
      return;
    }
    this.mode = 'auto';
    await this.provisionAndStart();
  }

  /** Fetches fresh short-lived credentials a while before these expire. */
  private scheduleRefresh(expiresAt: string): void {
    if (this.refreshTimer !== null) window.clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const expires = Date.parse(expiresAt);
    if (!Number.isFinite(expires)) return;
    const lead = Math.min(10 * 60_000, (expires - Date.now()) / 5);
    // setTimeout cannot wait longer than ~24.8 days.
    const delay = Math.min(Math.max(expires - Date.now() - lead, 30_000), 2_000_000_000);
    this.refreshTimer = window.setTimeout(() => this.refreshWhenIdle(), delay);
  }

  private refreshWhenIdle(): void {
    this.refreshTimer = null;
    if (this.mode !== 'auto') return;
    // Restarting the user agent would drop a call: wait for it to end.
    if (this.session) {
      this.refreshTimer = window.setTimeout(() => this.refreshWhenIdle(), 30_000);
      return;
    }
    void this.provisionAndStart();
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) {
      window.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private scheduleProvision(): void {
    this.clearRetry();
    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, 30000);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      if (this.mode === 'auto') void this.provisionAndStart();
    }, delay);
  }

  private async provisionAndStart(): Promise<void> {
    this.clearRetry();
    this.lastProvisionAt = Date.now();
    if (!this.ua) this.set({ conn: 'connecting', connReason: null });
    let creds: ProvisionedCredentials;
    try {
      creds = (await api.sipCredentials()).credentials;
    } catch (err) {
      if (this.mode !== 'auto') return;
      if (err instanceof ApiError && err.status === 404) {
        this.teardownUa();
        this.set({ conn: 'unconfigured', connReason: null, identity: null });
        return;
      }
      if (err instanceof ApiError && err.status === 401) {
        // The console session is gone; the app sends the user to the login page.
        this.teardownUa();
        this.set({ conn: 'disconnected', connReason: null });
        return;
      }
      const msg = err instanceof Error ? err.message : String(err);
      if (!this.ua) this.set({ conn: 'failed', connReason: { key: 'reason.provisionFailed', vars: { msg } } });
      this.scheduleProvision();
      return;
    }
    if (this.mode !== 'auto') return;
    this.scheduleRefresh(creds.expiresAt);
    this.launch(
      {
        username: creds.username,
        extension: creds.extension,
        displayName: creds.displayName || creds.username,
        domain: creds.domain,
        wsUri: resolveWsUri(creds.wsUri),
        manual: false,
      },
      creds.password,
      Array.isArray(creds.iceServers) ? creds.iceServers : [],
    );
  }

  private teardownUa(): void {
    this.generation += 1;
    const ua = this.ua;
    this.ua = null;
    if (ua) {
      try {
        (ua as unknown as { removeAllListeners(): void }).removeAllListeners();
        ua.stop();
      } catch (err) {
        console.warn('stopping the SIP user agent failed', err);
      }
    }
  }

  private launch(identity: Identity, password: string, iceServers: RTCIceServer[]): void {
    // Keep a call in progress alive on the old UA? JsSIP ties sessions to
    // their UA, so a restart would drop it: callers only restart while idle
    // or when the old UA is unusable anyway.
    this.teardownUa();
    const gen = this.generation;
    this.iceServers = iceServers;
    this.set({ identity, conn: 'connecting', connReason: null });
    let ua: JsSIP.UA;
    try {
      ua = new JsSIP.UA({
        sockets: [new TracingSocket(identity.wsUri)],
        uri: `sip:${identity.username}@${identity.domain}`,
        password,
        display_name: identity.displayName,
        register: true,
        register_expires: 300,
        session_timers: false,
        user_agent: 'centralita-console',
        connection_recovery_min_interval: 1,
        connection_recovery_max_interval: 8,
      });
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      this.set({ conn: 'failed', connReason: { key: 'reason.other', vars: { cause: msg } } });
      return;
    }
    this.ua = ua;
    const live = () => gen === this.generation;

    ua.on('connecting', () => {
      if (!live()) return;
      if (this.snap.conn !== 'registered') this.set({ conn: 'connecting' });
    });
    ua.on('connected', () => {
      if (!live()) return;
      this.set({ conn: 'registering', connReason: null });
    });
    ua.on('disconnected', () => {
      if (!live()) return;
      // JsSIP reconnects by itself with backoff and registers again.
      this.set({ conn: 'connecting', connReason: { key: 'reason.networkDown' } });
    });
    ua.on('registered', () => {
      if (!live()) return;
      this.retryDelayMs = 2000;
      this.set({ conn: 'registered', connReason: null });
    });
    ua.on('unregistered', () => {
      if (!live()) return;
      if (this.snap.conn === 'registered') this.set({ conn: 'registering' });
    });
    ua.on('registrationFailed', (e: { cause?: string; response?: { status_code?: number } | null }) => {
      if (!live()) return;
      const status = e.response?.status_code ?? null;
      const cause = e.cause ?? '';
      if (cause === 'Connection Error') {
        // The socket dropped; the reconnect registers again.
        this.set({ conn: 'connecting', connReason: { key: 'reason.networkDown' } });
        return;
      }
      const authProblem = status === 401 || status === 403 || status === 407 || cause === 'Authentication Error';
      if (authProblem && this.mode === 'auto') {
        // Short-lived credentials expired or were revoked: fetch fresh ones,
        // at most every few seconds so a persistent refusal cannot loop fast.
        this.set({ conn: 'failed', connReason: { key: 'reason.auth' } });
        if (!this.session) {
          const since = Date.now() - this.lastProvisionAt;
          if (since > 5000) void this.provisionAndStart();
          else this.scheduleProvision();
        }
        return;
      }
      this.set({
        conn: 'failed',
        connReason: authProblem
          ? { key: 'reason.auth' }
          : reasonFor({ originator: 'remote', cause, statusCode: status, answered: false, incoming: false }),
      });
      // Retry later for transient failures (5xx, timeouts) in both modes.
      if (!authProblem) {
        this.clearRetry();
        this.retryTimer = window.setTimeout(() => {
          this.retryTimer = null;
          if (live() && this.ua) this.ua.register();
        }, 5000);
      }
    });
    ua.on('newRTCSession', (e: { originator: string; session: RTCSession; request: { call_id?: string } }) => {
      if (!live()) return;
      this.onNewSession(e.session, e.originator === 'remote', e.request?.call_id ?? null);
    });
    ua.start();
  }

  // ---- calls ------------------------------------------------------------

  private beginCall(direction: 'outgoing' | 'incoming', peer: string, peerName: string | null, callId: string | null): void {
    if (this.endedTimer !== null) {
      window.clearTimeout(this.endedTimer);
      this.endedTimer = null;
    }
    this.callSeq += 1;
    this.set({
      notice: null,
      call: {
        id: this.callSeq,
        callId,
        direction,
        peer,
        peerName,
        phase: direction === 'outgoing' ? 'calling' : 'incoming',
        startedAt: Date.now(),
        answeredAt: null,
        endedAt: null,
        localHold: false,
        remoteHold: false,
        muted: false,
        reason: null,
        sipStatus: null,
        quality: null,
      },
    });
  }

  call(rawTarget: string): void {
    const target = rawTarget.trim();
    if (!target) {
      this.set({ notice: { key: 'phone.needNumber' } });
      return;
    }
    if (!this.ua || this.snap.conn !== 'registered') {
      this.set({ notice: { key: 'phone.notReady' } });
      return;
    }
    if (this.session) return;
    const domain = this.snap.identity?.domain ?? '';
    const uri = target.startsWith('sip:') || target.startsWith('sips:') ? target : target.includes('@') ? `sip:${target}` : `sip:${target.replace(/[\s()-]/g, '')}@${domain}`;
    this.beginCall('outgoing', target, null, null);
    try {
      this.ua.call(uri, {
        mediaConstraints: MEDIA,
        pcConfig: { iceServers: this.iceServers, rtcpMuxPolicy: 'require' },
        rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
      } as unknown as Parameters<JsSIP.UA['call']>[1]);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      this.setCall({ phase: 'failed', endedAt: Date.now(), reason: { key: 'reason.other', vars: { cause: msg } } });
    }
  }

  answer(): void {
    const s = this.session;
    if (!s || this.snap.call?.phase !== 'incoming') return;
    stopTone();
    s.answer({
      mediaConstraints: MEDIA,
      pcConfig: { iceServers: this.iceServers, rtcpMuxPolicy: 'require' },
    } as unknown as Parameters<RTCSession['answer']>[0]);
  }

  /** Rejects an incoming call: the caller is told the line is busy. */
  reject(): void {
    const s = this.session;
    if (!s || this.snap.call?.phase !== 'incoming') return;
    stopTone();
    s.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
  }

  hangup(): void {
    const s = this.session;
    if (!s) return;
    stopTone();
    try {
      s.terminate();
    } catch (err) {
      console.warn('terminate failed', err);
    }
  }

  toggleHold(): void {
    const s = this.session;
    const c = this.snap.call;
    if (!s || !c || (c.phase !== 'in-call' && c.phase !== 'on-hold')) return;
    const pc = this.peerConnection;
    if (c.localHold) {
      // Resume sending and receiving, then offer sendrecv.
      setAudioDirection(pc, 'sendrecv');
      s.unhold();
    } else {
      // A real hold: neither side sends audio. JsSIP alone would offer
      // sendonly and keep streaming (silent) audio to the other party.
      setAudioDirection(pc, 'inactive');
      s.hold();
    }
  }

  toggleMute(): void {
    const s = this.session;
    const c = this.snap.call;
    if (!s || !c) return;
    if (c.muted) s.unmute({ audio: true });
    else s.mute({ audio: true });
  }

  sendDtmf(digit: string): void {
    const s = this.session;
    if (!s || this.snap.call?.phase !== 'in-call') return;
    try {
      s.sendDTMF(digit, { transportType: 'RFC2833', duration: 120, interToneGap: 70 } as unknown as Parameters<RTCSession['sendDTMF']>[1]);
      keyBeep();
      this.set({ notice: { key: 'phone.dtmfSent', vars: { digit } } });
    } catch (err) {
      console.warn('DTMF failed', err);
    }
  }

  dismissCall(): void {
    if (this.session) return;
    this.set({ call: null });
  }

  private onNewSession(session: RTCSession, incoming: boolean, callId: string | null): void {
    if (this.session) {
      // One call at a time: a second incoming call gets busy.
      if (incoming) session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    this.session = session;
    const remote = session.remote_identity;
    const peer = remote?.uri?.user ?? remote?.uri?.toString() ?? '?';
    const peerName = remote?.display_name || null;
    if (incoming) {
      this.beginCall('incoming', peer, peerName, callId);
      startRingtone();
    } else {
      this.setCall({ callId, peer: this.snap.call?.peer ?? peer });
    }

    const attach = (pc: RTCPeerConnection) => {
      pc.addEventListener('track', (ev: RTCTrackEvent) => {
        const stream = ev.streams[0] ?? new MediaStream([ev.track]);
        this.remoteAudio.srcObject = stream;
        void this.remoteAudio.play().catch(() => undefined);
      });
    };
    if (session.connection) attach(session.connection as RTCPeerConnection);
    session.on('peerconnection', (e: { peerconnection: RTCPeerConnection }) => attach(e.peerconnection));

    // Send the SDP as soon as the first host candidates are in (see ICE_SETTLE_MS).
    session.on('icecandidate', (e: { ready: () => void }) => {
      window.setTimeout(() => e.ready(), ICE_SETTLE_MS);
    });

    session.on('progress', (e: { originator: string; response?: { status_code?: number } }) => {
      if (this.session !== session || incoming) return;
      const code = e.response?.status_code ?? null;
      if (code === 180 || code === 183) {
        this.setCall({ phase: 'ringing', sipStatus: code });
        startRingback();
      }
    });
    session.on('accepted', () => {
      if (this.session !== session) return;
      stopTone();
      this.setCall({ phase: 'in-call', answeredAt: Date.now(), sipStatus: 200 });
      this.startQuality(session);
    });
    session.on('confirmed', () => {
      if (this.session !== session) return;
      const pc = session.connection as RTCPeerConnection | undefined;
      if (pc && !this.remoteAudio.srcObject) {
        const tracks = pc.getReceivers().map((r) => r.track).filter((t): t is MediaStreamTrack => !!t);
        if (tracks.length) this.remoteAudio.srcObject = new MediaStream(tracks);
      }
      if (!this.snap.call?.answeredAt) this.setCall({ phase: 'in-call', answeredAt: Date.now() });
      this.startQuality(session);
    });
    session.on('hold', (e: { originator: string }) => {
      if (this.session !== session) return;
      if (e.originator === 'local') this.setCall({ localHold: true, phase: 'on-hold' });
      else this.setCall({ remoteHold: true, phase: 'on-hold' });
    });
    session.on('unhold', (e: { originator: string }) => {
      if (this.session !== session) return;
      const c = this.snap.call;
      const localHold = e.originator === 'local' ? false : (c?.localHold ?? false);
      const remoteHold = e.originator === 'remote' ? false : (c?.remoteHold ?? false);
      this.setCall({ localHold, remoteHold, phase: localHold || remoteHold ? 'on-hold' : 'in-call' });
    });
    session.on('muted', () => this.session === session && this.setCall({ muted: true }));
    session.on('unmuted', () => this.session === session && this.setCall({ muted: false }));

    const finish = (phase: 'ended' | 'failed', e: { originator: string; cause: string; message?: { status_code?: number } | null }) => {
      if (this.session !== session) return;
      stopTone();
      this.stopQuality();
      this.session = null;
      this.remoteAudio.srcObject = null;
      const c = this.snap.call;
      const answered = !!c?.answeredAt;
      const statusCode = e.message && typeof e.message.status_code === 'number' ? e.message.status_code : null;
      const reason = reasonFor({
        originator: e.originator as 'local' | 'remote' | 'system',
        cause: e.cause,
        statusCode,
        answered,
        incoming,
        rang: c?.phase === 'ringing',
      });
      // A cancelled or rejected call is an outcome, not a technical failure.
      const benign = answered || e.cause === 'Canceled' || (e.originator === 'local' && e.cause === 'Rejected');
      this.setCall({ phase: benign ? 'ended' : phase, endedAt: Date.now(), reason, sipStatus: statusCode, localHold: false, remoteHold: false, quality: null });
      if (this.rotatedDuringCall && this.mode === 'auto') {
        this.rotatedDuringCall = false;
        void this.provisionAndStart();
      }
    };
    session.on('ended', (e) => finish('ended', e as unknown as Parameters<typeof finish>[1]));
    session.on('failed', (e) => finish('failed', e as unknown as Parameters<typeof finish>[1]));
  }

  // ---- live quality -----------------------------------------------------

  /**
   * Samples the call's getStats() every QUALITY_POLL_MS from answer to
   * hang-up (the timer exists only while a call is up) and publishes the
   * E-model estimate in the call snapshot.
   */
  private startQuality(session: RTCSession): void {
    if (this.qualityTimer !== null) return;
    let prev: InboundCounters | null = null;
    let busy = false;
    const sample = async () => {
      const pc = session.connection as RTCPeerConnection | undefined;
      if (busy || this.session !== session || !pc) return;
      busy = true;
      try {
        const report = await pc.getStats();
        // The call may have ended while getStats() ran.
        if (this.session !== session) return;
        const q = qualityFromStats(report.values(), prev);
        if (!q) return;
        prev = q.counters;
        this.setCall({ quality: q });
      } catch (err) {
        console.warn('reading call statistics failed', err);
      } finally {
        busy = false;
      }
    };
    this.qualityTimer = window.setInterval(() => void sample(), QUALITY_POLL_MS);
  }

  private stopQuality(): void {
    if (this.qualityTimer !== null) window.clearInterval(this.qualityTimer);
    this.qualityTimer = null;
  }

  /** Inbound and outbound audio byte counters of the current call (diagnostics, tests). */
  async audioStats(): Promise<{ bytesReceived: number; bytesSent: number; packetsReceived: number } | null> {
    const pc = this.peerConnection;
    if (!pc) return null;
    const report = await pc.getStats();
    let bytesReceived = 0;
    let bytesSent = 0;
    let packetsReceived = 0;
    report.forEach((s: { type: string; kind?: string; mediaType?: string; bytesReceived?: number; bytesSent?: number; packetsReceived?: number }) => {
      const audio = s.kind === 'audio' || s.mediaType === 'audio';
      if (s.type === 'inbound-rtp' && audio) {
        bytesReceived += s.bytesReceived ?? 0;
        packetsReceived += s.packetsReceived ?? 0;
      }
      if (s.type === 'outbound-rtp' && audio) bytesSent += s.bytesSent ?? 0;
    });
    return { bytesReceived, bytesSent, packetsReceived };
  }
}

function setAudioDirection(pc: RTCPeerConnection | null, direction: RTCRtpTransceiverDirection): void {
  if (!pc) return;
  for (const tr of pc.getTransceivers()) {
    const kind = tr.receiver.track?.kind ?? tr.sender.track?.kind;
    if (kind === 'audio' && tr.currentDirection !== 'stopped') tr.direction = direction;
  }
}

function hostOf(wsUrl: string): string {
  try {
    return new URL(wsUrl).hostname;
  } catch {
    return window.location.hostname;
  }
}

/** A relative or host-less WebSocket URL from the server is resolved against the page. */
function resolveWsUri(wsUri: string): string {
  if (/^wss?:\/\//i.test(wsUri)) return wsUri;
  const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const path = wsUri.startsWith('/') ? wsUri : '/ws';
  return `${proto}//${window.location.host}${path}`;
}

export const phone = new Softphone();

declare global {
  interface Window {
    __centralitaPhone?: Softphone;
  }
}
// Test and diagnostics hook: lets a browser test read the call's WebRTC stats.
window.__centralitaPhone = phone;
