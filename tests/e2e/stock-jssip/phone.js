// The page's softphone: plain JsSIP as a user of seeds/000 writes it. It
// trades the console login for SIP credentials at /api/provision, registers
// with JsSIP's defaults (session timers on, MD5 digest only, no ICE shortcut),
// places and answers one call at a time and hangs up. `window.phone` exposes
// its state and the call's WebRTC stats to the test.
'use strict';

const $ = (id) => document.getElementById(id);

const phone = {
  ua: null,
  session: null,
  creds: null,
  /** idle, provisioning, connecting, registered, failed, stopped */
  state: 'idle',
  /** Why the last registration or provisioning failed, for the test's message. */
  failure: null,
  call: null,
  /** Every call of this page: direction, Call-ID, how it ended. */
  calls: [],
};
window.phone = phone;

$('jssip-version').textContent = JsSIP.version;

function setState(state, detail) {
  phone.state = state;
  const el = $('status');
  el.dataset.state = state;
  el.textContent = detail ? `${state}: ${detail}` : state;
}

function setCall(state) {
  if (phone.call) phone.call.state = state;
  const el = $('call-state');
  el.dataset.state = state;
  el.textContent = state;
}

async function provision(username, password) {
  const res = await fetch('/api/provision', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const body = await res.json();
  if (!res.ok || body.status !== 'ok') throw new Error(`provisioning: ${res.status} ${body.message || ''}`);
  return body;
}

async function connect() {
  setState('provisioning');
  phone.failure = null;
  let creds;
  try {
    creds = await provision($('username').value, $('password').value);
  } catch (err) {
    phone.failure = String(err && err.message ? err.message : err);
    setState('failed', phone.failure);
    return;
  }
  phone.creds = creds;
  $('extension').textContent = creds.extension;
  const socket = new JsSIP.WebSocketInterface(creds.ws_uri);
  const ua = new JsSIP.UA({
    sockets: [socket],
    uri: `sip:${creds.sip_user}@${creds.sip_domain}`,
    password: creds.sip_pass,
    display_name: creds.display_name,
    register: true,
  });
  phone.ua = ua;
  ua.on('connecting', () => setState('connecting'));
  ua.on('registered', () => setState('registered'));
  ua.on('unregistered', () => {
    if (phone.state !== 'stopped') setState('unregistered');
  });
  ua.on('registrationFailed', (e) => {
    const res = e.response;
    const challenges = res ? res.getHeaders('www-authenticate') : [];
    phone.failure = `${e.cause}${res ? ` (${res.status_code} ${res.reason_phrase}; WWW-Authenticate: ${challenges.join(' | ')})` : ''}`;
    setState('failed', phone.failure);
  });
  ua.on('newRTCSession', (e) => onSession(e));
  setState('connecting');
  ua.start();
}

function attachAudio(pc) {
  pc.addEventListener('track', (ev) => {
    const audio = $('remote-audio');
    audio.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    audio.play().catch(() => undefined);
  });
}

function onSession(e) {
  const session = e.session;
  const incoming = e.originator === 'remote';
  if (phone.session) {
    if (incoming) session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
    return;
  }
  phone.session = session;
  phone.call = {
    direction: incoming ? 'incoming' : 'outgoing',
    callId: e.request.call_id,
    peer: session.remote_identity.uri.user,
    state: null,
    end: null,
    /** DTMF keys the other side sent (JsSIP's newDTMF, remote). */
    dtmfReceived: [],
  };
  phone.calls.push(phone.call);
  setCall(incoming ? 'incoming' : 'calling');
  if (session.connection) attachAudio(session.connection);
  session.on('peerconnection', (ev) => attachAudio(ev.peerconnection));
  session.on('progress', () => {
    if (!incoming) setCall('ringing');
  });
  session.on('newDTMF', (ev) => {
    if (ev.originator === 'remote') phone.call.dtmfReceived.push(ev.dtmf.tone);
  });
  session.on('accepted', () => setCall('in-call'));
  session.on('confirmed', () => setCall('in-call'));
  const finish = (how) => (ev) => {
    const code = ev.message && ev.message.status_code;
    phone.call.end = { how, originator: ev.originator, cause: ev.cause, statusCode: code || null };
    phone.session = null;
    $('remote-audio').srcObject = null;
    setCall(how);
  };
  session.on('ended', finish('ended'));
  session.on('failed', finish('failed'));
}

function call(number) {
  if (!phone.ua || phone.session) return;
  phone.ua.call(`sip:${number}@${phone.creds.sip_domain}`, {
    mediaConstraints: { audio: true, video: false },
    pcConfig: { iceServers: phone.creds.ice_servers || [] },
  });
}

/** Audio counters of the current call, summed over its RTP streams. */
phone.audioStats = async function audioStats() {
  const pc = phone.session && phone.session.connection;
  if (!pc) return null;
  const out = { bytesReceived: 0, packetsReceived: 0, bytesSent: 0, packetsSent: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.kind !== 'audio') return;
    if (s.type === 'inbound-rtp') {
      out.bytesReceived += s.bytesReceived || 0;
      out.packetsReceived += s.packetsReceived || 0;
    } else if (s.type === 'outbound-rtp') {
      out.bytesSent += s.bytesSent || 0;
      out.packetsSent += s.packetsSent || 0;
    }
  });
  return out;
};

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void connect();
});
$('disconnect').addEventListener('click', () => {
  if (!phone.ua) return;
  setState('stopped');
  // stop() hangs up, unregisters and closes the WebSocket.
  phone.ua.stop();
});
$('dialer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  call($('number').value.trim());
});
$('answer').addEventListener('click', () => {
  if (phone.session && phone.call.direction === 'incoming' && phone.call.state === 'incoming') {
    phone.session.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: phone.creds.ice_servers || [] } });
  }
});
$('hangup').addEventListener('click', () => {
  if (phone.session) phone.session.terminate();
});
