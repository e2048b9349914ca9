// The abcdesktop microphone client's shape: getUserMedia into an AudioContext
// at the device rate, an AudioWorklet posting 128 float32 samples per frame,
// each frame one binary websocket message. Unlike the original it declares
// the AudioContext's rate, so the sidecar can resample; with ?undeclared=1
// it declares nothing, exactly as the original, and the sidecar has to find
// the rate itself.
const params = new URLSearchParams(location.search);

window.microphone = (async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  // ?rate= stands in for a device whose rate differs from PulseAudio's;
  // without it the context runs at the device rate, as in the real client.
  const rate = Number(params.get('rate')) || undefined;
  const ctx = new AudioContext(rate ? { sampleRate: rate } : {});
  await ctx.resume();
  await ctx.audioWorklet.addModule('frames.js');
  const query = params.get('undeclared') === '1' ? '' : `?format=f32le&rate=${ctx.sampleRate}`;
  const ws = new WebSocket(`${params.get('ws')}/${query}`);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`websocket ${ws.url} failed`));
  });
  const node = new AudioWorkletNode(ctx, 'frames');
  let sent = 0;
  node.port.onmessage = (e) => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(e.data.buffer);
      sent++;
    }
  };
  ctx.createMediaStreamSource(stream).connect(node);
  node.connect(ctx.destination);
  return {
    sampleRate: ctx.sampleRate,
    sent: () => sent,
    stop() {
      ws.close();
      stream.getTracks().forEach((t) => t.stop());
      return ctx.close();
    },
  };
})();
