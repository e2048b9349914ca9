// Drives Debian's chromium through playwright-core against a running
// sidecar for webclienttest.Run: the page served by the speaker port plays
// ?codec=opus through WebCodecs while its output is tapped, then its
// microphone (the fake capture device) sends Opus. A part given 0 seconds
// is left out. It prints "tap" when the Go test should play the tone, "mic"
// when the microphone starts sending, and one JSON object as its last line.
//
//   node page.mjs --playwright PATH/index.mjs --page URL --chromium PATH
//     --user-data-dir DIR --fake-audio WAV [--tap-seconds N] [--mic-seconds N]
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values: opt } = parseArgs({
  options: {
    playwright: { type: 'string' },
    page: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'user-data-dir': { type: 'string' },
    'fake-audio': { type: 'string' },
    'tap-seconds': { type: 'string', default: '6' },
    'mic-seconds': { type: 'string', default: '4' },
    timeout: { type: 'string', default: '90' },
  },
});
const { chromium } = await import(pathToFileURL(opt.playwright).href);
const timeoutMs = Number(opt.timeout) * 1000;
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  `--use-file-for-fake-audio-capture=${opt['fake-audio']}`,
];
const context = await chromium.launchPersistentContext(opt['user-data-dir'], {
  executablePath: opt.chromium, headless: true, args, timeout: timeoutMs,
  ignoreDefaultArgs: ['--mute-audio'],
});
const logs = [];
const result = {};
try {
  context.setDefaultTimeout(timeoutMs);
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.exposeFunction('signalTest', (what) => process.stdout.write(`${what}\n`));
  await page.goto(opt.page);
  await page.waitForFunction(() => window.pulseSidecar);
  result.support = await page.evaluate(() => window.pulseSidecar.support);

  if (Number(opt['tap-seconds']) > 0) result.speaker = await page.evaluate(async (tapSeconds) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const m = await import('./client.js');
    const ep = window.pulseSidecar.endpoints;
    const s = m.connectSpeaker(ep.speaker, { token: ep.token, codec: 'opus' });
    await s.ready;
    for (let i = 0; i < 400 && s.state !== 'playing'; i++) await sleep(50);
    const playing = s.state;
    const ctx = s.context;
    const tap = new AudioWorkletNode(ctx, 'pulse-sidecar-capture', { processorOptions: { batch: 480 } });
    const chunks = [];
    // Each batch is stamped with the performance clock when it reached
    // the tap: with the test's own clock for paplay's start, the onset
    // the page hears is measured on one machine clock.
    const stamps = [];
    tap.port.onmessage = (e) => {
      if (e.data.type === 'audio') {
        chunks.push(e.data.samples);
        stamps.push(performance.timeOrigin + performance.now());
      }
    };
    s.output.connect(tap);
    tap.connect(ctx.destination);
    await sleep(300);
    chunks.length = 0;
    stamps.length = 0;
    await window.signalTest('tap');
    await sleep(tapSeconds * 1000);
    tap.port.onmessage = null;
    const n = chunks.reduce((a, c) => a + c.length, 0);
    const all = new Float32Array(n);
    let off = 0;
    const ends = [];
    for (const c of chunks) { all.set(c, off); off += c.length; ends.push(off); }
    const bytes = new Uint8Array(all.buffer);
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    const stats = s.stats();
    s.close();
    return { playing, rate: ctx.sampleRate, samples: btoa(bin), ends, stamps, stats };
  }, Number(opt['tap-seconds']));

  if (Number(opt['mic-seconds']) > 0) result.microphone = await page.evaluate(async (micSeconds) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const m = await import('./client.js');
    const ep = window.pulseSidecar.endpoints;
    const mic = m.connectMicrophone(ep.microphone, {
      token: ep.token, format: 'opus',
      constraints: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    await mic.ready;
    for (let i = 0; i < 200 && mic.state !== 'open'; i++) await sleep(50);
    const state = mic.state;
    await window.signalTest('mic');
    await sleep(micSeconds * 1000);
    const stats = mic.stats();
    await mic.close();
    return { state, stats };
  }, Number(opt['mic-seconds']));
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify({ ...result, logs }) + '\n');
