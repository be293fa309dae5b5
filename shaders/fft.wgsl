// One radix-2 Stockham pass of a batch of complex FFTs in global memory.
//
// The host runs log2(n) passes, `half_span` = 1, 2, 4, ..., n/2, swapping `src` and
// `dst` between passes; the result comes out in natural order (no bit reversal).
// Every slot (one transform of `n` points) is independent: dispatch
// (n / 2 / 256, slots, 1) workgroups. `conj` is 1.0 for the forward transform
// (twiddles e^(-2πik/n)) and -1.0 for the inverse (unscaled: the caller divides by n).

struct Params {
    // Transform length, a power of two from 512 to the twiddle table's length.
    n: u32,
    // Length of the sub-transforms this pass merges.
    half_span: u32,
    // Stride into the twiddle table for sub-transforms of 2 * half_span points.
    twiddle_step: u32,
    // +1.0 forward, -1.0 inverse.
    conj: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// e^(-2πik/TWIDDLE_LEN) for k < TWIDDLE_LEN / 2, computed on the host in f64.
@group(0) @binding(1) var<storage, read> twiddles: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f32>>;

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

@compute @workgroup_size(256)
fn stockham_pass(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = params.n / 2u;
    let j = gid.x;
    if j >= half {
        return;
    }
    let base = gid.y * params.n;
    let span = params.half_span;
    let k = j & (span - 1u);
    var w = twiddles[k * params.twiddle_step];
    w.y = w.y * params.conj;
    let a = src[base + j];
    let b = cmul(src[base + j + half], w);
    let out = ((j - k) << 1u) + k;
    dst[base + out] = a + b;
    dst[base + out + span] = a - b;
}
