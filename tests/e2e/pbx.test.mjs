// Browser tests of the console's PBX configuration page (issue 12) against
// the real centralita binary, in three modes:
//
// - builtin: the page names the running engine and says the builtin
//   engine needs no PBX configuration (the API's 409 `no_pbx_config`),
//   with no Regenerate button; agents do not get the page.
// - relay: the same, in the relay's words (the PBX behind it is
//   configured on its own).
// - asterisk: Asterisk is not in Debian, so the manager interface is
//   played by a small AMI peer in this file (banner, MD5 challenge login,
//   `Reload` answered Success or, when told to, Error with Asterisk's
//   words; list actions answered empty). The page shows the engine as
//   connected, both generated PJSIP files (name, path, content with the
//   agent's endpoint and its HA1 masked) and the last reload; Regenerate
//   makes the binary send `Action: Reload` of `res_pjsip.so` again and the
//   page shows the new outcome, refused reloads included.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { CentralitaServer, e2eDir, freePort, waitFor } from './lib/server.mjs';
import { launchPerson } from './lib/browser.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const AMI_USER = 'centralita';
const AMI_SECRET = 'e2e-ami-secret';
const CHALLENGE = '548120337';

async function login(page, baseUrl, loginName, password) {
  await page.goto(`${baseUrl}/`);
  await page.getByTestId('login-form').waitFor();
  await page.getByTestId('login-user').fill(loginName);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('user-chip').waitFor();
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

async function shot(person, name) {
  await person.page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function openPbxPage(page) {
  await page.getByTestId('nav-pbx').click();
  await page.waitForURL('**/admin/pbx');
  await page.getByTestId('pbx-engine').waitFor();
}

/**
 * A manager interface on 127.0.0.1 that answers as Asterisk does: banner,
 * MD5 challenge and login, `Reload` (Success, or Error while `failReload`
 * is set), list actions with an empty list, anything else Success. Every
 * action is kept in `actions` as its key/value pairs.
 */
class FakeAmi {
  constructor() {
    this.actions = [];
    this.failReload = null;
    this.sockets = new Set();
    this.server = net.createServer((sock) => this.serve(sock));
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
  }

  reloads() {
    return this.actions.filter((a) => /^reload$/i.test(a.Action ?? '') && a.Module === 'res_pjsip.so').length;
  }

  loggedIn() {
    return this.actions.some((a) => /^login$/i.test(a.Action ?? ''));
  }

  serve(sock) {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.write('Asterisk Call Manager/11.0.0\r\n');
    let buf = '';
    sock.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      let end;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const msg = {};
        for (const line of block.split('\r\n')) {
          const i = line.indexOf(':');
          if (i > 0) msg[line.slice(0, i).trim()] = line.slice(i + 1).trim();
        }
        if (!msg.Action) continue;
        this.actions.push(msg);
        sock.write(this.answer(msg));
      }
    });
  }

  answer(msg) {
    const id = msg.ActionID ?? '';
    const name = msg.Action.toLowerCase();
    switch (name) {
      case 'challenge':
        return `Response: Success\r\nActionID: ${id}\r\nChallenge: ${CHALLENGE}\r\n\r\n`;
      case 'login': {
        const key = crypto.createHash('md5').update(`${CHALLENGE}${AMI_SECRET}`).digest('hex');
        return msg.Username === AMI_USER && msg.Key === key
          ? `Response: Success\r\nActionID: ${id}\r\nMessage: Authentication accepted\r\n\r\n`
          : `Response: Error\r\nActionID: ${id}\r\nMessage: Authentication failed\r\n\r\n`;
      }
      case 'reload':
        return this.failReload
          ? `Response: Error\r\nActionID: ${id}\r\nMessage: ${this.failReload}\r\n\r\n`
          : `Response: Success\r\nActionID: ${id}\r\nMessage: Module Reloaded.\r\n\r\n`;
      case 'pjsipshowcontacts':
      case 'pjsipshowregistrationsoutbound':
      case 'pjsipshowendpoints':
      case 'coreshowchannels':
        return `Response: Success\r\nActionID: ${id}\r\nEventList: start\r\nMessage: Listing follows\r\n\r\n`
          + `Event: ${msg.Action}Complete\r\nActionID: ${id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n`;
      case 'ping':
        return `Response: Success\r\nActionID: ${id}\r\nPing: Pong\r\n\r\n`;
      default:
        return `Response: Success\r\nActionID: ${id}\r\n\r\n`;
    }
  }

  async stop() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

describe('PBX configuration page, builtin engine', () => {
  const server = new CentralitaServer();
  const people = {};

  before(async () => {
    await server.start();
    people.admin = await launchPerson('pbx-builtin-admin');
  });

  after(async () => {
    for (const p of Object.values(people)) {
      if (process.env.E2E_VERBOSE && p.logs.length) console.log(p.logs.join('\n'));
      await p.close();
    }
    await server.stop();
    server.cleanup();
  });

  test('the page names the engine and says the builtin engine needs no PBX configuration', async () => {
    const { page } = people.admin;
    await login(page, server.baseUrl, 'admin', server.adminPassword);
    // What the page must agree with.
    const api = await call(people.admin, 'GET', '/api/telephony/pbx/config');
    assert.equal(api.status, 409, api.text);
    assert.equal(api.json.error.code, 'no_pbx_config');
    const status = await call(people.admin, 'GET', '/api/telephony/status');
    assert.equal(status.status, 200, status.text);

    await openPbxPage(page);
    const engine = page.getByTestId('pbx-engine');
    assert.equal(await engine.getAttribute('data-mode'), 'builtin');
    assert.equal(await engine.getAttribute('data-engine'), status.json.status.engine ?? '');
    assert.equal((await page.getByTestId('pbx-mode').textContent()).trim(), 'builtin');
    const none = page.getByTestId('pbx-none');
    await none.waitFor();
    assert.equal(await none.getAttribute('data-reason'), 'builtin');
    assert.match(await none.textContent(), /motor integrado \(builtin\).*no hay que configurar ninguna PBX/);
    // Nothing to regenerate, no files.
    assert.equal(await page.getByTestId('pbx-regenerate').isVisible(), false);
    assert.equal(await page.getByTestId('pbx-file').count(), 0);
    // English too.
    await page.getByTestId('lang-switch').click();
    await waitFor(async () => /builtin engine is centralita itself/.test(await page.getByTestId('pbx-none').textContent()),
      { what: 'the English message' });
    await shot(people.admin, 'pbx-builtin');
    await page.getByTestId('lang-switch').click();
    assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
  });

  test('agents get no PBX page, and the API refuses them', async () => {
    const made = await call(people.admin, 'POST', '/api/agents', { name: 'Pía Agente', login: 'pia', password: 'pia-Passw0rd-9', role: 'agent' });
    assert.equal(made.status, 201, made.text);
    people.agent = await launchPerson('pbx-builtin-agent');
    const { page } = people.agent;
    await login(page, server.baseUrl, 'pia', 'pia-Passw0rd-9');
    assert.equal(await page.getByTestId('nav-pbx').count(), 0);
    await page.goto(`${server.baseUrl}/admin/pbx`);
    await page.getByRole('heading', { name: 'Página no encontrada' }).waitFor();
    const res = await call(people.agent, 'GET', '/api/telephony/pbx/config');
    assert.equal(res.status, 403, res.text);
  });
});

describe('PBX configuration page, relay engine', () => {
  let server;
  const people = {};

  before(async () => {
    // The PBX is a UDP port nobody answers on: the relay starts anyway
    // and reports it unreachable.
    server = new CentralitaServer({ env: { CENTRALITA_MODE: 'relay', CENTRALITA_RELAY_UPSTREAM: `udp:127.0.0.1:${await freePort()}` } });
    await server.start();
    people.admin = await launchPerson('pbx-relay-admin');
  });

  after(async () => {
    for (const p of Object.values(people)) await p.close();
    await server?.stop();
    server?.cleanup();
  });

  test('the page names the relay and says the PBX behind it is configured on its own', async () => {
    const { page } = people.admin;
    await login(page, server.baseUrl, 'admin', server.adminPassword);
    const api = await call(people.admin, 'GET', '/api/telephony/pbx/config');
    assert.equal(api.status, 409, api.text);
    assert.equal(api.json.error.code, 'no_pbx_config');
    const status = (await call(people.admin, 'GET', '/api/telephony/status')).json.status;
    await openPbxPage(page);
    const engine = page.getByTestId('pbx-engine');
    assert.equal(await engine.getAttribute('data-mode'), 'relay');
    assert.equal(await engine.getAttribute('data-engine'), status.engine ?? '');
    assert.equal(await engine.getAttribute('data-connected'), String(status.connected));
    const none = page.getByTestId('pbx-none');
    await none.waitFor();
    assert.equal(await none.getAttribute('data-reason'), 'relay');
    assert.match(await none.textContent(), /modo relay/);
    assert.equal(await page.getByTestId('pbx-regenerate').isVisible(), false);
  });
});

describe('PBX configuration page, asterisk engine', () => {
  const ami = new FakeAmi();
  let server;
  const people = {};
  const AGENT = { name: 'Ástrid Asterisk', login: 'astrid', password: 'astrid-Passw0rd-9', username: null };

  before(async () => {
    await ami.start();
    server = new CentralitaServer({
      env: {
        CENTRALITA_MODE: 'asterisk',
        CENTRALITA_ASTERISK_AMI_ADDRESS: `127.0.0.1:${ami.port}`,
        CENTRALITA_ASTERISK_AMI_USERNAME: AMI_USER,
        CENTRALITA_ASTERISK_AMI_SECRET: AMI_SECRET,
      },
    });
    await server.start();
    people.admin = await launchPerson('pbx-asterisk-admin');
  });

  after(async () => {
    for (const p of Object.values(people)) {
      if (process.env.E2E_VERBOSE && p.logs.length) console.log(p.logs.join('\n'));
      await p.close();
    }
    await server?.stop();
    server?.cleanup();
    await ami.stop();
  });

  test('the page shows the engine connected, both generated files with secrets masked, and the last reload', async () => {
    const { page } = people.admin;
    await login(page, server.baseUrl, 'admin', server.adminPassword);
    await waitFor(() => ami.loggedIn(), { what: 'the binary logging in to the AMI peer' });
    const made = await call(people.admin, 'POST', '/api/agents', { name: AGENT.name, login: AGENT.login, password: AGENT.password, role: 'agent' });
    assert.equal(made.status, 201, made.text);
    // The agent's PJSIP sections are named after its SIP username.
    AGENT.username = made.json.agent.sip?.username ?? made.json.sipCredentials?.username;
    assert.ok(AGENT.username, made.text);
    // The change is written and reloaded by itself.
    await waitFor(async () => {
      const r = await call(people.admin, 'GET', '/api/telephony/pbx/config');
      return r.status === 200 && r.json.config.lastReload?.ok && r.json.config.files.some((f) => f.content.includes(`[${AGENT.username}]`));
    }, { what: 'the agent rendered and reloaded' });
    const status = await call(people.admin, 'GET', '/api/telephony/status');
    assert.equal(status.json.status.connected, true, status.text);
    const api = (await call(people.admin, 'GET', '/api/telephony/pbx/config')).json.config;

    await openPbxPage(page);
    const engine = page.getByTestId('pbx-engine');
    assert.equal(await engine.getAttribute('data-mode'), 'asterisk');
    assert.equal(await engine.getAttribute('data-engine'), status.json.status.engine);
    assert.equal(await engine.getAttribute('data-connected'), 'true');
    await page.getByTestId('pbx-file').first().waitFor();
    assert.equal(await page.getByTestId('pbx-none').count(), 0);
    // Every file of the API, in order, as the API has it.
    const files = page.getByTestId('pbx-file');
    assert.equal(await files.count(), api.files.length);
    assert.deepEqual(api.files.map((f) => f.name).sort(), ['centralita_pjsip.conf', 'centralita_pjsip_wizard.conf']);
    for (const [i, f] of api.files.entries()) {
      const el = files.nth(i);
      assert.equal(await el.getAttribute('data-name'), f.name);
      assert.equal((await el.getByTestId('pbx-file-name').textContent()).trim(), f.name);
      assert.equal((await el.getByTestId('pbx-file-path').textContent()).trim(), f.path);
      assert.equal(await el.getByTestId('pbx-file-content').textContent(), f.content);
    }
    const agentsFile = page.locator('[data-testid=pbx-file][data-name="centralita_pjsip.conf"] [data-testid=pbx-file-content]');
    const content = await agentsFile.textContent();
    assert.ok(content.includes(`[${AGENT.username}]`), content);
    assert.match(content, /^md5_cred = \*{8}$/m, 'the HA1 is masked');
    assert.ok(!content.includes(AGENT.password));
    // The last reload, as the API reports it.
    const reload = page.getByTestId('pbx-reload');
    assert.equal(await reload.getAttribute('data-state'), 'ok');
    assert.equal(await reload.getAttribute('data-at'), api.lastReload.at);
    assert.equal(await page.getByTestId('pbx-reload-ok').getAttribute('data-ok'), 'true');
    assert.equal((await page.getByTestId('pbx-reload-message').textContent()).trim(), api.lastReload.message);
    assert.equal(await page.getByTestId('pbx-regenerate').isVisible(), true);
    await shot(people.admin, 'pbx-asterisk');
  });

  test('Regenerate writes the files again and reloads; a refused reload is shown with Asterisk\'s words', async () => {
    const { page } = people.admin;
    const before = ami.reloads();
    const at0 = await page.getByTestId('pbx-reload').getAttribute('data-at');
    await page.getByTestId('pbx-regenerate').click();
    const notice = page.getByTestId('pbx-notice');
    await notice.waitFor();
    assert.equal(await notice.getAttribute('data-ok'), 'true');
    assert.equal(ami.reloads(), before + 1, 'one Reload of res_pjsip.so per click');
    assert.equal(await page.getByTestId('pbx-reload').getAttribute('data-state'), 'ok');
    assert.notEqual(await page.getByTestId('pbx-reload').getAttribute('data-at'), at0);

    // Asterisk refuses the next reload: the page says so, with its words.
    ami.failReload = 'No such module: res_pjsip.so';
    await page.getByTestId('pbx-regenerate').click();
    await waitFor(async () => (await notice.getAttribute('data-ok')) === 'false', { what: 'the refused reload noticed' });
    assert.equal(ami.reloads(), before + 2);
    assert.equal(await page.getByTestId('pbx-reload').getAttribute('data-state'), 'failed');
    assert.equal(await page.getByTestId('pbx-reload-ok').getAttribute('data-ok'), 'false');
    const message = (await page.getByTestId('pbx-reload-message').textContent()).trim();
    assert.match(message, /No such module/);
    assert.ok((await notice.textContent()).includes(message), await notice.textContent());
    // The API holds the same outcome, and the page shows it after a reload of the page.
    const api = await call(people.admin, 'GET', '/api/telephony/pbx/config');
    assert.equal(api.json.config.lastReload.ok, false);
    assert.equal(api.json.config.lastReload.message, message);
    await page.reload();
    await page.getByTestId('pbx-reload').waitFor();
    assert.equal(await page.getByTestId('pbx-reload').getAttribute('data-state'), 'failed');
    await shot(people.admin, 'pbx-asterisk-reload-failed');
    ami.failReload = null;
    assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
  });
});
