// Browser tests of the console's Dial plan page (issue 11) against the
// real centralita binary: the admin opens it from the navigation and sees
// the configuration's settings (source `config`) exactly as the API gives
// them; changes the blocked prefixes and the per-hour limit, saves, and
// the API then holds exactly what was typed; a bad pattern is refused by
// the server, whose words appear under the patterns field while the form
// keeps what was typed and the API keeps the previous settings; "back to
// the configuration's values" (confirmed) returns to them; another
// administrator's change reaches the open page; an agent gets no entry,
// no page and 403 from the API.
//
// The steps share one server, an admin and an agent, and run in order; a
// step that depends on an earlier one is skipped when that one failed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CentralitaServer, e2eDir, waitFor } from './lib/server.mjs';
import { launchPerson } from './lib/browser.mjs';

const ARTIFACTS = path.join(e2eDir, 'artifacts');
const server = new CentralitaServer();
const people = {};
const AGENT = { name: 'Pablo Plan', login: 'pablo', password: 'pablo-Passw0rd-7' };
const FIELDS = ['countryCode', 'internationalPrefix', 'nationalPrefix', 'outboundPatterns', 'strip', 'prepend',
  'agentPermission', 'maxConcurrentOutbound', 'maxOutboundPerHour', 'blockedPrefixes'];
/** The configuration's settings, as the API gave them before anything was saved. */
let configSettings = null;
/** What the save step stored. */
let savedSettings = null;

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

async function serverDialplan() {
  const res = await call(people.admin, 'GET', '/api/telephony/dialplan');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.success, true);
  return res.json;
}

async function text(locator) {
  return (await locator.textContent()).trim();
}

/** What each form input must hold for these settings: lists one entry per line, counts as digits. */
function asInputs(s) {
  return Object.fromEntries(FIELDS.map((f) => [f, Array.isArray(s[f]) ? s[f].join('\n') : String(s[f])]));
}

async function formInputs(page) {
  const out = {};
  for (const f of FIELDS) out[f] = await page.getByTestId(`dialplan-${f}`).inputValue();
  return out;
}

/** The page shows `answer`: its source, the summary of what is in force, and every field in the form. */
async function assertPageShows(page, answer) {
  const s = answer.settings;
  await waitFor(async () => (await page.getByTestId('dialplan-source').getAttribute('data-source')) === answer.source, { what: `source ${answer.source}` });
  assert.equal(await text(page.getByTestId('dialplan-source')), answer.source === 'saved' ? 'Guardados por un administrador' : 'Del archivo de configuración');
  assert.equal(await page.getByTestId('dialplan-summary-permission').getAttribute('data-value'), s.agentPermission);
  assert.equal(await page.getByTestId('dialplan-summary-concurrent').getAttribute('data-value'), String(s.maxConcurrentOutbound));
  assert.equal(await page.getByTestId('dialplan-summary-hour').getAttribute('data-value'), String(s.maxOutboundPerHour));
  assert.match(await text(page.getByTestId('dialplan-summary-lists')), new RegExp(`^${s.outboundPatterns.length} patrones de salida · ${s.blockedPrefixes.length} prefijos bloqueados$`));
  assert.deepEqual(await formInputs(page), asInputs(s));
  assert.equal(await page.getByTestId('dialplan-reset').isDisabled(), answer.source !== 'saved', 'reset only when something is saved');
  assert.equal(await page.getByTestId('dialplan-unsaved').isVisible(), false);
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

describe('console Dial plan page (real browser, real backend)', () => {
  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await server.start();
    people.admin = await launchPerson('dialplan-admin');
    people.agent = await launchPerson('dialplan-agent');
  });

  after(async () => {
    for (const p of Object.values(people)) {
      if (p.logs.length) fs.writeFileSync(path.join(ARTIFACTS, `${p.name}-console.log`), p.logs.join('\n'));
      await p.close();
    }
    await server.stop();
    server.cleanup();
  });

  step('open', 'admin opens Dial plan from the navigation, after Inbound numbers, and sees the configuration\'s settings', [], async () => {
    const { page } = people.admin;
    await login(page, 'admin', server.adminPassword);
    await page.getByTestId('agents-table').waitFor();
    const navOrder = await page.locator('nav.nav a').evaluateAll((as) => as.map((a) => a.dataset.testid));
    assert.equal(navOrder.indexOf('nav-dialplan'), navOrder.indexOf('nav-dids') + 1, `after Inbound numbers: ${navOrder}`);
    assert.equal(navOrder.indexOf('nav-dids'), navOrder.indexOf('nav-trunks') + 1, `Trunks, Inbound numbers, Dial plan: ${navOrder}`);
    // The agents page's Dialling column says where its "Default" comes from.
    assert.equal(await page.getByTestId('agents-dialplan-link').getAttribute('href'), '/admin/dialplan');
    await page.getByTestId('nav-dialplan').click();
    await page.getByTestId('dialplan-form').waitFor();
    assert.equal(new URL(page.url()).pathname, '/admin/dialplan');
    assert.equal(await page.getByTestId('nav-dialplan').getAttribute('aria-current'), 'page');
    assert.equal(await text(page.locator('h1')), 'Plan de marcación');

    const answer = await serverDialplan();
    assert.equal(answer.source, 'config', 'nothing saved on a fresh server');
    assert.deepEqual(Object.keys(answer.settings).sort(), [...FIELDS, 'routes'].sort(), 'the page has a field for every setting (routes: their editors)');
    assert.deepEqual(answer.settings.routes, [], 'no routes in the configuration');
    assert.equal(await page.getByTestId('dialplan-routes-none').isVisible(), true);
    configSettings = answer.settings;
    // The defaults an operator expects from the README (national calls, limits on, premium-rate blocked).
    assert.equal(configSettings.agentPermission, 'national');
    assert.ok(configSettings.maxOutboundPerHour > 0 && configSettings.maxConcurrentOutbound > 0, JSON.stringify(configSettings));
    assert.ok(configSettings.blockedPrefixes.includes('881'), JSON.stringify(configSettings.blockedPrefixes));
    await assertPageShows(page, answer);
    assert.equal(await page.getByTestId('dialplan-agentPermission').locator('option:checked').textContent(), 'Nacional');

    // The help an admin needs: the pattern notation, 0 = no limit, blocked for everyone, the agents page overrides.
    const hint = (f) => page.getByTestId(`dialplan-${f}`).evaluate((el) => document.getElementById(el.getAttribute('aria-describedby'))?.textContent ?? '');
    assert.match(await hint('outboundPatterns'), /_XXXXXX\. es cualquier número de 7 dígitos o más/);
    assert.match(await hint('maxOutboundPerHour'), /^0 = sin límite/);
    assert.match(await hint('maxConcurrentOutbound'), /^0 = sin límite/);
    assert.match(await hint('blockedPrefixes'), /Nadie puede llamar a estos destinos, tenga el permiso que tenga/);
    assert.match(await hint('agentPermission'), /página Agentes .* manda sobre este valor/);
    assert.equal(await page.getByTestId('dialplan-agents-link').getAttribute('href'), '/admin/agents');
    await shot(people.admin, 'dialplan-config');

    await page.getByTestId('lang-switch').click();
    await waitFor(async () => (await text(page.locator('h1'))) === 'Dial plan', { what: 'English title' });
    assert.equal(await text(page.getByTestId('nav-dialplan')), 'Dial plan');
    assert.equal(await text(page.getByTestId('dialplan-source')), 'From the configuration file');
    assert.equal(await text(page.getByTestId('dialplan-reset')), 'Back to the configuration\'s values');
    await page.getByTestId('lang-switch').click();
    await waitFor(async () => (await text(page.locator('h1'))) === 'Plan de marcación', { what: 'Spanish again' });
    await page.getByTestId('dialplan-form').waitFor();
  });

  step('save', 'changes the blocked prefixes and the per-hour limit, saves, and the API holds exactly what was typed', ['open'], async () => {
    const { page } = people.admin;
    // Drop one default, add two (one written with +): one per line, blank lines ignored.
    const blocked = [...configSettings.blockedPrefixes.filter((p) => p !== '1900'), '34901', '+44909'];
    assert.equal(blocked.length, configSettings.blockedPrefixes.length + 1, 'the default list had 1900');
    await page.getByTestId('dialplan-blockedPrefixes').fill(`${blocked.join('\n')}\n\n`);
    await page.getByTestId('dialplan-maxOutboundPerHour').fill('0');
    assert.equal(await page.getByTestId('dialplan-unsaved').isVisible(), true, 'the edits are marked unsaved');
    await page.getByTestId('dialplan-save').click();
    const message = page.getByTestId('dialplan-message');
    await waitFor(async () => (await message.isVisible()) && (await text(message)) === 'Guardado. La próxima llamada ya usa estos ajustes.', { what: 'the "saved" message' });
    assert.match(await message.getAttribute('class'), /alert-ok/);

    const answer = await serverDialplan();
    savedSettings = { ...configSettings, blockedPrefixes: blocked, maxOutboundPerHour: 0 };
    assert.deepEqual(answer, { success: true, source: 'saved', settings: savedSettings });
    await assertPageShows(page, answer);
    assert.equal(await text(page.getByTestId('dialplan-summary-hour')), 'Cada agente: sin límite de llamadas salientes por hora');
    await shot(people.admin, 'dialplan-saved');
  });

  step('invalid', 'a bad pattern shows the server\'s error under the patterns field; the form keeps what was typed, the API the previous settings', ['save'], async () => {
    const { page } = people.admin;
    const patterns = `${configSettings.outboundPatterns.join('\n')}\n_9Q.`;
    await page.getByTestId('dialplan-outboundPatterns').fill(patterns);
    await page.getByTestId('dialplan-maxOutboundPerHour').fill('30');
    await page.getByTestId('dialplan-save').click();
    const err = page.getByTestId('dialplan-error-outboundPatterns');
    await err.waitFor();

    // What the page says is what the server answers to the same body.
    const body = { ...savedSettings, outboundPatterns: [...configSettings.outboundPatterns, '_9Q.'], maxOutboundPerHour: 30 };
    const direct = await call(people.admin, 'PUT', '/api/telephony/dialplan', body);
    assert.equal(direct.status, 422, direct.text);
    assert.equal(direct.json.success, false);
    assert.equal(direct.json.error.code, 'invalid_field');
    assert.ok(direct.json.error.message.startsWith('outboundPatterns:'), direct.text);
    assert.equal(await text(err), direct.json.error.message.slice('outboundPatterns:'.length).trim());
    assert.match(await text(err), /_9Q\./);
    // Beside the field: in the patterns field's own box, and the textarea is marked.
    assert.equal(await err.evaluate((el) => el.closest('.field')?.dataset.field), 'outboundPatterns');
    const ta = page.getByTestId('dialplan-outboundPatterns');
    assert.equal(await ta.getAttribute('aria-invalid'), 'true');
    assert.equal(await ta.getAttribute('aria-errormessage'), await err.getAttribute('id'));
    const message = page.getByTestId('dialplan-message');
    assert.equal(await message.getAttribute('data-status'), '422');
    assert.equal(await message.getAttribute('data-field'), 'outboundPatterns');
    assert.equal(await text(message), 'No se ha guardado nada: revise el campo «Patrones de salida (uno por línea)».');
    // Only that field: no other error shows.
    assert.equal(await page.locator('[data-testid^=dialplan-error-]:visible').count(), 1);
    await shot(people.admin, 'dialplan-invalid');

    // Nothing lost from the form, nothing saved.
    assert.equal(await ta.inputValue(), patterns);
    assert.equal(await page.getByTestId('dialplan-maxOutboundPerHour').inputValue(), '30');
    assert.equal(await page.getByTestId('dialplan-unsaved').isVisible(), true);
    assert.deepEqual(await serverDialplan(), { success: true, source: 'saved', settings: savedSettings });

    // A count that is no number is stopped in the page, under its own field.
    await ta.fill(configSettings.outboundPatterns.join('\n'));
    await page.getByTestId('dialplan-maxOutboundPerHour').fill('diez');
    await page.getByTestId('dialplan-save').click();
    const countErr = page.getByTestId('dialplan-error-maxOutboundPerHour');
    await countErr.waitFor();
    assert.equal(await text(countErr), 'Escriba un número entero, 0 o mayor.');
    assert.equal(await page.getByTestId('dialplan-error-outboundPatterns').isVisible(), false, 'the old error is gone');
    assert.equal(await ta.getAttribute('aria-invalid'), null);
    assert.deepEqual(await serverDialplan(), { success: true, source: 'saved', settings: savedSettings });
  });

  step('routes', 'outbound routes: added, given trunks, reordered and saved; a bad route is refused under the routes; one removed', ['save'], async () => {
    const { page } = people.admin;
    const trunk = async (name, priority) => {
      const res = await call(people.admin, 'POST', '/api/telephony/trunks', { name, host: '127.0.0.1', port: 9, priority, sendsRegistration: false });
      assert.equal(res.status, 201, res.text);
      return res.json.trunk.id;
    };
    const landlines = await trunk('Fijos SA', 1);
    const mobiles = await trunk('Móviles SL', 2);
    // The form lists the trunks it loaded with the page.
    await page.reload();
    await page.getByTestId('dialplan-form').waitFor();
    await page.getByTestId('dialplan-routes-none').waitFor();
    await page.getByTestId('dialplan-route-add').click();
    await page.getByTestId(`dialplan-route-trunk-0-${mobiles}`).waitFor();
    assert.equal(await page.getByTestId('dialplan-unsaved').isVisible(), true, 'a new route is an unsaved change');
    await page.getByTestId('dialplan-route-name-0').fill('móviles');
    await page.getByTestId('dialplan-route-patterns-0').fill('_6XXXXXXXX\n_7XXXXXXXX\n');
    await page.getByTestId(`dialplan-route-trunk-0-${mobiles}`).check();
    await page.getByTestId('dialplan-route-add').click();
    assert.equal(await page.getByTestId('dialplan-route-name-0').inputValue(), 'móviles', 'adding keeps what was typed');
    await page.getByTestId('dialplan-route-name-1').fill('fijos');
    await page.getByTestId('dialplan-route-patterns-1').fill('_9XXXXXXXX');
    await page.getByTestId('dialplan-route-prepend-1').fill('+34');
    await page.getByTestId(`dialplan-route-trunk-1-${landlines}`).check();
    await page.getByTestId('dialplan-route-up-1').click();
    assert.equal(await page.getByTestId('dialplan-route-name-0').inputValue(), 'fijos', 'moved up');
    await page.getByTestId('dialplan-save').click();
    const message = page.getByTestId('dialplan-message');
    await waitFor(async () => (await message.isVisible()) && (await text(message)).startsWith('Guardado.'), { what: 'the "saved" message' });
    const routes = [
      { name: 'fijos', patterns: ['_9XXXXXXXX'], strip: 0, prepend: '+34', trunkIds: [landlines] },
      { name: 'móviles', patterns: ['_6XXXXXXXX', '_7XXXXXXXX'], strip: 0, prepend: '', trunkIds: [mobiles] },
    ];
    savedSettings = { ...savedSettings, routes };
    assert.deepEqual(await serverDialplan(), { success: true, source: 'saved', settings: savedSettings });
    assert.equal(await page.getByTestId('dialplan-summary-routes').getAttribute('data-value'), '2');
    assert.equal(await text(page.getByTestId('dialplan-summary-routes')), '2 rutas de salida: fijos, móviles');
    assert.equal(await page.getByTestId(`dialplan-route-trunk-1-${mobiles}`).isChecked(), true, 'the saved routes are shown');
    await shot(people.admin, 'dialplan-routes');

    // A bad pattern in the second route: the server's words under the routes, nothing saved.
    await page.getByTestId('dialplan-route-patterns-1').fill('_6Q');
    await page.getByTestId('dialplan-save').click();
    const err = page.getByTestId('dialplan-error-routes');
    await err.waitFor();
    assert.match(await text(err), /^route 2 \("móviles"\): patterns: /);
    assert.equal(await message.getAttribute('data-field'), 'routes');
    assert.equal(await text(message), 'No se ha guardado nada: revise el campo «Rutas de salida».');
    assert.deepEqual(await serverDialplan(), { success: true, source: 'saved', settings: savedSettings });

    // Removing that route saves the other alone.
    await page.getByTestId('dialplan-route-remove-1').click();
    assert.equal(await page.getByTestId('dialplan-route-1').count(), 0);
    await page.getByTestId('dialplan-save').click();
    await waitFor(async () => (await err.isHidden()) && (await text(message)).startsWith('Guardado.'), { what: 'saved again' });
    savedSettings = { ...savedSettings, routes: [routes[0]] };
    assert.deepEqual(await serverDialplan(), { success: true, source: 'saved', settings: savedSettings });
  });

  step('reset', 'back to the configuration\'s values, after confirming; cancel keeps the saved ones', ['save'], async () => {
    const { page } = people.admin;
    await page.getByTestId('dialplan-reset').click();
    await page.getByTestId('confirm-dialog').waitFor();
    assert.match(await text(page.getByTestId('confirm-dialog')), /archivo de configuración/);
    await page.getByTestId('confirm-cancel').click();
    await page.getByTestId('confirm-dialog').waitFor({ state: 'detached' });
    assert.equal((await serverDialplan()).source, 'saved', 'cancel changes nothing');

    await page.getByTestId('dialplan-reset').click();
    await page.getByTestId('confirm-ok').click();
    const message = page.getByTestId('dialplan-message');
    await waitFor(async () => (await message.isVisible()) && (await text(message)) === 'Rigen de nuevo los valores del archivo de configuración.', { what: 'the reset message' });
    const answer = await serverDialplan();
    assert.deepEqual(answer, { success: true, source: 'config', settings: configSettings });
    // The form shows the configuration's values again, not what was typed before.
    await assertPageShows(page, answer);
    await shot(people.admin, 'dialplan-reset');
  });

  step('live', 'another administrator\'s change reaches the open page; the form keeps its values until asked', ['reset'], async () => {
    const { page } = people.admin;
    const other = { ...configSettings, maxConcurrentOutbound: configSettings.maxConcurrentOutbound + 3 };
    // The same API another admin's console would call.
    const put = await call(people.admin, 'PUT', '/api/telephony/dialplan', other);
    assert.equal(put.status, 200, put.text);
    const notice = page.getByTestId('dialplan-changed');
    await notice.waitFor({ timeout: 10000 });
    assert.equal(await page.getByTestId('dialplan-source').getAttribute('data-source'), 'saved');
    assert.equal(await page.getByTestId('dialplan-summary-concurrent').getAttribute('data-value'), String(other.maxConcurrentOutbound));
    assert.equal(await page.getByTestId('dialplan-maxConcurrentOutbound').inputValue(), String(configSettings.maxConcurrentOutbound), 'the form is not overwritten');
    await page.getByTestId('dialplan-load-in-force').click();
    await assertPageShows(page, { source: 'saved', settings: other });
    assert.equal(await notice.isVisible(), false);
    const del = await call(people.admin, 'DELETE', '/api/telephony/dialplan');
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json, { success: true, source: 'config', settings: configSettings });
  });

  step('agent', 'an agent sees no Dial plan entry, no page, and gets 403 from the API', ['open'], async () => {
    const made = await call(people.admin, 'POST', '/api/agents', { name: AGENT.name, login: AGENT.login, password: AGENT.password, role: 'agent' });
    assert.equal(made.status, 201, made.text);
    const { page } = people.agent;
    await login(page, AGENT.login, AGENT.password);
    await page.getByTestId('nav-phone').waitFor();
    assert.equal(await page.getByTestId('nav-dialplan').count(), 0);
    for (const [method, body] of [['GET'], ['PUT', configSettings], ['DELETE']]) {
      const res = await call(people.agent, method, '/api/telephony/dialplan', body);
      assert.equal(res.status, 403, `${method}: ${res.text}`);
      assert.equal(res.json?.error?.code, 'forbidden');
    }
    await page.goto(`${server.baseUrl}/admin/dialplan`);
    await page.getByRole('heading', { name: 'Página no encontrada' }).waitFor();
    assert.equal(await page.getByTestId('dialplan-form').count(), 0);
    // The agent's attempts changed nothing.
    assert.deepEqual(await serverDialplan(), { success: true, source: 'config', settings: configSettings });
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
