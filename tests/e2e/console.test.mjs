// Browser tests of the console and the JsSIP softphone against the real
// centralita binary: Debian's chromium, fake audio devices, 127.0.0.1 only.
//
// The steps share one server and three people (admin, agent A, agent B) and
// run in order; a step that depends on an earlier one fails with it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CentralitaServer, e2eDir, waitFor } from './lib/server.mjs';
import { launchPerson } from './lib/browser.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const SIP_TIMEOUT = 20000;

// A short ring timeout so the "no answer" case does not take the default 30 s.
const RING_TIMEOUT_SECS = 8;
const server = new CentralitaServer({ env: { CENTRALITA_SIP_RING_TIMEOUT_SECS: String(RING_TIMEOUT_SECS) } });
const people = {};
const agents = {
  a: { name: 'Ana Agente', login: 'ana', password: 'ana-Passw0rd-1', ext: null, sipUser: null },
  b: { name: 'Bruno Agente', login: 'bruno', password: 'bruno-Passw0rd-2', ext: null, sipUser: null },
};
const shownPasswords = [];

// A finished call the media plane would have reported (quality figures and
// a recording), seeded before the server starts: as CDR journal lines of a
// previous run, which the server replays into the database at start, and a
// 1 s stereo WAV in the recording directory (<data_dir>/recordings).
const SEEDED_CALL = 'e2e-recorded-call@127.0.0.1';
const SEEDED_WAV = { rel: 'e2e/seeded.wav', seconds: 1, rate: 8000 };

function stereoWav({ seconds, rate }) {
  const frames = seconds * rate;
  const buf = Buffer.alloc(44 + frames * 4);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + frames * 4, 4);
  buf.write('WAVEfmt ', 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(2, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 4, 28);
  buf.writeUInt16LE(4, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36);
  buf.writeUInt32LE(frames * 4, 40);
  for (let i = 0; i < frames; i++) {
    // 440 Hz on the customer's channel, 660 Hz on the agent's.
    buf.writeInt16LE(Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / rate)), 44 + i * 4);
    buf.writeInt16LE(Math.round(8000 * Math.sin(2 * Math.PI * 660 * i / rate)), 46 + i * 4);
  }
  return buf;
}

function seedRecordedCall(dataDir) {
  const t0 = Date.now() - 120000;
  const party = (number) => ({ number, agent_id: null });
  const q = (leg, direction, mos, rtt) => ({ Quality: { leg, direction, packets: 1500, lost: 30, jitter_ms: 6.5, rtt_ms: rtt, mos, codec: 'PCMU' } });
  const events = [
    [0, { Started: { direction: 'inbound', caller: party('+34600111222'), callee: party('7000'), transport: 'udp' } }],
    [5, { LegAdded: { leg: 1, party: party('7000'), transport: 'ws' } }],
    [900, { Answered: { leg: 1 } }],
    [31000, { Ended: { cause: 'caller_bye' } }],
    [31010, q(0, 'inbound', 4.3, 40)],
    [31010, q(0, 'outbound', 4.2, null)],
    [31010, q(1, 'inbound', 3.75, 12)],
    [31100, { Recording: { path: SEEDED_WAV.rel, bytes: 44 + SEEDED_WAV.seconds * SEEDED_WAV.rate * 4, duration_ms: SEEDED_WAV.seconds * 1000, dropped_frames: 0 } }],
  ];
  const lines = events.map(([dt, kind]) => JSON.stringify({ event: { call_id: SEEDED_CALL, at_ms: t0 + dt, kind } }));
  const journal = path.join(dataDir, 'cdr-journal');
  fs.mkdirSync(journal, { recursive: true });
  fs.writeFileSync(path.join(journal, 'cdr-0000000000000001.jsonl'), `${lines.join('\n')}\n`);
  const wav = path.join(dataDir, 'recordings', SEEDED_WAV.rel);
  fs.mkdirSync(path.dirname(wav), { recursive: true });
  fs.writeFileSync(wav, stereoWav(SEEDED_WAV));
}

async function shot(person, name) {
  await person.page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function login(page, loginName, password) {
  await page.goto(`${server.baseUrl}/`);
  await page.getByTestId('login-form').waitFor();
  await page.getByTestId('login-user').fill(loginName);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
}

function connState(page) {
  return page.getByTestId('conn-indicator').getAttribute('data-state');
}

async function waitConn(page, state, timeoutMs = SIP_TIMEOUT) {
  await waitFor(async () => (await connState(page)) === state, { timeoutMs, what: `connection state ${state}` });
}

async function waitPhone(page, state, timeoutMs = SIP_TIMEOUT) {
  await waitFor(async () => (await page.getByTestId('phone-state').getAttribute('data-state')) === state, {
    timeoutMs,
    what: `phone state ${state} (is ${await page.getByTestId('phone-state').getAttribute('data-state').catch(() => '?')})`,
  });
}

async function waitOutcome(page, reason, timeoutMs = SIP_TIMEOUT) {
  await waitFor(async () => (await page.getByTestId('call-outcome').getAttribute('data-reason')) === reason, {
    timeoutMs,
    what: `call outcome ${reason} (is ${await page.getByTestId('call-outcome').getAttribute('data-reason').catch(() => '?')})`,
  });
}

async function audioStats(page) {
  return page.evaluate(() => window.__centralitaPhone.audioStats());
}

/** Inbound audio bytes must grow at every 1 s sample for `seconds`. */
async function assertAudioFlows(page, seconds, who) {
  let prev = await audioStats(page);
  assert.ok(prev, `${who}: no peer connection`);
  for (let i = 0; i < seconds; i++) {
    await page.waitForTimeout(1000);
    const cur = await audioStats(page);
    assert.ok(cur.bytesReceived > prev.bytesReceived, `${who}: inbound audio bytes did not grow (${prev.bytesReceived} -> ${cur.bytesReceived}) at second ${i + 1}`);
    prev = cur;
  }
  return prev.bytesReceived;
}

async function assertAudioStopped(page, seconds, who) {
  const start = await audioStats(page);
  await page.waitForTimeout(seconds * 1000);
  const end = await audioStats(page);
  assert.ok(end.bytesReceived - start.bytesReceived < 500, `${who}: inbound audio still flowing while on hold (${start.bytesReceived} -> ${end.bytesReceived})`);
}

/**
 * The softphone's live quality indicator: waits for a sample, checks the
 * class, that the details (MOS, loss, jitter, RTT, codec) are there and
 * readable by keyboard focus, and returns the figures.
 */
async function assertQualityShown(page, who, shotOf = null) {
  const indicator = page.getByTestId('call-quality');
  await waitFor(async () => (await indicator.isVisible()) && (await indicator.getAttribute('data-quality')), {
    timeoutMs: 10000, what: `${who}: quality indicator`,
  });
  const cls = await indicator.getAttribute('data-quality');
  const text = (await page.getByTestId('call-quality-text').textContent()).trim();
  const details = page.getByTestId('call-quality-details');
  await page.mouse.move(0, 0);
  // Keyboard users reach the details: the indicator takes focus and shows them.
  assert.equal(await details.isVisible(), false, `${who}: details hidden until hover or focus`);
  await indicator.focus();
  await waitFor(() => details.isVisible(), { timeoutMs: 3000, what: `${who}: quality details on focus` });
  const tip = (await details.textContent()).trim();
  if (shotOf) await shot(shotOf, 'agent-call-quality');
  await indicator.blur();
  assert.equal(await indicator.getAttribute('aria-describedby'), await details.getAttribute('id'), `${who}: details are the indicator's description`);
  // The console runs in Spanish here: decimal comma.
  const mos = Number(/MOS\s(\d+(?:[.,]\d+)?)/.exec(tip)?.[1]?.replace(',', '.'));
  const loss = Number(/pérdida\s(\d+(?:[.,]\d+)?)\s%/.exec(tip)?.[1]?.replace(',', '.'));
  assert.match(tip, /jitter\s\d+(?:[.,]\d+)?\sms/, `${who}: jitter in the details: ${tip}`);
  assert.match(tip, /RTT\s(?:\d+(?:[.,]\d+)?|—)\sms/, `${who}: RTT in the details: ${tip}`);
  assert.match(tip, /códec\s\S+/, `${who}: codec in the details: ${tip}`);
  return { cls, text, tip, mos, loss };
}

async function dial(page, number) {
  await page.getByTestId('phone-number').fill(number);
  await page.getByTestId('btn-call').click();
}

async function adminApi(pathAndQuery) {
  return people.admin.page.evaluate(async (p) => {
    const res = await fetch(p, { credentials: 'same-origin' });
    return { status: res.status, text: await res.text() };
  }, pathAndQuery);
}

/** Steps that did not pass; a step whose prerequisites did not pass is skipped, not run into timeouts. */
const notPassed = new Set();
function step(key, title, needs, fn) {
  test(title, async (t) => {
    notPassed.add(key);
    const missing = needs.filter((n) => notPassed.has(n));
    if (missing.length) {
      t.skip(`skipped: needs ${missing.join(', ')}`);
      return;
    }
    await fn(t);
    notPassed.delete(key);
  });
}

describe('centralita console (real browser, real backend)', () => {
  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    seedRecordedCall(server.dataDir);
    await server.start();
    people.admin = await launchPerson('admin');
    people.a = await launchPerson('agent-a');
    people.b = await launchPerson('agent-b');
  });

  after(async () => {
    for (const p of Object.values(people)) {
      if (p.logs.length) fs.writeFileSync(path.join(ARTIFACTS, `${p.name}-console.log`), p.logs.join('\n'));
      await p.close();
    }
    await server.stop();
    server.cleanup();
  });

  step('admin', 'admin logs in, creates two agents through the UI and sees each SIP password once', [], async () => {
    const { page } = people.admin;
    await page.goto(`${server.baseUrl}/`);
    await page.getByTestId('login-form').waitFor();
    // Spanish by default for a browser that prefers Spanish.
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'es');
    assert.equal((await page.getByTestId('login-submit').textContent()).trim(), 'Entrar');
    await shot(people.admin, 'login');
    await login(page, 'admin', server.adminPassword);
    await page.getByTestId('agents-table').waitFor();
    assert.equal(new URL(page.url()).pathname, '/admin/agents');

    for (const key of ['a', 'b']) {
      const ag = agents[key];
      await page.getByTestId('add-agent').click();
      await page.getByTestId('agent-form').waitFor();
      await page.getByTestId('agent-form-name').fill(ag.name);
      await page.getByTestId('agent-form-login').fill(ag.login);
      await page.getByTestId('agent-form-password').fill(ag.password);
      assert.equal(await page.getByTestId('agent-form-role').inputValue(), 'agent');
      if (key === 'a') await shot(people.admin, 'admin-add-agent');
      await page.getByTestId('agent-form-submit').click();
      const dialog = page.getByTestId('credentials-dialog');
      await dialog.waitFor();
      const password = (await dialog.getByTestId('creds-password').textContent()).trim();
      ag.ext = (await dialog.getByTestId('creds-extension').textContent()).trim();
      ag.sipUser = (await dialog.getByTestId('creds-username').textContent()).trim();
      ag.sipPassword = password;
      if (await dialog.getByTestId('creds-domain').count()) ag.domain = (await dialog.getByTestId('creds-domain').textContent()).trim();
      assert.match(password, /^[0-9a-f]{32}$/, 'SIP password is 32 hex characters');
      assert.match(ag.ext, /^\d+$/);
      assert.ok((await dialog.getByTestId('creds-warning').textContent()).length > 10, 'warning shown');
      assert.ok(await dialog.getByTestId('creds-password-copy').isVisible(), 'copy button shown');
      shownPasswords.push(password);
      if (key === 'a') await shot(people.admin, 'admin-credentials-dialog');
      await dialog.getByTestId('creds-done').click();
      await dialog.waitFor({ state: 'detached' });
      await page.locator(`[data-testid=agent-row][data-login=${ag.login}]`).waitFor();
    }
    assert.notEqual(agents.a.ext, agents.b.ext);
    assert.notEqual(shownPasswords[0], shownPasswords[1]);

    // Shown once: after a reload neither the page nor the API carries them.
    await page.reload();
    await page.getByTestId('agents-table').waitFor();
    const html = await page.content();
    const list = await adminApi('/api/agents?limit=500');
    assert.equal(list.status, 200);
    for (const pw of shownPasswords) {
      assert.ok(!html.includes(pw), 'SIP password visible again on the page');
      assert.ok(!list.text.includes(pw), 'SIP password returned again by the API');
    }
    await shot(people.admin, 'admin-agents');
  });

  step('registered', 'both agents log in in their own browsers and reach "registered"', ['admin'], async () => {
    await Promise.all(['a', 'b'].map(async (key) => {
      const { page } = people[key];
      await login(page, agents[key].login, agents[key].password);
      await page.getByTestId('softphone').waitFor();
      await waitConn(page, 'registered');
      await waitPhone(page, 'registered');
      const identity = await page.getByTestId('phone-identity').textContent();
      assert.ok(identity.includes(agents[key].ext), `identity shows own extension: ${identity}`);
    }));
    // The admin sees both registered, live.
    const { page } = people.admin;
    await waitFor(async () => (await page.locator('[data-testid=agent-row] [data-registered=true]').count()) >= 2, { timeoutMs: 15000, what: 'admin sees both agents registered' });
    await shot(people.a, 'agent-registered');
    await shot(people.admin, 'admin-agents-registered');
  });

  step('answered', 'A calls B, B answers, audio both ways through the server, a hold by A gives B the hold tone, resume restores it, B hangs up', ['registered'], async () => {
    const A = people.a.page;
    const B = people.b.page;
    await dial(A, agents.b.ext);
    await waitFor(async () => (await B.getByTestId('call-card').getAttribute('data-phase')) === 'incoming', { timeoutMs: SIP_TIMEOUT, what: 'B sees the incoming call' });
    const peer = await B.getByTestId('call-peer').textContent();
    assert.ok(peer.includes(agents.a.ext) || peer.includes(agents.a.name) || peer.includes(agents.a.sipUser), `caller ID shows A: ${peer}`);
    await waitPhone(A, 'ringing');
    await shot(people.b, 'agent-incoming-call');
    await B.getByTestId('btn-answer').click();
    await waitPhone(A, 'in-call');
    await waitPhone(B, 'in-call');

    // The call survives moving between console pages (History API routing,
    // no page load: a marker set on this document is still there after).
    await A.evaluate(() => { window.__samePage = true; });
    await A.getByTestId('nav-call-details').click();
    await A.getByTestId('sip-flow').waitFor();
    assert.equal(new URL(A.url()).pathname, '/call-details');
    const labels = await A.locator('[data-testid=sip-flow-item]').evaluateAll((els) => els.map((e) => e.getAttribute('data-label')));
    for (const expected of ['INVITE', '100 Trying', '180 Ringing', '200 OK', 'ACK']) {
      assert.ok(labels.some((l) => l === expected || l.startsWith(expected)), `SIP flow has ${expected}: ${labels.join(', ')}`);
    }
    assert.ok(labels.indexOf('INVITE') < labels.findIndex((l) => l.startsWith('200')), 'INVITE before 200 OK');

    await Promise.all([assertAudioFlows(A, 3, 'A'), assertAudioFlows(B, 3, 'B')]);
    assert.equal(await A.evaluate(() => window.__samePage), true, 'navigation reloaded the page');

    // Live call quality next to the timer, from getStats() through the
    // server's E-model: a loopback call is good, MOS >= 4, no loss.
    for (const [who, page] of [['A', A], ['B', B]]) {
      const q = await assertQualityShown(page, who, who === 'A' ? people.a : null);
      assert.equal(q.cls, 'good', `${who}: quality class (${q.tip})`);
      assert.equal(q.text, 'Calidad: buena', `${who}: quality in words`);
      assert.ok(Number.isFinite(q.mos) && q.mos >= 4, `${who}: MOS >= 4 in the details: ${q.tip}`);
      assert.equal(q.loss, 0, `${who}: 0 % loss in the details: ${q.tip}`);
      assert.equal(await page.evaluate(() => window.__centralitaPhone.qualityPolling), true, `${who}: sampling while the call is up`);
    }
    await shot(people.a, 'agent-in-call-details');

    // The admin's live view shows the call in progress.
    const admin = people.admin.page;
    await admin.getByTestId('nav-live').click();
    await waitFor(async () => (await admin.locator('[data-testid=active-call-row][data-state=answered]').count()) === 1, { timeoutMs: 10000, what: 'admin sees the active call' });
    await shot(people.admin, 'admin-live-call');

    // DTMF from the dial pad during the call (RFC 2833 via RTCDTMFSender).
    await A.getByTestId('key-5').click();
    await waitFor(async () => (await A.getByTestId('phone-notice').textContent()).includes('5'), { what: 'DTMF notice' });
    // Mute toggles and comes back.
    await A.getByTestId('btn-mute').click();
    await waitFor(async () => (await A.getByTestId('btn-mute').getAttribute('aria-pressed')) === 'true', { what: 'muted' });
    await A.getByTestId('btn-mute').click();
    await waitFor(async () => (await A.getByTestId('btn-mute').getAttribute('aria-pressed')) === 'false', { what: 'unmuted' });

    // Hold: the media goes through the server (media.anchor = always, the
    // default), which answers A's re-INVITE on A's leg only: A stops
    // receiving, B is not re-INVITEd and hears the server's hold tone in
    // the same stream instead of A.
    await A.getByTestId('btn-hold').click();
    await waitPhone(A, 'on-hold');
    await A.waitForTimeout(1000);
    await Promise.all([assertAudioStopped(A, 2, 'A'), assertAudioFlows(B, 2, 'B (hold tone)')]);
    assert.equal(await B.getByTestId('phone-state').getAttribute('data-state'), 'in-call', 'B is not re-INVITEd by A\'s hold');
    await shot(people.a, 'agent-on-hold');

    // Resume: audio flows again on both sides.
    await A.getByTestId('btn-hold').click();
    await waitPhone(A, 'in-call');
    await waitPhone(B, 'in-call');
    await A.waitForTimeout(500);
    await Promise.all([assertAudioFlows(A, 3, 'A'), assertAudioFlows(B, 3, 'B')]);
    assert.ok(await A.getByTestId('call-timer').isVisible());

    // B hangs up; A sees the end.
    await B.getByTestId('btn-hangup').click();
    await waitOutcome(A, 'hangupRemote');
    await waitPhone(A, 'ended', 5000);
    await waitOutcome(B, 'hangupLocal');
    // The quality indicator goes with the call, and so does the sampling.
    for (const [who, page] of [['A', A], ['B', B]]) {
      await waitFor(async () => !(await page.getByTestId('call-quality').isVisible()), { timeoutMs: 5000, what: `${who}: quality indicator gone after hang-up` });
      assert.equal(await page.evaluate(() => window.__centralitaPhone.qualityPolling), false, `${who}: no sampling after hang-up`);
    }
    const flowAfter = await A.locator('[data-testid=sip-flow-item]').evaluateAll((els) => els.map((e) => e.getAttribute('data-label')));
    assert.ok(flowAfter.includes('BYE'), `SIP flow shows BYE: ${flowAfter.join(', ')}`);
    await shot(people.a, 'agent-call-ended');
    await waitPhone(A, 'registered', 15000);
  });

  step('busy', 'B rejects the call and A is told the line is busy', ['registered'], async () => {
    const A = people.a.page;
    const B = people.b.page;
    await dial(A, agents.b.ext);
    await waitFor(async () => (await B.getByTestId('call-card').getAttribute('data-phase')) === 'incoming', { timeoutMs: SIP_TIMEOUT, what: 'B sees the incoming call' });
    await B.getByTestId('btn-reject').click();
    await waitOutcome(A, 'busy');
    await waitOutcome(B, 'rejectedLocal');
    assert.equal(await A.getByTestId('call-outcome').getAttribute('data-phase'), 'failed');
    await shot(people.a, 'agent-call-busy');
    await waitPhone(A, 'registered', 15000);
    await waitPhone(B, 'registered', 15000);
  });

  step('cancelled', 'A hangs up before B answers: both see the call cancelled', ['registered'], async () => {
    const A = people.a.page;
    const B = people.b.page;
    await dial(A, agents.b.ext);
    await waitFor(async () => (await B.getByTestId('call-card').getAttribute('data-phase')) === 'incoming', { timeoutMs: SIP_TIMEOUT, what: 'B sees the incoming call' });
    await waitPhone(A, 'ringing');
    await A.getByTestId('btn-hangup').click();
    await waitOutcome(A, 'cancelled');
    await waitOutcome(B, 'remoteCancelled');
    await waitPhone(A, 'registered', 15000);
    await waitPhone(B, 'registered', 15000);
  });

  step('unanswered', 'unknown number and unanswered call: A is told "not found" and "no answer"', ['registered'], async () => {
    const A = people.a.page;
    const B = people.b.page;
    await dial(A, '9999');
    await waitOutcome(A, 'notFound');
    await waitPhone(A, 'registered', 15000);
    await dial(A, agents.b.ext);
    await waitFor(async () => (await B.getByTestId('call-card').getAttribute('data-phase')) === 'incoming', { timeoutMs: SIP_TIMEOUT, what: 'B sees the incoming call' });
    await waitOutcome(A, 'noAnswer', (RING_TIMEOUT_SECS + 10) * 1000);
    await waitOutcome(B, 'remoteCancelled');
    await waitPhone(A, 'registered', 15000);
    await waitPhone(B, 'registered', 15000);
  });

  step('history', 'history shows ANSWERED, BUSY and CANCELLED with the billsec of the answered call', ['answered', 'busy', 'cancelled'], async () => {
    const A = people.a.page;
    await A.getByTestId('nav-phone').click();
    assert.equal(new URL(A.url()).pathname, '/phone');
    let rows = [];
    await waitFor(async () => {
      await A.getByTestId('refresh-history').click();
      await A.waitForTimeout(300);
      rows = await A.locator('[data-testid=call-row]').evaluateAll((els) => els.map((e) => ({ disposition: e.getAttribute('data-disposition'), billsec: Number(e.getAttribute('data-billsec')) })));
      return ['ANSWERED', 'BUSY', 'CANCELLED'].every((d) => rows.some((r) => r.disposition === d));
    }, { timeoutMs: 15000, intervalMs: 700, what: 'ANSWERED, BUSY and CANCELLED rows in the agent history' });
    const answered = rows.find((r) => r.disposition === 'ANSWERED');
    // We talked for more than 3 s of audio, a hold and 3 s more.
    assert.ok(answered.billsec >= 6, `billsec of the answered call: ${answered.billsec}`);
    for (const r of rows.filter((x) => x.disposition !== 'ANSWERED')) assert.equal(r.billsec, 0, `billsec of a ${r.disposition} call`);
    assert.equal(await A.getByTestId('stat-answered-value').textContent(), '1');
    await shot(people.a, 'agent-history');

    // The admin sees everybody's calls, filters them, and can export CSV.
    const { page } = people.admin;
    await page.getByTestId('nav-calls').click();
    await page.getByTestId('calls-table').waitFor();
    const adminRows = await page.locator('[data-testid=call-row]').count();
    assert.ok(adminRows >= 3, `admin history rows: ${adminRows}`);
    await page.getByTestId('calls-disposition').selectOption('BUSY');
    await page.getByTestId('calls-apply').click();
    await waitFor(async () => {
      const ds = await page.locator('[data-testid=call-row]').evaluateAll((els) => els.map((e) => e.getAttribute('data-disposition')));
      return ds.length >= 1 && ds.every((d) => d === 'BUSY');
    }, { timeoutMs: 10000, what: 'only BUSY rows after filtering' });
    const csvHref = await page.getByTestId('calls-csv').getAttribute('href');
    assert.ok(csvHref.includes('format=csv'));
    const csv = await adminApi(csvHref);
    assert.equal(csv.status, 200);
    assert.ok(csv.text.includes('BUSY'), 'CSV export contains the BUSY call');
    await page.getByTestId('calls-disposition').selectOption('');
    await page.getByTestId('calls-apply').click();
    await page.waitForTimeout(500);
    await shot(people.admin, 'admin-calls');
  });

  step('recording', 'call history: quality badge with per-leg figures on hover, and the recording plays', ['admin'], async () => {
    const { page } = people.admin;
    await page.getByTestId('nav-calls').click();
    await page.getByTestId('calls-table').waitFor();
    const row = page.locator(`[data-testid=call-row][data-call-id="${SEEDED_CALL}"]`);
    await row.waitFor({ timeout: 10000 });
    // Worst MOS 3.75: fair; the tooltip lists every leg and direction.
    const badge = row.getByTestId('call-quality');
    assert.equal(await badge.getAttribute('data-quality'), 'fair');
    assert.equal(await badge.getAttribute('data-mos'), '3.75');
    const title = await badge.getAttribute('title');
    const lines = title.split('\n');
    assert.equal(lines.length, 3, `one line per leg and direction: ${title}`);
    assert.match(lines[0], /MOS 4\.30, .* 1\.96 %, .* 6\.5 ms, RTT 40 ms \(PCMU\)/);
    assert.match(lines[2], /MOS 3\.75/);
    // Only a row with a recording has a player.
    const others = await page.locator('[data-testid=call-row]').count();
    assert.equal(await page.locator('[data-testid=recording-play]').count(), 1, `players among ${others} rows`);

    await row.getByTestId('recording-play').click();
    const audio = row.getByTestId('recording-audio');
    await audio.waitFor();
    // The browser fetched the WAV with the session and decoded it: 1 s long.
    await waitFor(async () => (await audio.evaluate((a) => a.readyState)) >= 1, { timeoutMs: 10000, what: 'recording metadata loaded' });
    const state = await audio.evaluate((a) => ({ duration: a.duration, error: a.error?.code ?? null }));
    assert.equal(state.error, null);
    assert.ok(Math.abs(state.duration - SEEDED_WAV.seconds) < 0.05, `recording duration ${state.duration}`);
    await shot(people.admin, 'admin-call-recording');

    // Seeking asks for ranges; the listen is audited.
    const ranged = await page.evaluate(async (url) => {
      const res = await fetch(url, { credentials: 'same-origin', headers: { Range: 'bytes=0-3' } });
      return { status: res.status, range: res.headers.get('content-range'), text: await res.text() };
    }, `/api/telephony/calls/${encodeURIComponent(SEEDED_CALL)}/recording`);
    assert.deepEqual(ranged, { status: 206, range: `bytes 0-3/${44 + SEEDED_WAV.seconds * SEEDED_WAV.rate * 4}`, text: 'RIFF' });
    const audit = JSON.parse((await adminApi('/api/audit?action=recording.listen')).text);
    assert.ok(audit.total >= 1 && audit.entries.every((e) => e.targetId === SEEDED_CALL), `audit: ${JSON.stringify(audit.entries)}`);
  });

  step('recordingSetting', 'admin sets an agent\'s recording override from the agents table', ['admin'], async () => {
    const { page } = people.admin;
    await page.getByTestId('nav-agents').click();
    const row = page.locator(`[data-testid=agent-row][data-login=${agents.a.login}]`);
    await row.waitFor();
    const id = await row.getAttribute('data-id');
    const recordCalls = async () => JSON.parse((await adminApi(`/api/agents/${id}`)).text).agent.recordCalls;
    assert.equal(await recordCalls(), null, 'system default at first');
    for (const [choice, want] of [['always', true], ['never', false], ['default', null]]) {
      await row.getByTestId('agent-recording').selectOption(choice);
      await waitFor(async () => (await recordCalls()) === want, { timeoutMs: 10000, what: `recordCalls ${want}` });
      // The table is drawn again from the server's answer.
      await waitFor(async () => (await row.getByTestId('agent-recording').getAttribute('data-value')) === choice, { what: `row shows ${choice}` });
    }
  });

  step('dialingSetting', 'admin sets what an agent may dial from the agents table', ['admin'], async () => {
    const { page } = people.admin;
    await page.getByTestId('nav-agents').click();
    const row = page.locator(`[data-testid=agent-row][data-login=${agents.a.login}]`);
    await row.waitFor();
    const id = await row.getAttribute('data-id');
    const dialPermission = async () => JSON.parse((await adminApi(`/api/agents/${id}`)).text).agent.dialPermission;
    assert.equal(await dialPermission(), null, 'system default at first');
    for (const [choice, want] of [['international', 'international'], ['internal', 'internal'], ['default', null]]) {
      await row.getByTestId('agent-dialing').selectOption(choice);
      await waitFor(async () => (await dialPermission()) === want, { timeoutMs: 10000, what: `dialPermission ${want}` });
      await waitFor(async () => (await row.getByTestId('agent-dialing').getAttribute('data-value')) === choice, { what: `row shows ${choice}` });
    }
  });

  step('adminPages', 'admin pages: live registrations, WebRTC settings, English', ['registered'], async () => {
    const { page } = people.admin;
    await page.getByTestId('nav-live').click();
    await page.getByTestId('registrations-table').waitFor({ timeout: 15000 });
    const users = await page.locator('[data-testid=registration-row]').evaluateAll((els) => els.map((e) => e.getAttribute('data-username')));
    assert.ok(users.includes(agents.a.sipUser) && users.includes(agents.b.sipUser), `registrations: ${users.join(', ')}`);
    await shot(people.admin, 'admin-live');

    await page.getByTestId('nav-webrtc').click();
    await page.getByTestId('webrtc-form').waitFor();
    const wsUrl = await page.getByTestId('webrtc-ws-url').inputValue();
    assert.match(wsUrl, /^wss?:\/\/127\.0\.0\.1:\d+\/ws$/);
    assert.equal(await page.getByTestId('webrtc-stun').inputValue(), '', 'no STUN server by default');
    // Save a (local) STUN server, see it back after a reload, then clear it again.
    await page.getByTestId('webrtc-stun').fill('stun:127.0.0.1:3478');
    await page.getByTestId('webrtc-save').click();
    await waitFor(async () => (await page.getByTestId('webrtc-message').getAttribute('class'))?.includes('alert-ok'), { what: 'WebRTC settings saved' });
    await page.reload();
    await page.getByTestId('webrtc-form').waitFor();
    assert.equal(await page.getByTestId('webrtc-stun').inputValue(), 'stun:127.0.0.1:3478');
    assert.ok((await page.getByTestId('webrtc-ice').textContent()).includes('stun:127.0.0.1:3478'), 'effective ICE servers list the STUN server');
    await shot(people.admin, 'admin-webrtc');
    await page.getByTestId('webrtc-stun').fill('');
    await page.getByTestId('webrtc-save').click();
    await waitFor(async () => (await page.getByTestId('webrtc-ice').textContent()).includes('stun:') === false, { what: 'STUN server cleared' });

    await page.getByTestId('lang-switch').click();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal((await page.getByTestId('nav-agents').textContent()).trim(), 'Agents');
    await page.getByTestId('nav-agents').click();
    await page.getByTestId('agents-table').waitFor();
    await shot(people.admin, 'admin-agents-en');
  });

  step('restart', 'after a server restart both softphones register again by themselves', ['registered'], async () => {
    const A = people.a.page;
    const B = people.b.page;
    await server.stop();
    await Promise.all([waitFor(async () => (await connState(A)) !== 'registered', { timeoutMs: 10000, what: 'A notices the drop' }),
      waitFor(async () => (await connState(B)) !== 'registered', { timeoutMs: 10000, what: 'B notices the drop' })]);
    await shot(people.a, 'agent-server-down');
    await server.start();
    await Promise.all([waitConn(A, 'registered', 40000), waitConn(B, 'registered', 40000)]);
    // The server really has them registered again (not just the indicator).
    await waitFor(async () => {
      const res = await adminApi('/api/telephony/registrations');
      if (res.status !== 200) return false;
      const regs = JSON.parse(res.text).registrations.map((r) => r.username);
      return regs.includes(agents.a.sipUser) && regs.includes(agents.b.sipUser);
    }, { timeoutMs: 20000, what: 'server lists both registrations after restart' });
    // And they can still call each other.
    await dial(A, agents.b.ext);
    await waitFor(async () => (await B.getByTestId('call-card').getAttribute('data-phase')) === 'incoming', { timeoutMs: SIP_TIMEOUT, what: 'B rings after restart' });
    await B.getByTestId('btn-reject').click();
    await waitOutcome(A, 'busy');
  });

  step('manual', 'manual connection form registers with the long-lived SIP credentials', ['admin'], async () => {
    // The admin has no SIP account of their own: the panel says so, and the
    // manual form (seeds/000, seeds/002) connects with B's SIP password.
    const { page } = people.admin;
    assert.equal(await connState(page), 'unconfigured');
    await page.getByTestId('nav-connection').click();
    await page.getByTestId('connection-form').waitFor();
    await page.getByTestId('conn-display-name').fill('Supervisor');
    const b = agents.b;
    await page.getByTestId('conn-extension').fill(b.domain ? `${b.sipUser}@${b.domain}` : b.sipUser);
    await page.getByTestId('conn-password').fill(b.sipPassword);
    assert.match(await page.getByTestId('conn-ws-url').inputValue(), /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    await page.getByTestId('conn-submit').click();
    await waitConn(page, 'registered');
    await shot(people.admin, 'admin-manual-connection');
    // A wrong password is refused and the indicator says why.
    await page.getByTestId('conn-password').fill('0'.repeat(32));
    await page.getByTestId('conn-submit').click();
    await waitConn(page, 'failed');
    assert.ok((await page.getByTestId('phone-reason').textContent()).length > 0, 'failure reason shown');
  });

  step('rotate', 'rotating a logged-in agent\'s SIP password: the softphone gets fresh credentials by itself', ['registered'], async () => {
    const { page } = people.admin;
    const B = people.b.page;
    await page.getByTestId('nav-agents').click();
    const row = page.locator(`[data-testid=agent-row][data-login=${agents.b.login}]`);
    await row.waitFor();
    await row.getByTestId('agent-regenerate').click();
    // Whole seconds: the server may store registration times without fractions.
    const rotatedAt = Math.floor(Date.now() / 1000) * 1000;
    await page.getByTestId('confirm-ok').click();
    const dialog = page.getByTestId('credentials-dialog');
    await dialog.waitFor();
    const pw = (await dialog.getByTestId('creds-password').textContent()).trim();
    assert.notEqual(pw, agents.b.sipPassword, 'a new password');
    await dialog.getByTestId('creds-done').click();
    // The server dropped B's binding with the old credentials; B registers
    // again with fresh short-lived ones, without anybody touching B's browser.
    await waitFor(async () => {
      const res = await adminApi('/api/telephony/registrations');
      return res.status === 200 && JSON.parse(res.text).registrations.some((r) => r.username === agents.b.sipUser && Date.parse(r.registeredAt) >= rotatedAt);
    }, { timeoutMs: 20000, what: 'B registered again after the rotation' });
    await waitConn(B, 'registered');
    await waitFor(async () => (await row.getByTestId('sip-status').getAttribute('data-registered')) === 'true', { timeoutMs: 15000, what: 'agents page shows B registered' });
  });

  step('adminManage', 'admin searches, filters, regenerates, deactivates and deletes an agent', ['admin'], async () => {
    const { page } = people.admin;
    await page.getByTestId('nav-agents').click();
    await page.getByTestId('agents-table').waitFor();
    // A third agent, created without SIP, then given one by "regenerate".
    await page.getByTestId('add-agent').click();
    await page.getByTestId('agent-form-name').fill('Carla Temporal');
    await page.getByTestId('agent-form-email').fill('carla@example.com');
    await page.getByTestId('agent-form-password').fill('carla-Passw0rd-3');
    await page.getByTestId('agent-form-sip').uncheck();
    await page.getByTestId('agent-form-submit').click();
    await page.getByTestId('agent-dialog').waitFor({ state: 'detached' });
    assert.equal(await page.getByTestId('credentials-dialog').count(), 0, 'no credentials dialog without a SIP account');

    await page.getByTestId('agents-search').fill('Carla');
    const row = page.locator('[data-testid=agent-row]', { hasText: 'Carla Temporal' });
    await waitFor(async () => (await page.locator('[data-testid=agent-row]').count()) === 1 && (await row.count()) === 1, { what: 'search narrows to Carla' });
    assert.equal(await row.getByTestId('sip-status').getAttribute('data-registered'), 'none');

    await page.getByTestId('filter-sip').selectOption('true');
    await waitFor(async () => (await page.getByTestId('agents-empty').count()) === 1, { what: 'Carla has no SIP: filtered out' });
    await page.getByTestId('filter-sip').selectOption('');
    await row.waitFor();

    await row.getByTestId('agent-regenerate').click();
    await page.getByTestId('confirm-ok').click();
    const dialog = page.getByTestId('credentials-dialog');
    await dialog.waitFor();
    const pw = (await dialog.getByTestId('creds-password').textContent()).trim();
    assert.match(pw, /^[0-9a-f]{32}$/);
    await dialog.getByTestId('creds-done').click();
    await waitFor(async () => (await row.getByTestId('sip-status').getAttribute('data-registered')) === 'false', { what: 'Carla now has a SIP account' });

    await row.getByTestId('agent-deactivate').click();
    await page.getByTestId('confirm-ok').click();
    await waitFor(async () => (await row.getByTestId('agent-deactivate').count()) === 0, { what: 'Carla deactivated' });

    await row.getByTestId('agent-delete').click();
    await page.getByTestId('confirm-ok').click();
    await waitFor(async () => (await row.count()) === 0, { what: 'Carla deleted' });
    await page.getByTestId('agents-search').fill('');
  });

  step('csp', 'the console runs under its Content-Security-Policy: no violation in any page, API answers not cached', ['registered'], async () => {
    const res = await fetch(`${server.baseUrl}/`);
    const policy = res.headers.get('content-security-policy') ?? '';
    assert.match(policy, /default-src 'self'/, `CSP on the console: ${policy}`);
    assert.match(policy, /script-src 'self'/);
    assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
    const health = await fetch(`${server.baseUrl}/api/health`);
    assert.equal(health.headers.get('cache-control'), 'no-store');
    // Every page went through login, the softphone's registration over
    // /ws and (when those steps ran) calls, under the policy.
    for (const p of Object.values(people)) {
      const seen = await p.page.evaluate(() => window.__cspViolations ?? null);
      assert.ok(Array.isArray(seen), `${p.name}: the violation listener is installed`);
      assert.deepEqual(seen, [], `${p.name}: CSP violations in the page`);
      assert.deepEqual(p.csp, [], `${p.name}: CSP messages in the console`);
    }
    // The softphone is still registered under the policy.
    await waitPhone(people.a.page, 'registered');
  });
});
