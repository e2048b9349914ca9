// Drives Debian's chromium through playwright-core for the end-to-end tests
// and prints one JSON object on stdout. The Go test owns everything else: the
// sidecar, the desktop container, the static file server and the verdicts.
//
//   node run.mjs speaker    --page URL --ws URL --seconds S --user-data-dir DIR
//   node run.mjs microphone --page URL --ws URL --seconds S --user-data-dir DIR --fake-audio WAV
//                [--context-rate HZ] [--undeclared]
//   node run.mjs heard      --page URL --ws URL [--delay-ms MS] --seconds S --user-data-dir DIR
//   node run.mjs heard-opus --page URL --client URL --ws URL [--delay-ms MS] --seconds S --user-data-dir DIR
//
// heard prints {"ready":true} on a line of its own once JSMpeg plays, then
// listens S seconds and prints the onsets it heard (sidecar-bench latency
// plays its bursts in between). heard-opus does the same with the sidecar's
// own web client: it opens the sidecar's page at --client (its speaker
// port, a secure context on loopback, so WebCodecs exists), plays --ws
// with connectSpeaker from that page's client.js (?codec=opus), and taps
// the client's output with taps.js from --page: the same tap as JSMpeg's.
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    page: { type: 'string' },
    ws: { type: 'string' },
    client: { type: 'string' },
    'delay-ms': { type: 'string' },
    seconds: { type: 'string', default: '3' },
    'user-data-dir': { type: 'string' },
    'fake-audio': { type: 'string' },
    'context-rate': { type: 'string' },
    // The page declares no format, as abcdesktop's client.
    undeclared: { type: 'boolean', default: false },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60' },
  },
});
const mode = positionals[0];
for (const name of ['page', 'ws', 'user-data-dir']) {
  if (!opt[name]) fail(`--${name} is required`);
}
if (!['speaker', 'microphone', 'heard', 'heard-opus'].includes(mode)) {
  fail(`mode ${JSON.stringify(mode)}: want speaker, microphone, heard or heard-opus`);
}
if (mode === 'microphone' && !opt['fake-audio']) fail('microphone needs --fake-audio');
if (mode === 'heard-opus' && !opt.client) fail('heard-opus needs --client');
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
  // The sidecar's page allows scripts of its own origin only; heard-opus
  // brings the tap from --page into it.
  bypassCSP: mode === 'heard-opus',
});
const logs = [];
let result;
try {
  context.setDefaultTimeout(timeoutMs);
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  if (mode === 'heard-opus') {
    await opusClient(page);
    result = await heard(page);
  } else {
    const url = new URL(`${mode}.html`, opt.page);
    url.searchParams.set('ws', opt.ws);
    if (opt['context-rate']) url.searchParams.set('rate', opt['context-rate']);
    if (opt['delay-ms']) url.searchParams.set('delay', opt['delay-ms']);
    if (opt.undeclared) url.searchParams.set('undeclared', '1');
    await page.goto(url.href);
    result = await ({ speaker, microphone, heard })[mode](page);
  }
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

// opusClient opens the sidecar's page (without autoplay=1 it starts
// nothing of its own) and sets window.heard to its client.js playing --ws
// with the tap on the client's output node.
async function opusClient(page) {
  await page.goto(opt.client);
  await page.evaluate(async ({ ws, delayMs, taps }) => {
    window.heard = (async () => {
      const { connectSpeaker } = await import(new URL('client.js', location.href).href);
      const { tapOutput } = await import(taps);
      const sp = connectSpeaker(ws, { codec: 'opus' });
      await sp.ready;
      if (sp.state === 'error') throw new Error(`client.js: ${sp.lastError}`);
      return tapOutput(sp.context, sp.output, {
        delayMs, playing: () => sp.state === 'playing', stats: () => sp.stats(),
      });
    })();
    await window.heard;
  }, { ws: opt.ws, delayMs: Number(opt['delay-ms'] || 0), taps: new URL('taps.js', opt.page).href });
}

async function heard(page) {
  const ready = await page.evaluate(async (ms) => (await window.heard).ready(ms), timeoutMs);
  if (!ready) throw new Error(`${mode === 'heard' ? 'JSMpeg' : 'the sidecar\'s client.js'} did not start playing`);
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
