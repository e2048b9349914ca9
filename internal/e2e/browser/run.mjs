// Drives Debian's chromium through playwright-core for the end-to-end tests
// and prints one JSON object on stdout. The Go test owns everything else: the
// sidecar, the desktop container, the static file server and the verdicts.
//
//   node run.mjs speaker    --page URL --ws URL --seconds S --user-data-dir DIR
//   node run.mjs microphone --page URL --ws URL --seconds S --user-data-dir DIR --fake-audio WAV
//                [--context-rate HZ]
//   node run.mjs heard      --page URL --ws URL [--delay-ms MS] --seconds S --user-data-dir DIR
//
// heard prints {"ready":true} on a line of its own once JSMpeg plays, then
// listens S seconds and prints the onsets it heard (sidecar-bench latency
// plays its bursts in between).
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    page: { type: 'string' },
    ws: { type: 'string' },
    'delay-ms': { type: 'string' },
    seconds: { type: 'string', default: '3' },
    'user-data-dir': { type: 'string' },
    'fake-audio': { type: 'string' },
    'context-rate': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60' },
  },
});
const mode = positionals[0];
for (const name of ['page', 'ws', 'user-data-dir']) {
  if (!opt[name]) fail(`--${name} is required`);
}
if (!['speaker', 'microphone', 'heard'].includes(mode)) fail(`mode ${JSON.stringify(mode)}: want speaker, microphone or heard`);
if (mode === 'microphone' && !opt['fake-audio']) fail('microphone needs --fake-audio');
const seconds = Number(opt.seconds);
const timeoutMs = Number(opt.timeout) * 1000;

// Without these Debian's chromium keeps calling home, which a sandboxed CI
// machine turns into long stalls.
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];
if (mode === 'microphone') {
  args.push('--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${opt['fake-audio']}`);
}

function fail(msg) {
  process.stderr.write(`run.mjs: ${msg}\n`);
  process.exit(2);
}

const context = await chromium.launchPersistentContext(opt['user-data-dir'], {
  executablePath: opt.chromium, headless: true, args, timeout: timeoutMs,
  ignoreDefaultArgs: ['--mute-audio'],
});
const logs = [];
let result;
try {
  context.setDefaultTimeout(timeoutMs);
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const url = new URL(`${mode}.html`, opt.page);
  url.searchParams.set('ws', opt.ws);
  if (opt['context-rate']) url.searchParams.set('rate', opt['context-rate']);
  if (opt['delay-ms']) url.searchParams.set('delay', opt['delay-ms']);
  await page.goto(url.href);
  result = await ({ speaker, microphone, heard })[mode](page);
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify({ mode, ...result, logs }) + '\n');

async function speaker(page) {
  return page.evaluate(async (s) => {
    const sp = await window.speaker;
    const samples = await sp.capture(s);
    // Base64 keeps a few hundred thousand floats cheap to hand over.
    const bytes = new Uint8Array(samples.buffer);
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return { sampleRate: sp.sampleRate, state: sp.state(), samplesF32LE: btoa(bin) };
  }, seconds);
}

async function heard(page) {
  const ready = await page.evaluate(async (ms) => (await window.heard).ready(ms), timeoutMs);
  if (!ready) throw new Error('JSMpeg did not start playing');
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return { players: await page.evaluate(async () => (await window.heard).result()) };
}

async function microphone(page) {
  return page.evaluate(async (s) => {
    const mic = await window.microphone;
    await new Promise((r) => setTimeout(r, s * 1000));
    const sent = mic.sent();
    await mic.stop();
    return { sampleRate: mic.sampleRate, messages: sent };
  }, seconds);
}
