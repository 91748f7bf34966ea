// Chromium ↔ the media crate's WebRTC leg (str0m, ICE-lite, DTLS-SRTP): the
// browser offers its fake microphone to crates/media/examples/webrtc_echo,
// which answers with a WebRtcLeg and sends every RTP packet back. The page
// must receive audio packets (getStats inbound-rtp), with G.711 and with opus.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launchPerson } from './lib/browser.mjs';
import { repoDir } from './lib/server.mjs';

const bin = process.env.WEBRTC_ECHO_BIN ?? path.join(repoDir, 'target/debug/examples/webrtc_echo');
let child;
let url;
const output = [];

before(async () => {
  assert.ok(fs.existsSync(bin), `${bin} missing: cargo build -p media --examples`);
  child = spawn(bin, ['--max-secs', '120'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.on('data', (d) => output.push(String(d)));
  url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL from webrtc_echo: ${output.join('')}`)), 20000);
    let seen = '';
    child.stdout.on('data', (d) => {
      seen += String(d);
      output.push(String(d));
      const m = seen.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`webrtc_echo exited ${code}: ${output.join('')}`)));
  });
});

after(() => {
  if (child && child.exitCode === null) child.kill('SIGTERM');
});

async function inboundAudioPackets(page) {
  return page.evaluate(async () => {
    const stats = await window.pc.getStats();
    let packets = 0;
    let codec = null;
    const codecs = new Map();
    stats.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
    });
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        packets += s.packetsReceived ?? 0;
        codec = codecs.get(s.codecId) ?? codec;
      }
    });
    return { packets, codec, state: window.pc.connectionState };
  });
}

for (const [codecs, mime] of [
  ['g711', 'audio/PCMU'],
  ['opus', 'audio/opus'],
]) {
  test(`Chromium hears its own audio through a WebRtcLeg (${codecs} first)`, async () => {
    const person = await launchPerson(`echo-${codecs}`);
    try {
      await person.page.goto(url);
      const answer = await person.page.evaluate((c) => window.start(c), codecs);
      assert.ok(!answer.includes('0.0.0.0'), answer);
      assert.match(answer, /a=ice-lite/);
      let last = { packets: 0 };
      const deadline = Date.now() + 15000;
      while (Date.now() < deadline) {
        last = await inboundAudioPackets(person.page);
        if (last.packets >= 25) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(
        last.packets >= 25,
        `inbound audio packets: ${JSON.stringify(last)}\n${person.logs.join('\n')}\n${output.join('')}`,
      );
      assert.equal(last.state, 'connected');
      assert.equal(last.codec, mime, JSON.stringify(last));

      // RFC 4733 from Chrome's RTCDTMFSender reaches the leg as telephone-event.
      // Both clocks are negotiated and Chromium 156 picks telephone-event/8000,
      // next to opus too (also with 48 kHz listed first in the answer: tried).
      const before = output.join('').match(/telephone-event \d+/g)?.length ?? 0;
      await person.page.evaluate(() => window.pc.getSenders()[0].dtmf.insertDTMF('5#', 100, 70));
      const dtmfDeadline = Date.now() + 10000;
      let events = [];
      while (Date.now() < dtmfDeadline) {
        events = output.join('').match(/telephone-event \d+ at \d+ Hz/g) ?? [];
        if (events.length >= before + 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(events.slice(before), [
        'telephone-event 5 at 8000 Hz',
        'telephone-event 11 at 8000 Hz',
      ], output.join(''));
    } finally {
      await person.close();
    }
  });
}
