// The range of a buffer for mixed precision: range[slot] = the largest biased f32 exponent among
// |x[i]| (0 for all zeros, 255 where a value is inf or NaN). A product that rounds x to f16
// scales it by 2^(range - 127 - 14) first (its largest magnitude lands in [2^14, 2^15), far
// from f16's overflow at 65520 and its flush below 2^-24) and unscales after accumulating in
// f32 (`range_scale` in conv.wgsl and gram.wgsl). The exponent is monotonic in |x|, so an
// atomic max over exponents gives the exponent of the max. range_clear runs first.

struct Params {
    groups: u32, // logical workgroups (filled by the host); grid may be folded
    len: u32,    // values of x
    slot: u32,   // word of `range` to write
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> range: array<atomic<u32>>;

const THREADS: u32 = 256u;
const PER_THREAD: u32 = 16u;

var<workgroup> group_max: atomic<u32>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

@compute @workgroup_size(1)
fn range_clear() {
    atomicStore(&range[params.slot], 0u);
}

// Each workgroup covers THREADS * PER_THREAD consecutive values, invocations strided by THREADS.
@compute @workgroup_size(256)
fn range_max_exponent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (lid == 0u) {
        atomicStore(&group_max, 0u);
    }
    workgroupBarrier();
    var exponent = 0u;
    if (group < params.groups) {
        let base = group * THREADS * PER_THREAD + lid;
        for (var i = 0u; i < PER_THREAD; i++) {
            let index = base + i * THREADS;
            if (index < params.len) {
                exponent = max(exponent, (bitcast<u32>(x[index]) >> 23u) & 0xffu);
            }
        }
    }
    atomicMax(&group_max, exponent);
    workgroupBarrier();
    if (lid == 0u && group < params.groups) {
        atomicMax(&range[params.slot], atomicLoad(&group_max));
    }
}
