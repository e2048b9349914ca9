// Plays the speaker websocket with JSMpeg exactly as the desktop's web client
// does, and taps the audio JSMpeg decoded (its WebAudio gain node) through an
// AudioWorklet. window.capture(seconds) resolves to the tapped samples.
const params = new URLSearchParams(location.search);
const url = params.get('ws');

window.speaker = (async () => {
  const player = new JSMpeg.Player(url, { audio: true, video: false, pauseWhenHidden: false });
  const out = player.audioOut;
  if (!out || !out.gain) {
    throw new Error('JSMpeg created no WebAudio output');
  }
  const ctx = out.context;
  await ctx.audioWorklet.addModule('frames.js');
  const tap = new AudioWorkletNode(ctx, 'frames');
  out.gain.connect(tap);
  // The tap outputs silence; connecting it keeps the engine pulling it.
  tap.connect(ctx.destination);
  const frames = [];
  let keep = false;
  tap.port.onmessage = (e) => { if (keep) frames.push(e.data); };
  return {
    sampleRate: ctx.sampleRate,
    state: () => ctx.state,
    async capture(seconds) {
      frames.length = 0;
      keep = true;
      await new Promise((r) => setTimeout(r, seconds * 1000));
      keep = false;
      const all = new Float32Array(frames.length * 128);
      frames.forEach((f, i) => all.set(f, i * 128));
      return all;
    },
  };
})();
