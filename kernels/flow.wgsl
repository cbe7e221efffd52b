// Optical-flow kernels for video style transfer (Ruder, Dosovitskiy & Brox, "Artistic style
// transfer for videos", 2016). Images are planar C x H x W, flows planar 2 x H x W (plane 0 the
// x-displacement u, plane 1 the y-displacement v); a flow maps pixel p = (x, y) to p + (u, v).
// One invocation per pixel.
//
// Sampling, shared by both entry points: a point (sx, sy) with 0 <= sx <= W-1 and 0 <= sy <= H-1
// is inside and interpolates its four neighbours x0 = floor(sx), x1 = min(x0 + 1, W-1) (the same
// for y: clamped at the last column and row, where the clamped neighbour has weight 0); any other
// point (a NaN included) is outside.
//
// warp_bilinear: dst[c, y, x] = src (the image, C = 3) sampled at p + flow(p), or fill[c] outside.
// consistency:   dst[y, x] = 1 where the backward flow b (flow) is reliable against the forward
//                flow f (src), else 0; the rules are at the entry point.

struct Params {
    groups: u32,    // logical workgroups (filled by the host)
    height: u32,
    width: u32,
    _pad0: u32,
    fill0: f32,     // warp: the value of channel 0, 1, 2 where the sample is outside
    fill1: f32,
    fill2: f32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;   // warp: the image; consistency: f
@group(0) @binding(2) var<storage, read> flow: array<f32>;  // warp: the flow; consistency: b
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

const THREADS: u32 = 256u;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

fn inside(sx: f32, sy: f32) -> bool {
    return sx >= 0.0 && sy >= 0.0 && sx <= f32(params.width - 1u) && sy <= f32(params.height - 1u);
}

// src's plane starting at `base`, sampled at an inside point (sx, sy).
fn bilinear(base: u32, sx: f32, sy: f32) -> f32 {
    let w = params.width;
    let fx = floor(sx);
    let fy = floor(sy);
    let x0 = u32(fx);
    let y0 = u32(fy);
    let x1 = min(x0 + 1u, w - 1u);
    let y1 = min(y0 + 1u, params.height - 1u);
    let ax = sx - fx;
    let ay = sy - fy;
    let top = mix(src[base + y0 * w + x0], src[base + y0 * w + x1], ax);
    let bottom = mix(src[base + y1 * w + x0], src[base + y1 * w + x1], ax);
    return mix(top, bottom, ay);
}

@compute @workgroup_size(256)
fn warp_bilinear(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * THREADS + lid;
    let w = params.width;
    let n = params.height * w;
    if (i >= n) {
        return;
    }
    let sx = f32(i % w) + flow[i];
    let sy = f32(i / w) + flow[n + i];
    if (inside(sx, sy)) {
        dst[i] = bilinear(0u, sx, sy);
        dst[n + i] = bilinear(n, sx, sy);
        dst[2u * n + i] = bilinear(2u * n, sx, sy);
    } else {
        dst[i] = params.fill0;
        dst[n + i] = params.fill1;
        dst[2u * n + i] = params.fill2;
    }
}

// Reliability of b at p (Ruder et al. 2016, section 3.1, as manuelruder/artistic-videos'
// consistencyChecker.cpp computes it), with w~ = f sampled at p + b(p):
//   0 where p + b(p) is outside;
//   0 where |w~ + b|^2 >= 0.01 (|w~|^2 + |b|^2) + 0.5 (occlusion);
//   0 where |grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002 (motion boundary);
//   1 otherwise.
// The gradient is the central difference (b[x+1] - b[x-1]) / 2 in each direction, the neighbour
// past an edge replaced by the edge pixel itself (the checker's mirrored border): at x = 0 it is
// (b[1] - b[0]) / 2, at x = W-1 (b[W-1] - b[W-2]) / 2, and 0 for one column (rows alike).
@compute @workgroup_size(256)
fn consistency(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * THREADS + lid;
    let w = params.width;
    let h = params.height;
    let n = h * w;
    if (i >= n) {
        return;
    }
    let x = i % w;
    let y = i / w;
    let bx = flow[i];
    let by = flow[n + i];
    let sx = f32(x) + bx;
    let sy = f32(y) + by;
    var reliable = 0.0;
    if (inside(sx, sy)) {
        let wx = bilinear(0u, sx, sy);
        let wy = bilinear(n, sx, sy);
        let ex = wx + bx;
        let ey = wy + by;
        let occluded = ex * ex + ey * ey >= 0.01 * (wx * wx + wy * wy + bx * bx + by * by) + 0.5;

        let left = y * w + max(x, 1u) - 1u;
        let right = y * w + min(x + 1u, w - 1u);
        let up = (max(y, 1u) - 1u) * w + x;
        let down = min(y + 1u, h - 1u) * w + x;
        let ux = 0.5 * (flow[right] - flow[left]);
        let uy = 0.5 * (flow[down] - flow[up]);
        let vx = 0.5 * (flow[n + right] - flow[n + left]);
        let vy = 0.5 * (flow[n + down] - flow[n + up]);
        let edge = ux * ux + uy * uy + vx * vx + vy * vy;
        let boundary = edge > 0.01 * (bx * bx + by * by) + 0.002;

        if (!occluded && !boundary) {
            reliable = 1.0;
        }
    }
    dst[i] = reliable;
}
