// An AudioWorklet processor that finds the starts of tone bursts in its
// input, to the sample: a 128-sample quantum whose RMS rises above the
// threshold after at least 100 ms of quiet quanta holds an onset, placed at
// its first sample above the threshold. It posts the onset's frame on the
// context's clock; the main thread turns that into the time it is output.
const THRESHOLD = 0.05;

class OnsetsProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.quiet = 0;
    this.armed = false;
    this.rearm = Math.ceil(0.1 * sampleRate / 128);
    this.frames = 0;
  }
  process(inputs) {
    const x = inputs[0] && inputs[0][0];
    if (!x) return true;
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
    this.frames += x.length;
    if (Math.sqrt(sum / x.length) <= THRESHOLD) {
      if (++this.quiet >= this.rearm) this.armed = true;
      return true;
    }
    if (this.armed && this.quiet >= this.rearm) {
      let i = 0;
      while (i < x.length && Math.abs(x[i]) <= THRESHOLD) i++;
      this.port.postMessage({ frame: currentFrame + i });
    }
    this.quiet = 0;
    return true;
  }
}
registerProcessor('onsets', OnsetsProcessor);
