// The Wasserstein-2 style loss between Gaussians fitted to the features (crowsonkb's
// style-transfer-pytorch), its pieces as small kernels (ops/w2.rs records them in order):
//   mu = F 1 / N, S = F F^T / N, Sigma = S - mu mu^T + eps I (F: C x N features),
//   L = mean_c (mu - mu_s)^2 + tr(Sigma + Sigma_s - 2 sqrt(M)) / C,  M = R Sigma R,  R = Sigma_s^1/2,
// sqrt(M) by coupled Newton-Schulz on Y0 = M / |M|_F, Z0 = I:
//   T = (3 I - Z Y) / 2, Y <- Y T, Z <- T Z;  sqrt(M) = Y |M|^1/2, M^-1/2 = Z |M|^-1/2,
// and the backward dL/dSigma = (I - R M^-1/2 R) / C, dL/dmu = 2 (mu - mu_s) / C - 2 dL/dSigma mu,
// dL/dF = (2 / N) dL/dSigma F + dL/dmu 1^T / N. Everything in f32; |M|_F^2 is read from
// scalars[0] (a dot product on the GPU), so no value goes through the host.

struct Params {
    groups: u32,  // logical workgroups (filled by the host)
    rows: u32,    // matmul: M; row_mean: C; elementwise: the matrices' side C
    inner: u32,   // matmul: K; row_mean: N
    cols: u32,    // matmul: N
    flags: u32,   // matmul: bit 0 B stored transposed (cols x inner), bit 1 accumulate into dst,
                  // bit 2 add aux[row] to every value of that row, bit 3 (bit 4) copy A (B)
                  // instead once the iteration is frozen (scalars[2] != 0)
    offset: u32,  // loss: the slot of dst
    alpha: f32,
    beta: f32,
    gamma: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> scalars: array<f32>;
@group(0) @binding(5) var<storage, read> aux: array<f32>;
@group(0) @binding(6) var<storage, read_write> dst2: array<f32>;

const TILE: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> tile_a: array<f32, 256>;
var<workgroup> tile_b: array<f32, 256>;
var<workgroup> tree: array<f32, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

fn identity(i: u32, j: u32) -> f32 {
    return select(0.0, 1.0, i == j);
}

// dst[m, n] = alpha sum_k A[m, k] B[k, n] + beta [m == n] (+ aux[m]) (+ dst[m, n]): a 16 x 16 tile
// of the output per workgroup, K in steps of 16 through workgroup memory.
@compute @workgroup_size(16, 16)
fn w2_matmul(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let tiles_n = (params.cols + TILE - 1u) / TILE;
    let m = (group / tiles_n) * TILE + lid.y;
    let n = (group % tiles_n) * TILE + lid.x;
    let transposed = (params.flags & 1u) != 0u;
    var acc = 0.0;
    for (var k0 = 0u; k0 < params.inner; k0 += TILE) {
        // A's tile: rows m (this thread's row), columns k0 + lid.x.
        let ka = k0 + lid.x;
        tile_a[lid.y * TILE + lid.x] = select(0.0, src_a[min(m, params.rows - 1u) * params.inner + min(ka, params.inner - 1u)], m < params.rows && ka < params.inner);
        // B's tile: rows k0 + lid.y, columns n.
        let kb = k0 + lid.y;
        var b = 0.0;
        if (kb < params.inner && n < params.cols) {
            b = select(src_b[kb * params.cols + n], src_b[n * params.inner + kb], transposed);
        }
        tile_b[lid.y * TILE + lid.x] = b;
        workgroupBarrier();
        for (var k = 0u; k < TILE; k++) {
            acc = fma(tile_a[lid.y * TILE + k], tile_b[k * TILE + lid.x], acc);
        }
        workgroupBarrier();
    }
    if (m >= params.rows || n >= params.cols) {
        return;
    }
    let at_out = m * params.cols + n;
    if (scalars[2] != 0.0 && (params.flags & 24u) != 0u) {
        dst[at_out] = select(src_b[at_out], src_a[at_out], (params.flags & 8u) != 0u);
        return;
    }
    var value = params.alpha * acc + params.beta * identity(m, n);
    if ((params.flags & 4u) != 0u) {
        value += aux[m];
    }
    let at = m * params.cols + n;
    if ((params.flags & 2u) != 0u) {
        value += dst[at];
    }
    dst[at] = value;
}

// The iteration's guard, after T = (3 I - Z Y) / 2 (src_a): r = |T - I|_F^2 (a quarter of
// |I - Z Y|^2); unless r fell below the previous one (scalars[1]), the iteration freezes
// (scalars[2] = 1): in f32 a badly-conditioned M's residual stops falling once its smallest
// eigenvalues reach rounding, and from there the iteration diverges. One workgroup.
@compute @workgroup_size(256)
fn w2_guard(@builtin(local_invocation_index) lid: u32) {
    let c = params.rows;
    var sum = 0.0;
    for (var i = lid; i < c * c; i += THREADS) {
        let d = src_a[i] - identity(i / c, i % c);
        sum += d * d;
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
        let r = tree[0];
        if (!(r < dst[1])) {
            dst[2] = 1.0;
        }
        dst[1] = r;
    }
}

// Newton-Schulz's state before the first iteration: no residual yet (scalars[1] = inf), not frozen.
@compute @workgroup_size(1)
fn w2_guard_reset() {
    if (params.rows == 0u) {
        return;
    }
    dst[1] = bitcast<f32>(0x7f800000u);
    dst[2] = 0.0;
}

// dst[row] = (sum of src_a[row, 0..N]) / N: one workgroup per row, runs of N / 256 per thread, then a tree.
@compute @workgroup_size(256)
fn w2_row_mean(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = group_index(wid, nwg);
    if (row >= params.groups) {
        return;
    }
    let n = params.inner;
    var sum = 0.0;
    for (var p = lid; p < n; p += THREADS) {
        sum += src_a[row * n + p];
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
        dst[row] = tree[0] / f32(n);
    }
}

// Sigma = S - mu mu^T + eps I from S (src_a) and mu (aux[0..C]); beta = eps.
@compute @workgroup_size(256)
fn w2_covariance(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = params.rows;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= c * c) {
        return;
    }
    let row = i / c;
    let col = i % c;
    dst[i] = src_a[i] - aux[row] * aux[col] + params.beta * identity(row, col);
}

// Newton-Schulz's start: Y0 = M / |M|_F (dst, M in src_a, |M|_F^2 in scalars[0]), Z0 = I (dst2).
@compute @workgroup_size(256)
fn w2_normalize(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = params.rows;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= c * c) {
        return;
    }
    dst[i] = src_a[i] * inverseSqrt(scalars[0]);
    dst2[i] = identity(i / c, i % c);
}

// dst[offset] = alpha * (mean_c (mu - mu_s)^2 + (tr Sigma + gamma - 2 |M|^1/2 tr Y) / C): Sigma in
// src_a, Y in src_b, mu and mu_s in aux[0..C] and aux[C..2C], gamma = tr Sigma_s. One workgroup.
@compute @workgroup_size(256)
fn w2_loss(@builtin(local_invocation_index) lid: u32) {
    let c = params.rows;
    let root = sqrt(sqrt(scalars[0]));
    var sum = 0.0;
    for (var i = lid; i < c; i += THREADS) {
        let d = aux[i] - aux[c + i];
        sum += d * d + src_a[i * c + i] - 2.0 * root * src_b[i * c + i];
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
        dst[params.offset] = params.alpha * (tree[0] + params.gamma) / f32(c);
    }
}

// dL/dSigma / N = alpha (I - Q |M|^-1/2) / (C N) with Q = R Z R in src_a; alpha = the loss's
// scale, gamma = 1 / (C N). Written for dL/dF = 2 (dL/dSigma / N) F + ...
@compute @workgroup_size(256)
fn w2_cov_grad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = params.rows;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= c * c) {
        return;
    }
    let inv_root = inverseSqrt(sqrt(scalars[0]));
    dst[i] = params.alpha * params.gamma * (identity(i / c, i % c) - src_a[i] * inv_root);
}

// dL/dmu / N = alpha 2 (mu - mu_s) gamma - 2 (dL/dSigma / N) mu, with dL/dSigma / N in src_a,
// mu and mu_s in aux; gamma = 1 / (C N). One value per channel.
@compute @workgroup_size(256)
fn w2_mean_grad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = params.rows;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= c) {
        return;
    }
    var product = 0.0;
    for (var d = 0u; d < c; d++) {
        product = fma(src_a[i * c + d], aux[d], product);
    }
    dst[i] = 2.0 * params.alpha * params.gamma * (aux[i] - aux[c + i]) - 2.0 * product;
}
