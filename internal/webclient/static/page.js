// The built-in page: wires the buttons to client.js and shows the figures.
// Its parameters: jwt_token (passed to both websockets), microphone (the
// microphone websocket's URL, when not the default), autoplay=1.
// window.pulseSidecar exposes the live clients for debugging and tests.
import { connectSpeaker, connectMicrophone, endpoints, support, opusSupport } from './client.js';

const $ = (id) => document.getElementById(id);
const ep = endpoints(location.href);
const sup = support();
let speaker = null;
let mic = null;

window.pulseSidecar = {
  endpoints: ep,
  support: sup,
  get speaker() { return speaker; },
  get microphone() { return mic; },
};

const notices = [...sup.reasons];
function notice() { $('notice').textContent = notices.join(' '); }
notice();
if (!sup.webcodecs || !sup.audioWorklet) $('play').disabled = true;
if (!sup.microphone || !sup.audioWorklet) $('mic').disabled = true;
if (sup.webcodecs) {
  opusSupport().then((o) => {
    if (!o.decode) {
      notices.push('WebCodecs here cannot decode Opus: the speaker cannot play.');
      $('play').disabled = true;
    }
    if (!o.encode) notices.push('WebCodecs here cannot encode Opus: the microphone sends PCM.');
    notice();
  });
}

function play() {
  speaker = connectSpeaker(ep.speaker, { token: ep.token, codec: 'opus', volume: Number($('volume').value) });
  $('play').textContent = 'Stop';
}

$('play').addEventListener('click', () => {
  if (speaker) {
    speaker.close();
    speaker = null;
    $('play').textContent = 'Play';
    $('speaker-state').textContent = 'stopped';
    $('speaker-level').value = 0;
    return;
  }
  play();
});

// ?autoplay=1 plays at once where the browser lets a page play unasked,
// and from the first click or key press anywhere where it does not.
if (new URLSearchParams(location.search).get('autoplay') === '1' && !$('play').disabled) play();

$('volume').addEventListener('input', () => {
  if (speaker) speaker.volume = Number($('volume').value);
});

$('mic').addEventListener('click', () => {
  if (mic) {
    mic.close();
    mic = null;
    $('mic').textContent = 'Microphone on';
    $('mic-state').textContent = 'off';
    $('mic-level').value = 0;
    return;
  }
  mic = connectMicrophone(ep.microphone, { token: ep.token });
  $('mic').textContent = 'Microphone off';
});

// A meter reads dB: -60 dBFS and below empty, 0 dBFS full.
const meter = (peak) => Math.max(0, 1 + (20 * Math.log10(peak || 1e-6)) / 60);
const ms = (v) => (v === null || v === undefined || Number.isNaN(v) ? '-' : `${v.toFixed(1)} ms`);

setInterval(() => {
  if (speaker) {
    const s = speaker.stats();
    $('speaker-state').textContent = s.state + (s.lastError ? ` (${s.lastError})` : '');
    $('speaker-codec').textContent = s.codec;
    $('speaker-buffer').textContent = `${ms(s.bufferMs)} (target ${ms(s.targetMs)}, at most ${ms(s.maxMs)})`;
    $('speaker-underruns').textContent = s.underruns;
    $('speaker-dropped').textContent = s.dropped;
    $('speaker-latency').textContent = ms(s.latencyMs);
    $('speaker-level').value = meter(s.level.peak);
  }
  if (mic) {
    const s = mic.stats();
    $('mic-state').textContent = s.state + (s.lastError ? ` (${s.lastError})` : '');
    $('mic-codec').textContent = s.codec ? `${s.codec}${s.reason ? ` (${s.reason})` : ''}, ${s.rate} Hz` : '-';
    $('mic-sent').textContent = `${s.sent} messages, ${(s.bytes / 1024).toFixed(0)} KiB`;
    $('mic-dropped').textContent = s.dropped;
    $('mic-latency').textContent = ms(s.latencyMs);
    $('mic-level').value = meter(s.level.peak);
  }
}, 250);
