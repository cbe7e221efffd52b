// Reductions with short accumulators: every sum is a per-thread run of at most ITEMS values
// followed by a tree in workgroup memory, so no single f32 accumulator sees millions of values.

struct Params {
    groups: u32,     // logical workgroups (filled by the host)
    len: u32,        // sum_partials: values in src; sum_splits: values per split
    splits: u32,     // sum_splits: number of splits
    dst_offset: u32, // sum_partials: where the first result goes in dst
    scale: f32,      // sum_partials: every result is multiplied by it
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const THREADS: u32 = 256u;
const ITEMS: u32 = 8u;

var<workgroup> tree: array<f32, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

// dst[dst_offset + g] = scale * (sum of src[g * 2048 .. (g + 1) * 2048]).
@compute @workgroup_size(256)
fn sum_partials(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let base = group * THREADS * ITEMS;
    var sum = 0.0;
    for (var i = 0u; i < ITEMS; i++) {
        let index = base + i * THREADS + lid;
        if (index < params.len) {
            sum += src[index];
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

// dst[i] = sum over s of src[s * len + i], pairwise over the splits.
@compute @workgroup_size(256)
fn sum_splits(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= params.len) {
        return;
    }
    // Pairwise summation over the splits with an explicit stack of partial sums (binary counter).
    var stack: array<f32, 32>;
    var depth = 0u;
    for (var s = 0u; s < params.splits; s++) {
        var value = src[s * params.len + i];
        var count = s + 1u;
        // Merge while the lowest bits of the count are zero (like a binary carry).
        while ((count & 1u) == 0u && depth > 0u) {
            depth -= 1u;
            value += stack[depth];
            count >>= 1u;
        }
        stack[depth] = value;
        depth += 1u;
    }
    var total = 0.0;
    while (depth > 0u) {
        depth -= 1u;
        total += stack[depth];
    }
    dst[i] = total;
}
