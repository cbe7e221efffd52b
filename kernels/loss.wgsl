// Squared-difference losses: content mean((A - B)^2) and per-layer style w * mean((G - S)^2) / (C H W)
// differ only in the scale the host passes. The forward produces partial sums over 2048-value
// blocks (per-thread runs of 8, then a tree in workgroup memory), finished by reduce.wgsl; the
// backward writes (or adds) scale * (A - B). The masked forms (flag 8) weigh each value by M
// (video's temporal term, M the flow's reliability): sums of M (A - B)^2 and scale * M (A - B).

struct Params {
    groups: u32,     // logical workgroups (filled by the host)
    len: u32,        // values in A and B
    dst_offset: u32, // forward: where block g's sum goes in dst
    flags: u32,      // 8: weighted by M (masked); 4 (backward): accumulates into dst
    scale: f32,      // forward: factor on each block sum; backward: factor on A - B
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;       // A (target features or Gram)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> rhs: array<f32>;       // B (content features or style Gram)
@group(0) @binding(4) var<storage, read> weight: array<f32>;    // M (masked forms; B again otherwise)

const THREADS: u32 = 256u;
const ITEMS: u32 = 8u;

var<workgroup> tree: array<f32, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

@compute @workgroup_size(256)
fn sq_diff_partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let masked = (params.flags & 8u) != 0u;
    let base = group * THREADS * ITEMS;
    var sum = 0.0;
    for (var i = 0u; i < ITEMS; i++) {
        let index = base + i * THREADS + lid;
        if (index < params.len) {
            let d = lhs[index] - rhs[index];
            var md = d;
            if (masked) {
                md = weight[index] * d;
            }
            sum = fma(md, d, sum);
        }
    }
    tree[lid] = sum;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            tree[lid] += tree[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        dst[params.dst_offset + group] = tree[0] * params.scale;
    }
}

@compute @workgroup_size(256)
fn sq_diff_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= params.len) {
        return;
    }
    var value = params.scale * (lhs[i] - rhs[i]);
    if ((params.flags & 8u) != 0u) {
        value *= weight[i];
    }
    if ((params.flags & 4u) != 0u) {
        value += dst[i];
    }
    dst[i] = value;
}
