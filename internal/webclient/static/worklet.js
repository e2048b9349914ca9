// AudioWorklet processors of pulse-sidecar's web client (loaded by
// client.js with audioWorklet.addModule).
//
// pulse-sidecar-player is the speaker's jitter buffer: the main thread posts
// decoded frames ({type: 'audio', samples: Float32Array, ts}); it starts
// playing once targetFrames frames are queued, goes back to buffering when
// it runs dry (an underrun), and when more than maxFrames are queued it
// drops the oldest beyond that (counted), so latency never builds up
// behind a stall; a frame a second of what stayed queued above the target
// for a whole second goes too (counted), so it drains back after a burst.
//
// pulse-sidecar-capture is the microphone's tap: it posts its input in
// batches ({type: 'audio', samples, time}) and outputs silence.
//
// Both post {type: 'stats', ...} about every 50 ms with the level (RMS and
// peak) of what went through them.

class Level {
  constructor() { this.reset(); }
  reset() { this.sumsq = 0; this.n = 0; this.peak = 0; }
  add(x) {
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      this.sumsq += v * v;
      const a = v < 0 ? -v : v;
      if (a > this.peak) this.peak = a;
    }
    this.n += x.length;
  }
  take() {
    const r = { rms: this.n ? Math.sqrt(this.sumsq / this.n) : 0, peak: this.peak };
    this.reset();
    return r;
  }
}

class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.targetFrames = o.targetFrames || 3;
    this.maxFrames = Math.max(o.maxFrames || 8, this.targetFrames + 1);
    this.frame = 480; // samples per frame, learnt from what arrives
    this.queue = []; // {samples, ts}
    this.offset = 0; // samples of queue[0] already played
    this.queued = 0; // samples not yet played
    this.playing = false;
    this.underruns = 0;
    this.dropped = 0;
    this.played = 0;
    this.level = new Level();
    this.started = null; // {ts, time} of the latest frame that began to play
    this.sinceReport = 0;
    this.minDepth = Infinity; // the least queued while playing, this second
    this.sinceTrim = 0;
    this.port.onmessage = (e) => this.message(e.data);
  }

  dropOldest() {
    const c = this.queue.shift();
    this.queued -= c.samples.length - this.offset;
    this.offset = 0;
    this.dropped++;
  }

  message(m) {
    if (m.type === 'audio') {
      const s = m.samples;
      if (!s || !s.length) return;
      this.frame = s.length;
      this.queue.push({ samples: s, ts: m.ts });
      this.queued += s.length;
      if (this.queued > this.maxFrames * this.frame) {
        // Drop the oldest beyond the maximum: what is late is thrown
        // away, not played late. Only the excess goes, so a burst
        // after a stall costs the frames it must and no more.
        while (this.queue.length > 1 && this.queued > this.maxFrames * this.frame) this.dropOldest();
      }
    } else if (m.type === 'config') {
      if (m.targetFrames) this.targetFrames = m.targetFrames;
      if (m.maxFrames) this.maxFrames = Math.max(m.maxFrames, this.targetFrames + 1);
    } else if (m.type === 'flush') {
      this.queue = [];
      this.queued = 0;
      this.offset = 0;
      this.playing = false;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!out) return true;
    if (!this.playing && this.queued >= this.targetFrames * this.frame) this.playing = true;
    let i = 0;
    if (this.playing) {
      while (i < out.length) {
        if (this.queue.length === 0) {
          this.underruns++;
          this.playing = false;
          break;
        }
        const c = this.queue[0];
        if (this.offset === 0) this.started = { ts: c.ts, time: currentTime + i / sampleRate };
        const n = Math.min(out.length - i, c.samples.length - this.offset);
        out.set(c.samples.subarray(this.offset, this.offset + n), i);
        i += n;
        this.offset += n;
        this.queued -= n;
        if (this.offset === c.samples.length) {
          this.queue.shift();
          this.offset = 0;
        }
      }
    }
    out.fill(0, i);
    this.played += i;
    // A buffer that never fell below target + 1 frame for a whole second
    // holds latency no jitter needed: drop a frame of it, one a second,
    // so the delay a burst left behind drains back to the target.
    if (this.playing) this.minDepth = Math.min(this.minDepth, this.queued);
    this.sinceTrim += out.length;
    if (this.sinceTrim >= sampleRate) {
      if (this.playing && this.minDepth >= (this.targetFrames + 1) * this.frame && this.queue.length > 1) this.dropOldest();
      this.sinceTrim = 0;
      this.minDepth = Infinity;
    }
    // Several output channels (a context that upmixed): same signal.
    for (let ch = 1; ch < outputs[0].length; ch++) outputs[0][ch].set(out);
    this.level.add(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 20) {
      this.sinceReport = 0;
      this.port.postMessage({
        type: 'stats', depth: this.queued, frame: this.frame, playing: this.playing,
        underruns: this.underruns, dropped: this.dropped, played: this.played,
        started: this.started, ...this.level.take(),
      });
    }
    return true;
  }
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.batch = o.batch || 480;
    this.buf = new Float32Array(this.batch);
    this.n = 0;
    this.level = new Level();
    this.sinceReport = 0;
  }

  process(inputs) {
    const input = inputs[0];
    const x = input && input[0];
    if (x) {
      let i = 0;
      while (i < x.length) {
        const n = Math.min(x.length - i, this.batch - this.n);
        this.buf.set(x.subarray(i, i + n), this.n);
        this.n += n;
        i += n;
        if (this.n === this.batch) {
          // time: when the batch's last sample was captured.
          this.port.postMessage({ type: 'audio', samples: this.buf, time: currentTime + i / sampleRate }, [this.buf.buffer]);
          this.buf = new Float32Array(this.batch);
          this.n = 0;
        }
      }
      this.level.add(x);
      this.sinceReport += x.length;
      if (this.sinceReport >= sampleRate / 20) {
        this.sinceReport = 0;
        this.port.postMessage({ type: 'stats', ...this.level.take() });
      }
    }
    return true;
  }
}

registerProcessor('pulse-sidecar-player', Player);
registerProcessor('pulse-sidecar-capture', Capture);
