// Overlap-save convolution: cuts signals into overlapping blocks for the FFT
// (gather_blocks), lays out each FIR for its own FFT (gather_taps), and writes the
// valid part of each filtered block back (scatter_blocks).
//
// A slot is one n-point complex transform holding two consecutive blocks of one
// signal, the first in the real part and the second in the imaginary part: the
// FIR is real, so both come out filtered in one transform. Block b of a signal
// produces outputs [start, start + block); its transform input is the signal from
// start - c to start - c + n, where c = (taps - 1) / 2, and the valid outputs are
// the transform's elements taps - 1 .. taps - 1 + block.
// Every entry point: dispatch (n / 256, slots or filters, 1).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// The part of one signal that a round uploads and fills.
struct Segment {
    // Samples in the whole signal.
    len: u32,
    // First signal sample held in `input`, and where it is.
    in_lo: u32,
    in_off: u32,
    // First and one-past-last signal sample this round writes, and where the first goes.
    out_lo: u32,
    out_hi: u32,
    out_off: u32,
    // FIR length (odd) and valid outputs per block (n - taps + 1).
    taps: u32,
    block: u32,
}

struct Slot {
    segment: u32,
    // First output sample of the slot's first block.
    start: u32,
    // 1 or 2 blocks.
    pair: u32,
    fir: u32,
}

struct Filter {
    taps_off: u32,
    taps_len: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> segments: array<Segment>;
@group(0) @binding(2) var<storage, read> slots: array<Slot>;
@group(0) @binding(3) var<storage, read> filters: array<Filter>;
@group(0) @binding(4) var<storage, read> input: array<f32>;
@group(0) @binding(5) var<storage, read> taps: array<f32>;
@group(0) @binding(6) var<storage, read_write> work: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> output: array<f32>;

// Sample `i` of the segment's signal; zero outside the signal.
fn sample(seg: Segment, i: i32) -> f32 {
    if i < 0 || u32(i) >= seg.len {
        return 0.0;
    }
    return input[seg.in_off + u32(i) - seg.in_lo];
}

@compute @workgroup_size(256)
fn gather_blocks(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    if m >= params.n {
        return;
    }
    let slot = slots[gid.y];
    let seg = segments[slot.segment];
    let c = i32((seg.taps - 1u) / 2u);
    let i = i32(slot.start) - c + i32(m);
    var v = vec2<f32>(sample(seg, i), 0.0);
    if slot.pair == 2u {
        v.y = sample(seg, i + i32(seg.block));
    }
    work[gid.y * params.n + m] = v;
}

// The transform input of FIR f: its taps reversed (the contract correlates
// input with taps), zero-padded to n.
@compute @workgroup_size(256)
fn gather_taps(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    if m >= params.n {
        return;
    }
    let f = filters[gid.y];
    var v = vec2<f32>(0.0, 0.0);
    if m < f.taps_len {
        v.x = taps[f.taps_off + f.taps_len - 1u - m];
    }
    work[gid.y * params.n + m] = v;
}

@compute @workgroup_size(256)
fn scatter_blocks(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    if m >= params.n {
        return;
    }
    let slot = slots[gid.y];
    let seg = segments[slot.segment];
    if m + 1u < seg.taps {
        return;
    }
    let i = m + 1u - seg.taps;
    if i >= seg.block {
        return;
    }
    let z = work[gid.y * params.n + m];
    let a = slot.start + i;
    if a < seg.out_hi {
        output[seg.out_off + a - seg.out_lo] = z.x;
    }
    let b = a + seg.block;
    if slot.pair == 2u && b < seg.out_hi {
        output[seg.out_off + b - seg.out_lo] = z.y;
    }
}
