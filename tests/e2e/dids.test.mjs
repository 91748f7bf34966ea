// Browser tests of the console's Inbound numbers page (DIDs, issue 11)
// against the real centralita binary: create a DID for an agent on a trunk
// through the form and see it listed with the agent's name and the trunk's
// name; a carrier's call to it rings the agent's browser phone, whose call
// details then show its trunk and DID; edit it to `reject`, after which a
// carrier's call gets 603 and the call history shows trunk and DID; the
// server's validation error and the 409 for a duplicate beside the form;
// delete; admin-only access. Each step checks through the API that the
// page shows what the server holds.
//
// The steps share one server, an admin and an agent, and run in order; a
// step that depends on an earlier one is skipped when that one failed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { CentralitaServer, e2eDir, waitFor } from './lib/server.mjs';
import { launchPerson } from './lib/browser.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const server = new CentralitaServer();
const people = {};
const AGENT = { name: 'Inés Entrante', login: 'ines', password: 'ines-Passw0rd-9', id: null, extension: null };
const TRUNK = { name: 'Carrier DID', id: null };
const DID = '+34911234567';
const PATTERN = '_3491XXXXXXX';
/** The carrier's UDP socket: the trunk is its address, so its INVITEs come from the trunk. */
let carrier = null;
let didId = null;

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

/** A request from the person's page, with its session cookie. */
async function call(person, method, p, body) {
  return person.page.evaluate(async ({ method, p, body }) => {
    const res = await fetch(p, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? { Accept: 'application/json' } : { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: res.status, text, json };
  }, { method, p, body });
}

async function serverDids() {
  const res = await call(people.admin, 'GET', '/api/telephony/dids');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.total, res.json.dids.length);
  return res.json.dids;
}

function row(page, number) {
  return page.locator(`[data-testid=did-row][data-number="${number}"]`);
}

async function text(locator) {
  return (await locator.textContent()).trim();
}

/** The row shows the server's DID: number, description, destination joined with the agent, trunk by name, state. */
async function assertRowShows(page, d) {
  const r = row(page, d.number);
  await r.waitFor();
  assert.equal(await r.getAttribute('data-id'), String(d.id));
  assert.equal(await text(r.getByTestId('did-number')), d.number);
  assert.equal(await text(r.getByTestId('did-description')), d.description ?? '');
  const dest = r.getByTestId('did-destination');
  assert.equal(await dest.getAttribute('data-type'), d.destinationType);
  if (d.destinationType === 'agent') {
    assert.equal(await dest.getAttribute('data-extension'), d.destination);
    assert.equal(d.destination, AGENT.extension);
    assert.equal(await text(r.getByTestId('did-agent-name')), AGENT.name);
    assert.match(await text(dest), new RegExp(`\\(${AGENT.extension}\\)`));
  } else {
    assert.equal(await r.getByTestId('did-agent-name').count(), 0);
    assert.match(await text(dest), /Rechazar/);
  }
  const trunkCell = r.getByTestId('did-trunk');
  assert.equal(await trunkCell.getAttribute('data-trunk-id'), d.trunkId === null ? '' : String(d.trunkId));
  assert.equal(await text(trunkCell), d.trunkId === null ? 'Cualquier troncal' : TRUNK.name);
  assert.equal(await r.getByTestId('did-enabled').getAttribute('data-enabled'), String(d.enabled));
}

async function openEdit(page, number) {
  await row(page, number).getByTestId('did-edit').click();
  await page.getByTestId('did-form').waitFor();
}

async function closeForm(page) {
  await page.getByTestId('did-form-cancel').click();
  await page.getByTestId('did-dialog').waitFor({ state: 'detached' });
}

/**
 * The carrier sends one INVITE (with an SDP offer) to `did` from its
 * socket, retransmitting until the server answers, and ACKs the final
 * response; returns its status and the Call-ID (the CDR's callId).
 */
async function carrierInvite(did, caller, { timeoutMs = 15000 } = {}) {
  const port = carrier.address().port;
  const callId = `e2e-${crypto.randomUUID()}@127.0.0.1`;
  const branch = `z9hG4bK${crypto.randomBytes(8).toString('hex')}`;
  const tag = crypto.randomBytes(4).toString('hex');
  const target = `sip:${did}@127.0.0.1:${server.sipPort}`;
  const sdp = ['v=0', 'o=carrier 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 40000 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', ''].join('\r\n');
  const common = [
    `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=${branch};rport`,
    'Max-Forwards: 70',
    `From: "Customer" <sip:${caller}@127.0.0.1>;tag=${tag}`,
  ];
  const invite = [`INVITE ${target} SIP/2.0`, ...common, `To: <sip:${did}@127.0.0.1>`, `Call-ID: ${callId}`, 'CSeq: 1 INVITE',
    `Contact: <sip:carrier@127.0.0.1:${port}>`, 'User-Agent: centralita-e2e-carrier', 'Content-Type: application/sdp',
    `Content-Length: ${Buffer.byteLength(sdp)}`, '', sdp].join('\r\n');
  const send = (msg) => carrier.send(Buffer.from(msg), server.sipPort, '127.0.0.1');

  let provisional = false;
  let final = null;
  const onMessage = (buf) => {
    const msg = buf.toString();
    if (!msg.includes(callId)) return;
    const m = /^SIP\/2\.0 (\d{3})/.exec(msg);
    if (!m) return;
    const status = Number(m[1]);
    if (status < 200) provisional = true;
    else final ??= { status, to: /^To:\s*(.*)$/im.exec(msg)?.[1]?.trim() };
  };
  carrier.on('message', onMessage);
  try {
    send(invite);
    let sent = Date.now();
    await waitFor(() => {
      // RFC 3261 timer A, roughly: retransmit until something answers.
      if (!provisional && !final && Date.now() - sent > 500) {
        send(invite);
        sent = Date.now();
      }
      return final;
    }, { timeoutMs, intervalMs: 50, what: `the final answer to the carrier's INVITE to ${did}` });
    // A non-2xx final is ACKed in its own transaction (same branch, the answer's To tag).
    send([`ACK ${target} SIP/2.0`, ...common, `To: ${final.to}`, `Call-ID: ${callId}`, 'CSeq: 1 ACK', 'Content-Length: 0', '', ''].join('\r\n'));
  } finally {
    carrier.off('message', onMessage);
  }
  return { status: final.status, callId };
}

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

describe('console Inbound numbers page (real browser, real backend)', () => {
  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    carrier = dgram.createSocket('udp4');
    await new Promise((resolve, reject) => {
      carrier.once('error', reject);
      carrier.bind(0, '127.0.0.1', resolve);
    });
    await server.start();
    people.admin = await launchPerson('dids-admin');
    people.agent = await launchPerson('dids-agent');
  });

  after(async () => {
    for (const p of Object.values(people)) {
      if (p.logs.length) fs.writeFileSync(path.join(ARTIFACTS, `${p.name}-console.log`), p.logs.join('\n'));
      await p.close();
    }
    carrier?.close();
    await server.stop();
    server.cleanup();
  });

  step('open', 'admin logs in and opens Inbound numbers from the navigation, next to Trunks', [], async () => {
    const { page } = people.admin;
    await login(page, 'admin', server.adminPassword);
    await page.getByTestId('agents-table').waitFor();
    const navOrder = await page.locator('nav.nav a').evaluateAll((as) => as.map((a) => a.dataset.testid));
    assert.equal(navOrder.indexOf('nav-dids'), navOrder.indexOf('nav-trunks') + 1, `next to Trunks: ${navOrder}`);
    await page.getByTestId('nav-dids').click();
    await page.getByTestId('dids-empty').waitFor();
    assert.equal(new URL(page.url()).pathname, '/admin/dids');
    assert.equal(await page.getByTestId('nav-dids').getAttribute('aria-current'), 'page');
    assert.equal(await text(page.locator('h1')), 'Números entrantes (DID)');
    await page.getByTestId('lang-switch').click();
    await waitFor(async () => (await text(page.locator('h1'))) === 'Inbound numbers (DIDs)', { what: 'English title' });
    assert.equal(await text(page.getByTestId('nav-dids')), 'Inbound numbers');
    assert.equal(await text(page.getByTestId('add-did')), '+ New number');
    await page.getByTestId('lang-switch').click();
    await waitFor(async () => (await text(page.locator('h1'))) === 'Números entrantes (DID)', { what: 'Spanish again' });
    assert.deepEqual(await serverDids(), []);
  });

  step('setup', 'an agent with an extension and the carrier\'s trunk exist (API)', ['open'], async () => {
    const made = await call(people.admin, 'POST', '/api/agents', { name: AGENT.name, login: AGENT.login, password: AGENT.password, role: 'agent' });
    assert.equal(made.status, 201, made.text);
    AGENT.id = made.json.agent.id;
    AGENT.extension = made.json.agent.sip?.extension ?? made.json.sipCredentials?.extension;
    assert.ok(AGENT.extension, `the agent has an extension: ${made.text}`);
    const tr = await call(people.admin, 'POST', '/api/telephony/trunks', {
      name: TRUNK.name, kind: 'no_nat', host: '127.0.0.1', port: carrier.address().port, transport: 'udp', sendsRegistration: false,
    });
    assert.equal(tr.status, 201, tr.text);
    TRUNK.id = tr.json.trunk.id;
    // The agent's browser phone registers, to take the DID's call.
    const { page } = people.agent;
    await login(page, AGENT.login, AGENT.password);
    await page.getByTestId('nav-phone').waitFor();
    await waitFor(async () => (await page.getByTestId('phone-state').getAttribute('data-state')) === 'registered', { timeoutMs: 20000, what: 'the agent\'s phone registered' });
    // A second trunk, so the picker has a choice to make.
    const other = await call(people.admin, 'POST', '/api/telephony/trunks', { name: 'Other Carrier', host: '127.0.0.2', sendsRegistration: false });
    assert.equal(other.status, 201, other.text);
  });

  step('create', 'creates a DID for the agent on the trunk through the form; the list shows the agent\'s name and the trunk\'s name', ['setup'], async () => {
    const { page } = people.admin;
    await page.getByTestId('add-did').click();
    await page.getByTestId('did-form').waitFor();
    assert.equal(await text(page.getByTestId('did-form-title')), 'Nuevo número entrante');
    // The hint names the three notations.
    const hint = await page.getByTestId('did-form-number').evaluate((el) => document.getElementById(el.getAttribute('aria-describedby'))?.textContent ?? '');
    assert.match(hint, /_3491XXXXXXX/);
    assert.match(hint, /\*/);
    assert.match(hint, /exacto/);
    // The agent picker lists the agent by name and extension; the trunk picker by name, "any trunk" first.
    const agentOptions = await page.getByTestId('did-form-destination').locator('option').allTextContents();
    assert.ok(agentOptions.includes(`${AGENT.name} (${AGENT.extension})`), `agent options: ${agentOptions}`);
    const trunkOptions = await page.getByTestId('did-form-trunkId').locator('option').allTextContents();
    assert.deepEqual(trunkOptions, ['Cualquier troncal', TRUNK.name, 'Other Carrier']);
    assert.equal(await page.getByTestId('did-form-enabled').isChecked(), true);

    await page.getByTestId('did-form-number').fill(DID);
    assert.equal(await page.getByTestId('did-form-kind').getAttribute('data-kind'), 'exact');
    await page.getByTestId('did-form-number').fill(PATTERN);
    assert.equal(await page.getByTestId('did-form-kind').getAttribute('data-kind'), 'pattern');
    await page.getByTestId('did-form-number').fill(DID);
    await page.getByTestId('did-form-description').fill('Ventas Madrid');
    await page.getByTestId('did-form-destination').selectOption(AGENT.extension);
    await page.getByTestId('did-form-trunkId').selectOption(String(TRUNK.id));
    await shot(people.admin, 'dids-form-new');
    await page.getByTestId('did-form-submit').click();
    await page.getByTestId('did-dialog').waitFor({ state: 'detached' });

    const dids = await serverDids();
    assert.equal(dids.length, 1);
    const d = dids[0];
    didId = d.id;
    assert.deepEqual(
      { number: d.number, description: d.description, destinationType: d.destinationType, destination: d.destination, trunkId: d.trunkId, enabled: d.enabled },
      { number: DID, description: 'Ventas Madrid', destinationType: 'agent', destination: AGENT.extension, trunkId: TRUNK.id, enabled: true });
    await assertRowShows(page, d);
    assert.equal(await row(page, DID).getByTestId('did-kind').getAttribute('data-kind'), 'exact');
    await shot(people.admin, 'dids-list');
  });

  step('ring', 'a carrier\'s call to the DID rings the agent\'s phone; the call details show its trunk and DID', ['create'], async () => {
    const A = people.agent.page;
    const pending = carrierInvite(DID, '+34600111222', { timeoutMs: 30000 });
    pending.catch(() => undefined);
    await waitFor(async () => (await A.getByTestId('call-card').getAttribute('data-phase').catch(() => null)) === 'incoming', { timeoutMs: 20000, what: 'the agent\'s phone rings' });
    assert.match(await text(A.getByTestId('call-peer')), /34600111222/);
    await A.getByTestId('btn-reject').click();
    const { status, callId } = await pending;
    assert.ok(status >= 400, `the carrier hears the refusal: ${status}`);
    let cdr = null;
    await waitFor(async () => {
      const res = await call(people.admin, 'GET', `/api/telephony/calls/${encodeURIComponent(callId)}`);
      cdr = res.json?.call;
      return res.status === 200 && cdr.state === 'ended' && cdr.trunk;
    }, { timeoutMs: 10000, what: `the CDR of ${callId} with its trunk` });
    assert.equal(cdr.did, DID);
    assert.equal(cdr.calleeAgentId, AGENT.id);
    // The agent's call details find that record (the phone's leg has the server's own Call-ID).
    await A.getByTestId('nav-call-details').click();
    await A.getByTestId('call-summary').waitFor();
    await waitFor(async () => (await A.getByTestId('details-trunk').count()) === 1, { what: 'trunk line in the call details' });
    assert.equal(await text(A.getByTestId('details-trunk')), cdr.trunk.name);
    assert.equal(await text(A.getByTestId('details-did')), DID);
    await shot(people.agent, 'dids-call-details');
    await A.getByTestId('nav-phone').click();
  });

  step('edit-reject', 'edits the DID to reject; the form starts from the saved values', ['create'], async () => {
    const { page } = people.admin;
    await openEdit(page, DID);
    assert.match(await text(page.getByTestId('did-form-title')), new RegExp(DID.replace('+', '\\+')));
    assert.equal(await page.getByTestId('did-form-number').inputValue(), DID);
    assert.equal(await page.getByTestId('did-form-description').inputValue(), 'Ventas Madrid');
    assert.equal(await page.getByTestId('did-form-destinationType').inputValue(), 'agent');
    assert.equal(await page.getByTestId('did-form-destination').inputValue(), AGENT.extension);
    assert.equal(await page.getByTestId('did-form-trunkId').inputValue(), String(TRUNK.id));
    await page.getByTestId('did-form-destinationType').selectOption('reject');
    assert.equal(await page.getByTestId('did-form-destination').isVisible(), false, 'no agent to choose for reject');
    await page.getByTestId('did-form-submit').click();
    await page.getByTestId('did-dialog').waitFor({ state: 'detached' });
    await waitFor(async () => (await row(page, DID).getByTestId('did-destination').getAttribute('data-type')) === 'reject', { what: 'reject in the list' });
    const [d] = await serverDids();
    assert.equal(d.id, didId);
    assert.equal(d.destinationType, 'reject');
    assert.equal(d.destination, '');
    assert.equal(d.trunkId, TRUNK.id, 'the trunk is kept');
    assert.equal(d.description, 'Ventas Madrid', 'the description is kept');
    await assertRowShows(page, d);
  });

  step('call', 'a carrier\'s call to the DID is refused 603; the call history shows its trunk and DID', ['edit-reject'], async () => {
    const { status, callId } = await carrierInvite(DID, '+34600111222');
    assert.equal(status, 603, 'reject answers 603 Decline');
    let cdr = null;
    await waitFor(async () => {
      const res = await call(people.admin, 'GET', `/api/telephony/calls/${encodeURIComponent(callId)}`);
      cdr = res.json?.call;
      return res.status === 200 && cdr.state === 'ended' && cdr.trunk;
    }, { timeoutMs: 10000, what: `the CDR of ${callId} with its trunk` });
    assert.equal(cdr.direction, 'inbound');
    assert.equal(cdr.hangupCause, 'rejected');
    assert.equal(cdr.did, DID);
    assert.deepEqual(cdr.trunk, { id: TRUNK.id, name: TRUNK.name });

    const { page } = people.admin;
    await page.getByTestId('nav-calls').click();
    const r = page.locator(`[data-testid=call-row][data-call-id="${callId}"]`);
    await r.waitFor();
    const cell = r.getByTestId('call-trunk');
    assert.equal(await cell.getAttribute('data-trunk-id'), String(TRUNK.id));
    assert.equal(await cell.getAttribute('data-did'), DID);
    assert.equal(await text(cell.getByTestId('call-trunk-name')), TRUNK.name);
    assert.equal(await text(cell.getByTestId('call-did')), DID);
    assert.match(await page.getByTestId('calls-table').locator('thead').textContent(), /Troncal \/ DID/);
    await shot(people.admin, 'dids-call-history');
    await page.getByTestId('nav-dids').click();
    await row(page, DID).waitFor();
  });

  step('invalid', 'a bad number is refused by the server and the error is shown beside the form', ['create'], async () => {
    const { page } = people.admin;
    await page.getByTestId('add-did').click();
    await page.getByTestId('did-form').waitFor();
    await page.getByTestId('did-form-number').fill('12ab');
    assert.equal(await page.getByTestId('did-form-kind').getAttribute('data-kind'), 'unknown');
    await page.getByTestId('did-form-description').fill('mal');
    await page.getByTestId('did-form-destination').selectOption(AGENT.extension);
    await page.getByTestId('did-form-submit').click();
    const error = page.getByTestId('did-form-error');
    await error.waitFor();
    // What the page says is what the server answers to the same body.
    const direct = await call(people.admin, 'POST', '/api/telephony/dids', { number: '12ab', description: 'mal', destinationType: 'agent', destination: AGENT.extension, trunkId: null, enabled: true });
    assert.ok(direct.status === 400 || direct.status === 422, `a validation error: ${direct.text}`);
    assert.equal(await error.getAttribute('data-status'), String(direct.status));
    assert.equal(await error.getAttribute('data-code'), direct.json.error.code);
    assert.equal(await error.getAttribute('data-field'), 'number');
    assert.equal(await page.getByTestId('did-form-number').getAttribute('aria-invalid'), 'true');
    const shown = await text(error);
    assert.ok(shown.startsWith('Revise el campo «Número (DID)»'), `the field by its label: ${shown}`);
    assert.ok(shown.includes(direct.json.error.message.slice(direct.json.error.message.indexOf(':') + 1).trim()), `the server's words: ${shown} / ${direct.text}`);
    await shot(people.admin, 'dids-invalid');
    // The dialog stays, with what was typed.
    assert.equal(await page.getByTestId('did-form-number').inputValue(), '12ab');
    assert.equal(await page.getByTestId('did-form-description').inputValue(), 'mal');
    await closeForm(page);
    assert.equal((await serverDids()).length, 1, 'nothing stored');
  });

  step('duplicate', 'the same number on the same trunk gets the 409 message; a pattern on any trunk then saves', ['create'], async () => {
    const { page } = people.admin;
    await page.getByTestId('add-did').click();
    await page.getByTestId('did-form').waitFor();
    await page.getByTestId('did-form-number').fill(DID);
    await page.getByTestId('did-form-destination').selectOption(AGENT.extension);
    await page.getByTestId('did-form-trunkId').selectOption(String(TRUNK.id));
    await page.getByTestId('did-form-submit').click();
    const error = page.getByTestId('did-form-error');
    await error.waitFor();
    assert.equal(await error.getAttribute('data-status'), '409');
    assert.equal(await error.getAttribute('data-code'), 'duplicate_did');
    assert.equal(await text(error), 'Este número ya tiene una ruta en esa troncal (o en todas las troncales).');
    assert.equal(await page.getByTestId('did-form-number').getAttribute('aria-invalid'), 'true');
    await shot(people.admin, 'dids-duplicate');
    const direct = await call(people.admin, 'POST', '/api/telephony/dids', { number: DID, destination: AGENT.extension, trunkId: TRUNK.id });
    assert.equal(direct.status, 409, direct.text);
    assert.equal(direct.json.error.code, 'duplicate_did');
    assert.equal((await serverDids()).length, 1, 'nothing stored');

    // Nothing lost: a pattern for every trunk saves from the same dialog.
    assert.equal(await page.getByTestId('did-form-destination').inputValue(), AGENT.extension);
    await page.getByTestId('did-form-number').fill(PATTERN);
    await page.getByTestId('did-form-trunkId').selectOption('');
    await page.getByTestId('did-form-enabled').uncheck();
    await page.getByTestId('did-form-submit').click();
    await page.getByTestId('did-dialog').waitFor({ state: 'detached' });
    await row(page, PATTERN).waitFor();
    const dids = await serverDids();
    assert.equal(dids.length, 2);
    const p = dids.find((d) => d.number === PATTERN);
    assert.ok(p, JSON.stringify(dids));
    assert.deepEqual([p.destinationType, p.destination, p.trunkId, p.enabled], ['agent', AGENT.extension, null, false]);
    await assertRowShows(page, p);
    assert.equal(await row(page, PATTERN).getByTestId('did-kind').getAttribute('data-kind'), 'pattern');
    for (const d of dids) await assertRowShows(page, d);
    assert.equal(await page.getByTestId('did-row').count(), 2);
  });

  step('delete', 'deletes the DID after confirming; cancel keeps it', ['create'], async () => {
    const { page } = people.admin;
    await row(page, DID).getByTestId('did-delete').click();
    await page.getByTestId('confirm-dialog').waitFor();
    assert.match(await text(page.getByTestId('confirm-dialog')), new RegExp(DID.replace('+', '\\+')));
    await page.getByTestId('confirm-cancel').click();
    assert.equal((await call(people.admin, 'GET', `/api/telephony/dids/${didId}`)).status, 200);
    assert.equal(await row(page, DID).count(), 1);
    await row(page, DID).getByTestId('did-delete').click();
    await page.getByTestId('confirm-ok').click();
    await waitFor(async () => (await row(page, DID).count()) === 0, { what: `${DID} gone from the list` });
    const gone = await call(people.admin, 'GET', `/api/telephony/dids/${didId}`);
    assert.equal(gone.status, 404, gone.text);
    const left = await serverDids();
    assert.deepEqual(left.map((d) => d.number), await page.getByTestId('did-row').evaluateAll((rs) => rs.map((r) => r.dataset.number)));
  });

  step('agent', 'an agent sees no Inbound numbers entry, no page, and gets 403 from the API', ['setup'], async () => {
    const { page } = people.agent;
    await page.getByTestId('nav-phone').waitFor();
    assert.equal(await page.getByTestId('nav-dids').count(), 0);
    for (const [method, p, body] of [['GET', '/api/telephony/dids'], ['POST', '/api/telephony/dids', { number: '600', destination: AGENT.extension }]]) {
      const res = await call(people.agent, method, p, body);
      assert.equal(res.status, 403, `${method} ${p}: ${res.text}`);
      assert.equal(res.json?.error?.code, 'forbidden');
    }
    await page.goto(`${server.baseUrl}/admin/dids`);
    await page.getByRole('heading', { name: 'Página no encontrada' }).waitFor();
    assert.equal(await page.getByTestId('dids-table-box').count(), 0);
  });

  step('csp', 'no Content-Security-Policy violation on the page', ['open'], async () => {
    for (const p of Object.values(people)) {
      const seen = await p.page.evaluate(() => window.__cspViolations ?? null);
      assert.ok(Array.isArray(seen), `${p.name}: the violation listener is installed`);
      assert.deepEqual(seen, [], `${p.name}: CSP violations in the page`);
      assert.deepEqual(p.csp, [], `${p.name}: CSP messages in the console`);
    }
  });
});
