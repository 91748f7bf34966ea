// The stock JsSIP builds under test and the tiny web server that hands them to
// the page in stock-jssip/.
//
// Every JsSIP version is installed side by side under an npm alias
// (`"jssip-3.13": "npm:jssip@3.13.8"` in package.json). A browser gets a
// version the way users get it, unchanged:
// - its npm entry point bundled for the browser (what `npm install jssip`
//   plus a bundler gives an app like seeds/000's), for every version;
// - `dist/jssip.min.js` as the package ships it, for the versions that ship
//   one (a `<script>` page like seeds/000's WebRtc-Fono/index.html).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { build } from 'esbuild';
import { e2eDir } from './server.mjs';

const pageDir = path.join(e2eDir, 'stock-jssip');

/**
 * One entry per way of loading each installed JsSIP version:
 * `{ id, label, version, expectVersion, code }`. `expectVersion` is the
 * version the loaded library must report, or null when only the package's
 * own banner says what a shipped bundle holds.
 */
export async function jssipBuilds() {
  const pkg = JSON.parse(fs.readFileSync(path.join(e2eDir, 'package.json'), 'utf8'));
  const aliases = Object.entries(pkg.devDependencies ?? {}).filter(([, spec]) => /^npm:jssip@/.test(spec));
  const out = [];
  for (const [alias, spec] of aliases) {
    const dir = path.join(e2eDir, 'node_modules', alias);
    const installed = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
    const pinned = spec.slice('npm:jssip@'.length);
    if (installed !== pinned) throw new Error(`${alias}: package.json pins ${pinned} but ${installed} is installed (run npm ci)`);
    const bundle = await build({
      stdin: { contents: `window.JsSIP = require(${JSON.stringify(alias)});\n`, resolveDir: e2eDir, loader: 'js' },
      bundle: true,
      write: false,
      format: 'iife',
      platform: 'browser',
      target: 'es2020',
      logLevel: 'silent',
    });
    out.push({
      id: `${alias}-npm`,
      label: `JsSIP ${installed} (npm package, bundled)`,
      version: installed,
      expectVersion: installed,
      code: bundle.outputFiles[0].text,
    });
    const dist = path.join(dir, 'dist', 'jssip.min.js');
    if (fs.existsSync(dist)) {
      const code = fs.readFileSync(dist, 'utf8');
      const banner = /JsSIP v?(\d+\.\d+\.\d+)/.exec(code.slice(0, 2000))?.[1] ?? '?';
      out.push({
        id: `${alias}-dist`,
        label: `JsSIP ${installed} dist/jssip.min.js (its banner says ${banner})`,
        version: installed,
        expectVersion: null,
        bannerVersion: banner,
        code,
      });
    }
  }
  if (out.length === 0) throw new Error('no JsSIP installed under an npm:jssip@ alias in package.json');
  return out;
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Serves `/<build id>/` (the page, its script and that build as
 * `jssip.min.js`) on 127.0.0.1, and passes `POST /api/provision` on to
 * centralita the way a site hosting its own softphone page in front of the
 * PBX would (the browser cannot read a cross-origin answer without CORS).
 */
export async function startPageServer({ builds, apiBase }) {
  const html = fs.readFileSync(path.join(pageDir, 'index.html'));
  const script = fs.readFileSync(path.join(pageDir, 'phone.js'));
  const byId = new Map(builds.map((b) => [b.id, b]));
  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (url.pathname === '/api/provision' && req.method === 'POST') {
        const body = await readBody(req);
        const upstream = await fetch(`${apiBase}/api/provision`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body,
        });
        send(res, upstream.status, 'application/json', Buffer.from(await upstream.arrayBuffer()));
        return;
      }
      const m = /^\/([^/]+)\/([^/]*)$/.exec(url.pathname);
      const b = m && byId.get(m[1]);
      if (!b || req.method !== 'GET') return send(res, 404, 'text/plain', 'not found');
      if (m[2] === '' || m[2] === 'index.html') return send(res, 200, 'text/html; charset=utf-8', html);
      if (m[2] === 'phone.js') return send(res, 200, 'text/javascript', script);
      if (m[2] === 'jssip.min.js') return send(res, 200, 'text/javascript', b.code);
      return send(res, 404, 'text/plain', 'not found');
    } catch (err) {
      send(res, 502, 'text/plain', String(err));
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
