// Total variation as crowsonkb/style-transfer-pytorch's TVLoss ("L2 total variation loss, nine
// point stencil"), on a CHW image x with its edges replicated (F.pad(..., 'replicate')):
//   TV(x) = weight * 2 * (d1 / 3 + d2 / 3 + d3 / 12 + d4 / 12), each d a mean over its own grid,
//   with cl() clamping a row to [0, H-1] and a column to [0, W-1]:
//   d1 = mean_{c, i < H, j < W}   k_c (x[c, i, cl(j+1)] - x[c, i, j])^2         (horizontal)
//   d2 = mean_{c, i < H, j < W}   k_c (x[c, cl(i+1), j] - x[c, i, j])^2         (vertical)
//   d3 = mean_{c, i <= H, j <= W} k_c (x[c, cl(i), cl(j)] - x[c, cl(i-1), cl(j-1)])^2   (diagonal)
//   d4 = mean_{c, i <= H, j <= W} k_c (x[c, cl(i), cl(j-1)] - x[c, cl(i-1), cl(j)])^2   (anti-diagonal)
// k_c is a per-channel factor: the stored image is the network's normalized input and the loss is
// on RGB in [0, 1], so k_c = (1 / a_c)^2 with a_c the normalization's slope. The host folds weight,
// the 2, the 1/3 or 1/12 and the means' counts into w12 (d1, d2) and w34 (d3, d4).
//
// Every term is anchored at (c, i, j) on the (H+1) x (W+1) grid (d1, d2 only where i < H, j < W).
// The forward writes block partial sums (per-thread runs of 8, then a tree), finished by
// reduce.wgsl. The backward gathers: a pixel (y, x) is an end of a term only if the term's anchor
// is within one row and column of it (the clamps move an end by at most one), so each invocation
// visits the 3 x 3 anchors around its pixel for each of the four families.

struct Params {
    groups: u32,     // logical workgroups (filled by the host)
    channels: u32,
    height: u32,
    width: u32,
    dst_offset: u32, // forward: where block g's sum goes in dst
    flags: u32,      // backward: bit 2 accumulates into dst
    w12: f32,
    w34: f32,
    k: vec4<f32>,    // per channel (at most 4)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> image: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const THREADS: u32 = 256u;
const ITEMS: u32 = 8u;

var<workgroup> tree: array<f32, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

fn clamp_row(i: i32) -> i32 {
    return clamp(i, 0, i32(params.height) - 1);
}

fn clamp_col(j: i32) -> i32 {
    return clamp(j, 0, i32(params.width) - 1);
}

fn at(c: u32, p: vec2<i32>) -> f32 {
    return image[(c * params.height + u32(p.x)) * params.width + u32(p.y)];
}

// The two ends (a, b) of family f's term anchored at (i, j), as (row, column) pairs; the term is
// (x[a] - x[b])^2. Family 0: horizontal, 1: vertical, 2: diagonal, 3: anti-diagonal.
fn ends(f: u32, i: i32, j: i32) -> array<vec2<i32>, 2> {
    switch f {
        case 0u: {
            return array(vec2(i, clamp_col(j + 1)), vec2(i, j));
        }
        case 1u: {
            return array(vec2(clamp_row(i + 1), j), vec2(i, j));
        }
        case 2u: {
            return array(vec2(clamp_row(i), clamp_col(j)), vec2(clamp_row(i - 1), clamp_col(j - 1)));
        }
        default: {
            return array(vec2(clamp_row(i), clamp_col(j - 1)), vec2(clamp_row(i - 1), clamp_col(j)));
        }
    }
}

// Whether family f has a term anchored at (i, j).
fn anchored(f: u32, i: i32, j: i32) -> bool {
    let h = i32(params.height);
    let w = i32(params.width);
    if (f < 2u) {
        return i >= 0 && j >= 0 && i < h && j < w;
    }
    return i >= 0 && j >= 0 && i <= h && j <= w;
}

fn family_weight(f: u32) -> f32 {
    return select(params.w34, params.w12, f < 2u);
}

// The four families' weighted terms anchored at flat index n of the C x (H+1) x (W+1) grid.
fn terms(n: u32) -> f32 {
    let gw = params.width + 1u;
    let gh = params.height + 1u;
    let c = n / (gh * gw);
    let i = i32((n / gw) % gh);
    let j = i32(n % gw);
    var sum = 0.0;
    for (var f = 0u; f < 4u; f++) {
        if (anchored(f, i, j)) {
            let e = ends(f, i, j);
            let d = at(c, e[0]) - at(c, e[1]);
            sum += family_weight(f) * d * d;
        }
    }
    return params.k[min(c, 3u)] * sum;
}

@compute @workgroup_size(256)
fn tv_stencil_partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let len = params.channels * (params.height + 1u) * (params.width + 1u);
    let base = group * THREADS * ITEMS;
    var sum = 0.0;
    for (var i = 0u; i < ITEMS; i++) {
        let index = base + i * THREADS + lid;
        if (index < len) {
            sum += terms(index);
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
        dst[params.dst_offset + group] = tree[0];
    }
}

// dTV/dx[c, y, x] = sum over the terms with an end at (y, x) of k_c w_f 2 (x[a] - x[b]) (+ for
// the end a, - for the end b; a term whose two ends coincide is 0).
@compute @workgroup_size(256)
fn tv_stencil_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = group_index(wid, nwg) * THREADS + lid;
    let h = params.height;
    let w = params.width;
    if (n >= params.channels * h * w) {
        return;
    }
    let c = n / (h * w);
    let p = vec2(i32((n / w) % h), i32(n % w));
    var g = 0.0;
    for (var f = 0u; f < 4u; f++) {
        var family = 0.0;
        for (var di = -1; di <= 1; di++) {
            for (var dj = -1; dj <= 1; dj++) {
                let i = p.x + di;
                let j = p.y + dj;
                if (!anchored(f, i, j)) {
                    continue;
                }
                let e = ends(f, i, j);
                let d = at(c, e[0]) - at(c, e[1]);
                if (all(e[0] == p)) {
                    family += d;
                }
                if (all(e[1] == p)) {
                    family -= d;
                }
            }
        }
        g += family_weight(f) * family;
    }
    var value = 2.0 * params.k[min(c, 3u)] * g;
    if ((params.flags & 4u) != 0u) {
        value += dst[n];
    }
    dst[n] = value;
}
