// Multiplies each slot's spectrum by its FIR's spectrum, scaled (1/n folds the
// inverse transform's normalization in). In place. Dispatch (n / 256, slots, 1).

struct Params {
    n: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

struct Slot {
    segment: u32,
    start: u32,
    pair: u32,
    fir: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> slots: array<Slot>;
@group(0) @binding(2) var<storage, read> filters: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> work: array<vec2<f32>>;

@compute @workgroup_size(256)
fn multiply(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    if m >= params.n {
        return;
    }
    let fir = slots[gid.y].fir;
    let h = filters[fir * params.n + m];
    let i = gid.y * params.n + m;
    let z = work[i];
    work[i] = vec2<f32>(z.x * h.x - z.y * h.y, z.x * h.y + z.y * h.x) * params.scale;
}
