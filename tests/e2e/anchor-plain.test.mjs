// Anchored media (issue 10), browser ↔ plain RTP phone through the real
// binary with media.anchor = always: the stock JsSIP page (Chromium, fake
// microphone) calls a plain SIP phone made of sipp (signalling, answers
// with PCMA) and a UDP socket of this test (its RTP: a 440 Hz A-law tone).
// The browser must receive that audio with energy (getStats
// totalAudioEnergy > 0) over a candidate in the media port range, the
// phone must receive the browser's audio from the port our SDP announced,
// a key the agent presses (SIP INFO, JsSIP's default) must reach the phone as
// RFC 4733 telephone-events and a key the phone sends in RFC 4733 must reach
// JsSIP as an INFO (newDTMF); when the phone's media stops the call ends
// with cause media_timeout. Then two browsers call each other anchored:
// both send to the server's ports and hear each other, and when one holds
// (re-INVITE answered by the server on its leg) the other hears the hold
// tone without being re-INVITEd. Recording is on: the first call's CDR
// links a stereo WAV (served with Range) with the browser's audio in one
// channel and the phone's tone in the other, and carries quality per leg
// and direction.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { CentralitaServer, e2eDir, freePort, repoDir, waitFor } from './lib/server.mjs';
import { launchPerson } from './lib/browser.mjs';
import { jssipBuilds, startPageServer } from './lib/stockJssip.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const SIPP = path.join(repoDir, 'centralita/tests/sipp');
const RTP_TIMEOUT_SECS = 3;

/** A block of 100 UDP ports that were free a moment ago (even first). */
async function freeRange() {
  for (let i = 0; i < 50; i++) {
    const first = 30000 + 2 * Math.floor(Math.random() * 15000);
    const ok = await Promise.all([0, 20, 40, 60, 98].map((d) => new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(first + d, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return [first, first + 99];
  }
  throw new Error('no free port block');
}

const [rangeFirst, rangeLast] = await freeRange();
const server = new CentralitaServer({
  env: {
    CENTRALITA_MEDIA_ANCHOR: 'always',
    CENTRALITA_MEDIA_PORT_RANGE: `${rangeFirst}-${rangeLast}`,
    CENTRALITA_MEDIA_RTP_TIMEOUT_SECS: String(RTP_TIMEOUT_SECS),
    // Every call is recorded (the system default of a site that records).
    CENTRALITA_MEDIA_RECORDING: 'true',
  },
});
const agent = { name: 'Ana Anchor', login: 'ana-anchor', password: 'ana-Anchor-Passw0rd-1' };
const phoneAgent = { name: 'Pepe Plain', login: 'pepe-plain', password: 'pepe-Plain-Passw0rd-2' };
const agentB = { name: 'Berta Anchor', login: 'berta-anchor', password: 'berta-Anchor-Passw0rd-3' };
let adminCookie;
let person;
let personB;
let pages;
let build;
const children = [];
fs.mkdirSync(ARTIFACTS, { recursive: true });
const work = fs.mkdtempSync(path.join(ARTIFACTS, 'anchor-'));

async function adminFetch(p, init = {}) {
  const res = await fetch(`${server.baseUrl}${p}`, {
    ...init,
    headers: { 'Content-Type': 'application/json', Cookie: adminCookie, ...(init.headers ?? {}) },
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: the assertion shows the text.
  }
  return { status: res.status, text, json };
}

function sipp(scenario, port, extra) {
  const child = spawn('sipp', [`127.0.0.1:${server.sipPort}`, '-sf', path.join(SIPP, scenario), '-i', '127.0.0.1',
    '-p', String(port), '-m', '1', '-timeout', '60s', '-timeout_error', '-nostdin', '-trace_err', ...extra],
  { cwd: work, stdio: 'ignore' });
  children.push(child);
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

/** A-law code of a 16-bit sample (ITU-T G.711). */
function alaw(sample) {
  let s = sample >> 3;
  let mask = 0xd5;
  if (s < 0) {
    s = -s - 1;
    mask = 0x55;
  }
  const ends = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
  let seg = ends.findIndex((e) => s <= e);
  if (seg < 0) return 0x7f ^ mask;
  const aval = seg << 4 | (seg < 2 ? (s >> 1) & 0xf : (s >> seg) & 0xf);
  return aval ^ mask;
}

function tonePacket(seq, ts, ssrc) {
  const p = Buffer.alloc(12 + 160);
  p[0] = 0x80;
  p[1] = 8; // PCMA, what the phone answered
  p.writeUInt16BE(seq & 0xffff, 2);
  p.writeUInt32BE(ts >>> 0, 4);
  p.writeUInt32BE(ssrc, 8);
  for (let i = 0; i < 160; i++) {
    p[12 + i] = alaw(Math.round(8000 * Math.sin(2 * Math.PI * 440 * (ts + i) / 8000)));
  }
  return p;
}

/** `c=`/`m=` address sipp logged after `tag`. */
async function logged(file, tag) {
  let addr;
  await waitFor(() => {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const line = text.split('\n').find((l) => l.includes(tag));
    const m = line && /c=IN IP4 ([0-9.]+) m=audio (\d+)/.exec(line);
    if (m) addr = { address: m[1], port: Number(m[2]) };
    return Boolean(addr);
  }, { timeoutMs: 15000, what: `${tag} logged by sipp in ${file}` });
  return addr;
}

async function inbound(page) {
  return page.evaluate(async () => {
    const pc = window.phone.session && window.phone.session.connection;
    if (!pc) return null;
    const out = { packets: 0, energy: 0, level: 0, remotePort: null, sent: 0 };
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.packets += s.packetsReceived || 0;
        out.energy += s.totalAudioEnergy || 0;
        out.level = Math.max(out.level, s.audioLevel || 0);
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') out.sent += s.packetsSent || 0;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        out.remotePort = byId.get(s.remoteCandidateId)?.port ?? null;
      }
    });
    return out;
  });
}

/** Channels of a 16-bit PCM WAV: { channels, rate, samples: Int16Array[] }. */
function parseWav(buf) {
  assert.equal(buf.toString('ascii', 0, 4), 'RIFF');
  assert.equal(buf.toString('ascii', 8, 12), 'WAVE');
  let off = 12;
  let fmt;
  while (off + 8 <= buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    const len = buf.readUInt32LE(off + 4);
    if (id === 'fmt ') {
      fmt = { channels: buf.readUInt16LE(off + 10), rate: buf.readUInt32LE(off + 12), bits: buf.readUInt16LE(off + 22) };
    } else if (id === 'data') {
      assert.ok(fmt, 'fmt before data');
      assert.equal(fmt.bits, 16);
      const frames = Math.floor(Math.min(len, buf.length - off - 8) / (2 * fmt.channels));
      const samples = Array.from({ length: fmt.channels }, () => new Int16Array(frames));
      for (let i = 0; i < frames; i++) {
        for (let c = 0; c < fmt.channels; c++) samples[c][i] = buf.readInt16LE(off + 8 + 2 * (i * fmt.channels + c));
      }
      return { ...fmt, samples };
    }
    off += 8 + len + (len & 1);
  }
  throw new Error('no data chunk');
}

/** Zero crossings per second of the loudest second of a channel. */
function loudest(samples, rate) {
  let best = { rms: 0, crossings: 0 };
  for (let start = 0; start + rate <= samples.length; start += rate / 2) {
    let sum = 0;
    let crossings = 0;
    for (let i = start; i < start + rate; i++) {
      sum += samples[i] * samples[i];
      if (i > start && (samples[i] >= 0) !== (samples[i - 1] >= 0)) crossings++;
    }
    const rms = Math.sqrt(sum / rate);
    if (rms > best.rms) best = { rms, crossings };
  }
  return best;
}

describe('anchored media: browser ↔ plain RTP phone, browser ↔ browser', () => {
  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await server.start();
    const res = await fetch(`${server.baseUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ login: 'admin', password: server.adminPassword }),
    });
    assert.equal(res.status, 200);
    adminCookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    for (const ag of [agent, phoneAgent, agentB]) {
      const r = await adminFetch('/api/agents', {
        method: 'POST',
        body: JSON.stringify({ name: ag.name, login: ag.login, password: ag.password, role: 'agent' }),
      });
      assert.equal(r.status, 201, r.text);
      ag.ext = r.json.sipCredentials.extension;
      ag.sipUser = r.json.sipCredentials.username;
      ag.sipPassword = r.json.sipCredentials.password;
    }
    const builds = await jssipBuilds();
    build = builds[builds.length - 1];
    pages = await startPageServer({ builds: [build], apiBase: server.baseUrl });
    person = await launchPerson('anchor-a');
    personB = await launchPerson('anchor-b');
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    if (person?.logs.length) fs.writeFileSync(path.join(ARTIFACTS, 'anchor-a-console.log'), person.logs.join('\n'));
    await person?.close();
    await personB?.close();
    await pages?.close();
    await server.stop();
    server.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('audio both ways through our ports, DTMF both ways, then media timeout ends the call', async () => {
    // The plain phone registers, then waits for the call with its RTP socket.
    const phonePort = await freePort();
    const csv = path.join(work, 'phone.csv');
    fs.writeFileSync(csv, `SEQUENTIAL\n${phoneAgent.sipUser};[authentication username=${phoneAgent.sipUser} password=${phoneAgent.sipPassword}];\n`);
    assert.equal(await sipp('reg_ok.xml', phonePort, ['-inf', csv]), 0, 'the plain phone registers');
    const rtp = dgram.createSocket('udp4');
    await new Promise((r) => rtp.bind(0, '127.0.0.1', r));
    let received = 0;
    let receivedFrom = null;
    const events = [];
    rtp.on('message', (msg, rinfo) => {
      if (msg.length < 12 || msg[0] >> 6 !== 2) return;
      const pt = msg[1] & 0x7f;
      if (pt === 8) {
        received++;
        receivedFrom = rinfo;
      } else if (pt === 101 && msg.length >= 16) {
        // RFC 4733: event, E bit, duration; all packets of a key share a timestamp.
        events.push({ event: msg[12], end: (msg[13] & 0x80) !== 0, ts: msg.readUInt32BE(4), marker: (msg[1] & 0x80) !== 0 });
      }
    });
    const uasLog = path.join(work, 'uas.log');
    const callee = sipp('anchored_uas.xml', phonePort, ['-set', 'rtp', String(rtp.address().port), '-trace_logs', '-log_file', uasLog]);

    // The browser agent calls the phone.
    const A = person.page;
    await A.goto(`${pages.baseUrl}/${build.id}/`);
    await A.fill('#username', agent.login);
    await A.fill('#password', agent.password);
    await A.click('#connect');
    await waitFor(async () => (await A.evaluate(() => window.phone.state)) === 'registered', { what: 'browser registered' });
    await A.fill('#number', phoneAgent.ext);
    await A.click('#call');
    await waitFor(async () => (await A.evaluate(() => window.phone.call?.state)) === 'in-call', { what: 'call up', timeoutMs: 20000 });

    // Our offer to the phone: our address and a port of the range.
    const ours = await logged(uasLog, 'OFFER');
    assert.equal(ours.address, '127.0.0.1');
    assert.ok(ours.port >= rangeFirst && ours.port <= rangeLast, `offer port ${ours.port} in ${rangeFirst}-${rangeLast}`);

    // The phone talks: 2.5 s of tone, 20 ms per packet; at 1.6 s it
    // presses 7 (RFC 4733: 100 ms, an update every 50 ms, the end ×3); at
    // 2 s it presses 9 and all of that key's end packets are lost, so only
    // the server's receiver timeout can complete it.
    const ssrc = 0x5eed1234;
    let seq = 0;
    const key = (event, start, dur, end) => {
      const p = Buffer.alloc(16);
      p[0] = 0x80;
      p[1] = 101 | (dur === 400 ? 0x80 : 0);
      p.writeUInt16BE(seq++ & 0xffff, 2);
      p.writeUInt32BE(start * 160, 4); // the key's start, one timestamp for all its packets
      p.writeUInt32BE(ssrc, 8);
      p[12] = event;
      p[13] = (end ? 0x80 : 0) | 10;
      p.writeUInt16BE(dur, 14);
      return p;
    };
    for (let i = 0; i < 125; i++) {
      if (i === 80) rtp.send(key(7, 80, 400, false), ours.port, ours.address);
      if (i === 82) rtp.send(key(7, 80, 800, true), ours.port, ours.address);
      if (i === 83 || i === 84) rtp.send(key(7, 80, 800, true), ours.port, ours.address);
      if (i === 100) rtp.send(key(9, 100, 400, false), ours.port, ours.address);
      if (i === 102) rtp.send(key(9, 100, 800, false), ours.port, ours.address);
      // Halfway, the agent presses 5: JsSIP sends SIP INFO (its default).
      if (i === 60) await A.evaluate(() => window.phone.session.sendDTMF('5', { duration: 160 }));
      rtp.send(tonePacket(seq++, i * 160, ssrc), ours.port, ours.address);
      await new Promise((r) => setTimeout(r, 20));
    }
    const stats = await inbound(A);
    assert.ok(stats, 'the browser has a peer connection');
    assert.ok(stats.packets >= 50, `browser received ${stats.packets} audio packets from the phone`);
    assert.ok(stats.energy > 0, `the browser hears energy: totalAudioEnergy ${stats.energy}, audioLevel ${stats.level}`);
    assert.ok(stats.remotePort >= rangeFirst && stats.remotePort <= rangeLast,
      `the browser's media goes to the server's port (${stats.remotePort}), not to the phone`);
    assert.ok(received >= 50, `the phone received ${received} packets of the browser's audio`);
    assert.equal(receivedFrom.port, ours.port, 'from the port our offer named (symmetric RTP)');
    // The INFO reached the phone as RFC 4733 telephone-events (PT 101, as it answered).
    assert.ok(events.length >= 3, `telephone-events at the phone: ${JSON.stringify(events)}`);
    assert.ok(events.every((e) => e.event === 5 && e.ts === events[0].ts), JSON.stringify(events));
    assert.ok(events[0].marker, 'the first event packet has the marker');
    assert.equal(events.filter((e) => e.end).length, 3, `end sent three times: ${JSON.stringify(events)}`);
    // The phone's keys reached JsSIP as INFOs (newDTMF), each exactly once,
    // the one without end packets too (closed by the receiver's timeout).
    await waitFor(async () => (await A.evaluate(() => window.phone.call.dtmfReceived.length)) >= 2,
      { what: 'both keys at the browser', timeoutMs: 3000 }).catch(() => {});
    const keys = await A.evaluate(() => window.phone.call.dtmfReceived);
    assert.deepEqual(keys, ['7', '9'], 'the browser got the phone\'s RFC 4733 keys as SIP INFO');

    // The phone's media stops: after media.rtp_timeout_secs the server ends the call.
    const stopped = Date.now();
    await waitFor(async () => (await A.evaluate(() => window.phone.call?.state)) === 'ended',
      { what: 'call ended by media timeout', timeoutMs: (RTP_TIMEOUT_SECS + 10) * 1000 });
    const waited = Date.now() - stopped;
    assert.ok(waited >= (RTP_TIMEOUT_SECS - 1) * 1000, `ended ${waited} ms after the media stopped`);
    const end = await A.evaluate(() => window.phone.call.end);
    assert.equal(end.originator, 'remote', JSON.stringify(end));
    assert.equal(await callee, 0, 'the phone got its BYE');
    rtp.close();

    const callId = await A.evaluate(() => window.phone.call.callId);
    let row;
    await waitFor(async () => {
      const r = await adminFetch(`/api/telephony/calls/history?limit=50&search=${encodeURIComponent(callId)}`);
      row = r.json?.calls?.find((c) => c.callId === callId);
      return row?.state === 'ended';
    }, { timeoutMs: 10000, what: 'closed CDR' });
    assert.equal(row.hangupCause, 'media_timeout', JSON.stringify(row));
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));

    // Quality and the recording come after the call's end (the media
    // session reports them when it closes).
    await waitFor(async () => {
      const r = await adminFetch(`/api/telephony/calls/history?limit=50&search=${encodeURIComponent(callId)}`);
      row = r.json?.calls?.find((c) => c.callId === callId);
      return row?.hasRecording && row?.quality;
    }, { timeoutMs: 10000, what: 'recording and quality on the CDR' });
    const q = row.quality;
    assert.ok(['good', 'fair', 'poor'].includes(q.class), JSON.stringify(q));
    // Leg 0 is the caller (the browser), leg 1 the phone.
    const phoneIn = q.legs.find((l) => l.leg === 1 && l.direction === 'inbound');
    assert.ok(phoneIn, `the phone's leg, inbound: ${JSON.stringify(q.legs)}`);
    assert.equal(phoneIn.codec, 'PCMA', JSON.stringify(phoneIn));
    // Its RFC 4733 packets share the sequence space and are not loss.
    assert.ok(phoneIn.packets >= 125 && phoneIn.lost === 0, JSON.stringify(phoneIn));
    assert.ok(phoneIn.mos > 4, `a clean G.711 stream on loopback scores ${phoneIn.mos}`);
    const browserIn = q.legs.find((l) => l.leg === 0 && l.direction === 'inbound');
    assert.ok(browserIn?.packets > 50, `the browser's leg, inbound: ${JSON.stringify(q.legs)}`);
    assert.ok(q.legs.some((l) => l.leg === 1 && l.direction === 'outbound' && l.packets > 50),
      `what we sent the phone: ${JSON.stringify(q.legs)}`);
    assert.ok(row.recording.durationMs >= 2000, JSON.stringify(row.recording));

    // The recording, as a player asks for it: the head first, then the rest.
    const url = `/api/telephony/calls/${encodeURIComponent(callId)}/recording`;
    const head = await fetch(`${server.baseUrl}${url}`, { headers: { Cookie: adminCookie, Range: 'bytes=0-43' } });
    assert.equal(head.status, 206);
    assert.equal(head.headers.get('content-range'), `bytes 0-43/${row.recording.bytes}`);
    assert.equal(Buffer.from(await head.arrayBuffer()).toString('ascii', 0, 4), 'RIFF');
    const whole = await fetch(`${server.baseUrl}${url}`, { headers: { Cookie: adminCookie } });
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-type'), 'audio/wav');
    const wav = parseWav(Buffer.from(await whole.arrayBuffer()));
    assert.equal(wav.channels, 2, 'stereo: one channel per side');
    assert.equal(wav.rate, 8000);
    // The phone's 440 Hz tone is in one channel (≈880 crossings/s); the
    // browser's fake microphone in the other.
    const sides = wav.samples.map((ch) => loudest(ch, wav.rate));
    const tone = sides.findIndex((s) => s.rms > 1500 && Math.abs(s.crossings - 880) < 60);
    assert.ok(tone >= 0, `the phone's tone in a channel: ${JSON.stringify(sides)}`);
    assert.ok(sides[1 - tone].rms > 100, `the browser's audio in the other: ${JSON.stringify(sides)}`);
  });

  test('browser ↔ browser anchored: audio both ways over our ports; a hold gives the other party the hold tone', async () => {
    const A = person.page;
    const B = personB.page;
    for (const [page, ag] of [[A, agent], [B, agentB]]) {
      await page.goto(`${pages.baseUrl}/${build.id}/`);
      await page.fill('#username', ag.login);
      await page.fill('#password', ag.password);
      await page.click('#connect');
      await waitFor(async () => (await page.evaluate(() => window.phone.state)) === 'registered', { what: `${ag.login} registered` });
    }
    await A.fill('#number', agentB.ext);
    await A.click('#call');
    await waitFor(async () => (await B.evaluate(() => window.phone.call?.state)) === 'incoming', { what: 'B rings' });
    await B.click('#answer');
    for (const page of [A, B]) {
      await waitFor(async () => (await page.evaluate(() => window.phone.call?.state)) === 'in-call', { what: 'call up' });
    }
    // Both browsers talk to the server (a candidate in the media range), and hear each other.
    await new Promise((r) => setTimeout(r, 2000));
    const [a1, b1] = await Promise.all([inbound(A), inbound(B)]);
    for (const [who, s] of [['A', a1], ['B', b1]]) {
      assert.ok(s.remotePort >= rangeFirst && s.remotePort <= rangeLast, `${who} sends to ${s.remotePort}, not to the server's range`);
      assert.ok(s.packets >= 40, `${who} received ${s.packets} audio packets`);
      assert.ok(s.energy > 0, `${who} hears energy (${s.energy})`);
    }
    // A holds (JsSIP's re-INVITE sendonly, answered by the server for A's
    // leg only): B keeps receiving the server's hold tone, A receives nothing.
    await A.evaluate(() => window.phone.session.hold());
    await waitFor(async () => A.evaluate(() => window.phone.session?.isOnHold().local === true), { what: 'A on hold' });
    await new Promise((r) => setTimeout(r, 500));
    const [a2, b2] = await Promise.all([inbound(A), inbound(B)]);
    await new Promise((r) => setTimeout(r, 2000));
    const [a3, b3] = await Promise.all([inbound(A), inbound(B)]);
    assert.ok(a3.packets - a2.packets <= 3, `the held browser still receives audio: ${a2.packets} -> ${a3.packets}`);
    assert.ok(b3.packets - b2.packets >= 60, `B's stream stopped while A holds: ${b2.packets} -> ${b3.packets}`);
    assert.ok(b3.energy > b2.energy, `B hears the hold tone: energy ${b2.energy} -> ${b3.energy}`);
    const bState = await B.evaluate(() => window.phone.call?.state);
    assert.equal(bState, 'in-call', 'B is not re-INVITEd by A\'s hold');
    await A.evaluate(() => window.phone.session.unhold());
    await new Promise((r) => setTimeout(r, 1500));
    const a4 = await inbound(A);
    await new Promise((r) => setTimeout(r, 1000));
    const a5 = await inbound(A);
    assert.ok(a5.packets - a4.packets >= 30, `A hears B again after the resume: ${a4.packets} -> ${a5.packets}`);
    await A.click('#hangup');
    await waitFor(async () => (await B.evaluate(() => window.phone.call?.state)) === 'ended', { what: 'B sees the end' });
  });
});
