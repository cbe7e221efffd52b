// The Wasserstein-2 style loss between Gaussians fitted to the features (crowsonkb's
// style-transfer-pytorch), its pieces as small kernels (ops/w2.rs records them in order):
//   mu = F 1 / N, S = F F^T / N, Sigma = S - mu mu^T + eps I (F: C x N features),
//   L = mean_c (mu - mu_s)^2 + tr(Sigma + Sigma_s - 2 sqrt(M)) / C,  M = R Sigma R,  R = Sigma_s^1/2,
// sqrt(M) by coupled Newton-Schulz on Y0 = M / |M|_F, Z0 = I:
//   T = (3 I - Z Y) / 2, Y <- Y T, Z <- T Z;  sqrt(M) = Y |M|^1/2, M^-1/2 = Z |M|^-1/2,
// and the backward dL/dSigma = (I - R M^-1/2 R) / C, dL/dmu = 2 (mu - mu_s) / C - 2 dL/dSigma mu,
// dL/dF = (2 / N) dL/dSigma F + dL/dmu 1^T / N. Everything in f32; |M|_F^2 is read from
// scalars[0] (a dot product on the GPU), so no value goes through the host.
// A masked term (`--mask`) weights the N positions by the guided Gram's column weights w
// (binding 7, averaging 1): mu = F w / N and S = F diag(w) F^T / N (the weights applied in
// w2_row_mean's sum and to the S product's left operand as loaded), and its gradient
// ((2 / N) dL/dSigma F + dL/dmu 1^T / N) diag(w) (each column of the last product's value times
// w[p] before it is stored). Without a mask binding 7 holds a placeholder no flag lets be read.

struct Params {
    groups: u32,  // logical workgroups (filled by the host)
    rows: u32,    // matmul: M; row_mean: C; elementwise: the matrices' side C
    inner: u32,   // matmul: K; row_mean: the block's positions
    cols: u32,    // matmul: N; row_mean: the layer's positions N (the mean's divisor)
    flags: u32,   // matmul: bit 0 B stored transposed (cols x inner), bit 1 accumulate into dst,
                  // bit 2 add aux[row] to every value of that row, bit 3 A's column k times
                  // weights[k], bit 4 each value of output column n times weights[n] (before
                  // bit 1's sum); row_mean: bit 1 accumulate, bit 3 each position p times weights[p]
    offset: u32,  // loss: the slot of dst
    alpha: f32,
    beta: f32,
    gamma: f32,
    chunk: u32,   // matmul: K per split
    splits: u32,  // matmul: splits of K (1: none)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> scalars: array<f32>;
@group(0) @binding(5) var<storage, read> aux: array<f32>;
@group(0) @binding(6) var<storage, read_write> dst2: array<f32>;
@group(0) @binding(7) var<storage, read> weights: array<f32>;

const TILE: u32 = 16u;
const WIDE: u32 = 64u;
const THREADS: u32 = 256u;
const FLAG_WEIGHT_INNER: u32 = 8u;
const FLAG_WEIGHT_COLS: u32 = 16u;

var<workgroup> wide_a: array<f32, 1024>;
var<workgroup> wide_b: array<f32, 1024>;
var<workgroup> tree: array<f32, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

fn identity(i: u32, j: u32) -> f32 {
    return select(0.0, 1.0, i == j);
}

// dst[m, n] = alpha sum_k A[m, k] B[k, n] + beta [m == n] (+ aux[m]) (+ dst[m, n]): a 64 x 64
// tile of the output per workgroup, each invocation 4 x 4 of it (rows ty + 16 i, columns
// tx + 16 j), K in steps of 16 through workgroup memory. With splits > 1 the workgroups also split
// K into runs of `chunk` and write alpha times their partial products one C x C block per split
// (for reduce.wgsl's sum_splits), without the rest.
@compute @workgroup_size(16, 16)
fn w2_matmul(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let tiles_n = (params.cols + WIDE - 1u) / WIDE;
    let tiles = tiles_n * ((params.rows + WIDE - 1u) / WIDE);
    let split = group / tiles;
    let tile = group % tiles;
    let m0 = (tile / tiles_n) * WIDE;
    let n0 = (tile % tiles_n) * WIDE;
    let k_begin = split * params.chunk;
    let k_end = min(k_begin + params.chunk, params.inner);
    let transposed = (params.flags & 1u) != 0u;
    let weight_inner = (params.flags & FLAG_WEIGHT_INNER) != 0u;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += TILE) {
        for (var q = 0u; q < 4u; q++) {
            let e = index + q * THREADS;
            // A's tile: 64 rows x 16 k.
            let ar = m0 + e / TILE;
            let ak = k0 + e % TILE;
            var a = 0.0;
            if (ar < params.rows && ak < k_end) {
                a = src_a[ar * params.inner + ak];
                if (weight_inner) {
                    a *= weights[ak];
                }
            }
            wide_a[e] = a;
            // B's tile: 16 k x 64 columns.
            let bk = k0 + e / WIDE;
            let bn = n0 + e % WIDE;
            var b = 0.0;
            if (bk < k_end && bn < params.cols) {
                b = select(src_b[bk * params.cols + bn], src_b[bn * params.inner + bk], transposed);
            }
            wide_b[e] = b;
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE; k++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = wide_a[(lid.y + 16u * i) * TILE + k];
                bv[i] = wide_b[k * WIDE + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let m = m0 + lid.y + 16u * i;
            let n = n0 + lid.x + 16u * j;
            if (m >= params.rows || n >= params.cols) {
                continue;
            }
            let at = m * params.cols + n;
            if (params.splits > 1u) {
                dst[split * params.rows * params.cols + at] = params.alpha * acc[i][j];
                continue;
            }
            var value = params.alpha * acc[i][j] + params.beta * identity(m, n);
            if ((params.flags & 4u) != 0u) {
                value += aux[m];
            }
            if ((params.flags & FLAG_WEIGHT_COLS) != 0u) {
                value *= weights[n];
            }
            if ((params.flags & 2u) != 0u) {
                value += dst[at];
            }
            dst[at] = value;
        }
    }
}

// The iteration's guard, after T = (3 I - Z Y) / 2 (src_a) of iterate (Y, Z): r = |T - I|_F^2
// (a quarter of |I - Z Y|^2); when r is below the best so far (scalars[1], dst here) the iterate
// is the best (scalars[2] = 1, for w2_keep), else not (0). In f32 a badly-conditioned M's
// residual stops falling once its smallest eigenvalues reach rounding, after which the iteration
// diverges: the result is the iterate of the smallest residual. One workgroup.
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
        let best = r < dst[1];
        dst[2] = select(0.0, 1.0, best);
        if (best) {
            dst[1] = r;
        }
    }
}

// Before the first iteration: no residual yet (scalars[1] = inf).
@compute @workgroup_size(1)
fn w2_guard_reset() {
    if (params.rows == 0u) {
        return;
    }
    dst[1] = bitcast<f32>(0x7f800000u);
    dst[2] = 0.0;
}

// The best iterate so far: Y (src_a) into dst, Z (src_b) into dst2 when w2_guard found it best.
@compute @workgroup_size(256)
fn w2_keep(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = params.rows;
    let i = group_index(wid, nwg) * THREADS + lid;
    if (i >= c * c || scalars[2] == 0.0) {
        return;
    }
    dst[i] = src_a[i];
    dst2[i] = src_b[i];
}

// dst[row] (=, or += with bit 1) (sum of src_a[row, 0..inner] (times weights[0..inner] with
// bit 3)) / cols: a block of `inner` of the layer's `cols` positions (all of them untiled, a tile's
// owned ones tiled: the mean is the sum of the blocks'). One workgroup per row, runs of
// inner / 256 per thread, then a tree.
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
    let weighted = (params.flags & FLAG_WEIGHT_INNER) != 0u;
    var sum = 0.0;
    for (var p = lid; p < n; p += THREADS) {
        var value = src_a[row * n + p];
        if (weighted) {
            value *= weights[p];
        }
        sum += value;
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
        let mean = tree[0] / f32(params.cols);
        dst[row] = select(mean, dst[row] + mean, (params.flags & 2u) != 0u);
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

// dst[offset] = alpha * (mean_c (mu - mu_s)^2 + (tr Sigma + tr Sigma_s - 2 |M|^1/2 tr Y) / C):
// Sigma in src_a, Y in src_b, mu and mu_s in aux[0..C] and aux[C..2C], tr Sigma_s in scalars[3].
// One workgroup.
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
        dst[params.offset] = params.alpha * (tree[0] + scalars[3]) / f32(c);
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
