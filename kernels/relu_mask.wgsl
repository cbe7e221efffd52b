// The ReLU mask as bits: bit i % 32 of word i / 32 is set where values[i] > 0 (0, -0, negatives and
// NaN give 0), which is all the backward of a fused conv + ReLU reads of the forward's output
// (1/32 of its bytes). The bits of the last word past `len` are 0. Two forms of the same packing:
// `relu_mask` for GPUs, one invocation per value so that loads stay coalesced, a workgroup's 256
// bits meeting in workgroup memory and 8 of its invocations writing its 8 words; `relu_mask_words`
// for CPU adapters, where barriers are expensive: one invocation per word, no workgroup memory.
// The training forward no longer runs this pass: conv.wgsl's epilogue writes the same words
// (flag bit 6); it stays for activations already written and as the tests' second opinion.

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,    // values
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;

var<workgroup> staged: array<u32, 256>;

@compute @workgroup_size(256)
fn relu_mask(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    if (group >= params.groups) {
        return;
    }
    let i = group * 256u + lid;
    var bit = 0u;
    if (i < params.len) {
        if (values[i] > 0.0) {
            bit = 1u;
        }
    }
    staged[lid] = bit << (lid % 32u);
    workgroupBarrier();
    let word = group * 8u + lid;
    if (lid < 8u && word * 32u < params.len) {
        var packed = 0u;
        for (var j = 0u; j < 32u; j++) {
            packed |= staged[lid * 32u + j];
        }
        bits[word] = packed;
    }
}

@compute @workgroup_size(256)
fn relu_mask_words(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let word = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
    let first = word * 32u;
    if (first >= params.len) {
        return;
    }
    let count = min(params.len - first, 32u);
    var packed = 0u;
    for (var j = 0u; j < count; j++) {
        if (values[first + j] > 0.0) {
            packed |= 1u << j;
        }
    }
    bits[word] = packed;
}
