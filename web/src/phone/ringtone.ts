// Ringtone and ringback generated with WebAudio: no audio files to download.

let ctx: AudioContext | null = null;
let timer: number | null = null;
let active: { osc: OscillatorNode[]; gain: GainNode } | null = null;

function context(): AudioContext | null {
  if (ctx) return ctx;
  try {
    ctx = new AudioContext();
  } catch {
    ctx = null;
  }
  return ctx;
}

function burst(freqs: number[], seconds: number, volume: number): void {
  const ac = context();
  if (!ac) return;
  if (ac.state === 'suspended') void ac.resume().catch(() => undefined);
  const gain = ac.createGain();
  const now = ac.currentTime;
  gain.gain.setValueAtTime(0, now);
  gain.gain.linearRampToValueAtTime(volume, now + 0.02);
  gain.gain.setValueAtTime(volume, now + seconds - 0.03);
  gain.gain.linearRampToValueAtTime(0, now + seconds);
  gain.connect(ac.destination);
  const osc = freqs.map((f) => {
    const o = ac.createOscillator();
    o.frequency.value = f;
    o.connect(gain);
    o.start(now);
    o.stop(now + seconds);
    return o;
  });
  active = { osc, gain };
}

function loop(pattern: () => void, periodMs: number): void {
  stopTone();
  pattern();
  timer = window.setInterval(pattern, periodMs);
}

/** Incoming call: two short rings every 3 s. */
export function startRingtone(): void {
  loop(() => {
    burst([440, 480], 0.4, 0.18);
    window.setTimeout(() => burst([440, 480], 0.4, 0.18), 600);
  }, 3000);
}

/** Outgoing call: the remote party is ringing (ringback), 2 s on 4 s off. */
export function startRingback(): void {
  loop(() => burst([440, 480], 2, 0.08), 6000);
}

export function stopTone(): void {
  if (timer !== null) {
    window.clearInterval(timer);
    timer = null;
  }
  if (active) {
    for (const o of active.osc) {
      try {
        o.stop();
      } catch {
        // Already stopped.
      }
    }
    active.gain.disconnect();
    active = null;
  }
}

/** Short confirmation beep for a DTMF key press (local feedback only). */
export function keyBeep(): void {
  burst([697, 1209], 0.08, 0.05);
}
