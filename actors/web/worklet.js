// The player's audio thread: a small jitter buffer between the decoder and the speakers.
//
// The page posts decoded 20 ms chunks ({type: "audio", pts, left, right}, planar
// Float32Arrays). Playback starts once `target` milliseconds are queued. When the
// queue runs dry the output is silence, the underrun is counted and the target grows
// by one step (up to `maxTargetMs`) before playback resumes. When more than
// `target + overflowMs` is queued the oldest whole chunks are dropped down to the
// target, so latency stays bounded. After a long stretch without underruns the
// target shrinks back one step towards `minTargetMs`.
//
// Every ~50 ms the processor posts {type: "stats", ...} with the queue depth, the
// timestamp of the next sample to play, played/dropped frame counts and the peak and
// RMS of what it played, and hands consumed chunk buffers back for reuse.

const MAX_CHUNKS = 512;
const MAX_RECYCLED = 64;
const FADE_FRAMES = 240;

class JitterBufferProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    const perMs = sampleRate / 1000;
    this.minTarget = Math.round((opts.minTargetMs ?? 60) * perMs);
    this.maxTarget = Math.round((opts.maxTargetMs ?? 300) * perMs);
    this.initialTarget = Math.min(this.maxTarget, Math.max(this.minTarget, Math.round((opts.targetMs ?? 80) * perMs)));
    this.target = this.initialTarget;
    this.step = Math.round((opts.growStepMs ?? 20) * perMs);
    this.overflow = Math.round((opts.overflowMs ?? 120) * perMs);
    this.shrinkAfter = Math.round((opts.shrinkAfterMs ?? 30000) * perMs);
    this.reportEvery = Math.round((opts.reportMs ?? 50) * perMs);

    // Ring of queued chunks, preallocated so queueing allocates nothing.
    this.slots = Array.from({ length: MAX_CHUNKS }, () => ({ left: null, right: null, pts: 0, offset: 0, fadeIn: false }));
    this.head = 0;
    this.count = 0;
    this.buffered = 0;

    this.priming = true;
    this.fadeNext = false;
    this.stableFrames = 0;
    this.sinceReport = 0;

    this.peak = [0, 0];
    this.sumSquares = [0, 0];
    this.recycled = [];
    this.resetCounters();

    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (!message || typeof message !== "object") return;
    switch (message.type) {
      case "audio":
        this.push(message);
        break;
      case "discontinuity":
        this.fadeNext = true;
        break;
      case "flush":
        this.flush();
        break;
      case "reset":
        this.flush();
        this.resetCounters();
        this.target = this.initialTarget;
        break;
      default:
        break;
    }
  }

  /** Empties the queue; playback starts again once the target is reached. */
  flush() {
    while (this.count > 0) this.dropHead();
    this.priming = true;
    this.fadeNext = true;
  }

  resetCounters() {
    this.playedFrames = 0;
    this.silentFrames = 0;
    this.droppedFrames = 0;
    this.underruns = 0;
    this.stableFrames = 0;
    this.peak[0] = 0;
    this.peak[1] = 0;
    this.sumSquares[0] = 0;
    this.sumSquares[1] = 0;
    this.levelFrames = 0;
  }

  push({ pts, left, right }) {
    if (!(left instanceof Float32Array) || left.length === 0) return;
    const r = right instanceof Float32Array && right.length === left.length ? right : left;
    if (this.count === MAX_CHUNKS) this.dropHead();
    const slot = this.slots[(this.head + this.count) % MAX_CHUNKS];
    slot.left = left;
    slot.right = r;
    slot.pts = Number(pts) || 0;
    slot.offset = 0;
    slot.fadeIn = this.fadeNext;
    this.fadeNext = false;
    this.count += 1;
    this.buffered += left.length;
  }

  dropHead() {
    const slot = this.slots[this.head];
    const remaining = slot.left.length - slot.offset;
    this.droppedFrames += remaining;
    this.buffered -= remaining;
    this.releaseHead();
  }

  releaseHead() {
    const slot = this.slots[this.head];
    if (this.recycled.length < MAX_RECYCLED) {
      this.recycled.push(slot.left);
      if (slot.right !== slot.left) this.recycled.push(slot.right);
    }
    slot.left = null;
    slot.right = null;
    this.head = (this.head + 1) % MAX_CHUNKS;
    this.count -= 1;
  }

  /** Drops whole chunks from the front while the queue is past the overflow mark. */
  trim() {
    if (this.buffered <= this.target + this.overflow) return;
    let dropped = false;
    while (this.count > 1) {
      const slot = this.slots[this.head];
      if (this.buffered - (slot.left.length - slot.offset) < this.target) break;
      this.dropHead();
      dropped = true;
    }
    if (dropped) this.slots[this.head].fadeIn = true;
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const left = out[0];
    if (!left) return true;
    const right = out.length > 1 ? out[1] : null;
    const frames = left.length;

    if (this.priming && this.buffered >= this.target) this.priming = false;
    let written = 0;
    if (!this.priming) {
      this.trim();
      written = this.copyOut(left, right, frames);
      if (written < frames) {
        this.underruns += 1;
        this.stableFrames = 0;
        this.target = Math.min(this.maxTarget, this.target + this.step);
        this.priming = true;
      } else {
        this.stableFrames += frames;
        if (this.stableFrames >= this.shrinkAfter && this.target > this.minTarget) {
          this.target = Math.max(this.minTarget, this.target - this.step);
          this.stableFrames = 0;
        }
      }
    }
    // Output buffers start zeroed, so whatever was not written is silence.
    this.playedFrames += written;
    this.silentFrames += frames - written;
    this.measure(left, right, frames);

    this.sinceReport += frames;
    if (this.sinceReport >= this.reportEvery) {
      this.report();
      this.sinceReport = 0;
    }
    return true;
  }

  copyOut(left, right, frames) {
    let written = 0;
    while (written < frames && this.count > 0) {
      const slot = this.slots[this.head];
      const { left: srcL, right: srcR, offset, fadeIn } = slot;
      const n = Math.min(frames - written, srcL.length - offset);
      for (let i = 0; i < n; i += 1) {
        let gain = 1;
        if (fadeIn && offset + i < FADE_FRAMES) gain = (offset + i) / FADE_FRAMES;
        left[written + i] = srcL[offset + i] * gain;
        if (right) right[written + i] = srcR[offset + i] * gain;
      }
      written += n;
      this.buffered -= n;
      slot.offset = offset + n;
      if (slot.offset >= srcL.length) this.releaseHead();
    }
    return written;
  }

  measure(left, right, frames) {
    for (let c = 0; c < 2; c += 1) {
      const data = c === 1 && right ? right : left;
      let peak = this.peak[c];
      let sum = this.sumSquares[c];
      for (let i = 0; i < frames; i += 1) {
        const v = data[i];
        const a = v < 0 ? -v : v;
        if (a > peak) peak = a;
        sum += v * v;
      }
      this.peak[c] = peak;
      this.sumSquares[c] = sum;
    }
    this.levelFrames += frames;
  }

  report() {
    const head = this.count > 0 ? this.slots[this.head] : null;
    const playPts = head ? head.pts + head.offset : null;
    const recycled = this.recycled;
    const frames = Math.max(1, this.levelFrames);
    this.port.postMessage(
      {
        type: "stats",
        playing: !this.priming,
        bufferedFrames: this.buffered,
        targetFrames: this.target,
        playedFrames: this.playedFrames,
        silentFrames: this.silentFrames,
        droppedFrames: this.droppedFrames,
        underruns: this.underruns,
        playPts,
        peak: [this.peak[0], this.peak[1]],
        rms: [Math.sqrt(this.sumSquares[0] / frames), Math.sqrt(this.sumSquares[1] / frames)],
        recycled,
      },
      recycled.map((array) => array.buffer),
    );
    this.recycled = [];
    this.peak[0] = 0;
    this.peak[1] = 0;
    this.sumSquares[0] = 0;
    this.sumSquares[1] = 0;
    this.levelFrames = 0;
  }
}

registerProcessor("sonicforge-jitter-buffer", JitterBufferProcessor);
