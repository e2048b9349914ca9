// Drives Debian's chromium through playwright-core for webclient_test.go
// and prints one JSON object on stdout. The Go test serves the page and the
// test websockets and judges the results.
//
//   node drive.mjs --playwright PATH/index.mjs --page URL --chromium PATH
//     --user-data-dir DIR --fake-audio WAV
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values: opt } = parseArgs({
  options: {
    playwright: { type: 'string' },
    page: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'user-data-dir': { type: 'string' },
    'fake-audio': { type: 'string' },
    timeout: { type: 'string', default: '60' },
  },
});
for (const k of ['playwright', 'page', 'user-data-dir', 'fake-audio']) {
  if (!opt[k]) {
    process.stderr.write(`drive.mjs: --${k} is required\n`);
    process.exit(2);
  }
}
const { chromium } = await import(pathToFileURL(opt.playwright).href);
const timeoutMs = Number(opt.timeout) * 1000;

// As internal/e2e/browser/run.mjs, less its autoplay override: the page
// is blocked from playing until a click, as in a desktop browser. (Note
// that page.evaluate counts as a user gesture: the block is checked
// through the page's own autoplay and the DOM only.)
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
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
  // Autoplay: the page asked to play at once is blocked until a click
  // anywhere resumes it. Playwright's DOM reads count as user activation
  // too, which lets a pending resume() through: the first read waits
  // until the page has certainly shown its state.
  await page.goto(`${opt.page}&autoplay=1`);
  await new Promise((r) => setTimeout(r, 1500));
  const stateText = () => page.locator('#speaker-state').textContent();
  const waitState = async (want) => {
    let s = '';
    for (let i = 0; i < 200; i++) {
      s = await stateText();
      if (s.startsWith(want)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return s;
  };
  result.autoplay = { before: await waitState('blocked') };
  await page.mouse.click(2, 2);
  result.autoplay.after = await waitState('playing');
  await page.click('#play'); // stop

  await page.waitForFunction(() => window.pulseSidecar);
  result.page = await page.evaluate(async () => {
    const m = await import('./client.js');
    const hrefs = [
      'https://desk.example/sound/?jwt_token=abc',
      'https://desk.example/sound?jwt_token=abc',
      'http://10.1.2.3:29788/?jwt_token=t%2Bx',
      'http://127.0.0.1:8080/x/?microphone=ws://other:1/mic&jwt_token=q',
      'http://127.0.0.1:8080/x/?microphone=../mic',
    ];
    return {
      endpoints: window.pulseSidecar.endpoints,
      support: window.pulseSidecar.support,
      opus: await m.opusSupport(),
      table: hrefs.map((h) => ({ href: h, ...m.endpoints(h) })),
      notice: document.getElementById('notice').textContent,
      // opusPacketSamples of every TOC byte, alone and with a few second bytes.
      toc: Array.from({ length: 256 }, (_, t) => [[t], [t, 0], [t, 3], [t, 0x3f], [t, 0x85]]
        .map((p) => m.opusPacketSamples(new Uint8Array(p)))),
    };
  });

  // The page's own Play button.
  await page.click('#play');
  result.speaker = await page.evaluate(async () => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const s = window.pulseSidecar.speaker;
    await s.ready;
    for (let i = 0; i < 400 && s.state !== 'playing'; i++) await sleep(50);
    const playing = s.state;
    // Tap what the speaker outputs with the client's own capture
    // processor (its worklet module is loaded in this context).
    const ctx = s.context;
    const tap = new AudioWorkletNode(ctx, 'pulse-sidecar-capture', { processorOptions: { batch: 4800 } });
    const chunks = [];
    let keep = true;
    tap.port.onmessage = (e) => { if (keep && e.data.type === 'audio') chunks.push(e.data.samples); };
    s.output.connect(tap);
    tap.connect(ctx.destination);
    const take = async (seconds) => {
      chunks.length = 0;
      keep = true;
      await sleep(seconds * 1000);
      keep = false;
      const all = new Float32Array(chunks.length * 4800);
      chunks.forEach((c, i) => all.set(c, i * 4800));
      const bytes = new Uint8Array(all.buffer);
      let bin = '';
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return btoa(bin);
    };
    const first = await take(2);
    const statsFirst = s.stats();
    // The test server chains a second stream; the decoder resets on it.
    for (let i = 0; i < 200 && s.stats().streams < 2; i++) await sleep(50);
    await sleep(300);
    const second = await take(1);
    const statsSecond = s.stats();
    s.volume = 0.25;
    await sleep(200);
    const quiet = await take(0.5);
    const ui = {
      state: document.getElementById('speaker-state').textContent,
      codec: document.getElementById('speaker-codec').textContent,
      buffer: document.getElementById('speaker-buffer').textContent,
      latency: document.getElementById('speaker-latency').textContent,
      level: document.getElementById('speaker-level').value,
    };
    return { playing, rate: ctx.sampleRate, first, second, quiet, statsFirst, statsSecond, ui };
  });
  await page.click('#play'); // stop

  for (const format of ['opus', 'pcm']) {
    result[`mic_${format}`] = await page.evaluate(async (format) => {
      const m = await import('./client.js');
      const ep = window.pulseSidecar.endpoints;
      // PCM at 48 kHz, the usual device rate; headless Chromium's own is
      // 44100, which the page without WebCodecs below uses.
      const mic = m.connectMicrophone(ep.microphone, {
        token: ep.token, format, sampleRate: format === 'pcm' ? 48000 : undefined,
        constraints: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      await mic.ready;
      for (let i = 0; i < 100 && mic.state !== 'open'; i++) await new Promise((r) => setTimeout(r, 50));
      const state = mic.state;
      await new Promise((r) => setTimeout(r, 3000));
      await mic.close();
      return { state, stats: mic.stats() };
    }, format);
  }

  // A speaker that goes away comes back with growing delays.
  result.reconnect = await page.evaluate(async () => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const m = await import('./client.js');
    const url = new URL('flaky', window.pulseSidecar.endpoints.speaker).href;
    const s = m.connectSpeaker(url);
    await s.ready;
    const states = [];
    for (let i = 0; i < 300; i++) {
      if (states[states.length - 1] !== s.state) states.push(s.state);
      if (s.reconnects >= 3 && s.state === 'playing') break;
      await sleep(50);
    }
    const stats = s.stats();
    s.close();
    return { states, stats };
  });

  // Without WebCodecs (an old browser): the page says why, the speaker
  // cannot play, the microphone button sends PCM with its rate.
  const old = await context.newPage();
  old.on('console', (m) => logs.push(`nowebcodecs ${m.type()}: ${m.text()}`));
  await old.addInitScript(() => { delete window.AudioDecoder; delete window.AudioEncoder; });
  await old.goto(opt.page);
  await old.waitForFunction(() => window.pulseSidecar);
  await old.click('#mic');
  result.nowebcodecs = await old.evaluate(async () => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const mic = window.pulseSidecar.microphone;
    await mic.ready;
    for (let i = 0; i < 100 && mic.state !== 'open'; i++) await sleep(50);
    await sleep(1000);
    const state = mic.state;
    await mic.close();
    return {
      notice: document.getElementById('notice').textContent,
      playEnabled: !document.getElementById('play').disabled,
      mic: { state, stats: mic.stats() },
    };
  });
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify({ ...result, logs }) + '\n');
