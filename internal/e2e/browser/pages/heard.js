// Plays the speaker websocket with JSMpeg as the desktop's web client does
// and reports when each burst's onset leaves the page's audio output (see
// taps.js).
//
// ?delay=MS adds a second tap behind a DelayNode of MS on the same player.
// It is inserted after JSMpeg, because JSMpeg's own queue depends on how
// each connection's data happened to arrive, so a second player behind a
// delaying proxy differs by more than the proxy.
import { tapOutput } from './taps.js';

const params = new URLSearchParams(location.search);

window.heard = (async () => {
  const player = new JSMpeg.Player(params.get('ws'), { audio: true, video: false, pauseWhenHidden: false });
  const out = player.audioOut;
  if (!out || !out.gain) {
    throw new Error('JSMpeg created no WebAudio output');
  }
  return tapOutput(out.context, out.gain, { delayMs: params.get('delay') });
})();
