// Plays the speaker websocket with JSMpeg as the desktop's web client does
// (one more player on ?ws2= for the proof: the same stream behind a delaying
// proxy) and reports when each burst's onset leaves the page's audio output,
// in Unix milliseconds: the onset's context time, mapped through
// AudioContext.getOutputTimestamp() (context time <-> performance time of
// the sample at the output), plus performance.timeOrigin. The Go side
// compares that with paplay's start on the same host clock.
const params = new URLSearchParams(location.search);

async function tap(url) {
  const player = new JSMpeg.Player(url, { audio: true, video: false, pauseWhenHidden: false });
  const out = player.audioOut;
  if (!out || !out.gain) {
    throw new Error('JSMpeg created no WebAudio output');
  }
  const ctx = out.context;
  await ctx.audioWorklet.addModule('onsets.js');
  const node = new AudioWorkletNode(ctx, 'onsets');
  out.gain.connect(node);
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
    ctx, onsets,
    info: () => ({ sampleRate: ctx.sampleRate, state: ctx.state, baseLatency: ctx.baseLatency,
      outputLatency: ctx.outputLatency, mapped }),
  };
}

window.heard = (async () => {
  const taps = [await tap(params.get('ws'))];
  if (params.get('ws2')) taps.push(await tap(params.get('ws2')));
  return {
    // Resolves once every context runs and has rendered a while.
    async ready(timeoutMs) {
      const end = performance.now() + timeoutMs;
      while (performance.now() < end) {
        if (taps.every((t) => t.ctx.state === 'running' && t.ctx.currentTime > 0.5)) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    },
    result: () => taps.map((t) => ({ onsets: t.onsets.slice(), ...t.info() })),
  };
})();
