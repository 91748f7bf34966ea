// The OpenAPI document served by the real binary (issue 9): it validates
// against the OpenAPI 3.1 schema (@seriousme/openapi-schema-validator, no
// network), and what the server really answers matches it: every answer's
// status is documented and its body validates against the documented
// schema, with no field the schema does not list; the bodies it accepts
// match the documented request schemas.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv2020 from 'ajv/dist/2020.js';
import { CentralitaServer } from './lib/server.mjs';

const server = new CentralitaServer();
const DOC_ID = 'urn:centralita:openapi';
let doc;
let ajv;
let adminCookie;
const checked = new Set();

// Object schemas that list properties get `unevaluatedProperties: false`,
// so a field the server sends but the document does not list fails.
function closeObjects(v) {
  if (Array.isArray(v)) return v.map(closeObjects);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      out[k] = k === '$ref' && typeof x === 'string' && x.startsWith('#') ? `${DOC_ID}${x}` : closeObjects(x);
    }
    if (out.properties && out.additionalProperties === undefined) out.unevaluatedProperties = false;
    return out;
  }
  return v;
}

async function call(method, path, { body, cookie } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (cookie) headers.Cookie = cookie;
  const res = await fetch(`${server.baseUrl}${path}`, {
    method: method.toUpperCase(),
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, sent: body };
}

// Checks an answer of `method template` against the document.
function conforms(method, template, res) {
  const op = doc.paths[template]?.[method];
  assert.ok(op, `${method} ${template} is not in the document`);
  // A body the server accepted as well-formed matches the documented
  // request schema (refused ones, 400/413/422, are refused on purpose).
  if (res.sent !== undefined && ![400, 413, 422].includes(res.status)) {
    const schema = op.requestBody?.content?.['application/json']?.schema;
    assert.ok(schema, `${method} ${template} took a JSON body it does not document`);
    const validate = ajv.compile(closeObjects(schema));
    assert.ok(
      validate(res.sent),
      `${method} ${template}: the body sent does not match the documented one: ${JSON.stringify(validate.errors, null, 1)}`,
    );
  }
  const resp = op.responses[String(res.status)];
  assert.ok(resp, `${method} ${template} answered ${res.status}, which it does not document: ${res.text}`);
  const media = (res.headers.get('content-type') ?? '').split(';')[0].trim();
  const content = resp.content ?? {};
  const entry = Object.entries(content).find(([m]) => m.split(';')[0].trim() === media);
  assert.ok(entry, `${method} ${template} ${res.status}: ${media} is not among ${Object.keys(content)}`);
  if (media === 'application/json') {
    const validate = ajv.compile(closeObjects(entry[1].schema));
    const body = JSON.parse(res.text);
    assert.ok(
      validate(body),
      `${method} ${template} ${res.status} does not match its schema: ${JSON.stringify(validate.errors, null, 1)}\n${res.text}`,
    );
  }
  checked.add(`${method} ${template} ${res.status}`);
}

describe('OpenAPI document', () => {
  before(async () => {
    await server.start();
    const res = await call('get', '/api/openapi.json');
    assert.equal(res.status, 200);
    doc = JSON.parse(res.text);
    ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
    ajv.addSchema({ $id: DOC_ID, components: closeObjects(doc.components) });
  });

  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test('validates against the OpenAPI 3.1 schema', async () => {
    const validator = new Validator();
    const res = await validator.validate(structuredClone(doc));
    assert.equal(validator.version, '3.1');
    assert.ok(res.valid, `invalid OpenAPI document: ${JSON.stringify(res.errors, null, 1)}`);
  });

  test('the server answers as documented', async () => {
    // Public and error answers.
    conforms('get', '/api/health', await call('get', '/api/health'));
    conforms('get', '/api/ready', await call('get', '/api/ready'));
    conforms('get', '/api/agents', await call('get', '/api/agents'));
    conforms('post', '/api/auth/login', await call('post', '/api/auth/login', { body: { login: 'admin', password: 'wrong-password' } }));
    conforms('post', '/api/provision', await call('post', '/api/provision', { body: { username: 'nobody', password: 'x' } }));

    const login = await call('post', '/api/auth/login', { body: { login: 'admin', password: server.adminPassword } });
    conforms('post', '/api/auth/login', login);
    adminCookie = login.headers.get('set-cookie').split(';')[0];
    const as = { cookie: adminCookie };

    conforms('post', '/api/agents', await call('post', '/api/agents', { ...as, body: {} }));
    const created = await call('post', '/api/agents', {
      ...as,
      body: { name: 'Olga Openapi', login: 'olga', password: 'olga-Passw0rd-1', role: 'agent' },
    });
    conforms('post', '/api/agents', created);
    const agentId = JSON.parse(created.text).agent.id;
    conforms('post', '/api/agents', await call('post', '/api/agents', {
      ...as,
      body: { name: 'Olga Again', login: 'olga', password: 'olga-Passw0rd-1', role: 'agent' },
    }));
    conforms('patch', '/api/agents/{id}', await call('patch', `/api/agents/${agentId}`, { ...as, body: { phone: '+34 600 000 000' } }));
    conforms('post', '/api/agents/{id}/regenerate-sip', await call('post', `/api/agents/${agentId}/regenerate-sip`, as));
    conforms('post', '/hr/users', await call('post', '/hr/users', {
      ...as,
      body: { name: 'Hugo Hr', login: 'hugo', password: 'hugo-Passw0rd-1', accountType: 'agent' },
    }));
    conforms('put', '/hr/webrtc-config', await call('put', '/hr/webrtc-config', {
      ...as,
      body: { stunServer: 'stun:127.0.0.1:3478', turnServer: 'turn:127.0.0.1:3478', turnUsername: 'u', turnPassword: 'p' },
    }));
    conforms('post', '/api/auth/tokens', await call('post', '/api/auth/tokens', { ...as, body: { name: 'ci' } }));
    conforms('post', '/api/provision', await call('post', '/api/provision', { body: { username: 'olga', password: 'olga-Passw0rd-1' } }));

    const agentLogin = await call('post', '/api/auth/login', { body: { login: 'olga', password: 'olga-Passw0rd-1' } });
    const agentCookie = agentLogin.headers.get('set-cookie').split(';')[0];
    conforms('get', '/api/audit', await call('get', '/api/audit', { cookie: agentCookie }));
    conforms('get', '/api/telephony/sip/credentials', await call('get', '/api/telephony/sip/credentials', { cookie: agentCookie }));

    // Every GET that answers JSON, as the admin.
    for (const [template, item] of Object.entries(doc.paths)) {
      if (!item.get || template === '/api/events' || template === '/api/openapi.json') continue;
      if (item.get.responses['101']) continue;
      const path = template.replace('{id}', String(agentId)).replace('{call_id}', 'no-such-call');
      conforms('get', template, await call('get', path, as));
    }
    conforms('get', '/api/telephony/calls/history', await call('get', '/api/telephony/calls/history?format=csv', as));
    conforms('get', '/api/telephony/calls/history', await call('get', '/api/telephony/calls/history?disposition=NOPE', as));

    conforms('delete', '/api/agents/{id}', await call('delete', `/api/agents/${agentId}`, as));
    conforms('delete', '/api/agents/{id}', await call('delete', `/api/agents/${agentId}`, as));
    assert.ok(checked.size >= 35, `only ${checked.size} answers checked`);
  });
});
