// TV-L1 optical flow (Zach, Pock & Bischof 2007, as Sanchez, Meinhardt-Llopis & Facciolo,
// "TV-L1 Optical Flow Estimation", IPOL 2013, write it): the kernels of one flow, which
// src/ops/tvl1.rs records into one Step. One invocation per pixel of the output; every size
// comes in the uniform. Images are planar H x W f32 (grayscale in [0, 255]); the flow u is
// planar 2 x H x W (plane 0 x, plane 1 y), its dual p planar 4 x H x W (p11, p12 for u1 = plane 0,
// p21, p22 for u2), the warped data planar 3 x H x W (rho_c, I1x, I1y).
//
// Sampling (downsample, upsample, warp): bilinear, the point clamped into [0, W-1] x [0, H-1]
// first (IPOL's Neumann boundary), x0 = floor(sx), x1 = min(x0 + 1, W-1), rows alike.
//
// luma:       dst = 255 (0.299 R + 0.587 G + 0.114 B) of the 3 x H x W RGB src
// gaussian_pass (one pass of the separable smoothing; `smooth` is a reserved word):
//             dst = src convolved along `axis` with the normalized Gaussian of `scale` (sigma),
//             taps -taps..taps, indices mirrored about the edge pixels (-k -> k)
// downsample: dst (W x H) = src (src_width x src_height) sampled at (x, y) / zoom (`scale` = zoom)
// upsample:   dst (2 x W x H) = `factor` (1/zoom) * src (2 x src_width x src_height) sampled at
//             (x, y) * zoom
// warp:       q = p + u(p); I1w = src(q), I1x = (src(q + ex) - src(q - ex)) / 2 (y alike);
//             dst = (I1w - I1x u1 - I1y u2 - aux(p), I1x, I1y) with aux = I0, flow = u
// threshold:  dst = v, the pointwise TH step with lambda theta = `scale` (src: warped, flow: u)
// primal:     dst = u = v (src) + theta (`scale`) div p (aux), div with backward differences
// dual:       dst = p = (p + tau/theta grad u) / (1 + tau/theta |grad u|) (flow: u, forward
//             differences; tau/theta = `scale`); per component of u
// clear:      dst[0 .. planes W H] = 0

struct Params {
    groups: u32,     // logical workgroups (filled by the host)
    width: u32,      // the output's size (downsample, upsample), else the level's
    height: u32,
    src_width: u32,  // downsample, upsample: the input's size
    src_height: u32,
    taps: u32,       // gaussian_pass: taps on each side of the centre
    axis: u32,       // gaussian_pass: 0 along x, 1 along y
    planes: u32,     // clear: planes of W x H to zero
    scale: f32,      // gaussian_pass: sigma; downsample, upsample: zoom; threshold: lambda theta;
                     // primal: theta; dual: tau / theta
    factor: f32,     // upsample: what the flow's values are multiplied by (1 / zoom)
    _pad0: f32,
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read> flow: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

const THREADS: u32 = 256u;
// Below this |grad I1|^2 the TH step leaves v = u (IPOL's GRAD_IS_ZERO).
const GRAD_IS_ZERO: f32 = 1e-10;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

// src's plane at `base` (w x h) sampled bilinearly at (sx, sy) clamped into the plane. The
// integer clamps keep every index in bounds whatever the coordinate (a NaN included), since the
// shaders run without wgpu's bounds checks.
fn sample(base: u32, w: u32, h: u32, sx: f32, sy: f32) -> f32 {
    let cx = clamp(sx, 0.0, f32(w - 1u));
    let cy = clamp(sy, 0.0, f32(h - 1u));
    let fx = floor(cx);
    let fy = floor(cy);
    let x0 = min(u32(max(fx, 0.0)), w - 1u);
    let y0 = min(u32(max(fy, 0.0)), h - 1u);
    let x1 = min(x0 + 1u, w - 1u);
    let y1 = min(y0 + 1u, h - 1u);
    let ax = cx - fx;
    let ay = cy - fy;
    let top = mix(src[base + y0 * w + x0], src[base + y0 * w + x1], ax);
    let bottom = mix(src[base + y1 * w + x0], src[base + y1 * w + x1], ax);
    return mix(top, bottom, ay);
}

@compute @workgroup_size(256)
fn luma(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = params.width * params.height;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= n) {
        return;
    }
    dst[i] = 255.0 * (0.299 * src[i] + 0.587 * src[n + i] + 0.114 * src[2u * n + i]);
}

// i reflected about the edge pixels into 0..n (-k -> k, n-1+k -> n-1-k), as often as needed.
fn mirror(i: i32, n: i32) -> i32 {
    if (n == 1) {
        return 0;
    }
    let period = 2 * (n - 1);
    var m = i % period;
    if (m < 0) {
        m += period;
    }
    if (m >= n) {
        m = period - m;
    }
    return m;
}

@compute @workgroup_size(256)
fn gaussian_pass(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = params.width;
    let h = params.height;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= w * h) {
        return;
    }
    let x = i32(i % w);
    let y = i32(i / w);
    let r = i32(params.taps);
    let den = 2.0 * params.scale * params.scale;
    var sum = 0.0;
    var norm = 0.0;
    for (var k = -r; k <= r; k++) {
        let weight = exp(-f32(k * k) / den);
        var j: i32;
        if (params.axis == 0u) {
            j = y * i32(w) + mirror(x + k, i32(w));
        } else {
            j = mirror(y + k, i32(h)) * i32(w) + x;
        }
        sum += weight * src[u32(j)];
        norm += weight;
    }
    dst[i] = sum / norm;
}

@compute @workgroup_size(256)
fn downsample(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = params.width;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= w * params.height) {
        return;
    }
    let sx = f32(i % w) / params.scale;
    let sy = f32(i / w) / params.scale;
    dst[i] = sample(0u, params.src_width, params.src_height, sx, sy);
}

@compute @workgroup_size(256)
fn upsample(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = params.width;
    let n = w * params.height;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= n) {
        return;
    }
    let sx = f32(i % w) * params.scale;
    let sy = f32(i / w) * params.scale;
    let cw = params.src_width;
    let ch = params.src_height;
    dst[i] = params.factor * sample(0u, cw, ch, sx, sy);
    dst[n + i] = params.factor * sample(cw * ch, cw, ch, sx, sy);
}

@compute @workgroup_size(256)
fn warp(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = params.width;
    let h = params.height;
    let n = w * h;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= n) {
        return;
    }
    let u1 = flow[i];
    let u2 = flow[n + i];
    let qx = f32(i % w) + u1;
    let qy = f32(i / w) + u2;
    let warped = sample(0u, w, h, qx, qy);
    let gx = 0.5 * (sample(0u, w, h, qx + 1.0, qy) - sample(0u, w, h, qx - 1.0, qy));
    let gy = 0.5 * (sample(0u, w, h, qx, qy + 1.0) - sample(0u, w, h, qx, qy - 1.0));
    dst[i] = warped - gx * u1 - gy * u2 - aux[i];
    dst[n + i] = gx;
    dst[2u * n + i] = gy;
}

@compute @workgroup_size(256)
fn threshold(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = params.width * params.height;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= n) {
        return;
    }
    let gx = src[n + i];
    let gy = src[2u * n + i];
    let u1 = flow[i];
    let u2 = flow[n + i];
    let grad = gx * gx + gy * gy;
    let rho = src[i] + gx * u1 + gy * u2;
    let lt = params.scale;
    // The step d minimizing |d|^2 / (2 theta) + lambda |rho + grad I1 . d| (rho linearized at u).
    var step = 0.0;
    if (rho < -lt * grad) {
        step = lt;
    } else if (rho > lt * grad) {
        step = -lt;
    } else if (grad >= GRAD_IS_ZERO) {
        step = -rho / grad;
    }
    dst[i] = u1 + step * gx;
    dst[n + i] = u2 + step * gy;
}

// div of the dual field (px, py) at plane offsets `bx`, `by`: backward differences, the field
// taken as 0 in the last column (px) and row (py) and before the first: minus the adjoint of the
// forward gradient.
fn divergence(bx: u32, by: u32, i: u32, x: u32, y: u32) -> f32 {
    let w = params.width;
    var d = 0.0;
    if (x + 1u < w) {
        d += aux[bx + i];
    }
    if (x > 0u) {
        d -= aux[bx + i - 1u];
    }
    if (y + 1u < params.height) {
        d += aux[by + i];
    }
    if (y > 0u) {
        d -= aux[by + i - w];
    }
    return d;
}

@compute @workgroup_size(256)
fn primal(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = params.width;
    let n = w * params.height;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= n) {
        return;
    }
    let x = i % w;
    let y = i / w;
    dst[i] = src[i] + params.scale * divergence(0u, n, i, x, y);
    dst[n + i] = src[n + i] + params.scale * divergence(2u * n, 3u * n, i, x, y);
}

// One component's dual pair at planes `bx`, `by` of dst, from the flow plane at `bu`.
fn dual_pair(bu: u32, bx: u32, by: u32, i: u32, x: u32, y: u32) {
    let w = params.width;
    var gx = 0.0;
    var gy = 0.0;
    if (x + 1u < w) {
        gx = flow[bu + i + 1u] - flow[bu + i];
    }
    if (y + 1u < params.height) {
        gy = flow[bu + i + w] - flow[bu + i];
    }
    let taut = params.scale;
    let norm = 1.0 + taut * sqrt(gx * gx + gy * gy);
    dst[bx + i] = (dst[bx + i] + taut * gx) / norm;
    dst[by + i] = (dst[by + i] + taut * gy) / norm;
}

@compute @workgroup_size(256)
fn dual(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = params.width;
    let n = w * params.height;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= n) {
        return;
    }
    let x = i % w;
    let y = i / w;
    dual_pair(0u, 0u, n, i, x, y);
    dual_pair(n, 2u * n, 3u * n, i, x, y);
}

@compute @workgroup_size(256)
fn clear(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= params.planes * params.width * params.height) {
        return;
    }
    dst[i] = 0.0;
}
