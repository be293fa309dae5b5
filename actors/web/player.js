// The station page at `/stations/{id}`.
//
// Where the browser has WebCodecs and AudioWorklet, the page opens the station's
// WebSocket, decodes each Opus packet with an `AudioDecoder` and plays the decoded
// audio through the jitter buffer in `worklet.js`. Elsewhere it falls back to an
// `<audio>` element on the plain Ogg/Opus stream. `?player=fallback` in the page's
// address forces the fallback.
//
// Wire format of a binary message: byte 0 version (1), byte 1 flags (bit 0:
// discontinuity), bytes 2-3 zero, bytes 4-11 the packet's first sample as a
// big-endian u64 count of 48 kHz samples, then the raw Opus packet.
import { clockLabel, fetchStation, registerServiceWorker, withListenerToken } from "/assets/shell.js";

const SAMPLE_RATE = 48_000;
const CHANNELS = 2;
const WIRE_VERSION = 1;
const WIRE_HEADER_BYTES = 12;
const FLAG_DISCONTINUITY = 0x01;
const DEFAULT_FRAME_SAMPLES = 960;
const DECODER_CONFIG = { codec: "opus", sampleRate: SAMPLE_RATE, numberOfChannels: CHANNELS };
const JITTER = { targetMs: 80, minTargetMs: 60, maxTargetMs: 300, growStepMs: 20, overflowMs: 120, reportMs: 50 };
// Decoded chunks over which `stats()` reports peak and RMS (25 x 20 ms = 500 ms).
const LEVEL_WINDOW = 25;
// Packets waiting in the decoder beyond which it is reset instead of fed.
const MAX_DECODE_QUEUE = 50;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15_000;
// A connection that delivers no packet for this long is dropped and opened again. The
// server says hello only once the station is on air, which may take a while at start.
const SILENCE_TIMEOUT_MS = 8_000;
const HELLO_TIMEOUT_MS = 30_000;
const STATION_REFRESH_MS = 10_000;
const STATUS_REFRESH_MS = 250;
const MAX_POOLED_BUFFERS = 128;
// The longest wait between two packets is reported over windows of this length.
const ARRIVAL_GAP_WINDOW_MS = 5_000;
// Packets up to this far behind the expected timestamp are a reconnect's pre-roll
// repeating audio already queued; further back means the station's clock restarted.
const MAX_OVERLAP_SAMPLES = 2 * SAMPLE_RATE;
const BITRATE_KEY = "sonicforge.bitrate";

/**
 * Parses one binary WebSocket message. Returns null for a message that is too short
 * or of another wire version.
 */
export function parsePacket(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength <= WIRE_HEADER_BYTES) return null;
  const view = new DataView(buffer);
  const version = view.getUint8(0);
  if (version !== WIRE_VERSION) return null;
  const flags = view.getUint8(1);
  const pts = Number(view.getBigUint64(4, false));
  return {
    flags,
    discontinuity: (flags & FLAG_DISCONTINUITY) !== 0,
    pts,
    payload: new Uint8Array(buffer, WIRE_HEADER_BYTES),
  };
}

/** Maps station sample timestamps to the server's wall clock, from a hello message. */
class StationClock {
  constructor({ pts, unix_ms: unixMs }) {
    this.pts = Number(pts);
    this.unixMs = Number(unixMs);
  }

  /** Milliseconds since the Unix epoch at which sample `pts` went on air. */
  onAirMs(pts) {
    return this.unixMs + ((pts - this.pts) * 1000) / SAMPLE_RATE;
  }
}

/** Peak and RMS over the last LEVEL_WINDOW decoded chunks. */
class LevelWindow {
  constructor(size) {
    this.peaks = new Float64Array(size);
    this.sums = new Float64Array(size);
    this.frames = new Float64Array(size);
    this.next = 0;
  }

  add(peak, sumSquares, frames) {
    this.peaks[this.next] = peak;
    this.sums[this.next] = sumSquares;
    this.frames[this.next] = frames;
    this.next = (this.next + 1) % this.peaks.length;
  }

  clear() {
    this.peaks.fill(0);
    this.sums.fill(0);
    this.frames.fill(0);
  }

  peak() {
    let peak = 0;
    for (const p of this.peaks) peak = Math.max(peak, p);
    return peak;
  }

  rms() {
    let sum = 0;
    let frames = 0;
    for (let i = 0; i < this.sums.length; i += 1) {
      sum += this.sums[i];
      frames += this.frames[i];
    }
    return frames > 0 ? Math.sqrt(sum / frames) : 0;
  }
}

function supportsWebCodecs() {
  return (
    window.isSecureContext &&
    typeof window.AudioDecoder === "function" &&
    typeof window.EncodedAudioChunk === "function" &&
    typeof window.AudioWorkletNode === "function" &&
    typeof window.AudioContext === "function"
  );
}

/** Plays one station; `window.sonicforgePlayer` is the instance on the page. */
export class Player extends EventTarget {
  constructor(stationId, { bitrate = null, audioElement, forceFallback = false } = {}) {
    super();
    this.stationId = stationId;
    this.bitrate = bitrate;
    this.audioElement = audioElement;
    this.forceFallback = forceFallback;
    this.state = "idle";
    this.mode = null;
    this.detail = "";
    this.wanted = false;

    this.context = null;
    this.node = null;
    this.decoder = null;
    this.socket = null;
    this.clock = null;
    this.frameSamples = DEFAULT_FRAME_SAMPLES;
    this.expectedPts = null;
    this.resetPending = false;
    this.reconnectTimer = null;
    this.reconnectAttempts = 0;
    this.lastPacketAt = 0;
    this.pool = [];
    this.levels = new LevelWindow(LEVEL_WINDOW);
    this.analyser = null;
    this.analyserData = null;
    this.fallbackPlayedMs = 0;
    this.nowPlaying = null;
    this.pendingNowPlaying = [];
    this.resetCounters();
  }

  resetCounters() {
    this.packets = 0;
    this.bytes = 0;
    this.duplicates = 0;
    this.badPackets = 0;
    this.discontinuities = 0;
    this.decodedFrames = 0;
    this.decodeErrors = 0;
    this.reconnects = 0;
    this.sampleRate = null;
    this.channels = null;
    this.arrivalLatencyMs = null;
    this.latencyMs = null;
    this.lastArrivalAt = null;
    this.gapWindowStart = 0;
    this.gapMaxMs = [0, 0];
    this.worklet = {
      playing: false,
      bufferedFrames: 0,
      targetFrames: 0,
      playedFrames: 0,
      droppedFrames: 0,
      underruns: 0,
      playPts: null,
      peak: [0, 0],
      rms: [0, 0],
    };
    this.levels.clear();
    this.fallbackPlayedMs = 0;
  }

  /** Everything the page (and its tests) know about playback right now. */
  stats() {
    const w = this.worklet;
    const fallback = this.mode === "fallback";
    const fallbackLevels = fallback ? this.analyserLevels() : null;
    return {
      state: this.state,
      mode: this.mode,
      station: this.stationId,
      bitrate: this.bitrate,
      decodedFrames: this.decodedFrames,
      sampleRate: this.sampleRate,
      channels: this.channels,
      peak: fallback ? fallbackLevels.peak : this.levels.peak(),
      rms: fallback ? fallbackLevels.rms : this.levels.rms(),
      playedMs: fallback ? this.fallbackPlayedMs + this.elementPlayedMs() : (w.playedFrames * 1000) / SAMPLE_RATE,
      underruns: w.underruns,
      discontinuities: this.discontinuities,
      latencyMs: this.latencyMs,
      arrivalLatencyMs: this.arrivalLatencyMs,
      arrivalGapMs: Math.max(this.gapMaxMs[0], this.gapMaxMs[1]),
      bufferMs: (w.bufferedFrames * 1000) / SAMPLE_RATE,
      targetBufferMs: (w.targetFrames * 1000) / SAMPLE_RATE,
      droppedMs: (w.droppedFrames * 1000) / SAMPLE_RATE,
      packets: this.packets,
      duplicatePackets: this.duplicates,
      badPackets: this.badPackets,
      bytes: this.bytes,
      decodeErrors: this.decodeErrors,
      reconnects: this.reconnects,
      nowPlaying: this.nowPlaying,
    };
  }

  /** Peak and RMS of what the speakers play now, for the meter. */
  outputLevels() {
    if (this.mode === "fallback") {
      const { peak, rms } = this.analyserLevels();
      return { peak: [peak, peak], rms: [rms, rms] };
    }
    return { peak: this.worklet.peak, rms: this.worklet.rms };
  }

  setState(state, detail = "") {
    this.state = state;
    this.detail = detail;
    this.dispatchEvent(new Event("change"));
  }

  /** Starts playback. Call from a user gesture so the browser lets audio start. */
  async start() {
    if (this.wanted) return;
    this.wanted = true;
    this.resetCounters();
    this.setState("connecting");
    const useWebCodecs = !this.forceFallback && supportsWebCodecs();
    // The context is created before any await, while the click still counts as a gesture.
    if (!this.context && typeof window.AudioContext === "function") {
      try {
        this.context = new AudioContext(useWebCodecs ? { sampleRate: SAMPLE_RATE, latencyHint: "interactive" } : {});
      } catch (error) {
        console.warn("no audio context", error);
      }
    }
    try {
      const webCodecs = useWebCodecs && (await this.prepareWebCodecs());
      // Stopped while the worklet was loading.
      if (!this.wanted) return;
      if (webCodecs) {
        this.mode = "webcodecs";
        this.node.port.postMessage({ type: "reset" });
        this.connect();
      } else {
        this.mode = "fallback";
        this.startFallback();
      }
      if (this.context && this.context.state === "suspended") await this.context.resume();
    } catch (error) {
      this.wanted = false;
      this.setState("error", error.message || String(error));
    }
    this.dispatchEvent(new Event("change"));
  }

  /** Stops playback and closes the connection. */
  stop() {
    this.wanted = false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.closeSocket(1000, "stopped");
    this.closeDecoder();
    if (this.node) this.node.port.postMessage({ type: "flush" });
    if (this.mode === "fallback") this.stopFallback();
    if (this.context && this.context.state === "running") this.context.suspend();
    this.latencyMs = null;
    this.arrivalLatencyMs = null;
    this.worklet.playing = false;
    this.worklet.bufferedFrames = 0;
    this.worklet.peak = [0, 0];
    this.worklet.rms = [0, 0];
    this.levels.clear();
    this.setState("stopped");
  }

  /** Switches rendition; a playing stream reconnects at the new bitrate. */
  setBitrate(kbps) {
    if (kbps === this.bitrate) return;
    this.bitrate = kbps;
    if (!this.wanted) return;
    if (this.mode === "webcodecs") {
      this.closeSocket(1000, "bitrate change");
      this.connect();
    } else if (this.mode === "fallback") {
      this.fallbackPlayedMs += this.elementPlayedMs();
      this.startFallback();
    }
  }

  // ---- WebCodecs path ---------------------------------------------------------

  async prepareWebCodecs() {
    if (!this.context || this.context.sampleRate !== SAMPLE_RATE) return false;
    const support = await AudioDecoder.isConfigSupported(DECODER_CONFIG).catch(() => null);
    if (!support || !support.supported) return false;
    if (!this.node) {
      await this.context.audioWorklet.addModule("/assets/worklet.js");
      this.node = new AudioWorkletNode(this.context, "sonicforge-jitter-buffer", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [CHANNELS],
        processorOptions: JITTER,
      });
      this.node.port.onmessage = (event) => this.onWorkletMessage(event.data);
      this.node.connect(this.context.destination);
    }
    return true;
  }

  socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.bitrate ? `?bitrate=${encodeURIComponent(this.bitrate)}` : "";
    return withListenerToken(`${scheme}//${location.host}/stations/${encodeURIComponent(this.stationId)}/ws${query}`);
  }

  connect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    let socket;
    try {
      socket = new WebSocket(this.socketUrl());
    } catch (error) {
      this.scheduleReconnect(error.message);
      return;
    }
    socket.binaryType = "arraybuffer";
    socket.helloReceived = false;
    this.socket = socket;
    this.lastPacketAt = performance.now();
    if (this.state !== "reconnecting") this.setState("connecting");
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      if (typeof event.data === "string") this.onText(socket, event.data);
      else this.onBinary(socket, event.data);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (!this.wanted) return;
      const reason = event.reason ? `closed: ${event.reason}` : `closed (code ${event.code})`;
      this.scheduleReconnect(reason);
    };
  }

  closeSocket(code, reason) {
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(code, reason);
  }

  scheduleReconnect(reason) {
    if (!this.wanted || this.reconnectTimer) return;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.reconnectAttempts);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.reconnectAttempts += 1;
    this.setState("reconnecting", `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.wanted) return;
      this.reconnects += 1;
      if (this.mode === "fallback") this.startFallback();
      else this.connect();
    }, delay);
  }

  onText(socket, text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.type === "hello") {
      socket.helloReceived = true;
      this.lastPacketAt = performance.now();
      this.lastArrivalAt = null;
      this.reconnectAttempts = 0;
      if (message.clock) this.clock = new StationClock(message.clock);
      if (Number.isInteger(message.frame_samples) && message.frame_samples > 0) {
        this.frameSamples = message.frame_samples;
      }
      if (Number.isInteger(message.bitrate)) this.bitrate = message.bitrate;
      // Every connection may come from a different encoder: start the decoder afresh.
      this.resetPending = true;
      this.pendingNowPlaying = [];
      if (message.now_playing) this.showNowPlaying(message.now_playing);
      this.setState("buffering");
      this.dispatchEvent(new Event("connected"));
    } else if (message.type === "now_playing" && message.now_playing) {
      // Shown when playback reaches the track's first sample, not when it arrives.
      this.pendingNowPlaying.push(message.now_playing);
    }
  }

  onBinary(socket, data) {
    if (!socket.helloReceived) return;
    const packet = parsePacket(data);
    if (!packet) {
      this.badPackets += 1;
      return;
    }
    this.packets += 1;
    this.bytes += data.byteLength;
    this.noteArrival(performance.now());
    if (this.clock) this.arrivalLatencyMs = Date.now() - this.clock.onAirMs(packet.pts);

    const { pts } = packet;
    // After a reconnect the pre-roll repeats packets already queued.
    const behind = this.expectedPts === null ? 0 : this.expectedPts - pts;
    if (behind > 0 && behind <= MAX_OVERLAP_SAMPLES && !packet.discontinuity) {
      this.duplicates += 1;
      return;
    }
    const gap = this.expectedPts !== null && pts !== this.expectedPts;
    if (packet.discontinuity || gap) {
      this.discontinuities += 1;
      this.resetPending = true;
      if (this.node) this.node.port.postMessage({ type: "discontinuity" });
    }
    this.expectedPts = pts + this.frameSamples;

    if (this.resetPending || !this.decoder || this.decoder.state === "closed") {
      this.resetDecoder();
      this.resetPending = false;
    }
    if (!this.decoder) return;
    if (this.decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      this.resetPending = true;
      return;
    }
    try {
      this.decoder.decode(
        new EncodedAudioChunk({ type: "key", timestamp: Math.round((pts * 1e6) / SAMPLE_RATE), data: packet.payload }),
      );
    } catch (error) {
      this.onDecoderError(error);
    }
  }

  /** Tracks the longest wait between packets over the current and previous window. */
  noteArrival(now) {
    if (now - this.gapWindowStart > ARRIVAL_GAP_WINDOW_MS) {
      this.gapMaxMs[0] = this.gapMaxMs[1];
      this.gapMaxMs[1] = 0;
      this.gapWindowStart = now;
    }
    if (this.lastArrivalAt !== null) this.gapMaxMs[1] = Math.max(this.gapMaxMs[1], now - this.lastArrivalAt);
    this.lastArrivalAt = now;
    this.lastPacketAt = now;
  }

  resetDecoder() {
    if (this.decoder && this.decoder.state !== "closed") {
      try {
        this.decoder.reset();
        this.decoder.configure(DECODER_CONFIG);
        return;
      } catch (error) {
        console.warn("decoder reset failed", error);
      }
    }
    try {
      const decoder = new AudioDecoder({
        output: (audio) => this.onDecoded(decoder, audio),
        error: (error) => this.onDecoderError(error, decoder),
      });
      decoder.configure(DECODER_CONFIG);
      this.decoder = decoder;
    } catch (error) {
      this.decoder = null;
      this.setState("error", `decoder: ${error.message}`);
    }
  }

  closeDecoder() {
    if (this.decoder && this.decoder.state !== "closed") {
      try {
        this.decoder.close();
      } catch {
        // Already closed by an error.
      }
    }
    this.decoder = null;
    this.expectedPts = null;
  }

  onDecoderError(error, decoder = this.decoder) {
    if (decoder !== this.decoder) return;
    this.decodeErrors += 1;
    this.resetPending = true;
    console.warn("decoder error", error);
  }

  takeBuffer(frames) {
    for (let i = this.pool.length - 1; i >= 0; i -= 1) {
      if (this.pool[i].length === frames) {
        const buffer = this.pool[i];
        this.pool[i] = this.pool[this.pool.length - 1];
        this.pool.pop();
        return buffer;
      }
    }
    return new Float32Array(frames);
  }

  onDecoded(decoder, audio) {
    try {
      if (decoder !== this.decoder || !this.node) return;
      const frames = audio.numberOfFrames;
      const channels = audio.numberOfChannels;
      this.sampleRate = audio.sampleRate;
      this.channels = channels;
      this.decodedFrames += 1;
      const left = this.takeBuffer(frames);
      audio.copyTo(left, { planeIndex: 0, format: "f32-planar" });
      let right = left;
      if (channels > 1) {
        right = this.takeBuffer(frames);
        audio.copyTo(right, { planeIndex: 1, format: "f32-planar" });
      }
      let peak = 0;
      let sum = 0;
      for (let i = 0; i < frames; i += 1) {
        const l = left[i];
        const r = right[i];
        peak = Math.max(peak, Math.abs(l), Math.abs(r));
        sum += (l * l + r * r) / 2;
      }
      this.levels.add(peak, sum, frames);
      const pts = Math.round((audio.timestamp * SAMPLE_RATE) / 1e6);
      const transfer = right === left ? [left.buffer] : [left.buffer, right.buffer];
      this.node.port.postMessage({ type: "audio", pts, left, right }, transfer);
    } finally {
      audio.close();
    }
  }

  onWorkletMessage(message) {
    if (!message || message.type !== "stats") return;
    for (const buffer of message.recycled || []) {
      if (this.pool.length < MAX_POOLED_BUFFERS) this.pool.push(buffer);
    }
    const w = this.worklet;
    w.playing = message.playing;
    w.bufferedFrames = message.bufferedFrames;
    w.targetFrames = message.targetFrames;
    w.playedFrames = message.playedFrames;
    w.droppedFrames = message.droppedFrames;
    w.underruns = message.underruns;
    w.playPts = message.playPts;
    w.peak = message.peak;
    w.rms = message.rms;
    if (!this.wanted) return;
    if (message.playPts !== null && this.clock) {
      const outputMs = ((this.context.outputLatency || 0) + (this.context.baseLatency || 0)) * 1000;
      this.latencyMs = Date.now() + outputMs - this.clock.onAirMs(message.playPts);
      this.promoteNowPlaying(message.playPts);
    }
    if (this.socket && this.socket.helloReceived) {
      const state = message.playing ? "playing" : "buffering";
      if (state !== this.state) this.setState(state);
    }
  }

  promoteNowPlaying(playPts) {
    let latest = null;
    while (this.pendingNowPlaying.length > 0 && this.pendingNowPlaying[0].started_pts <= playPts) {
      latest = this.pendingNowPlaying.shift();
    }
    if (latest) this.showNowPlaying(latest);
  }

  /** Checks that a connection still delivers audio; called a few times a second. */
  watch() {
    if (!this.wanted || this.mode !== "webcodecs" || !this.socket) return;
    const limit = this.socket.helloReceived ? SILENCE_TIMEOUT_MS : HELLO_TIMEOUT_MS;
    if (performance.now() - this.lastPacketAt > limit) {
      const socket = this.socket;
      this.socket = null;
      socket.close(4000, "no audio");
      this.scheduleReconnect("no audio from the station");
    }
  }

  // ---- Fallback path ----------------------------------------------------------

  streamUrl() {
    const query = this.bitrate ? `?bitrate=${encodeURIComponent(this.bitrate)}` : "";
    return withListenerToken(`/stations/${encodeURIComponent(this.stationId)}/stream.opus${query}`);
  }

  startFallback() {
    const audio = this.audioElement;
    if (!audio.dataset.wired) {
      audio.dataset.wired = "true";
      audio.addEventListener("playing", () => this.wanted && this.setState("playing"));
      audio.addEventListener("waiting", () => this.wanted && this.setState("buffering"));
      const retry = (why) => () => {
        if (!this.wanted) return;
        this.fallbackPlayedMs += this.elementPlayedMs();
        this.scheduleReconnect(why);
      };
      audio.addEventListener("error", retry("stream error"));
      audio.addEventListener("ended", retry("stream ended"));
      if (this.context && !this.analyser) {
        try {
          const source = this.context.createMediaElementSource(audio);
          this.analyser = this.context.createAnalyser();
          // About a third of a second of audio per reading.
          this.analyser.fftSize = 16384;
          this.analyserData = new Float32Array(this.analyser.fftSize);
          source.connect(this.analyser);
          this.analyser.connect(this.context.destination);
        } catch (error) {
          console.warn("no level meter for the fallback player", error);
        }
      }
    }
    audio.src = this.streamUrl();
    this.setState("connecting");
    audio.play().catch((error) => {
      if (this.wanted && error.name !== "AbortError") this.setState("error", error.message);
    });
  }

  stopFallback() {
    const audio = this.audioElement;
    this.fallbackPlayedMs += this.elementPlayedMs();
    audio.pause();
    audio.removeAttribute("src");
    audio.load();
  }

  elementPlayedMs() {
    const audio = this.audioElement;
    return audio && audio.src ? audio.currentTime * 1000 : 0;
  }

  analyserLevels() {
    if (!this.analyser || !this.wanted) return { peak: 0, rms: 0 };
    this.analyser.getFloatTimeDomainData(this.analyserData);
    let peak = 0;
    let sum = 0;
    for (const v of this.analyserData) {
      peak = Math.max(peak, Math.abs(v));
      sum += v * v;
    }
    return { peak, rms: Math.sqrt(sum / this.analyserData.length) };
  }

  // ---- Now playing ------------------------------------------------------------

  showNowPlaying(nowPlaying) {
    const same = this.nowPlaying && nowPlaying && this.nowPlaying.track_id === nowPlaying.track_id;
    this.nowPlaying = nowPlaying;
    if (!same) this.dispatchEvent(new Event("nowplaying"));
  }
}

// ---- The page -----------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function stationIdFromPath() {
  const parts = location.pathname.split("/").filter(Boolean);
  return parts[0] === "stations" && parts[1] ? decodeURIComponent(parts[1]) : "";
}

function chooseBitrate(renditions) {
  const saved = Number(localStorage.getItem(BITRATE_KEY));
  if (renditions.includes(saved)) return saved;
  return renditions.length > 0 ? Math.max(...renditions) : null;
}

function stateText(stats, detail) {
  switch (stats.state) {
    case "idle":
      return "Press play to listen.";
    case "connecting":
      return "Connecting…";
    case "buffering":
      return "Buffering…";
    case "playing":
      return stats.mode === "fallback" ? "Playing (compatibility mode)" : "Playing live";
    case "reconnecting":
      return `Reconnecting: ${detail}`;
    case "stopped":
      return "Stopped.";
    case "error":
      return `Playback failed: ${detail}`;
    default:
      return stats.state;
  }
}

const dbOf = (value) => (value > 0 ? 20 * Math.log10(value) : -Infinity);

/** Draws a stereo level meter: RMS bars with peak-hold ticks, -60..0 dBFS. */
class Meter {
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.shown = [0, 0];
    this.held = [0, 0];
    this.heldAt = [0, 0];
  }

  draw(levels, now) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (width === 0 || height === 0) return;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const g = this.context;
    g.clearRect(0, 0, width, height);
    const pad = 6 * ratio;
    const gap = 4 * ratio;
    const barHeight = (height - 2 * pad - gap) / 2;
    const span = width - 2 * pad;
    const toX = (value) => Math.max(0, Math.min(1, (dbOf(value) + 60) / 60)) * span;
    const gradient = g.createLinearGradient(pad, 0, pad + span, 0);
    gradient.addColorStop(0, "#3ad7f0");
    gradient.addColorStop(0.7, "#c86bfa");
    gradient.addColorStop(0.9, "#ff7a59");
    gradient.addColorStop(1, "#ff5d73");
    for (let c = 0; c < 2; c += 1) {
      const y = pad + c * (barHeight + gap);
      const target = toX(levels.rms[c] || 0);
      // Fast attack, slow release.
      this.shown[c] = target > this.shown[c] ? target : this.shown[c] * 0.85 + target * 0.15;
      g.fillStyle = "rgba(255,255,255,0.06)";
      g.fillRect(pad, y, span, barHeight);
      g.fillStyle = gradient;
      g.fillRect(pad, y, this.shown[c], barHeight);
      const peak = toX(levels.peak[c] || 0);
      if (peak >= this.held[c] || now - this.heldAt[c] > 1200) {
        this.held[c] = peak;
        this.heldAt[c] = now;
      }
      g.fillStyle = "#e8ecf6";
      g.fillRect(pad + Math.max(0, this.held[c] - 2 * ratio), y, 2 * ratio, barHeight);
    }
    g.fillStyle = "rgba(232,236,246,0.25)";
    for (const db of [-48, -36, -24, -12, -6]) {
      const x = pad + ((db + 60) / 60) * span;
      g.fillRect(x, pad, 1, height - 2 * pad);
    }
  }
}

function renderNowPlaying(player, station) {
  const now = player.nowPlaying;
  $("np-title").textContent = now ? now.title : "Warming up…";
  $("np-prompt").textContent = now ? `“${now.prompt}”` : "";
  $("np-genre").textContent = now && now.genre ? now.genre : "";
  $("np-bpm").textContent = now && now.bpm ? `${Math.round(now.bpm)} BPM` : "";
  $("np-key").textContent = now && now.key ? now.key : "";
  $("np-generator").textContent = now && now.generator ? now.generator : "";
  $("np-duration").textContent = now && now.duration_ms ? clockLabel(now.duration_ms) : "–:––";
  document.title = now ? `${now.title} · ${station.name || station.id} · SonicForge` : `${station.name || station.id} · SonicForge`;
  if ("mediaSession" in navigator && typeof window.MediaMetadata === "function" && now) {
    navigator.mediaSession.metadata = new MediaMetadata({
      title: now.title,
      artist: station.name || station.id,
      album: now.prompt,
      artwork: [
        { src: "/assets/icon-192.png", sizes: "192x192", type: "image/png" },
        { src: "/assets/icon-512.png", sizes: "512x512", type: "image/png" },
      ],
    });
  }
}

function renderProgress(player) {
  const now = player.nowPlaying;
  const playPts = player.worklet.playPts;
  if (!now || !now.duration_ms || playPts === null || player.mode !== "webcodecs" || !player.wanted) {
    $("np-elapsed").textContent = "–:––";
    $("np-bar").style.width = "0%";
    return;
  }
  const elapsed = Math.max(0, ((playPts - now.started_pts) * 1000) / SAMPLE_RATE);
  $("np-elapsed").textContent = clockLabel(Math.min(elapsed, now.duration_ms));
  $("np-bar").style.width = `${Math.min(100, (elapsed / now.duration_ms) * 100).toFixed(2)}%`;
}

function renderStation(station) {
  $("station-name").textContent = station.name || station.id;
  $("station-description").textContent = station.description || "";
  const onAir = $("on-air");
  onAir.textContent = station.on_air ? "On air" : "Off air";
  onAir.classList.toggle("live", Boolean(station.on_air));
  $("listeners").textContent = String(Number.isFinite(station.listeners) ? station.listeners : 0);
  $("renditions").textContent = (station.renditions || []).map((kbps) => `${kbps} kb/s`).join(", ") || "–";
  const items = (station.up_next || []).map((track) => {
    const li = document.createElement("li");
    const title = document.createElement("div");
    title.className = "track";
    title.textContent = track.title;
    const prompt = document.createElement("div");
    prompt.className = "prompt";
    prompt.textContent = track.prompt;
    li.append(title, prompt);
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "prompt";
    li.textContent = "Nothing queued yet.";
    items.push(li);
  }
  $("up-next").replaceChildren(...items);
}

function renderStatus(player) {
  const stats = player.stats();
  const line = $("state-line");
  line.dataset.state = stats.state;
  $("state-text").textContent = stateText(stats, player.detail);
  const active = player.wanted;
  const fallback = stats.mode === "fallback";
  $("stat-buffer").textContent = active && !fallback ? `${Math.round(stats.bufferMs)} ms` : "–";
  $("stat-latency").textContent = active && stats.latencyMs !== null ? `${Math.round(stats.latencyMs)} ms` : "–";
  $("stat-packets").textContent = String(stats.packets);
  $("stat-discontinuities").textContent = String(stats.discontinuities);
  $("stat-underruns").textContent = String(stats.underruns);
  $("stat-played").textContent = clockLabel(stats.playedMs);
  const button = $("play");
  button.setAttribute("aria-pressed", String(active));
  $("play-label").textContent = active ? "Stop" : "Play";
  const mode = $("mode");
  mode.hidden = !stats.mode;
  mode.textContent = fallback ? "Compatibility" : "WebCodecs";
  mode.dataset.mode = stats.mode || "";
}

async function main() {
  registerServiceWorker();
  const stationId = stationIdFromPath();
  const params = new URLSearchParams(location.search);
  let station = { id: stationId, name: stationId, renditions: [] };
  const player = new Player(stationId, {
    audioElement: $("fallback-audio"),
    forceFallback: params.get("player") === "fallback",
  });
  window.sonicforgePlayer = player;

  const select = $("bitrate");
  const applyStation = (fresh) => {
    station = fresh;
    renderStation(station);
    const renditions = Array.isArray(station.renditions) ? station.renditions : [];
    if (select.options.length !== renditions.length) {
      select.replaceChildren(
        ...renditions
          .slice()
          .sort((a, b) => b - a)
          .map((kbps) => new Option(`${kbps} kb/s`, String(kbps))),
      );
    }
    if (player.bitrate === null) player.bitrate = chooseBitrate(renditions);
    select.value = String(player.bitrate);
    if (!player.wanted || player.mode === "fallback") {
      if (station.now_playing) player.showNowPlaying(station.now_playing);
      else renderNowPlaying(player, station);
    }
  };

  let loaded = false;
  const refresh = async () => {
    try {
      applyStation(await fetchStation(stationId));
      loaded = true;
    } catch (error) {
      if (error.status === 404) {
        $("station-name").textContent = "No such station";
        $("station-description").textContent = `There is no station “${stationId}”.`;
        $("play").disabled = true;
      } else if (!loaded) {
        $("station-description").textContent = `Could not load the station: ${error.message}`;
      }
    }
  };

  player.addEventListener("nowplaying", () => renderNowPlaying(player, station));
  player.addEventListener("change", () => renderStatus(player));
  // The listener count includes this page once its connection is up.
  player.addEventListener("connected", () => setTimeout(refresh, 500));
  $("play").addEventListener("click", () => {
    if (player.wanted) player.stop();
    else player.start();
  });
  select.addEventListener("change", () => {
    const kbps = Number(select.value);
    localStorage.setItem(BITRATE_KEY, String(kbps));
    player.setBitrate(kbps);
  });
  if ("mediaSession" in navigator) {
    navigator.mediaSession.setActionHandler("play", () => player.start());
    navigator.mediaSession.setActionHandler("pause", () => player.stop());
    navigator.mediaSession.setActionHandler("stop", () => player.stop());
  }

  const meter = new Meter($("meter"));
  const frame = (now) => {
    meter.draw(player.outputLevels(), now);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  setInterval(() => {
    player.watch();
    renderStatus(player);
    renderProgress(player);
  }, STATUS_REFRESH_MS);
  setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, STATION_REFRESH_MS);

  renderStatus(player);
  renderNowPlaying(player, station);
  await refresh();
}

main();
