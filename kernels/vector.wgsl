// Vector ops for optimizers that keep their scalars on the GPU (L-BFGS): reductions (dot, sum of
// |x|, max of |x|) into block partials, y += a x, y = a x, y *= a, where the factor a is a uniform
// or a uniform times an entry of a small "scalars" buffer, and single-thread scalar arithmetic on
// that buffer. Sums use short accumulators (runs of 8, trees of 256) and are finished by reduce.wgsl.
//
// Bindings: 1 is what the entry writes (every entry), 2 the first vector it reads, 3 the second
// vector (dot) or the scalars buffer (*_scalar entries); each entry uses a prefix of them.

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,    // values in the vectors
    i0: u32,     // dst offset (partials), scalar index k (*_scalar), or dst scalar (scalar_*)
    i1: u32,     // scalar operand indices (scalar_fma, scalar_gate)
    i2: u32,
    i3: u32,
    alpha: f32,  // factor (partials: on each block result); scalar_gate: threshold
    beta: f32,   // scalar_fma: second factor
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;

const THREADS: u32 = 256u;
const ITEMS: u32 = 8u;

var<workgroup> tree: array<f32, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * THREADS + lid;
}

fn tree_sum(lid: u32, value: f32) -> f32 {
    tree[lid] = value;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            tree[lid] += tree[lid + width];
        }
        workgroupBarrier();
    }
    return tree[0];
}

// dst[i0 + g] = alpha * sum over block g of src * aux.
@compute @workgroup_size(256)
fn dot_partial(
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
            sum = fma(src[index], aux[index], sum);
        }
    }
    let total = tree_sum(lid, sum);
    if (lid == 0u) {
        dst[params.i0 + group] = total * params.alpha;
    }
}

// dst[i0 + g] = alpha * sum over block g of |src|.
@compute @workgroup_size(256)
fn abs_sum_partial(
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
            sum += abs(src[index]);
        }
    }
    let total = tree_sum(lid, sum);
    if (lid == 0u) {
        dst[params.i0 + group] = total * params.alpha;
    }
}

// dst[i0 + g] = max over block g of |src| (applied again to its own output, it finishes the max).
@compute @workgroup_size(256)
fn abs_max_partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let base = group * THREADS * ITEMS;
    var best = 0.0;
    for (var i = 0u; i < ITEMS; i++) {
        let index = base + i * THREADS + lid;
        if (index < params.len) {
            best = max(best, abs(src[index]));
        }
    }
    tree[lid] = best;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            tree[lid] = max(tree[lid], tree[lid + width]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        dst[params.i0 + group] = tree[0];
    }
}

// dst += alpha * src
@compute @workgroup_size(256)
fn axpy(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = fma(params.alpha, src[i], dst[i]);
}

// dst += (alpha * aux[i0]) * src
@compute @workgroup_size(256)
fn axpy_scalar(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = fma(params.alpha * aux[params.i0], src[i], dst[i]);
}

// dst = alpha * src
@compute @workgroup_size(256)
fn copy_scaled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = params.alpha * src[i];
}

// dst = (alpha * aux[i0]) * src
@compute @workgroup_size(256)
fn copy_scaled_scalar(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = (params.alpha * aux[params.i0]) * src[i];
}

// dst *= alpha
@compute @workgroup_size(256)
fn scale(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = params.alpha * dst[i];
}

// dst *= alpha * src[i0]: here binding 2 is the scalars buffer (this entry reads no vector).
@compute @workgroup_size(256)
fn scale_scalar(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = (params.alpha * src[params.i0]) * dst[i];
}

// On the scalars buffer (binding 1), one thread: s[i0] = alpha * s[i1] + beta * s[i2] * s[i3].
@compute @workgroup_size(1)
fn scalar_fma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (group_index(wid, nwg) >= params.groups) {
        return;
    }
    dst[params.i0] = params.alpha * dst[params.i1] + params.beta * (dst[params.i2] * dst[params.i3]);
}

// On the scalars buffer, one thread: s[i0] = (s[i1] > alpha) ? 0 : s[i2].
@compute @workgroup_size(1)
fn scalar_gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (group_index(wid, nwg) >= params.groups) {
        return;
    }
    var value = dst[params.i2];
    if (dst[params.i1] > params.alpha) {
        value = 0.0;
    }
    dst[params.i0] = value;
}

// On the scalars buffer, one thread: s[i0] = 1 / (s[i1] + alpha).
@compute @workgroup_size(1)
fn scalar_reciprocal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (group_index(wid, nwg) >= params.groups) {
        return;
    }
    dst[params.i0] = 1.0 / (dst[params.i1] + params.alpha);
}
