// Live events from GET /api/events (a WebSocket). Reconnects with backoff
// while at least one view listens; views fall back to polling if it is down.

export interface LiveEvent {
  type: string;
  at?: string;
  [k: string]: unknown;
}

type Listener = (e: LiveEvent) => void;

const listeners = new Set<Listener>();
let socket: WebSocket | null = null;
let retryTimer: number | null = null;
let delay = 1000;
let connected = false;
const statusListeners = new Set<(up: boolean) => void>();

function url(): string {
  const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${window.location.host}/api/events`;
}

function setConnected(up: boolean): void {
  connected = up;
  for (const fn of statusListeners) fn(up);
}

function open(): void {
  if (socket || listeners.size === 0) return;
  let ws: WebSocket;
  try {
    ws = new WebSocket(url());
  } catch {
    schedule();
    return;
  }
  socket = ws;
  ws.onopen = () => {
    delay = 1000;
    setConnected(true);
  };
  ws.onmessage = (msg) => {
    if (typeof msg.data !== 'string') return;
    let ev: LiveEvent;
    try {
      ev = JSON.parse(msg.data) as LiveEvent;
    } catch {
      return;
    }
    if (!ev || typeof ev.type !== 'string') return;
    for (const fn of listeners) fn(ev);
  };
  ws.onclose = () => {
    socket = null;
    setConnected(false);
    schedule();
  };
  ws.onerror = () => {
    // onclose follows and schedules the retry.
  };
}

function schedule(): void {
  if (retryTimer !== null || listeners.size === 0) return;
  retryTimer = window.setTimeout(() => {
    retryTimer = null;
    open();
  }, delay);
  delay = Math.min(delay * 2, 15000);
}

export function subscribeEvents(fn: Listener, onStatus?: (up: boolean) => void): () => void {
  listeners.add(fn);
  if (onStatus) {
    statusListeners.add(onStatus);
    onStatus(connected);
  }
  open();
  return () => {
    listeners.delete(fn);
    if (onStatus) statusListeners.delete(onStatus);
    if (listeners.size === 0) {
      if (retryTimer !== null) {
        window.clearTimeout(retryTimer);
        retryTimer = null;
      }
      if (socket) {
        socket.onclose = null;
        socket.close();
        socket = null;
        setConnected(false);
      }
    }
  };
}
