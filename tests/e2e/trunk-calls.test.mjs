// Trunk calls (issue 11) through the real binary with media.anchor =
// always, against Kamailio (Debian package) standing in for a carrier:
// it demands digest authentication for the trunk's REGISTER and for every
// INVITE centralita sends, record-routes those INVITEs to the customer's
// phone (sipp at a fixed port, its RTP a UDP socket of this test), and
// sends the customer's calls to the contact centralita registered (the
// DID in the To header, as carriers do). An admin adds the trunk, an agent
// and a DID with the API; the agent is the stock JsSIP page in Chromium.
// - Out: the browser dials a national number; the carrier challenges,
//   the customer answers PCMU; audio flows both ways through centralita's
//   ports; the CDR names the trunk and has a `trunk:<name>` leg.
// - In: the customer calls the DID; the browser rings and answers; audio
//   both ways; the customer hangs up; the CDR has the DID and the caller.
// - Originate: the API rings the agent's browser, the agent answers, the
//   customer is dialled through the trunk; audio both ways; CDR.
// - Capacity: at maxChannels 1 with a call up, another agent's call fails
//   with 503 and cause no_trunk_available; once the channel is free the
//   same call goes out.
// - Failover: a trunk of higher priority (sipp) answers 503; the call goes
//   out on the carrier; each trunk counts its leg.
// The carrier's calls are recognised by digest (acceptsAuth: centralita
// challenges, Kamailio's uac_auth answers), because on this machine the
// carrier's address is the browsers' too; the last test switches the
// trunk to recognition by address, the usual case, where the agent's own
// WebSocket INVITE must still be the agent's.
// E2E_KEEP_ARTIFACTS=1 keeps the carrier's config and log and sipp's logs
// in artifacts/ (they are kept anyway when a test fails).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { CentralitaServer, e2eDir, freeSipPort, repoDir, waitFor } from './lib/server.mjs';
import { launchPerson } from './lib/browser.mjs';
import { jssipBuilds, startPageServer } from './lib/stockJssip.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const SIPP = path.join(repoDir, 'centralita/tests/sipp');
const REALM = 'carrier.test';
const SECRET = 'carrier-secret-9';
const ACCOUNT = 'acct9';
const TRUNK = 'Carrier Uno';
const DID = '+34910000001';
const CUSTOMER = '+34600111222';
// Our SIP domain, the realm of the challenge the carrier answers with the
// trunk's inbound credentials.
const SIP_DOMAIN = 'pbx.test';
const INBOUND_USER = 'carrier-in';
const INBOUND_SECRET = 'inbound-secret-7';

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
const inRange = (port) => port >= rangeFirst && port <= rangeLast;
const server = new CentralitaServer({
  env: {
    CENTRALITA_MEDIA_ANCHOR: 'always',
    CENTRALITA_MEDIA_PORT_RANGE: `${rangeFirst}-${rangeLast}`,
    CENTRALITA_SIP_DOMAIN: SIP_DOMAIN,
    // The test waits for the SIP side to apply trunk changes by its log.
    RUST_LOG: process.env.RUST_LOG ? `${process.env.RUST_LOG},centralita::trunks=info` : 'info',
  },
});
const agent = { name: 'Tere Trunk', login: 'tere-trunk', password: 'tere-Trunk-Passw0rd-1' };
const agentB = { name: 'Bruno Trunk', login: 'bruno-trunk', password: 'bruno-Trunk-Passw0rd-2' };
let adminCookie;
let person;
let personB;
let pages;
let build;
let carrier;
let trunkId;
let customerPort;
let passed = 0;
/** The failover call: its Call-ID and the first trunk's id. */
let failover = null;
/** The payload types of the first call's offer to the carrier. */
let offeredToCarrier = null;
const TESTS = 5;
const children = [];
const sockets = [];
fs.mkdirSync(ARTIFACTS, { recursive: true });
const work = fs.mkdtempSync(path.join(ARTIFACTS, 'trunk-calls-'));

/**
 * The carrier: every INVITE and REGISTER from centralita must carry
 * digest credentials for REALM/SECRET; authenticated INVITEs are
 * record-routed to the customer's phone; INVITEs from the customer's phone
 * go to the contact the trunk registered (AOR `ACCOUNT`), the Request-URI
 * becoming that contact and the DID staying in the To header.
 */
function kamailioConfig(port, customer) {
  return `#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:${port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "uac.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
modparam("registrar", "max_expires", 3600)
modparam("uac", "credential", "${INBOUND_USER}:${SIP_DOMAIN}:${INBOUND_SECRET}")

request_route {
    if (has_totag()) {
        xlog("L_NOTICE", "IN-DIALOG $rm from $si:$sp to $ru\\n");
        loose_route();
        t_relay();
        exit;
    }
    if (is_method("CANCEL|ACK")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (is_method("INVITE") && $si == "127.0.0.1" && $sp == ${customer}) {
        # A call of the customer's: to the trunk's registered contact.
        xlog("L_NOTICE", "CUSTOMER-INVITE ruri=$ru to=$tu from=$fu\\n");
        record_route();
        $ru = "sip:${ACCOUNT}@127.0.0.1:${port}";
        if (!lookup("location")) {
            xlog("L_NOTICE", "CUSTOMER-INVITE no contact registered for ${ACCOUNT}\\n");
            sl_send_reply("480", "Trunk Not Registered");
            exit;
        }
        xlog("L_NOTICE", "CUSTOMER-INVITE relayed to $ru\\n");
        t_on_failure("ANSWER_CHALLENGE");
        t_relay();
        exit;
    }
    if (is_method("INVITE")) {
        xlog("L_NOTICE", "INVITE-SEEN ruri=$ru from=$fu auth=$hdr(Proxy-Authorization)\\n");
        if (!pv_auth_check("${REALM}", "${SECRET}", "0", "0")) {
            auth_challenge("${REALM}", "1");
            exit;
        }
        consume_credentials();
        record_route();
        $ru = "sip:" + $rU + "@127.0.0.1:${customer}";
        t_relay();
        exit;
    }
    if (is_method("REGISTER")) {
        xlog("L_NOTICE", "REGISTER-SEEN user=$fU contact=$ct expires=$hdr(Expires)\\n");
        if (!pv_auth_check("${REALM}", "${SECRET}", "0", "1")) {
            auth_challenge("${REALM}", "1");
            exit;
        }
        if (!save("location")) {
            sl_reply_error();
        }
        exit;
    }
    if (is_method("OPTIONS") && $rU == $null) {
        sl_send_reply("200", "Carrier Alive");
        exit;
    }
    sl_send_reply("403", "Forbidden");
}

failure_route[ANSWER_CHALLENGE] {
    # centralita challenges a carrier that authenticates: answered once
    # with the trunk's inbound credentials.
    if (t_is_canceled()) {
        exit;
    }
    if (t_check_status("401|407") && $avp(answered) == $null) {
        $avp(answered) = 1;
        xlog("L_NOTICE", "CUSTOMER-INVITE challenged by centralita, answering\\n");
        if (uac_auth()) {
            t_on_failure("ANSWER_CHALLENGE");
            t_relay();
        }
    }
}
`;
}

/** Kamailio in the foreground on a free port, ready when it answers OPTIONS. */
async function startCarrier(customer) {
  const port = await freeSipPort();
  const cfg = path.join(work, 'kamailio.cfg');
  fs.writeFileSync(cfg, kamailioConfig(port, customer));
  const logFile = path.join(work, 'kamailio.log');
  const log = fs.openSync(logFile, 'a');
  // Its own process group: its worker processes go with it at the end.
  const child = spawn('kamailio', ['-f', cfg, '-DD', '-E', '-m', '32', '-M', '8'],
    { stdio: ['ignore', 'ignore', log], detached: true });
  fs.closeSync(log);
  const killOnExit = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  process.once('exit', killOnExit);
  child.on('exit', () => process.removeListener('exit', killOnExit));
  const c = {
    child,
    port,
    logFile,
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => killOnExit(), 5000);
      await done;
      clearTimeout(timer);
      // The children that outlived the main process go with the group.
      killOnExit();
    },
  };
  const probe = dgram.createSocket('udp4');
  await new Promise((r) => probe.bind(0, '127.0.0.1', r));
  let alive = false;
  probe.on('message', (msg) => {
    if (msg.toString('latin1').startsWith('SIP/2.0 200')) alive = true;
  });
  const me = probe.address();
  const options = `OPTIONS sip:127.0.0.1:${port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${me.port};branch=z9hG4bKready\r\n`
    + `Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=r\r\nTo: <sip:127.0.0.1>\r\n`
    + `Call-ID: ready-${me.port}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
  try {
    await waitFor(() => {
      if (child.exitCode !== null) throw Object.assign(new Error(`kamailio exited: ${c.log()}`), { fatal: true });
      if (!alive) probe.send(options, port, '127.0.0.1');
      return alive;
    }, { timeoutMs: 10000, intervalMs: 200, what: `kamailio answering OPTIONS on ${port}` });
  } finally {
    probe.close();
  }
  return c;
}

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

/** sipp at the customer's port with a scenario of centralita/tests/sipp; resolves with its exit code. */
function customerSipp(scenario, target, extra) {
  const child = spawn('sipp', [target, '-sf', path.join(SIPP, scenario), '-i', '127.0.0.1',
    '-p', String(customerPort), '-m', '1', '-timeout', '60s', '-timeout_error', '-nostdin', '-trace_err', ...extra],
  { cwd: work, stdio: 'ignore' });
  children.push(child);
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

/** sipp as a carrier at `port` (its answers to centralita); resolves with its exit code. */
function carrierSipp(scenario, port) {
  const child = spawn('sipp', ['-sf', path.join(SIPP, scenario), '-i', '127.0.0.1', '-p', String(port), '-m', '1',
    '-timeout', '60s', '-timeout_error', '-nostdin', '-trace_err', '-trace_msg'],
  { cwd: work, stdio: 'ignore' });
  children.push(child);
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

/** Waits until the server logged `re` after byte `from` of its log (the SIP side applied a change). */
async function serverLogged(from, re, what) {
  await waitFor(() => {
    const text = fs.readFileSync(server.logFile, 'utf8').slice(from);
    return re.test(text);
  }, { timeoutMs: 10000, what });
}

/** Waits for a sipp run to end (bounded); its exit code. */
async function ended(run, what, timeoutMs = 15000) {
  let timer;
  const code = await Promise.race([
    run,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve('timed out'), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  assert.equal(code, 0, `${what}: sipp exit ${code}; see ${work}`);
}

/** G.711 μ-law code of a 16-bit sample. */
function ulaw(sample) {
  const BIAS = 0x84;
  let s = sample;
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s = Math.min(s, 32635) + BIAS;
  let exp = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp--;
  const mant = (s >> (exp + 3)) & 0x0f;
  return ~(sign | (exp << 4) | mant) & 0xff;
}

/** G.711 A-law code of a 16-bit sample. */
function alaw(sample) {
  let s = sample >> 3;
  let mask = 0xd5;
  if (s < 0) {
    s = -s - 1;
    mask = 0x55;
  }
  const ends = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
  const seg = ends.findIndex((e) => s <= e);
  if (seg < 0) return 0x7f ^ mask;
  const aval = seg << 4 | (seg < 2 ? (s >> 1) & 0xf : (s >> seg) & 0xf);
  return aval ^ mask;
}

/** 20 ms of a 440 Hz tone in payload type `pt` (0 PCMU, 8 PCMA). */
function tonePacket(pt, seq, ts, ssrc) {
  const encode = pt === 0 ? ulaw : alaw;
  const p = Buffer.alloc(12 + 160);
  p[0] = 0x80;
  p[1] = pt;
  p.writeUInt16BE(seq & 0xffff, 2);
  p.writeUInt32BE(ts >>> 0, 4);
  p.writeUInt32BE(ssrc, 8);
  for (let i = 0; i < 160; i++) {
    p[12 + i] = encode(Math.round(8000 * Math.sin(2 * Math.PI * 440 * (ts + i) / 8000)));
  }
  return p;
}

/** The customer's RTP socket: counts packets of `pt` and where they came from. */
async function customerMedia(pt) {
  const sock = dgram.createSocket('udp4');
  sockets.push(sock);
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  const m = { sock, port: sock.address().port, received: 0, from: new Set(), otherPts: new Set() };
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12 || msg[0] >> 6 !== 2) return;
    const p = msg[1] & 0x7f;
    if (p === pt) {
      m.received++;
      m.from.add(`${rinfo.address}:${rinfo.port}`);
    } else if (p < 64 || p > 95) {
      // RTCP (PT 200..204 read as 72..76 here) aside, anything else is noted.
      m.otherPts.add(p);
    }
  });
  return m;
}

/** Sends `n` packets of tone (20 ms apart) from the customer's socket to `to`. */
async function talk(media, pt, to, n) {
  const ssrc = 0x7e1e0000 + pt;
  for (let i = 0; i < n; i++) {
    media.sock.send(tonePacket(pt, i, i * 160, ssrc), to.port, to.address);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `c=`/`m=` address sipp logged after `tag`. */
async function logged(file, tag) {
  let addr;
  await waitFor(() => {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const line = text.split('\n').find((l) => l.includes(tag));
    const m = line && /c=IN IP4 ([0-9.]+) m=audio (\d+) RTP\/AVP ([0-9 ]+)/.exec(line);
    if (m) addr = { address: m[1], port: Number(m[2]), pts: m[3].trim().split(/\s+/).map(Number) };
    return Boolean(addr);
  }, { timeoutMs: 15000, what: `${tag} logged by sipp in ${file}` });
  return addr;
}

/** The browser's audio counters and the port its media goes to. */
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

async function registerBrowser(page, ag) {
  await page.goto(`${pages.baseUrl}/${build.id}/`);
  await page.fill('#username', ag.login);
  await page.fill('#password', ag.password);
  await page.click('#connect');
  await waitFor(async () => (await page.evaluate(() => window.phone.state)) === 'registered',
    { what: `${ag.login}'s browser registered` });
}

const callState = (page) => page.evaluate(() => window.phone.call?.state ?? null);

/** The browser dials `number`; resolves when the call is up. */
async function dial(page, number) {
  await page.fill('#number', number);
  await page.click('#call');
  await waitFor(async () => (await callState(page)) === 'in-call', { what: `the call to ${number} up`, timeoutMs: 20000 });
}

/** The closed CDR row `pick` selects from the newest calls (10 s at most). */
async function cdr(pick, what) {
  let row;
  await waitFor(async () => {
    const r = await adminFetch('/api/telephony/calls/history?limit=50');
    row = r.json?.calls?.find(pick);
    return row?.state === 'ended';
  }, { timeoutMs: 10000, what: `closed CDR: ${what}` });
  return row;
}

async function legsOf(callId) {
  const r = await adminFetch(`/api/telephony/calls/${encodeURIComponent(callId)}`);
  assert.equal(r.status, 200, r.text);
  return r.json.legs;
}

async function trunk() {
  const r = await adminFetch(`/api/telephony/trunks/${trunkId}`);
  assert.equal(r.status, 200, r.text);
  return r.json.trunk;
}

describe('trunk calls through Kamailio standing in for a carrier', () => {
  before(async () => {
    customerPort = await freeSipPort();
    carrier = await startCarrier(customerPort);
    await server.start();
    const res = await fetch(`${server.baseUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ login: 'admin', password: server.adminPassword }),
    });
    assert.equal(res.status, 200);
    adminCookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');

    // The admin adds the trunk; it registers to the carrier (digest).
    const t = await adminFetch('/api/telephony/trunks', {
      method: 'POST',
      body: JSON.stringify({
        name: TRUNK, kind: 'nat_provider', host: '127.0.0.1', port: carrier.port, transport: 'udp',
        outboundAuthUsername: ACCOUNT, outboundAuthPassword: SECRET, sendsRegistration: true,
        registrationExpiration: 60, registrationRetryInterval: 10, fromUser: '34910000000',
        // The carrier's calls are recognised by digest, not by address:
        // here the carrier's address is the browsers' address too.
        acceptsAuth: true, inboundAuthUsername: INBOUND_USER, inboundAuthPassword: INBOUND_SECRET,
      }),
    });
    assert.equal(t.status, 201, t.text);
    assert.ok(!t.text.includes(SECRET), 'the secret is write-only');
    trunkId = t.json.trunk.id;
    await waitFor(async () => (await trunk()).registered === true,
      { what: `the trunk registered at the carrier (its log: ${carrier.logFile})` });
    const regs = carrier.log().split('\n').filter((l) => l.includes(`REGISTER-SEEN user=${ACCOUNT} `));
    assert.ok(regs.length >= 2, `the carrier challenged the REGISTER, then accepted it: ${regs.join('\n')}`);

    for (const ag of [agent, agentB]) {
      const r = await adminFetch('/api/agents', {
        method: 'POST',
        body: JSON.stringify({ name: ag.name, login: ag.login, password: ag.password, role: 'agent' }),
      });
      assert.equal(r.status, 201, r.text);
      ag.ext = r.json.sipCredentials.extension;
    }
    const d = await adminFetch('/api/telephony/dids', {
      method: 'POST',
      body: JSON.stringify({ number: DID, destination: agent.ext, description: 'Ventas' }),
    });
    assert.equal(d.status, 201, d.text);

    const builds = await jssipBuilds();
    build = builds[builds.length - 1];
    pages = await startPageServer({ builds: [build], apiBase: server.baseUrl });
    person = await launchPerson('trunk-a');
    await registerBrowser(person.page, agent);
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const sock of sockets) {
      try {
        sock.close();
      } catch {
        // Closed by its test.
      }
    }
    const failed = passed < TESTS;
    if (failed) {
      for (const p of [person, personB]) {
        if (p?.logs.length) fs.writeFileSync(path.join(work, `${p.name}-console.log`), p.logs.join('\n'));
      }
    }
    await person?.close();
    await personB?.close();
    await pages?.close();
    await server.stop();
    server.cleanup();
    await carrier?.stop();
    // On failure the carrier's log, its config and sipp's logs stay in artifacts/.
    if (!failed && !process.env.E2E_KEEP_ARTIFACTS) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the agent calls a customer through the trunk: challenged by the carrier, audio both ways through our ports', async () => {
    const A = person.page;
    const media = await customerMedia(0);
    const uasLog = path.join(work, 'out-uas.log');
    const customer = customerSipp('trunk_customer_uas.xml', `127.0.0.1:${carrier.port}`,
      ['-set', 'rtp', String(media.port), '-trace_logs', '-log_file', uasLog, '-trace_msg']);
    const number = '912345678';
    await dial(A, number);

    // The carrier challenged centralita's INVITE once, then took it with our caller ID.
    const invites = carrier.log().split('\n').filter((l) => l.includes('INVITE-SEEN') && l.includes(`ruri=sip:${number}@`));
    assert.equal(invites.length, 2, `challenged once, then authenticated: ${invites.join('\n')}`);
    assert.ok(invites[0].includes('auth=<null>'), invites[0]);
    assert.ok(/auth=Digest .*username="acct9"/.test(invites[1]), invites[1]);
    assert.ok(invites[1].includes('from=sip:34910000000@'), `the trunk's fromUser: ${invites[1]}`);

    // What reached the customer: our address and a port of the media range.
    const offer = await logged(uasLog, 'OFFER');
    assert.equal(offer.address, '127.0.0.1');
    assert.ok(inRange(offer.port), `offer port ${offer.port} in ${rangeFirst}-${rangeLast}`);
    assert.ok(offer.pts.includes(0), `PCMU offered: ${offer.pts}`);
    offeredToCarrier = offer.pts;

    // The customer talks for 2.5 s; the agent's microphone talks all along.
    await talk(media, 0, offer, 125);
    const s = await inbound(A);
    assert.ok(s, 'the browser has a peer connection');
    assert.ok(s.packets >= 50, `the browser received ${s.packets} audio packets`);
    assert.ok(s.energy > 0, `the browser hears the customer: totalAudioEnergy ${s.energy}, audioLevel ${s.level}`);
    assert.ok(inRange(s.remotePort), `the browser's media goes to centralita (${s.remotePort})`);
    assert.ok(media.received >= 50, `the customer received ${media.received} PCMU packets`);
    assert.deepEqual([...media.from], [`127.0.0.1:${offer.port}`], 'from the port the offer named (anchored, symmetric)');

    const callId = await A.evaluate(() => window.phone.call.callId);
    await A.click('#hangup');
    await waitFor(async () => (await callState(A)) === 'ended', { what: 'the browser\'s call ended' });
    await ended(customer, 'the customer got the BYE through the carrier');
    media.sock.close();
    assert.ok(/IN-DIALOG BYE .* to sip:customer@127\.0\.0\.1/.test(carrier.log()),
      'the BYE followed the route the carrier recorded');

    const row = await cdr((c) => c.callId === callId, callId);
    assert.equal(row.direction, 'outbound', JSON.stringify(row));
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));
    assert.equal(row.calleeNumber, number, JSON.stringify(row));
    assert.equal(row.agent?.name, agent.name, JSON.stringify(row));
    assert.equal(row.trunk?.name, TRUNK, JSON.stringify(row));
    assert.equal(row.trunk?.id, trunkId, JSON.stringify(row));
    const legs = await legsOf(callId);
    assert.ok(legs.some((l) => l.transport === `trunk:${TRUNK}` && l.answeredAt),
      `an answered leg through the trunk: ${JSON.stringify(legs)}`);
    passed++;
  });

  // The trunk's codecs (the nat_provider preset: pcmu, pcma) are all the
  // offer to the carrier holds (no opus, no 48 kHz telephone-event).
  test('the offer to the carrier holds the trunk\'s codecs only', async () => {
    assert.ok(offeredToCarrier, 'the first call made an offer');
    const t = await trunk();
    assert.deepEqual(t.codecs, ['pcmu', 'pcma']);
    // PCMU, PCMA and telephone-event (dynamic, 96..127) at most.
    const audio = offeredToCarrier.filter((pt) => pt < 96);
    assert.deepEqual(audio, [0, 8], `payload types offered: ${offeredToCarrier}`);
    assert.ok(offeredToCarrier.filter((pt) => pt >= 96).length <= 1, `payload types offered: ${offeredToCarrier}`);
  });

  test('a customer calls the DID: the agent\'s browser rings, answers, audio both ways; the customer hangs up', async () => {
    const A = person.page;
    const media = await customerMedia(8);
    const uacLog = path.join(work, 'in-uac.log');
    // The customer talks for 6 s after the answer, then hangs up.
    const customer = customerSipp('trunk_customer_uac.xml', `127.0.0.1:${carrier.port}`,
      ['-s', DID, '-d', '6000', '-set', 'rtp', String(media.port), '-trace_logs', '-log_file', uacLog]);
    await waitFor(async () => (await callState(A)) === 'incoming',
      { what: `the agent's browser rings (the carrier's log: ${carrier.logFile})`, timeoutMs: 15000 });
    const call = await A.evaluate(() => ({ direction: window.phone.call.direction, peer: window.phone.call.peer }));
    assert.equal(call.direction, 'incoming');
    assert.equal(call.peer, CUSTOMER, 'the browser sees the customer\'s number');
    assert.ok(new RegExp(`CUSTOMER-INVITE relayed to sip:[^@ ]+@127\\.0\\.0\\.1:${server.sipPort}`).test(carrier.log()),
      `the carrier sent the call to the contact the trunk registered: ${carrier.log()}`);
    assert.ok(carrier.log().includes('CUSTOMER-INVITE challenged by centralita, answering'),
      'centralita challenged the carrier, which answered with the trunk\'s inbound credentials');
    await A.click('#answer');
    await waitFor(async () => (await callState(A)) === 'in-call', { what: 'the agent answered' });

    const answer = await logged(uacLog, 'ANSWER');
    assert.equal(answer.address, '127.0.0.1');
    assert.ok(inRange(answer.port), `answer port ${answer.port} in ${rangeFirst}-${rangeLast}`);
    assert.equal(answer.pts[0], 8, `PCMA, the only codec offered: ${answer.pts}`);

    await talk(media, 8, answer, 125);
    const s = await inbound(A);
    assert.ok(s, 'the browser has a peer connection');
    assert.ok(s.packets >= 50, `the browser received ${s.packets} audio packets`);
    assert.ok(s.energy > 0, `the browser hears the customer: totalAudioEnergy ${s.energy}, audioLevel ${s.level}`);
    assert.ok(inRange(s.remotePort), `the browser's media goes to centralita (${s.remotePort})`);
    assert.ok(media.received >= 50, `the customer received ${media.received} PCMA packets`);
    assert.deepEqual([...media.from], [`127.0.0.1:${answer.port}`], 'from the port the answer named');

    // The customer hangs up (after 6 s): the browser sees the remote end.
    await waitFor(async () => (await callState(A)) === 'ended', { what: 'the customer\'s BYE reached the browser', timeoutMs: 15000 });
    const end = await A.evaluate(() => window.phone.call.end);
    assert.equal(end.originator, 'remote', JSON.stringify(end));
    await ended(customer, 'the customer\'s call');
    media.sock.close();

    const callId = await A.evaluate(() => window.phone.call.callId);
    const row = await cdr((c) => c.direction === 'inbound' && c.did === DID, `inbound to ${DID}`);
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));
    assert.equal(row.callerNumber, CUSTOMER, JSON.stringify(row));
    assert.equal(row.calleeNumber, agent.ext, JSON.stringify(row));
    assert.equal(row.calleeAgent?.name, agent.name, JSON.stringify(row));
    assert.equal(row.trunk?.name, TRUNK, JSON.stringify(row));
    assert.equal(row.hangupCause, 'caller_bye', JSON.stringify(row));
    const legs = await legsOf(row.callId);
    const leg0 = legs.find((l) => l.leg === 0);
    assert.equal(leg0?.transport, `trunk:${TRUNK}`, JSON.stringify(legs));
    assert.ok(legs.some((l) => l.leg > 0 && l.answeredAt && ['ws', 'wss'].includes(l.transport)),
      `the browser's leg answered: ${JSON.stringify(legs)} (browser Call-ID ${callId})`);
    // Both calls counted on the trunk.
    await waitFor(async () => (await trunk()).totalCalls === 2, { what: 'the trunk counted both calls' });
    const t = await trunk();
    assert.equal(t.successfulCalls, 2, JSON.stringify(t));
    passed++;
  });

  // seeds/001's click-to-call with the builtin engine: the agent's
  // softphone rings first (an INVITE without SDP: JsSIP makes the offer
  // in its 200), and once the agent answers the customer is dialled
  // through the trunk, as if the agent had dialled.
  test('a CRM originates a call: the agent\'s browser rings, answers, then the customer; audio both ways', async () => {
    const A = person.page;
    const media = await customerMedia(0);
    const uasLog = path.join(work, 'originate-uas.log');
    const customer = customerSipp('trunk_customer_uas.xml', `127.0.0.1:${carrier.port}`,
      ['-set', 'rtp', String(media.port), '-trace_logs', '-log_file', uasLog]);
    const number = '912345674';
    const o = await adminFetch('/api/telephony/call/originate', {
      method: 'POST',
      body: JSON.stringify({ agentExtension: agent.ext, customerPhone: number }),
    });
    assert.equal(o.status, 200, o.text);
    assert.equal(o.json.data.trunk, TRUNK, o.text);
    const callId = o.json.data.callId;
    assert.ok(callId, o.text);
    await waitFor(async () => (await callState(A)) === 'incoming', { what: 'the agent\'s browser rings', timeoutMs: 10000 });
    const ringing = await A.evaluate(() => ({ peer: window.phone.call.peer, callId: window.phone.call.callId }));
    assert.equal(ringing.peer, number, 'the agent sees whom the call is for');
    assert.equal(ringing.callId, callId, 'the browser\'s call is the one the API named');
    assert.equal(carrier.log().split('\n').filter((l) => l.includes(`ruri=sip:${number}@`)).length, 0,
      'the customer is not dialled before the agent answers');
    await A.click('#answer');
    await waitFor(async () => (await callState(A)) === 'in-call', { what: 'the agent answered', timeoutMs: 15000 });

    const offer = await logged(uasLog, 'OFFER');
    assert.ok(inRange(offer.port), `offer port ${offer.port} in ${rangeFirst}-${rangeLast}`);
    await talk(media, 0, offer, 125);
    const s = await inbound(A);
    assert.ok(s, 'the browser has a peer connection');
    assert.ok(s.packets >= 50, `the browser received ${s.packets} audio packets`);
    assert.ok(s.energy > 0, `the browser hears the customer: totalAudioEnergy ${s.energy}`);
    assert.ok(media.received >= 50, `the customer received ${media.received} PCMU packets`);

    await A.click('#hangup');
    await waitFor(async () => (await callState(A)) === 'ended', { what: 'the agent hung up' });
    await ended(customer, 'the customer got the BYE through the carrier');
    media.sock.close();
    const row = await cdr((c) => c.callId === callId, callId);
    assert.equal(row.direction, 'outbound', JSON.stringify(row));
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));
    assert.equal(row.callerNumber, agent.ext, JSON.stringify(row));
    assert.equal(row.calleeNumber, number, JSON.stringify(row));
    assert.equal(row.trunk?.name, TRUNK, JSON.stringify(row));
    assert.equal(row.hangupCause, 'caller_bye', JSON.stringify(row));

    // Hanging up an originate while the agent's phone still rings.
    const again = await adminFetch('/api/telephony/call/originate', {
      method: 'POST',
      body: JSON.stringify({ agentExtension: agent.ext, customerPhone: number }),
    });
    assert.equal(again.status, 200, again.text);
    await waitFor(async () => (await callState(A)) === 'incoming', { what: 'the agent\'s browser rings again', timeoutMs: 10000 });
    const h = await adminFetch('/api/telephony/call/hangup', {
      method: 'POST',
      body: JSON.stringify({ callId: again.json.data.callId }),
    });
    assert.equal(h.status, 200, h.text);
    await waitFor(async () => ['ended', 'failed'].includes(await callState(A)), { what: 'the ringing stopped' });
    const forced = await cdr((c) => c.callId === again.json.data.callId, 'the hung-up originate');
    assert.equal(forced.hangupCause, 'forced_hangup', JSON.stringify(forced));
    passed++;
  });

  test('at maxChannels 1 with a call up, another agent\'s call fails with 503 no_trunk_available', async () => {
    const from = fs.statSync(server.logFile).size;
    const p = await adminFetch(`/api/telephony/trunks/${trunkId}`, { method: 'PATCH', body: JSON.stringify({ maxChannels: 1 }) });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.trunk.maxChannels, 1);
    // The SIP side applies the change a moment after the answer.
    await serverLogged(from, /trunks handed to the SIP server/, 'the change handed to the SIP server');
    await waitFor(async () => (await trunk()).registered === true, { what: 'the trunk registered after the change' });

    // Agent B's call takes the one channel.
    personB = await launchPerson('trunk-b');
    const B = personB.page;
    await registerBrowser(B, agentB);
    const media = await customerMedia(0);
    const customer = customerSipp('trunk_customer_uas.xml', `127.0.0.1:${carrier.port}`,
      ['-set', 'rtp', String(media.port)]);
    await dial(B, '912345670');

    // Agent A's call finds no channel: a clear 503 at once.
    const A = person.page;
    const refused = '912345671';
    await A.fill('#number', refused);
    await A.click('#call');
    await waitFor(async () => (await callState(A)) === 'failed', { what: 'A\'s call refused', timeoutMs: 10000 });
    const end = await A.evaluate(() => window.phone.call.end);
    assert.equal(end.statusCode, 503, JSON.stringify(end));
    assert.equal(end.originator, 'remote', JSON.stringify(end));
    const row = await cdr((c) => c.calleeNumber === refused, refused);
    assert.equal(row.direction, 'outbound', JSON.stringify(row));
    assert.equal(row.disposition, 'FAILED', JSON.stringify(row));
    assert.equal(row.hangupCause, 'no_trunk_available', JSON.stringify(row));
    assert.equal(carrier.log().split('\n').filter((l) => l.includes(`ruri=sip:${refused}@`)).length, 0,
      'nothing was sent to the carrier');

    // B hangs up: the channel is free and A's next call goes out.
    await B.click('#hangup');
    await waitFor(async () => (await callState(B)) === 'ended', { what: 'B\'s call ended' });
    await ended(customer, 'B\'s customer got the BYE');
    const again = customerSipp('trunk_customer_uas.xml', `127.0.0.1:${carrier.port}`,
      ['-set', 'rtp', String(media.port)]);
    await dial(A, refused);
    await A.click('#hangup');
    await waitFor(async () => (await callState(A)) === 'ended', { what: 'A\'s second call ended' });
    await ended(again, 'A\'s customer got the BYE');
    media.sock.close();
    passed++;
  });

  test('failover: the first trunk by priority answers 503, the call goes out on the next', async () => {
    const downPort = await freeSipPort();
    const down = carrierSipp('trunk_carrier_503.xml', downPort);
    const from = fs.statSync(server.logFile).size;
    const t = await adminFetch('/api/telephony/trunks', {
      method: 'POST',
      body: JSON.stringify({
        name: 'Carrier Cero', kind: 'custom', host: '127.0.0.1', port: downPort, transport: 'udp',
        sendsRegistration: false, priority: 1,
        // Recognised by digest, so its address (the browsers') is not enough.
        acceptsAuth: true, inboundAuthUsername: 'cero-in', inboundAuthPassword: 'cero-secret-5',
      }),
    });
    assert.equal(t.status, 201, t.text);
    const downId = t.json.trunk.id;
    await serverLogged(from, /trunks handed to the SIP server .*outbound=2/, 'both trunks in the SIP server\'s outbound list');

    const A = person.page;
    // The earlier calls' legs are counted when their CDRs close: read the
    // counters once no call is open, or a late count looks like this one.
    await waitFor(async () => (await adminFetch('/api/telephony/calls/active')).json?.count === 0,
      { what: 'no call open before the failover call' });
    const before = await trunk();
    const media = await customerMedia(0);
    const customer = customerSipp('trunk_customer_uas.xml', `127.0.0.1:${carrier.port}`, ['-set', 'rtp', String(media.port)]);
    const number = '912345673';
    await dial(A, number);
    await ended(down, 'the first trunk was tried and answered 503');
    await A.click('#hangup');
    await waitFor(async () => (await callState(A)) === 'ended', { what: 'the call ended' });
    await ended(customer, 'the customer got the BYE');
    media.sock.close();

    const callId = await A.evaluate(() => window.phone.call.callId);
    failover = { callId, downId };
    const row = await cdr((c) => c.callId === callId, callId);
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));
    assert.equal(row.direction, 'outbound', JSON.stringify(row));
    const legs = await legsOf(callId);
    const tried = legs.find((l) => l.transport === 'trunk:Carrier Cero');
    assert.ok(tried, `a leg on the first trunk: ${JSON.stringify(legs)}`);
    assert.equal(tried.sipCode, 503, JSON.stringify(tried));
    assert.equal(tried.answeredAt, null, JSON.stringify(tried));
    const answered = legs.find((l) => l.transport === `trunk:${TRUNK}`);
    assert.ok(answered?.answeredAt, `the second trunk's leg answered: ${JSON.stringify(legs)}`);
    assert.ok(legs.indexOf(tried) < legs.indexOf(answered), `priority order: ${JSON.stringify(legs)}`);
    // Each trunk counts its own leg: a failure for the first, a success for the second.
    await waitFor(async () => (await trunk()).successfulCalls === before.successfulCalls + 1,
      { what: `${TRUNK} counted the call it carried` });
    const cero = (await adminFetch(`/api/telephony/trunks/${downId}`)).json?.trunk;
    assert.deepEqual([cero?.totalCalls, cero?.successfulCalls, cero?.failedCalls], [1, 0, 1], JSON.stringify(cero));

    passed++;
  });

  // After a failover the CDR names the trunk that carried the call (its
  // leg answered), not the first one tried.
  test('the failover call\'s CDR names the trunk that carried it', async (t) => {
    assert.ok(failover, 'the failover call happened');
    t.after(async () => {
      // The 503 trunk goes, so the next calls go straight to the carrier.
      const d = await adminFetch(`/api/telephony/trunks/${failover.downId}`, { method: 'DELETE' });
      assert.equal(d.status, 200, d.text);
    });
    const row = await cdr((c) => c.callId === failover.callId, failover.callId);
    assert.equal(row.trunk?.name, TRUNK, JSON.stringify(row));
    assert.equal(row.trunk?.id, trunkId, JSON.stringify(row));
  });

  // Most carriers do not authenticate: their calls are recognised by
  // their address. Here that address (127.0.0.1) is the browsers' too:
  // the agent's own call, over WebSocket, must still be the agent's.
  test('a carrier recognised by its address: the customer\'s call reaches the agent, and the agent still calls out', async () => {
    const from = fs.statSync(server.logFile).size;
    const p = await adminFetch(`/api/telephony/trunks/${trunkId}`, {
      method: 'PATCH',
      body: JSON.stringify({ acceptsAuth: false, inboundAuthUsername: null, inboundAuthPassword: null }),
    });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.trunk.acceptsAuth, false, p.text);
    await serverLogged(from, /trunks handed to the SIP server/, 'the change handed to the SIP server');
    await waitFor(async () => (await trunk()).registered === true, { what: 'the trunk registered after the change' });

    // The customer's call: no challenge now, the carrier's address is enough.
    const A = person.page;
    const media = await customerMedia(8);
    const before = carrier.log().split('\n').filter((l) => l.includes('challenged by centralita')).length;
    const customer = customerSipp('trunk_customer_uac.xml', `127.0.0.1:${carrier.port}`,
      ['-s', DID, '-d', '1000', '-set', 'rtp', String(media.port)]);
    await waitFor(async () => (await callState(A)) === 'incoming', { what: 'the agent\'s browser rings', timeoutMs: 15000 });
    await A.click('#answer');
    await waitFor(async () => (await callState(A)) === 'ended', { what: 'the customer hung up', timeoutMs: 15000 });
    await ended(customer, 'the customer\'s call recognised by address');
    const after = carrier.log().split('\n').filter((l) => l.includes('challenged by centralita')).length;
    assert.equal(after, before, 'the carrier was not challenged');

    // The agent calls a customer, from the same host as the carrier.
    const uas = customerSipp('trunk_customer_uas.xml', `127.0.0.1:${carrier.port}`, ['-set', 'rtp', String(media.port)]);
    const number = '912345672';
    await A.fill('#number', number);
    await A.click('#call');
    await waitFor(async () => ['in-call', 'failed', 'ended'].includes(await callState(A)),
      { what: `the call to ${number} up or refused`, timeoutMs: 20000 });
    const end = await A.evaluate(() => window.phone.call.end);
    const row = await cdr((c) => c.calleeNumber === number || c.did === number, number).catch(() => null);
    assert.equal(await callState(A), 'in-call',
      `the agent's call went out: ${JSON.stringify(end)}; CDR ${JSON.stringify(row)}`);
    await A.click('#hangup');
    await ended(uas, 'the customer got the BYE');
    const out = await cdr((c) => c.calleeNumber === number, number);
    assert.equal(out.direction, 'outbound', JSON.stringify(out));
    assert.equal(out.trunk?.name, TRUNK, JSON.stringify(out));
    media.sock.close();
  });
});
