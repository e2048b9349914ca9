// Plays the speaker websocket with JSMpeg as the desktop's web client does
// and reports when each burst's onset leaves the page's audio output, in
// Unix milliseconds: the onset's context time, mapped through
// AudioContext.getOutputTimestamp() (context time <-> performance time of
// the sample at the output), plus performance.timeOrigin. The Go side
// compares that with paplay's start on the same host clock.
//
// ?delay=MS adds a second tap behind a DelayNode of MS on the same player:
// the proof that the whole chain (tap, clock mapping, matching on the Go
// side) reports a known delay. It is inserted after JSMpeg, because JSMpeg's
// own queue depends on how each connection's data happened to arrive, so a
// second player behind a delaying proxy differs by more than the proxy.
const params = new URLSearchParams(location.search);

async function tap(ctx, source) {
  const node = new AudioWorkletNode(ctx, 'onsets');
  source.connect(node);
  // The tap outputs silence; connecting it keeps the engine pulling it.
  node.connect(ctx.destination);
  const onsets = [];
  let mapped = 'outputTimestamp';
  node.port.onmessage = (e) => {
    const t = e.data.frame / ctx.sampleRate;
    const ts = ctx.getOutputTimestamp();
    let perf;
    if (ts.performanceTime > 0) {
      perf = ts.performanceTime + (t - ts.contextTime) * 1000;
    } else {
      // No output timestamp yet (no device clock): the render time plus
      // the latencies the context reports.
      mapped = 'currentTime+latency';
      perf = performance.now() + (t - ctx.currentTime + (ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000;
    }
    onsets.push(performance.timeOrigin + perf);
  };
  return {
    onsets,
    info: () => ({ sampleRate: ctx.sampleRate, state: ctx.state, baseLatency: ctx.baseLatency,
      outputLatency: ctx.outputLatency, mapped }),
  };
}

window.heard = (async () => {
  const player = new JSMpeg.Player(params.get('ws'), { audio: true, video: false, pauseWhenHidden: false });
  const out = player.audioOut;
  if (!out || !out.gain) {
    throw new Error('JSMpeg created no WebAudio output');
  }
  const ctx = out.context;
  await ctx.audioWorklet.addModule('onsets.js');
  const taps = [await tap(ctx, out.gain)];
  const delay = Number(params.get('delay') || 0) / 1000;
  if (delay > 0) {
    const d = new DelayNode(ctx, { delayTime: delay, maxDelayTime: delay });
    out.gain.connect(d);
    taps.push(await tap(ctx, d));
  }
  return {
    // Resolves once the context runs and has rendered a while.
    async ready(timeoutMs) {
      const end = performance.now() + timeoutMs;
      while (performance.now() < end) {
        if (ctx.state === 'running' && ctx.currentTime > 0.5) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    },
    result: () => taps.map((t) => ({ onsets: t.onsets.slice(), ...t.info() })),
  };
})();
