// Taps a page's audio output and reports when each burst's onset leaves it,
// in Unix milliseconds: the onset's context time, mapped through
// AudioContext.getOutputTimestamp() (context time <-> performance time of
// the sample at the output), plus performance.timeOrigin. The Go side
// compares that with the burst's start on the same host clock.
//
// Shared by heard.js (JSMpeg's output) and run.mjs's heard-opus (the
// sidecar's own client.js, imported cross-origin into the sidecar's page),
// so both players are timed by the same code. onsets.js is loaded relative
// to this module, which works from either origin.
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

/**
 * Taps source (the node the player's sound leaves through) and, with
 * delayMs > 0, a second time behind a DelayNode of that length on the same
 * output: the proof that the whole chain (tap, clock mapping, matching on
 * the Go side) reports a known delay.
 * @param {AudioContext} ctx
 * @param {AudioNode} source
 * @param {{delayMs?: number, playing?: () => boolean, stats?: () => object}} [opts]
 *   playing: whether the player plays yet; stats: the player's own figures,
 *   reported with the first tap.
 */
export async function tapOutput(ctx, source, opts = {}) {
  await ctx.audioWorklet.addModule(new URL('onsets.js', import.meta.url));
  const taps = [await tap(ctx, source)];
  const delay = Number(opts.delayMs || 0) / 1000;
  if (delay > 0) {
    const d = new DelayNode(ctx, { delayTime: delay, maxDelayTime: delay });
    source.connect(d);
    taps.push(await tap(ctx, d));
  }
  const playing = opts.playing || (() => true);
  return {
    // Resolves once the player plays and the context has rendered a while.
    async ready(timeoutMs) {
      const end = performance.now() + timeoutMs;
      while (performance.now() < end) {
        if (ctx.state === 'running' && ctx.currentTime > 0.5 && playing()) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    },
    result: () => taps.map((t, i) => ({
      onsets: t.onsets.slice(), ...t.info(), ...(i === 0 && opts.stats ? { stats: opts.stats() } : {}),
    })),
  };
}
