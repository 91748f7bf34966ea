// Debian's chromium driven by playwright-core with fake audio devices.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // Fake audio must play without a user gesture in the test browser.
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * One persistent context per person, each with its own fresh profile
 * directory (--user-data-dir) in a temp dir, microphone allowed.
 */
export async function launchPerson(name) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `centralita-e2e-${name}-`));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    permissions: ['microphone'],
    viewport: { width: 1440, height: 900 },
    locale: 'es-ES',
  });
  // Content-Security-Policy violations of every page, as the page sees
  // them (the console must work under the server's policy).
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  const csp = [];
  page.on('console', (msg) => {
    if (process.env.E2E_ALL_CONSOLE || msg.type() === 'error' || msg.type() === 'warning') logs.push(`[${name}] ${msg.type()}: ${msg.text()}`);
    if (/Content Security Policy/i.test(msg.text())) csp.push(msg.text());
  });
  page.on('pageerror', (err) => logs.push(`[${name}] pageerror: ${err.message}`));
  return {
    name,
    context,
    page,
    logs,
    /** Console messages about the Content-Security-Policy (violations). */
    csp,
    async close() {
      await context.close().catch(() => undefined);
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
