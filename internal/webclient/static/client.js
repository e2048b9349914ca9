// pulse-sidecar's browser client, an ES module with no dependencies.
//
//   import { connectSpeaker, connectMicrophone, endpoints } from './client.js';
//   const ep = endpoints(location.href);
//   const speaker = connectSpeaker(ep.speaker, { token: ep.token, codec: 'opus' });
//   const mic = connectMicrophone(ep.microphone, { token: ep.token });
//   setInterval(() => console.log(speaker.state, speaker.stats(), mic.stats()), 1000);
//   speaker.close(); mic.close();
//
// The speaker websocket (?codec=opus) carries one Ogg page per message:
// first the stream's OpusHead and OpusTags pages, then one Opus frame per
// page. They are decoded with WebCodecs' AudioDecoder and played through an
// AudioWorklet jitter buffer (worklet.js). A new OpusHead (the encoder
// restarted) resets the decoder.
//
// The microphone websocket gets one Opus packet per message from WebCodecs'
// AudioEncoder (?format=opus), or, where WebCodecs is missing, float32 mono
// PCM with its rate declared (?format=float32le&rate=R&channels=1).
//
// WebCodecs, AudioWorklet and getUserMedia exist only in secure contexts:
// https pages, or pages from a loopback address.

const OPUS_RATE = 48000;

// How the websocket reconnects: the delay doubles from the first to the
// last, with some randomness so a restarted sidecar is not hit by every
// client at once; it starts over once a connection has carried audio.
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10000;

/**
 * What this browser and page offer, and why something is missing.
 * @returns {{secure: boolean, webcodecs: boolean, audioWorklet: boolean,
 *   microphone: boolean, reasons: string[]}}
 */
export function support() {
  const secure = globalThis.isSecureContext === true;
  const webcodecs = typeof globalThis.AudioDecoder === 'function' && typeof globalThis.AudioEncoder === 'function';
  const audioWorklet = typeof globalThis.AudioWorkletNode === 'function';
  const microphone = !!(globalThis.navigator && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  const reasons = [];
  if (!secure) {
    reasons.push('this page is not a secure context (https, or a loopback address): ' +
      'browsers offer WebCodecs, AudioWorklet and the microphone only there');
  } else {
    if (!webcodecs) {
      reasons.push('this browser has no WebCodecs audio (Chrome 94+, Firefox 130+, Safari 26+): ' +
        'the speaker cannot play Opus; the microphone sends PCM instead');
    }
    if (!audioWorklet) reasons.push('this browser has no AudioWorklet');
    if (!microphone) reasons.push('this browser offers no microphone capture (getUserMedia)');
  }
  return { secure, webcodecs, audioWorklet, microphone, reasons };
}

/**
 * Whether WebCodecs here can decode and encode Opus at 48 kHz mono.
 * @returns {Promise<{decode: boolean, encode: boolean}>}
 */
export async function opusSupport() {
  const cfg = { codec: 'opus', sampleRate: OPUS_RATE, numberOfChannels: 1 };
  const check = async (C, c) => {
    try {
      return typeof C === 'function' && (await C.isConfigSupported(c)).supported === true;
    } catch {
      return false;
    }
  };
  return {
    decode: await check(globalThis.AudioDecoder, cfg),
    encode: await check(globalThis.AudioEncoder, { ...cfg, bitrate: 32000 }),
  };
}

/**
 * The websocket URLs and token for a page at href: the speaker is the
 * page's own URL with ws/wss; the microphone is ?microphone=URL if given,
 * else port 29789 of the same host when the page came from port 29788,
 * else the sibling path ../microphone (abcdesktop's router maps /sound and
 * /microphone); the token is the page's jwt_token parameter.
 * @param {string} href
 * @returns {{speaker: string, microphone: string, token: string}}
 */
export function endpoints(href) {
  const page = new URL(href);
  const token = page.searchParams.get('jwt_token') || '';
  const speaker = toWebSocket(new URL(page.pathname, page));
  let mic;
  const given = page.searchParams.get('microphone');
  if (given) {
    mic = new URL(given, page);
  } else if (page.port === '29788') {
    mic = new URL('/', page);
    mic.port = '29789';
  } else {
    mic = new URL('../microphone', new URL(page.pathname, page));
  }
  return { speaker: speaker.href, microphone: toWebSocket(mic).href, token };
}

function toWebSocket(u) {
  if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol === 'http:') u.protocol = 'ws:';
  u.hash = '';
  return u;
}

function withQuery(url, params) {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u.href;
}

/**
 * Parses one Ogg page (RFC 3533). The CRC is not checked: the relay checked
 * it, and a websocket does not corrupt data.
 * @param {ArrayBuffer|Uint8Array} data
 */
export function parseOggPage(data) {
  const b = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (b.length < 27 || b[0] !== 0x4f || b[1] !== 0x67 || b[2] !== 0x67 || b[3] !== 0x53) {
    throw new Error('not an Ogg page');
  }
  if (b[4] !== 0) throw new Error(`Ogg version ${b[4]}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const flags = b[5];
  const nseg = b[26];
  if (b.length < 27 + nseg) throw new Error('Ogg page truncated in its segment table');
  const packets = [];
  let start = 27 + nseg;
  let size = 0;
  let lastComplete = true;
  for (let i = 0; i < nseg; i++) {
    const l = b[27 + i];
    size += l;
    if (l < 255 || i === nseg - 1) {
      if (start + size > b.length) throw new Error('Ogg page truncated in its body');
      packets.push(b.subarray(start, start + size));
      start += size;
      size = 0;
      if (l === 255) lastComplete = false;
    }
  }
  return {
    continued: (flags & 1) !== 0,
    bos: (flags & 2) !== 0,
    eos: (flags & 4) !== 0,
    granule: Number(dv.getBigInt64(6, true)), // -1: no packet ends here
    serial: dv.getUint32(14, true),
    sequence: dv.getUint32(18, true),
    packets, // the first continues a packet when continued; the last is unfinished unless lastComplete
    lastComplete,
  };
}

function startsWith(b, text) {
  if (b.length < text.length) return false;
  for (let i = 0; i < text.length; i++) if (b[i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * The duration of an Opus packet in samples at 48 kHz (RFC 6716 3.1), or 0
 * for a malformed one.
 * @param {Uint8Array} p
 */
export function opusPacketSamples(p) {
  if (!p.length) return 0;
  const toc = p[0];
  const config = toc >> 3;
  let frame;
  if (config < 12) frame = [480, 960, 1920, 2880][config & 3];
  else if (config < 16) frame = [480, 960][config & 1];
  else frame = [120, 240, 480, 960][config & 3];
  let frames = 1;
  if ((toc & 3) === 1 || (toc & 3) === 2) frames = 2;
  else if ((toc & 3) === 3) frames = p.length > 1 ? p[1] & 0x3f : 0;
  const n = frames * frame;
  return n > 5760 ? 0 : n;
}

// A small state holder with an onstate callback shared by both clients.
class Client {
  constructor(opts) {
    this._state = 'connecting';
    this._onstate = opts.onstate;
    this._closed = false;
    this._ws = null;
    this._retry = 0;
    this._timer = 0;
    this.lastError = '';
    this.errors = 0;
    this.reconnects = 0;
  }

  /** connecting | buffering | playing | blocked | open | reconnecting | closed | error */
  get state() { return this._state; }

  _set(state) {
    if (this._state === state || this._state === 'closed') return;
    this._state = state;
    if (this._onstate) {
      try { this._onstate(state, this); } catch (e) { console.error(e); }
    }
  }

  _error(msg, fatal) {
    this.errors++;
    this.lastError = String(msg && msg.message ? msg.message : msg);
    if (fatal) this._set('error');
  }

  _reconnectLater() {
    if (this._closed || this._state === 'error') return;
    this._set('reconnecting');
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** this._retry);
    this._retry = Math.min(this._retry + 1, 10);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => { this.reconnects++; this._connect(); }, base * (0.75 + Math.random() / 2));
  }

  _closeSocket() {
    clearTimeout(this._timer);
    if (this._ws) {
      this._ws.onclose = this._ws.onmessage = this._ws.onerror = this._ws.onopen = null;
      try { this._ws.close(); } catch { /* already closed */ }
      this._ws = null;
    }
  }
}

// resumeOnGesture resumes ctx at the page's next click or key press: the
// autoplay policy leaves a context created without one suspended. Whatever
// resumes it (that gesture, or any other activation letting an earlier
// resume() through), onResumed is called once.
function resumeOnGesture(ctx, onResumed) {
  const events = ['pointerdown', 'keydown', 'touchend'];
  const stop = () => {
    events.forEach((e) => document.removeEventListener(e, go, true));
    ctx.removeEventListener('statechange', changed);
  };
  const changed = () => {
    if (ctx.state === 'running') {
      stop();
      onResumed();
    }
  };
  const go = () => { ctx.resume().catch(() => {}); };
  events.forEach((e) => document.addEventListener(e, go, true));
  ctx.addEventListener('statechange', changed);
  return stop;
}

class Speaker extends Client {
  constructor(url, opts) {
    super(opts);
    this.url = url;
    this.token = opts.token || '';
    this.codec = opts.codec || 'opus';
    this.targetFrames = opts.targetFrames || 3;
    this.maxFrames = opts.maxFrames || 8;
    this._volume = opts.volume === undefined ? 1 : opts.volume;
    this.context = opts.context || null;
    this._ownContext = !opts.context;
    this.output = null; // the GainNode the sound leaves through
    this._decoder = null;
    this._head = null; // the current stream's OpusHead packet
    this._serial = -1;
    this._inTags = false;
    this._partial = null;
    this._arrivals = new Map(); // chunk timestamp (µs) -> arrival (performance.now())
    this._w = { depth: 0, frame: 480, underruns: 0, dropped: 0, rms: 0, peak: 0 };
    this.counts = { pages: 0, bytes: 0, decoded: 0, streams: 0, skipped: 0, badPages: 0 };
    this.latencyMs = null;
    this.ready = this._start().catch((e) => this._error(e, true));
  }

  set volume(v) {
    this._volume = v;
    if (this.output) this.output.gain.value = v;
  }

  get volume() { return this._volume; }

  async _start() {
    if (this.codec !== 'opus') {
      throw new Error(`codec ${this.codec}: this client plays opus; the MP2 stream is for JSMpeg`);
    }
    const sup = support();
    if (!sup.webcodecs || !sup.audioWorklet) throw new Error(sup.reasons.join('; ') || 'WebCodecs or AudioWorklet missing');
    if (!this.context) this.context = new AudioContext({ sampleRate: OPUS_RATE, latencyHint: 'interactive' });
    const ctx = this.context;
    if (ctx.sampleRate !== OPUS_RATE) throw new Error(`the AudioContext runs at ${ctx.sampleRate} Hz; the speaker needs ${OPUS_RATE}`);
    await ctx.audioWorklet.addModule(new URL('./worklet.js', import.meta.url));
    if (this._closed) return;
    this._node = new AudioWorkletNode(ctx, 'pulse-sidecar-player', {
      numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { targetFrames: this.targetFrames, maxFrames: this.maxFrames },
    });
    this._node.port.onmessage = (e) => this._fromWorklet(e.data);
    this.output = new GainNode(ctx, { gain: this._volume });
    this._node.connect(this.output).connect(ctx.destination);
    if (ctx.state !== 'running') {
      // resume() stays pending while autoplay is blocked; a gesture
      // resumes it.
      ctx.resume().catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
    if (ctx.state !== 'running') {
      this._set('blocked');
      this._stopGesture = resumeOnGesture(ctx, () => { if (this._ws) this._set('buffering'); });
    }
    this._connect();
  }

  /** Resumes a context the autoplay policy blocked; call it from a click. */
  resume() { return this.context ? this.context.resume() : Promise.resolve(); }

  _connect() {
    if (this._closed) return;
    this._closeSocket();
    const ws = new WebSocket(withQuery(this.url, { codec: this.codec, jwt_token: this.token }));
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    if (this._state !== 'blocked') this._set('connecting');
    ws.onopen = () => { if (this._state !== 'blocked') this._set('buffering'); };
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') return;
      this._page(new Uint8Array(e.data));
    };
    ws.onerror = () => this._error(`websocket ${this.url} failed`);
    ws.onclose = (e) => {
      this._ws = null;
      if (e.code !== 1000 && e.code !== 1005) this.lastError = `websocket closed: ${e.code} ${e.reason}`;
      // A stream restarts with its headers: until they come,
      // pages are of no use.
      this._serial = -1;
      this._reconnectLater();
    };
  }

  _page(b) {
    const now = performance.now();
    let p;
    try {
      p = parseOggPage(b);
    } catch (e) {
      this.counts.badPages++;
      this._error(e);
      return;
    }
    this.counts.pages++;
    this.counts.bytes += b.length;
    if (p.bos && p.packets.length && startsWith(p.packets[0], 'OpusHead')) {
      this._configure(p.packets[0], p.serial);
      return;
    }
    if (p.serial !== this._serial) {
      this.counts.skipped++;
      return;
    }
    if (this._retry) {
      // Audio again: the trouble that made it reconnect is over.
      this._retry = 0;
      this.lastError = '';
    }
    let pkts = p.packets;
    if (p.continued) {
      if (this._partial) pkts = [concat(this._partial, pkts[0]), ...pkts.slice(1)];
      else pkts = pkts.slice(1);
    }
    this._partial = null;
    if (!p.lastComplete && pkts.length) this._partial = pkts.pop().slice();
    if (this._inTags) {
      // The comment header: nothing to play. It ends with its
      // first complete packet.
      if (pkts.length) {
        this._inTags = false;
        pkts = pkts.slice(1);
      }
    }
    // The granule is the end of the last packet completed on the page;
    // earlier packets end before it by the following packets' lengths.
    let end = p.granule;
    for (let i = pkts.length - 1; i >= 0; i--) {
      const n = opusPacketSamples(pkts[i]);
      if (!n) continue;
      this._decode(pkts[i], end - n, n, now);
      end -= n;
    }
  }

  _configure(head, serial) {
    this._head = head.slice();
    this._serial = serial;
    this._inTags = true;
    this._partial = null;
    this._j = null; // media time starts over
    this.counts.streams++;
    const channels = head.length > 9 ? head[9] : 1;
    try {
      if (!this._decoder || this._decoder.state === 'closed') {
        this._decoder = new AudioDecoder({
          output: (ad) => this._decoded(ad),
          error: (e) => {
            this._error(e);
            // A closed decoder decodes nothing more; the
            // next OpusHead makes a new one.
            this._serial = -1;
          },
        });
      } else {
        this._decoder.reset();
      }
      this._decoder.configure({ codec: 'opus', sampleRate: OPUS_RATE, numberOfChannels: channels, description: this._head });
      this._channels = channels;
    } catch (e) {
      this._error(e);
      this._serial = -1;
    }
  }

  _decode(pkt, start, n, now) {
    const d = this._decoder;
    if (!d || d.state !== 'configured') return;
    if (this.context.state !== 'running') {
      // Blocked or suspended: nothing would play it.
      this.counts.skipped++;
      return;
    }
    if (d.decodeQueueSize > this.maxFrames * 2) {
      // The decoder is behind: what it would produce gets dropped
      // by the jitter buffer anyway.
      this._w.dropped++;
      return;
    }
    const ts = Math.round((start / OPUS_RATE) * 1e6);
    this._arrivals.set(ts, now);
    this._jitter(now, start);
    if (this._arrivals.size > 200) this._arrivals.delete(this._arrivals.keys().next().value);
    try {
      d.decode(new EncodedAudioChunk({ type: 'key', timestamp: ts, duration: Math.round((n / OPUS_RATE) * 1e6), data: pkt }));
    } catch (e) {
      this._error(e);
    }
  }

  // _jitter tracks how late pages arrive against their media time: the
  // spread between the earliest and the latest arrival over the last
  // second, which the jitter buffer has to cover.
  _jitter(now, start) {
    const late = now - (start / OPUS_RATE) * 1000;
    const j = this._j || (this._j = { since: now, lo: late, hi: late, spread: 0 });
    if (now - j.since > 1000 || late < j.lo - 1000) {
      j.spread = j.hi - j.lo;
      j.since = now;
      j.lo = j.hi = late;
    }
    j.lo = Math.min(j.lo, late);
    j.hi = Math.max(j.hi, late);
  }

  _decoded(ad) {
    try {
      const n = ad.numberOfFrames;
      const mono = new Float32Array(n);
      if (ad.numberOfChannels === 1) {
        ad.copyTo(mono, { planeIndex: 0, format: 'f32-planar' });
      } else {
        const plane = new Float32Array(n);
        for (let c = 0; c < ad.numberOfChannels; c++) {
          ad.copyTo(plane, { planeIndex: c, format: 'f32-planar' });
          for (let i = 0; i < n; i++) mono[i] += plane[i] / ad.numberOfChannels;
        }
      }
      this.counts.decoded++;
      if (this._node) this._node.port.postMessage({ type: 'audio', samples: mono, ts: ad.timestamp }, [mono.buffer]);
    } catch (e) {
      this._error(e);
    } finally {
      ad.close();
    }
  }

  _fromWorklet(m) {
    if (m.type !== 'stats') return;
    this._w = m;
    if (m.playing && this._state === 'buffering') this._set('playing');
    if (!m.playing && this._state === 'playing') this._set('buffering');
    // Latency from a page's arrival to its sound at the output: when the
    // frame began to play, in the context's clock, mapped to the page's
    // clock through the output timestamp (which includes the output
    // device's own latency).
    if (m.started && this._arrivals.has(m.started.ts) && this.context.getOutputTimestamp) {
      const o = this.context.getOutputTimestamp();
      if (o.performanceTime > 0) {
        const at = o.performanceTime + (m.started.time - o.contextTime) * 1000;
        this.latencyMs = at - this._arrivals.get(m.started.ts);
      }
    }
  }

  /** The speaker's figures now. */
  stats() {
    const w = this._w;
    const ctx = this.context;
    const frameMs = (w.frame / OPUS_RATE) * 1000;
    return {
      codec: this.codec,
      state: this._state,
      bufferMs: (w.depth / OPUS_RATE) * 1000,
      targetMs: this.targetFrames * frameMs,
      maxMs: this.maxFrames * frameMs,
      underruns: w.underruns,
      dropped: w.dropped,
      // Arrival to sound out, measured as above; until measured, the
      // jitter buffer and the context's own latency.
      latencyMs: this.latencyMs !== null ? this.latencyMs
        : (w.depth / OPUS_RATE) * 1000 + (ctx ? ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000 : 0),
      level: { rms: w.rms, peak: w.peak },
      // The spread of page arrival times against media time over the
      // last full second: what the jitter buffer had to absorb.
      jitterMs: this._j ? this._j.spread : 0,
      decoded: this.counts.decoded,
      pages: this.counts.pages,
      bytes: this.counts.bytes,
      streams: this.counts.streams,
      reconnects: this.reconnects,
      errors: this.errors,
      lastError: this.lastError,
      contextState: ctx ? ctx.state : 'none',
    };
  }

  /** Stops playing and releases everything; no reconnect. */
  close() {
    this._closed = true;
    this._closeSocket();
    if (this._stopGesture) this._stopGesture();
    if (this._decoder && this._decoder.state !== 'closed') this._decoder.close();
    if (this._node) this._node.disconnect();
    if (this.output) this.output.disconnect();
    if (this._ownContext && this.context && this.context.state !== 'closed') this.context.close();
    this._set('closed');
  }
}

function concat(a, b) {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

class Microphone extends Client {
  constructor(url, opts) {
    super(opts);
    this.url = url;
    this.token = opts.token || '';
    this.format = opts.format || 'auto'; // auto | opus | pcm
    this.bitrate = opts.bitrate || 32000;
    this.frameMs = opts.frameMs || 20;
    this.sampleRate = opts.sampleRate || 0; // of the AudioContext; 0: 48000 for Opus, the device's for PCM
    // Audio the socket could not send yet, beyond which new audio is
    // dropped: a microphone late by seconds is worse than a gap.
    this.maxBufferedMs = opts.maxBufferedMs || 300;
    this.constraints = {
      echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1,
      ...(opts.constraints || {}),
    };
    this.codec = '';
    this.reason = ''; // why PCM, when it is
    this.context = null;
    this._w = { rms: 0, peak: 0 };
    this.counts = { sent: 0, bytes: 0, dropped: 0, captured: 0 };
    this._frames = 0;
    this.ready = this._start().catch((e) => this._error(e, true));
  }

  async _start() {
    const sup = support();
    if (!sup.microphone || !sup.audioWorklet) throw new Error(sup.reasons.join('; ') || 'no microphone capture here');
    this.codec = 'pcm';
    if (this.format !== 'pcm') {
      const ok = sup.webcodecs && (await opusSupport()).encode;
      if (ok) this.codec = 'opus';
      else if (this.format === 'opus') throw new Error('this browser cannot encode Opus with WebCodecs');
      else this.reason = sup.webcodecs ? 'WebCodecs here does not encode Opus' : 'this browser has no WebCodecs';
    } else {
      this.reason = 'PCM was asked for';
    }
    this._stream = await navigator.mediaDevices.getUserMedia({ audio: this.constraints, video: false });
    if (this._closed) { this._stopTracks(); return; }
    // Opus encodes at 48 kHz whatever the input; a 48 kHz context saves
    // the encoder a resampling step. PCM keeps the device's rate unless
    // told otherwise (the rate is declared either way).
    const sampleRate = this.sampleRate || (this.codec === 'opus' ? OPUS_RATE : undefined);
    this.context = new AudioContext(sampleRate ? { sampleRate } : {});
    const ctx = this.context;
    await ctx.audioWorklet.addModule(new URL('./worklet.js', import.meta.url));
    if (this._closed) return;
    this.rate = ctx.sampleRate;
    this._node = new AudioWorkletNode(ctx, 'pulse-sidecar-capture', {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      channelCount: 1, channelCountMode: 'explicit', channelInterpretation: 'speakers',
      processorOptions: { batch: Math.round(ctx.sampleRate / 100) },
    });
    this._node.port.onmessage = (e) => this._fromWorklet(e.data);
    this._source = ctx.createMediaStreamSource(this._stream);
    // The capture node outputs silence; connecting it keeps the engine
    // pulling it.
    this._source.connect(this._node).connect(ctx.destination);
    if (this.codec === 'opus') {
      this._encoder = new AudioEncoder({
        output: (chunk) => this._encoded(chunk),
        error: (e) => this._error(e, true),
      });
      this._encoder.configure({
        codec: 'opus', sampleRate: ctx.sampleRate, numberOfChannels: 1, bitrate: this.bitrate,
        opus: { frameDuration: this.frameMs * 1000, application: 'voip' },
      });
    }
    if (ctx.state !== 'running') {
      ctx.resume().catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
    if (ctx.state !== 'running') {
      this._set('blocked');
      this._stopGesture = resumeOnGesture(ctx, () => { if (this._ws && this._ws.readyState === 1) this._set('open'); });
    }
    this._connect();
  }

  _connect() {
    if (this._closed) return;
    this._closeSocket();
    const q = this.codec === 'opus'
      ? { format: 'opus', rate: this.rate, jwt_token: this.token }
      : { format: 'float32le', rate: this.rate, channels: 1, jwt_token: this.token };
    const ws = new WebSocket(withQuery(this.url, q));
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    if (this._state !== 'blocked') this._set('connecting');
    ws.onopen = () => {
      this._retry = 0;
      this.lastError = '';
      if (this._state !== 'blocked') this._set('open');
    };
    ws.onerror = () => this._error(`websocket ${this.url} failed`);
    ws.onclose = (e) => {
      this._ws = null;
      if (e.code !== 1000 && e.code !== 1005) this.lastError = `websocket closed: ${e.code} ${e.reason}`;
      this._reconnectLater();
    };
  }

  _open() { return this._ws && this._ws.readyState === WebSocket.OPEN; }

  // _roomFor reports whether the socket can take more audio now.
  _roomFor() {
    const bytesPerMs = this.codec === 'opus' ? this.bitrate / 8000 : (this.rate * 4) / 1000;
    return this._ws.bufferedAmount < this.maxBufferedMs * bytesPerMs;
  }

  _fromWorklet(m) {
    if (m.type === 'stats') {
      this._w = m;
      return;
    }
    const samples = m.samples;
    this.counts.captured++;
    const ts = Math.round((this._frames / this.rate) * 1e6);
    this._frames += samples.length;
    if (!this._open() || !this._roomFor()) {
      this.counts.dropped++;
      return;
    }
    if (this.codec === 'pcm') {
      this._send(samples.buffer);
      return;
    }
    if (!this._encoder || this._encoder.state !== 'configured') return;
    if (this._encoder.encodeQueueSize > 10) {
      this.counts.dropped++;
      return;
    }
    const ad = new AudioData({
      format: 'f32-planar', sampleRate: this.rate, numberOfFrames: samples.length,
      numberOfChannels: 1, timestamp: ts, data: samples,
    });
    try {
      this._encoder.encode(ad);
    } catch (e) {
      this._error(e);
    } finally {
      ad.close();
    }
  }

  _encoded(chunk) {
    const b = new Uint8Array(chunk.byteLength);
    chunk.copyTo(b);
    if (this._open()) this._send(b);
    else this.counts.dropped++;
  }

  _send(data) {
    this._ws.send(data);
    this.counts.sent++;
    this.counts.bytes += data.byteLength;
  }

  /** The microphone's figures now. */
  stats() {
    const ctx = this.context;
    const ws = this._ws;
    const bytesPerMs = this.codec === 'opus' ? this.bitrate / 8000 : ((this.rate || 48000) * 4) / 1000;
    const bufferMs = ws ? ws.bufferedAmount / bytesPerMs : 0;
    return {
      codec: this.codec,
      state: this._state,
      reason: this.reason,
      rate: this.rate || 0,
      // Capture to the socket: the batch, the encoder's frame, the
      // context's own latency and what waits in the socket.
      latencyMs: 10 + (this.codec === 'opus' ? this.frameMs : 0) + (ctx ? (ctx.baseLatency || 0) * 1000 : 0) + bufferMs,
      bufferMs,
      level: { rms: this._w.rms, peak: this._w.peak },
      sent: this.counts.sent,
      bytes: this.counts.bytes,
      dropped: this.counts.dropped,
      reconnects: this.reconnects,
      errors: this.errors,
      lastError: this.lastError,
      contextState: ctx ? ctx.state : 'none',
    };
  }

  _stopTracks() {
    if (this._stream) this._stream.getTracks().forEach((t) => t.stop());
  }

  /** Stops capturing, flushes what the encoder holds, and closes. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    if (this._stopGesture) this._stopGesture();
    this._stopTracks();
    if (this._source) this._source.disconnect();
    if (this._node) this._node.disconnect();
    if (this._encoder && this._encoder.state === 'configured') {
      try { await this._encoder.flush(); } catch { /* closing anyway */ }
      this._encoder.close();
    }
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      // Let what was sent leave before closing.
      for (let i = 0; i < 50 && ws.bufferedAmount > 0; i++) await new Promise((r) => setTimeout(r, 20));
    }
    this._closeSocket();
    if (this.context && this.context.state !== 'closed') await this.context.close();
    this._set('closed');
  }
}

/**
 * Plays the speaker websocket at url.
 * @param {string} url ws:// or wss:// URL of the speaker (see endpoints)
 * @param {{token?: string, codec?: 'opus', volume?: number, targetFrames?: number,
 *   maxFrames?: number, context?: AudioContext, onstate?: (state: string) => void}} [opts]
 * @returns {{close(): void, stats(): object, readonly state: string, volume: number,
 *   resume(): Promise<void>, context: AudioContext, output: GainNode, ready: Promise<void>}}
 */
export function connectSpeaker(url, opts = {}) {
  return new Speaker(url, opts);
}

/**
 * Sends the microphone to the microphone websocket at url.
 * @param {string} url ws:// or wss:// URL of the microphone (see endpoints)
 * @param {{token?: string, constraints?: MediaTrackConstraints, format?: 'auto'|'opus'|'pcm',
 *   bitrate?: number, frameMs?: number, sampleRate?: number, maxBufferedMs?: number,
 *   onstate?: (state: string) => void}} [opts]
 * @returns {{close(): Promise<void>, stats(): object, readonly state: string,
 *   ready: Promise<void>}}
 */
export function connectMicrophone(url, opts = {}) {
  return new Microphone(url, opts);
}
