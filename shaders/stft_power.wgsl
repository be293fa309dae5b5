// Long-term average power spectrum: Hann-windowed 4096-point frames, hop 2048,
// |X[k]|² summed per bin for k = 0 ..= 2048.
//
// frame_power: one workgroup per item (a run of up to FRAMES_PER_ITEM consecutive
// frames of one signal). Each frame is a real 4096-point FFT done as a 2048-point
// complex FFT (even samples in the real part, odd in the imaginary) in workgroup
// memory, radix-2 decimation in time, then split into the real signal's bins. The
// item's power sums go to one row of `partials`. Dispatch (items, 1, 1).
//
// reduce_rows: adds each signal's rows of `partials`, in row order, to its row of
// `sums` (so the result does not depend on scheduling). Dispatch (9, reduce items, 1).

const HALF: u32 = 2048u;
const HOP: u32 = 2048u;
const BINS: u32 = 2049u;
const LOG_HALF: u32 = 11u;
const GROUP: u32 = 256u;
// Length of the host's twiddle table (e^(-2πik/TWIDDLE_LEN), k < TWIDDLE_LEN / 2).
const TWIDDLE_LEN: u32 = 32768u;

struct Item {
    // Where the item's first frame starts in `input`.
    in_off: u32,
    // Signal samples available from there (frames read zeros past it).
    avail: u32,
    frames: u32,
    // Row of `partials` to write.
    row: u32,
}

struct ReduceItem {
    first_row: u32,
    rows: u32,
    // Row of `sums` (the signal's index in the batch).
    signal: u32,
    _pad: u32,
}

// The periodic Hann window, 4096 values, computed on the host in f64.
@group(0) @binding(0) var<storage, read> window: array<f32>;
@group(0) @binding(1) var<storage, read> twiddles: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> items: array<Item>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read> reduce_items: array<ReduceItem>;
@group(0) @binding(6) var<storage, read_write> sums: array<f32>;

var<workgroup> z: array<vec2<f32>, 2048>;

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// Sample `s` of the item (counted from its first frame's start) times window value `w`.
fn windowed(item: Item, s: u32, w: u32) -> f32 {
    if s < item.avail {
        return input[item.in_off + s] * window[w];
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn frame_power(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let item = items[wg.x];
    // Thread t owns bins t + 256 i (i < 8); thread 0 also owns the Nyquist bin.
    var power: array<f32, 8>;
    var nyquist = 0.0;
    for (var f = 0u; f < item.frames; f++) {
        let start = f * HOP;
        for (var i = 0u; i < 8u; i++) {
            let n = t + i * GROUP;
            let v = vec2<f32>(
                windowed(item, start + 2u * n, 2u * n),
                windowed(item, start + 2u * n + 1u, 2u * n + 1u),
            );
            z[reverseBits(n) >> (32u - LOG_HALF)] = v;
        }
        workgroupBarrier();
        for (var stage = 0u; stage < LOG_HALF; stage++) {
            let span = 1u << stage;
            let stride = TWIDDLE_LEN >> (stage + 1u);
            for (var i = 0u; i < 4u; i++) {
                let j = t + i * GROUP;
                let pos = j & (span - 1u);
                let i0 = ((j >> stage) << (stage + 1u)) + pos;
                let i1 = i0 + span;
                let a = z[i0];
                let b = cmul(z[i1], twiddles[pos * stride]);
                z[i0] = a + b;
                z[i1] = a - b;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 8u; i++) {
            let k = t + i * GROUP;
            let zk = z[k];
            let zc = z[(HALF - k) & (HALF - 1u)];
            let zc_conj = vec2<f32>(zc.x, -zc.y);
            // Even and odd samples' spectra, then X[k] = E[k] + e^(-2πik/4096) O[k].
            let even = 0.5 * (zk + zc_conj);
            let d = 0.5 * (zk - zc_conj);
            let odd = vec2<f32>(d.y, -d.x);
            let x = even + cmul(odd, twiddles[k * (TWIDDLE_LEN / 4096u)]);
            power[i] += dot(x, x);
        }
        if t == 0u {
            let z0 = z[0];
            let x = z0.x - z0.y;
            nyquist += x * x;
        }
        workgroupBarrier();
    }
    let row = item.row * BINS;
    for (var i = 0u; i < 8u; i++) {
        partials[row + t + i * GROUP] = power[i];
    }
    if t == 0u {
        partials[row + HALF] = nyquist;
    }
}

@compute @workgroup_size(256)
fn reduce_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let bin = gid.x;
    if bin >= BINS {
        return;
    }
    let it = reduce_items[gid.y];
    var total = 0.0;
    for (var r = 0u; r < it.rows; r++) {
        total += partials[(it.first_row + r) * BINS + bin];
    }
    sums[it.signal * BINS + bin] += total;
}
