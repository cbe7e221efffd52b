// Total-variation loss in jcjohnson/neural-style's squared form, on a CHW image x:
//   TV(x) = scale * sum_c sum_{y < H-1, x < W-1} [(x[c,y,x+1] - x[c,y,x])^2 + (x[c,y+1,x] - x[c,y,x])^2]
// Both differences live on the same (H-1) x (W-1) grid (the last row's horizontal and the last
// column's vertical differences are not counted, exactly as neural-style's TVLoss). The forward
// writes block partial sums (per-thread runs of 8, then a tree), finished by reduce.wgsl; the
// backward gathers each pixel's gradient from the (up to) three terms that contain it.
//
// The buffer may be a window of the image (a tile and its halo): the forward counts only the
// terms anchored in the owned rectangle, so that the tiles' sums add up to the whole image's, and
// the backward is exact wherever a pixel's neighbours are in the window (the owned pixels: the
// window holds a halo on every side that is not the image's edge).

struct Params {
    groups: u32,     // logical workgroups (filled by the host)
    channels: u32,
    height: u32,
    width: u32,
    dst_offset: u32, // forward: where block g's sum goes in dst
    flags: u32,      // backward: bit 2 accumulates into dst
    scale: f32,      // forward: factor on each block sum; backward: 2 * scale
    _pad0: u32,
    own_y: u32,      // forward: the owned rectangle (everything for a whole image)
    own_x: u32,
    own_height: u32,
    own_width: u32,
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

// The squared-difference term anchored at flat index i (0 outside the (H-1) x (W-1) grid).
fn term(i: u32) -> f32 {
    let w = params.width;
    let y = (i / w) % params.height;
    let x = i % w;
    let owned = y >= params.own_y && y < params.own_y + params.own_height
        && x >= params.own_x && x < params.own_x + params.own_width;
    if (!owned || y + 1u >= params.height || x + 1u >= w) {
        return 0.0;
    }
    let v = image[i];
    let dx = image[i + 1u] - v;
    let dy = image[i + w] - v;
    return fma(dx, dx, dy * dy);
}

@compute @workgroup_size(256)
fn tv_partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let len = params.channels * params.height * params.width;
    let base = group * THREADS * ITEMS;
    var sum = 0.0;
    for (var i = 0u; i < ITEMS; i++) {
        let index = base + i * THREADS + lid;
        if (index < len) {
            sum += term(index);
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

// dL/dx[c,y,x] = 2 scale * ([anchor (y,x)] (2 v - right - below)
//                           - [anchor (y,x-1)] (left - v) - [anchor (y-1,x)] (above - v)).
@compute @workgroup_size(256)
fn tv_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * THREADS + lid;
    let h = params.height;
    let w = params.width;
    if (i >= params.channels * h * w) {
        return;
    }
    let y = (i / w) % h;
    let x = i % w;
    let v = image[i];
    var g = 0.0;
    if (y + 1u < h && x + 1u < w) {
        g += (v - image[i + 1u]) + (v - image[i + w]);
    }
    if (x > 0u && y + 1u < h) {
        g -= image[i - 1u] - v;
    }
    if (y > 0u && x + 1u < w) {
        g -= image[i - w] - v;
    }
    var value = params.scale * g;
    if ((params.flags & 4u) != 0u) {
        value += dst[i];
    }
    dst[i] = value;
}
