// Relay mode (issue 12) with real JsSIP in Debian's chromium: Kamailio on
// 127.0.0.1 stands in for the site's own PBX (3CX and the like): registrar
// with digest auth and the proxy between its users. centralita runs with
// `mode = "relay"` pointed at it. Two pages load the stock JsSIP softphone
// (stock-jssip/), get their *PBX* extension and password from the site
// (this test's page server, as a 3CX site would hand them out), connect to
// centralita's /ws, register through the relay (Kamailio challenges, JsSIP
// answers; centralita never sees the password), A calls B, B answers, audio
// flows both ways (browser to browser: the relay does not touch media), A
// hangs up, and the CDR comes back from centralita's API; then a call the
// console hangs up (POST /api/telephony/call/hangup) ends on both pages.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CentralitaServer, e2eDir, freeSipPort, waitFor } from './lib/server.mjs';
import { CHROMIUM_ARGS } from './lib/browser.mjs';
import { jssipBuilds } from './lib/stockJssip.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const REALM = 'pbx.test';
const SIP_TIMEOUT = 20000;

function kamailioConfig(port, users) {
  const pw = users.map((u) => `    if ($var(user) == "${u.ext}") { $var(pw) = "${u.pbxPassword}"; }\n`).join('');
  return `#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.1:${port}
listen=tcp:127.0.0.1:${port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)

route[PASSWORD] {
    $var(pw) = "";
${pw}}

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    xlog("L_NOTICE", "SEEN $rm ruri=$ru proto=$pr src=$si:$sp ua=$ua\\n");
    if (has_totag()) {
        if (loose_route()) {
            t_relay();
            exit;
        }
        if (is_method("ACK")) {
            if (t_check_trans()) {
                t_relay();
            }
            exit;
        }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (is_method("OPTIONS")) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (is_method("REGISTER")) {
        $var(user) = $tU;
        route(PASSWORD);
        if (!pv_auth_check("${REALM}", "$var(pw)", "0", "1")) {
            auth_challenge("${REALM}", "1");
            exit;
        }
        if (!save("location")) {
            sl_reply_error();
        }
        exit;
    }
    if (is_method("INVITE")) {
        $var(user) = $fU;
        route(PASSWORD);
        if (!pv_auth_check("${REALM}", "$var(pw)", "0", "1")) {
            proxy_challenge("${REALM}", "1");
            exit;
        }
        consume_credentials();
        record_route();
        if (!lookup("location")) {
            sl_send_reply("404", "Not Found");
            exit;
        }
        t_relay();
        exit;
    }
    sl_send_reply("405", "Method Not Allowed");
}
`;
}

class Kamailio {
  constructor(dir, port, users) {
    this.dir = dir;
    this.port = port;
    this.users = users;
    this.log = path.join(dir, 'kamailio.log');
    this.proc = null;
  }

  async start() {
    const cfg = path.join(this.dir, 'kamailio.cfg');
    fs.writeFileSync(cfg, kamailioConfig(this.port, this.users));
    const log = fs.openSync(this.log, 'w');
    // Its own process group: its children outlive a signal to the main
    // process alone, and go with the group at the end.
    this.proc = spawn('kamailio', ['-f', cfg, '-DD', '-E', '-m', '32', '-M', '8'],
      { stdio: ['ignore', 'ignore', log], detached: true });
    fs.closeSync(log);
    const proc = this.proc;
    const killOnExit = () => {
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    process.once('exit', killOnExit);
    proc.on('exit', () => process.removeListener('exit', killOnExit));
    // Ready when it answers an OPTIONS over UDP.
    await waitFor(() => this.options(), { timeoutMs: 10000, what: 'Kamailio answering OPTIONS' });
  }

  options() {
    return new Promise((resolve) => {
      const sock = dgram.createSocket('udp4');
      const timer = setTimeout(() => { sock.close(); resolve(false); }, 300);
      sock.on('message', () => { clearTimeout(timer); sock.close(); resolve(true); });
      sock.bind(0, '127.0.0.1', () => {
        const me = sock.address();
        const msg = `OPTIONS sip:127.0.0.1:${this.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${me.port};branch=z9hG4bKready${Date.now()}\r\n`
          + `Max-Forwards: 70\r\nFrom: <sip:probe@${REALM}>;tag=p\r\nTo: <sip:127.0.0.1:${this.port}>\r\n`
          + `Call-ID: ready-${Date.now()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
        sock.send(msg, this.port, '127.0.0.1');
      });
    });
  }

  seen(method) {
    const text = fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8') : '';
    return text.split('\n').filter((l) => l.includes(`SEEN ${method} `));
  }

  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise((resolve) => proc.once('exit', resolve));
    const group = (sig) => {
      try {
        process.kill(-proc.pid, sig);
      } catch {
        // Already gone.
      }
    };
    group('SIGTERM');
    const timer = setTimeout(() => group('SIGKILL'), 5000);
    await done;
    clearTimeout(timer);
    // The children that outlived the main process.
    group('SIGKILL');
  }
}

/** The site's softphone page, and its provisioning: the PBX's credentials. */
async function startSite({ build, wsUri, users }) {
  const dir = path.join(e2eDir, 'stock-jssip');
  const html = fs.readFileSync(path.join(dir, 'index.html'));
  const script = fs.readFileSync(path.join(dir, 'phone.js'));
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const send = (status, type, body) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (url.pathname === '/api/provision' && req.method === 'POST') {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const { username, password } = JSON.parse(Buffer.concat(chunks).toString() || '{}');
      const u = users.find((x) => x.ext === username && x.pbxPassword === password);
      if (!u) return send(401, 'application/json', JSON.stringify({ status: 'error', message: 'bad login' }));
      return send(200, 'application/json', JSON.stringify({
        status: 'ok',
        ws_uri: wsUri,
        sip_user: u.ext,
        sip_domain: REALM,
        sip_pass: u.pbxPassword,
        display_name: u.name,
        extension: u.ext,
        ice_servers: [],
      }));
    }
    if (url.pathname === '/') return send(200, 'text/html; charset=utf-8', html);
    if (url.pathname === '/phone.js') return send(200, 'text/javascript', script);
    if (url.pathname === '/jssip.min.js') return send(200, 'text/javascript', build.code);
    return send(404, 'text/plain', 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

async function launch(name) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `centralita-e2e-relay-${name}-`));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    // Browser to browser on loopback: plain host candidates, no mDNS names.
    args: [...CHROMIUM_ARGS, '--disable-features=WebRtcHideLocalIpsWithMdns'],
    permissions: ['microphone'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(`[${name}] ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => logs.push(`[${name}] pageerror: ${e.message}`));
  return {
    name, page, logs,
    async close() {
      await context.close().catch(() => undefined);
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

async function phoneState(page) {
  return page.evaluate(() => ({ state: window.phone.state, failure: window.phone.failure, call: window.phone.call }));
}

async function waitPhone(page, who, pred, what, timeoutMs = SIP_TIMEOUT) {
  let last;
  try {
    await waitFor(async () => pred((last = await phoneState(page))), { timeoutMs, what: `${who}: ${what}` });
  } catch (err) {
    throw new Error(`${err.message}; page state ${JSON.stringify(last)}`);
  }
}

describe('relay mode: stock JsSIP pages through centralita to a third-party PBX (Kamailio)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'centralita-e2e-relay-'));
  const users = [
    { key: 'a', name: 'Ana Relay', login: 'ana-relay', password: 'ana-Relay-Passw0rd-1', pbxPassword: 'pbx-secret-ana' },
    { key: 'b', name: 'Bruno Relay', login: 'bruno-relay', password: 'bruno-Relay-Passw0rd-2', pbxPassword: 'pbx-secret-bruno' },
  ];
  let kamailio;
  let server;
  let site;
  let adminCookie;
  const people = {};

  async function adminFetch(p) {
    const res = await fetch(`${server.baseUrl}${p}`, { headers: { Cookie: adminCookie } });
    const text = await res.text();
    return { status: res.status, text, json: JSON.parse(text) };
  }

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const pbxPort = await freeSipPort();
    server = new CentralitaServer({
      env: {
        CENTRALITA_MODE: 'relay',
        CENTRALITA_RELAY_UPSTREAM: `udp:127.0.0.1:${pbxPort}`,
        CENTRALITA_SIP_DOMAIN: REALM,
        RUST_LOG: process.env.RUST_LOG ?? 'info,relay=debug',
      },
    });
    server.logFile = path.join(ARTIFACTS, 'relay-server.log');
    // The console is not what this test looks at.
    server.consoleDir = path.join(tmp, 'console');
    fs.mkdirSync(server.consoleDir, { recursive: true });
    fs.writeFileSync(path.join(server.consoleDir, 'index.html'), '<!doctype html><title>console</title>');
    await server.start();
    const res = await fetch(`${server.baseUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ login: 'admin', password: server.adminPassword }),
    });
    assert.equal(res.status, 200);
    adminCookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    // The PBX's extensions are the agents' extensions: the CDR names them.
    for (const u of users) {
      const r = await fetch(`${server.baseUrl}/api/agents`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Cookie: adminCookie },
        body: JSON.stringify({ name: u.name, login: u.login, password: u.password, role: 'agent' }),
      });
      const body = await r.json();
      assert.equal(r.status, 201, JSON.stringify(body));
      u.id = body.agent.id;
      u.ext = body.sipCredentials.extension;
    }
    kamailio = new Kamailio(tmp, pbxPort, users);
    await kamailio.start();
    const builds = await jssipBuilds();
    const build = builds.find((b) => b.id === 'jssip-3.13-npm') ?? builds[builds.length - 1];
    site = await startSite({ build, wsUri: `ws://127.0.0.1:${server.httpPort}/ws`, users });
    [people.a, people.b] = await Promise.all([launch('relay-a'), launch('relay-b')]);
  });

  after(async () => {
    for (const p of Object.values(people)) {
      if (p.logs.length) fs.writeFileSync(path.join(ARTIFACTS, `${p.name}-console.log`), p.logs.join('\n'));
      await p.close();
    }
    await site?.close();
    await server?.stop();
    await kamailio?.stop();
    if (kamailio && fs.existsSync(kamailio.log)) fs.copyFileSync(kamailio.log, path.join(ARTIFACTS, 'relay-kamailio.log'));
    server?.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('both register through the relay, A calls B, audio both ways, CDR ANSWERED', async () => {
    const [ua, ub] = users;
    const A = people.a.page;
    const B = people.b.page;
    for (const [u, page] of [[ua, A], [ub, B]]) {
      await page.goto(`${site.baseUrl}/`);
      await page.fill('#username', u.ext);
      await page.fill('#password', u.pbxPassword);
      await page.click('#connect');
    }
    for (const [who, page] of [['A', A], ['B', B]]) {
      await waitPhone(page, who, (s) => s.state === 'registered' || s.state === 'failed', 'registration result');
      const s = await phoneState(page);
      assert.equal(s.state, 'registered', `${who} did not register: ${s.failure}`);
    }
    // Kamailio challenged and then accepted each, over UDP from the relay,
    // with the Contact pointing at the relay (not at a .invalid host).
    const registers = kamailio.seen('REGISTER');
    assert.ok(registers.length >= 4, registers.join('\n'));
    assert.ok(registers.every((l) => l.includes('proto=udp') && l.includes('ua=JsSIP')), registers.join('\n'));
    const status = await adminFetch('/api/telephony/status');
    assert.equal(status.json.status.engine, 'relay', status.text);
    assert.equal(status.json.status.registeredContacts, 2, status.text);
    // Listed per agent with the browser's own Contact and User-Agent
    // (written behind the 200: may take a moment).
    let regs = [];
    await waitFor(async () => (regs = (await adminFetch('/api/telephony/registrations')).json.registrations).length === 2,
      { timeoutMs: 5000, what: 'both agents listed as registered' });
    for (const u of users) {
      const r = regs.find((x) => x.extension === u.ext);
      assert.ok(r, `${u.ext} listed: ${JSON.stringify(regs)}`);
      assert.match(r.contact, /\.invalid/, JSON.stringify(r));
      assert.match(r.userAgent ?? '', /^JsSIP /, JSON.stringify(r));
    }

    await A.fill('#number', ub.ext);
    await A.click('#call');
    await waitPhone(B, 'B', (s) => s.call?.state === 'incoming', 'incoming call');
    assert.equal((await phoneState(B)).call.peer, ua.ext, 'B sees A\'s extension as the caller');
    await B.click('#answer');
    await Promise.all([
      waitPhone(A, 'A', (s) => s.call?.state === 'in-call', 'call up'),
      waitPhone(B, 'B', (s) => s.call?.state === 'in-call', 'call up'),
    ]);
    const answeredAt = Date.now();
    // Audio both ways, browser to browser.
    let prev = await Promise.all([A.evaluate(() => window.phone.audioStats()), B.evaluate(() => window.phone.audioStats())]);
    for (let i = 1; i <= 3; i++) {
      await new Promise((r) => setTimeout(r, 600));
      const cur = await Promise.all([A.evaluate(() => window.phone.audioStats()), B.evaluate(() => window.phone.audioStats())]);
      for (const k of [0, 1]) {
        assert.ok(cur[k].packetsReceived > prev[k].packetsReceived, `${k ? 'B' : 'A'}: inbound audio did not grow: ${JSON.stringify(prev[k])} -> ${JSON.stringify(cur[k])}`);
      }
      prev = cur;
    }
    const wait = 1500 - (Date.now() - answeredAt);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));

    const callId = (await phoneState(A)).call.callId;
    await A.click('#hangup');
    await Promise.all([
      waitPhone(A, 'A', (s) => s.call?.state === 'ended', 'call ended'),
      waitPhone(B, 'B', (s) => s.call?.state === 'ended', 'call ended'),
    ]);
    assert.equal((await phoneState(B)).call.end.originator, 'remote', 'B saw the hang-up from A');
    assert.ok(kamailio.seen('INVITE').length >= 2, 'Kamailio challenged and then routed the INVITE');
    assert.ok(kamailio.seen('BYE').length >= 1, 'the BYE went through the PBX');

    let row;
    await waitFor(async () => {
      const r = await adminFetch(`/api/telephony/calls/history?limit=50&search=${encodeURIComponent(callId)}`);
      row = r.json?.calls?.find((c) => c.callId === callId);
      return row?.endTime;
    }, { timeoutMs: 10000, what: `closed CDR for Call-ID ${callId}` }).catch((err) => {
      throw new Error(`${err.message}; last row ${JSON.stringify(row)}`);
    });
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));
    assert.ok(row.billsec >= 1, JSON.stringify(row));
    assert.equal(row.callerNumber, ua.ext, JSON.stringify(row));
    assert.equal(row.calleeNumber, ub.ext, JSON.stringify(row));
    assert.equal(row.agentId, ua.id, JSON.stringify(row));
    assert.equal(row.calleeAgentId, ub.id, JSON.stringify(row));
    assert.equal(row.hangupCause, 'caller_bye', JSON.stringify(row));
  });

  test('the console hangs up a relayed call: both pages get a BYE, CDR forced_hangup', async () => {
    const [, ub] = users;
    const A = people.a.page;
    const B = people.b.page;
    const byesBefore = kamailio.seen('BYE').length;
    await A.fill('#number', ub.ext);
    await A.click('#call');
    await waitPhone(B, 'B', (s) => s.call?.state === 'incoming', 'incoming call');
    await B.click('#answer');
    await Promise.all([
      waitPhone(A, 'A', (s) => s.call?.state === 'in-call', 'call up'),
      waitPhone(B, 'B', (s) => s.call?.state === 'in-call', 'call up'),
    ]);
    const callId = (await phoneState(A)).call.callId;
    const res = await fetch(`${server.baseUrl}/api/telephony/call/hangup`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Cookie: adminCookie },
      body: JSON.stringify({ callId }),
    });
    assert.equal(res.status, 200, await res.text());
    // Stock JsSIP takes the relay's BYEs as its peer's: both calls end
    // from the remote side (A's straight from the relay, B's through the
    // PBX).
    await Promise.all([
      waitPhone(A, 'A', (s) => s.call?.state === 'ended', 'call ended'),
      waitPhone(B, 'B', (s) => s.call?.state === 'ended', 'call ended'),
    ]);
    for (const [who, page] of [['A', A], ['B', B]]) {
      const end = (await phoneState(page)).call.end;
      assert.equal(end.originator, 'remote', `${who}: ${JSON.stringify(end)}`);
    }
    assert.equal(kamailio.seen('BYE').length, byesBefore + 1, 'one BYE through the PBX (to B)');
    let row;
    await waitFor(async () => {
      const r = await adminFetch(`/api/telephony/calls/history?limit=50&search=${encodeURIComponent(callId)}`);
      row = r.json?.calls?.find((c) => c.callId === callId);
      return row?.endTime;
    }, { timeoutMs: 10000, what: `closed CDR for Call-ID ${callId}` });
    assert.equal(row.disposition, 'ANSWERED', JSON.stringify(row));
    assert.equal(row.hangupCause, 'forced_hangup', JSON.stringify(row));
  });
});
