// Starts the real centralita binary on free 127.0.0.1 ports with a fresh data
// directory, waits for /api/health, and stops it by PID.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const e2eDir = path.resolve(here, '..');
export const repoDir = path.resolve(e2eDir, '../..');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function udpPortFree(port) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', () => resolve(false));
    sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
  });
}

// SIP listens on UDP and TCP on one port, and a port free for TCP may be
// taken for UDP: pick one free for both.
export async function freeSipPort() {
  for (let i = 0; i < 100; i++) {
    const port = await freePort();
    if (await udpPortFree(port)) return port;
  }
  throw new Error('no port free for both TCP and UDP on 127.0.0.1');
}

export async function waitFor(fn, { timeoutMs = 15000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      // A fatal error (the server exited) will not heal: report it now.
      if (err?.fatal) throw err;
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
}

export class CentralitaServer {
  constructor({ adminPassword = 'e2e-Admin-Passw0rd', env = {} } = {}) {
    this.extraEnv = env;
    this.bin = process.env.CENTRALITA_BIN
      ? path.resolve(e2eDir, process.env.CENTRALITA_BIN)
      : path.resolve(e2eDir, '../../target/debug/centralita');
    this.consoleDir = path.resolve(repoDir, 'web/dist');
    this.adminPassword = adminPassword;
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'centralita-e2e-data-'));
    this.logFile = path.join(e2eDir, 'artifacts', 'server.log');
    this.proc = null;
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  async start() {
    if (!fs.existsSync(this.bin)) throw new Error(`centralita binary not found at ${this.bin} (set CENTRALITA_BIN)`);
    if (!fs.existsSync(path.join(this.consoleDir, 'index.html'))) throw new Error(`console not built: ${this.consoleDir} (run npm run build in web/)`);
    this.httpPort ??= await freePort();
    this.sipPort ??= await freeSipPort();
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    const log = fs.openSync(this.logFile, 'a');
    this.proc = spawn(this.bin, ['serve'], {
      env: {
        ...process.env,
        CENTRALITA_DATA_DIR: this.dataDir,
        CENTRALITA_HTTP_LISTEN: `127.0.0.1:${this.httpPort}`,
        CENTRALITA_SIP_LISTEN: `127.0.0.1:${this.sipPort}`,
        CENTRALITA_ADMIN_PASSWORD: this.adminPassword,
        CENTRALITA_CONSOLE_DIR: this.consoleDir,
        RUST_LOG: process.env.RUST_LOG ?? 'info',
        ...this.extraEnv,
      },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const proc = this.proc;
    let exited = null;
    // If the test process dies without reaching stop(), do not leave the server behind.
    const killOnExit = () => proc.kill('SIGKILL');
    process.once('exit', killOnExit);
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      process.removeListener('exit', killOnExit);
    });
    await waitFor(async () => {
      if (exited) throw Object.assign(new Error(`centralita exited early (${JSON.stringify(exited)}); see ${this.logFile}`), { fatal: true });
      const res = await fetch(`${this.baseUrl}/api/health`);
      return res.ok;
    }, { timeoutMs: 30000, what: 'GET /api/health' });
  }

  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }, 8000);
    await done;
    clearTimeout(timer);
    this.proc = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  cleanup() {
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}
