// An AudioWorklet processor that hands every 128-sample render quantum of its
// first input channel to the main thread, as the abcdesktop microphone client
// does. The speaker page uses the same processor to tap what JSMpeg decoded.
class FramesProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      // The engine reuses the input buffer: post a copy.
      this.port.postMessage(channel.slice(0));
    }
    return true;
  }
}
registerProcessor('frames', FramesProcessor);
