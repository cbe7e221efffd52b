// Gram matrix G = F F^T for F of shape (C, N), N = H * W, and its backward
// dL/dF = (dL/dG + dL/dG^T) F.
//
// Forward: a tiled symmetric product. Only tiles on and above the diagonal are computed (each is
// mirrored when written), and the long N axis is split into chunks so that no accumulator sums
// more than `chunk` products; each chunk writes its own partial Gram, summed by reduce.wgsl.

struct Params {
    groups: u32,   // logical workgroups (filled by the host)
    channels: u32, // C
    n: u32,        // N = H * W
    chunk: u32,    // forward: products per split (a multiple of TILE_K)
    tiles: u32,    // forward: ceil(C / 64), backward: ceil(N / 64)
    flags: u32,    // backward: bit 2 accumulates into the output; bit 5: mixed precision (below)
    weight_exponent: i32, // masked forward under mixed precision: w's octave (below)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;  // F, [C][N]
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // forward: partials [splits][C][C]; backward: dL/dF
@group(0) @binding(3) var<storage, read> grad_gram: array<f32>; // backward only: dL/dG, [C][C]
// Mixed precision (flag bit 5): F and S = dL/dG + dL/dG^T are scaled by powers of two and
// rounded to f16 as they are loaded, the f32 sums unscaled as they are stored. range[0] is the
// largest biased exponent of |F|, range[1] that of |dL/dG| (range.wgsl); any buffer otherwise.
@group(0) @binding(6) var<storage, read> range: array<u32>;

fn is_mixed() -> bool {
    return (params.flags & 32u) != 0u;
}

// As in conv.wgsl (ops/mixed.rs, `scale_exponent`); S = dG + dG^T takes one octave more than dG.
fn range_scale(slot: u32) -> i32 {
    return clamp(i32(range[slot]) - 141, -126, 126) + i32(slot);
}

// x rounded to the nearest f16 value, ties to even: conv.wgsl's round_f16, bit for bit.
fn round_f16(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    let sign = bits & 0x80000000u;
    let magnitude = bits & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) {
        return x;
    }
    if (magnitude >= 0x477ff000u) {
        return bitcast<f32>(sign | 0x7f800000u);
    }
    if (magnitude >= 0x38800000u) {
        return bitcast<f32>(sign | ((magnitude + 0x0fffu + ((magnitude >> 13u) & 1u)) & 0xffffe000u));
    }
    if (magnitude <= 0x33000000u) {
        return bitcast<f32>(sign);
    }
    let shift = 126u - (magnitude >> 23u);
    let mantissa = (magnitude & 0x007fffffu) | 0x00800000u;
    var units = mantissa >> shift;
    let rest = mantissa & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (units & 1u) == 1u)) {
        units += 1u;
    }
    return bitcast<f32>(sign | bitcast<u32>(f32(units) * bitcast<f32>(0x33800000u)));
}

// An operand as a mixed product takes it: divided by 2^range_scale(slot), rounded to f16.
fn mixed_operand(value: f32, slot: u32) -> f32 {
    if (is_mixed()) {
        return round_f16(ldexp(value, -range_scale(slot)));
    }
    return value;
}

// A product's f32 sum unscaled: forward F F^T (2^(2 s0)), backward S F (2^(s0 + s1)).
fn unscale(sum: f32, second_slot: u32) -> f32 {
    if (is_mixed()) {
        return ldexp(ldexp(sum, range_scale(0u)), range_scale(second_slot));
    }
    return sum;
}

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> a_tile: array<f32, 1024>; // [TILE_K][TILE]
var<workgroup> b_tile: array<f32, 1024>; // [TILE_K][TILE]

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

fn load_feature(row: u32, col: u32) -> f32 {
    if (row < params.channels && col < params.n) {
        return mixed_operand(features[row * params.n + col], 0u);
    }
    return 0.0;
}

@compute @workgroup_size(16, 16, 1)
fn gram_forward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let pairs = params.tiles * (params.tiles + 1u) / 2u;
    let split = group / pairs;
    // Walk the upper triangle row by row to find this workgroup's (tile_m <= tile_n).
    var rest = group % pairs;
    var tile_m = 0u;
    loop {
        let row_len = params.tiles - tile_m;
        if (rest < row_len) {
            break;
        }
        rest -= row_len;
        tile_m += 1u;
    }
    let m0 = tile_m * TILE;
    let n0 = (tile_m + rest) * TILE;
    let k_begin = split * params.chunk;
    let k_end = min(k_begin + params.chunk, params.n);
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            let kk = e % TILE_K;
            let row = e / TILE_K;
            var a_value = 0.0;
            var b_value = 0.0;
            if (k0 + kk < k_end) {
                a_value = load_feature(m0 + row, k0 + kk);
                b_value = load_feature(n0 + row, k0 + kk);
            }
            a_tile[kk * TILE + row] = a_value;
            b_tile[kk * TILE + row] = b_value;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a_reg: array<f32, 4>;
            var b_reg: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_reg[i] = a_tile[kk * TILE + lid.y + i * 16u];
                b_reg[i] = b_tile[kk * TILE + lid.x + i * 16u];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a_reg[i], b_reg[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    let c = params.channels;
    let base = split * c * c;
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + i * 16u;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + j * 16u;
            if (m < c && n < c) {
                let value = unscale(acc[i * 4u + j], 0u);
                dst[base + m * c + n] = value;
                dst[base + n * c + m] = value;
            }
        }
    }
}

// dL/dF[m, p] = sum_k S[m, k] F[k, p] with S = dL/dG + dL/dG^T: a tiled GEMM with M = C, K = C, N = N.
@compute @workgroup_size(16, 16, 1)
fn gram_backward(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let c = params.channels;
    let m0 = (group / params.tiles) * TILE;
    let n0 = (group % params.tiles) * TILE;
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < c; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            let kk = e % TILE_K;
            let mm = e / TILE_K;
            let m = m0 + mm;
            let k = k0 + kk;
            var s = 0.0;
            if (m < c && k < c) {
                s = mixed_operand(grad_gram[m * c + k] + grad_gram[k * c + m], 1u);
            }
            a_tile[kk * TILE + mm] = s;
            let nn = e % TILE;
            let kb = e / TILE;
            b_tile[kb * TILE + nn] = load_feature(k0 + kb, n0 + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a_reg: array<f32, 4>;
            var b_reg: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_reg[i] = a_tile[kk * TILE + lid.y + i * 16u];
                b_reg[i] = b_tile[kk * TILE + lid.x + i * 16u];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a_reg[i], b_reg[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + i * 16u;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + j * 16u;
            if (m < c && n < params.n) {
                let index = m * params.n + n;
                var value = unscale(acc[i * 4u + j], 1u);
                if ((params.flags & 4u) != 0u) {
                    value += dst[index];
                }
                dst[index] = value;
            }
        }
    }
}

// The backward computed directly, for CPU implementations (see conv3x3_direct): each invocation
// owns 16 rows of S (uniform across the workgroup, so their loads are scalar) times 4 neighbouring
// columns of F, with the 16 accumulators in named registers. `tiles` counts workgroups of 16
// column blocks here.
fn load_feature4(row: u32, col: u32) -> vec4<f32> {
    return vec4<f32>(load_feature(row, col), load_feature(row, col + 1u), load_feature(row, col + 2u),
                     load_feature(row, col + 3u));
}

fn symmetric_grad(m: u32, k: u32) -> f32 {
    let c = params.channels;
    let row = min(m, c - 1u);
    return mixed_operand(grad_gram[row * c + k] + grad_gram[k * c + row], 1u);
}

fn store_gram_grad(m: u32, col: u32, acc: vec4<f32>) {
    if (m >= params.channels) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = col + j;
        if (n >= params.n) {
            return;
        }
        let index = m * params.n + n;
        var value = unscale(acc[j], 1u);
        if ((params.flags & 4u) != 0u) {
            value += dst[index];
        }
        dst[index] = value;
    }
}

@compute @workgroup_size(16, 1, 1)
fn gram_backward_direct(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let m0 = (group / params.tiles) * 16u;
    let col = ((group % params.tiles) * 16u + lid) * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0);
    var acc9 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc12 = vec4<f32>(0.0);
    var acc13 = vec4<f32>(0.0);
    var acc14 = vec4<f32>(0.0);
    var acc15 = vec4<f32>(0.0);
    for (var k = 0u; k < params.channels; k++) {
        let f = load_feature4(k, col);
        acc0 = fma(vec4<f32>(symmetric_grad(m0 + 0u, k)), f, acc0);
        acc1 = fma(vec4<f32>(symmetric_grad(m0 + 1u, k)), f, acc1);
        acc2 = fma(vec4<f32>(symmetric_grad(m0 + 2u, k)), f, acc2);
        acc3 = fma(vec4<f32>(symmetric_grad(m0 + 3u, k)), f, acc3);
        acc4 = fma(vec4<f32>(symmetric_grad(m0 + 4u, k)), f, acc4);
        acc5 = fma(vec4<f32>(symmetric_grad(m0 + 5u, k)), f, acc5);
        acc6 = fma(vec4<f32>(symmetric_grad(m0 + 6u, k)), f, acc6);
        acc7 = fma(vec4<f32>(symmetric_grad(m0 + 7u, k)), f, acc7);
        acc8 = fma(vec4<f32>(symmetric_grad(m0 + 8u, k)), f, acc8);
        acc9 = fma(vec4<f32>(symmetric_grad(m0 + 9u, k)), f, acc9);
        acc10 = fma(vec4<f32>(symmetric_grad(m0 + 10u, k)), f, acc10);
        acc11 = fma(vec4<f32>(symmetric_grad(m0 + 11u, k)), f, acc11);
        acc12 = fma(vec4<f32>(symmetric_grad(m0 + 12u, k)), f, acc12);
        acc13 = fma(vec4<f32>(symmetric_grad(m0 + 13u, k)), f, acc13);
        acc14 = fma(vec4<f32>(symmetric_grad(m0 + 14u, k)), f, acc14);
        acc15 = fma(vec4<f32>(symmetric_grad(m0 + 15u, k)), f, acc15);
    }
    if (col >= params.n) {
        return;
    }
    store_gram_grad(m0 + 0u, col, acc0);
    store_gram_grad(m0 + 1u, col, acc1);
    store_gram_grad(m0 + 2u, col, acc2);
    store_gram_grad(m0 + 3u, col, acc3);
    store_gram_grad(m0 + 4u, col, acc4);
    store_gram_grad(m0 + 5u, col, acc5);
    store_gram_grad(m0 + 6u, col, acc6);
    store_gram_grad(m0 + 7u, col, acc7);
    store_gram_grad(m0 + 8u, col, acc8);
    store_gram_grad(m0 + 9u, col, acc9);
    store_gram_grad(m0 + 10u, col, acc10);
    store_gram_grad(m0 + 11u, col, acc11);
    store_gram_grad(m0 + 12u, col, acc12);
    store_gram_grad(m0 + 13u, col, acc13);
    store_gram_grad(m0 + 14u, col, acc14);
    store_gram_grad(m0 + 15u, col, acc15);
}

// ---------------------------------------------------------------------------------------------
// Guided (masked) Gram matrix (Gatys et al., "Controlling Perceptual Factors in Neural Style
// Transfer", CVPR 2017): G^ = F diag(w) F^T with per-column weights w(p) = T(p)^2 / a, a the mask's
// coverage (filled by the host, `ops::gram::mask_column_weights`). The weighting is fused into the
// loads of the forward (the left operand's columns) and into the stores of the backward:
// dL/dF[m, p] = w(p) sum_k S[m, k] F[k, p]. Same parameters, tiles and grids as the plain entry
// points above; binding 4 is read only by these.
// Under mixed precision the forward's left operand is F w, rounded after a scale of its own:
// F's range and w's octave e (`weight_exponent`, 2^(e-1) < max w <= 2^e, from the host, which has
// w), so that |F w| / 2^(s + e) stays below |F| / 2^s; the right operand is F as the plain Gram
// rounds it. G^[m, n] for m <= n takes row m as the left operand and is mirrored: only the
// invocation with m <= n writes, so a diagonal tile's two products never race. The backward
// rounds S and F as the plain one and weights the unscaled f32 sums.

@group(0) @binding(4) var<storage, read> column_weights: array<f32>; // w, [N]

// F[row, col] w(col) as the masked forward's left operand takes it (0 outside F).
fn weighted_feature(row: u32, col: u32) -> f32 {
    if (row >= params.channels || col >= params.n) {
        return 0.0;
    }
    let value = features[row * params.n + col] * column_weights[col];
    if (is_mixed()) {
        return round_f16(ldexp(value, -(range_scale(0u) + params.weight_exponent)));
    }
    return value;
}

@compute @workgroup_size(16, 16, 1)
fn gram_forward_masked(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let pairs = params.tiles * (params.tiles + 1u) / 2u;
    let split = group / pairs;
    // Walk the upper triangle row by row to find this workgroup's (tile_m <= tile_n).
    var rest = group % pairs;
    var tile_m = 0u;
    loop {
        let row_len = params.tiles - tile_m;
        if (rest < row_len) {
            break;
        }
        rest -= row_len;
        tile_m += 1u;
    }
    let m0 = tile_m * TILE;
    let n0 = (tile_m + rest) * TILE;
    let k_begin = split * params.chunk;
    let k_end = min(k_begin + params.chunk, params.n);
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            let kk = e % TILE_K;
            let row = e / TILE_K;
            var a_value = 0.0;
            var b_value = 0.0;
            if (k0 + kk < k_end) {
                a_value = weighted_feature(m0 + row, k0 + kk);
                b_value = load_feature(n0 + row, k0 + kk);
            }
            a_tile[kk * TILE + row] = a_value;
            b_tile[kk * TILE + row] = b_value;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a_reg: array<f32, 4>;
            var b_reg: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_reg[i] = a_tile[kk * TILE + lid.y + i * 16u];
                b_reg[i] = b_tile[kk * TILE + lid.x + i * 16u];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a_reg[i], b_reg[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    let c = params.channels;
    let base = split * c * c;
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + i * 16u;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + j * 16u;
            if (m < c && n < c && m <= n) {
                var value = acc[i * 4u + j];
                if (is_mixed()) {
                    value = ldexp(unscale(value, 0u), params.weight_exponent);
                }
                dst[base + m * c + n] = value;
                dst[base + n * c + m] = value;
            }
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn gram_backward_masked(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let c = params.channels;
    let m0 = (group / params.tiles) * TILE;
    let n0 = (group % params.tiles) * TILE;
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < c; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            let kk = e % TILE_K;
            let mm = e / TILE_K;
            let m = m0 + mm;
            let k = k0 + kk;
            var s = 0.0;
            if (m < c && k < c) {
                s = mixed_operand(grad_gram[m * c + k] + grad_gram[k * c + m], 1u);
            }
            a_tile[kk * TILE + mm] = s;
            let nn = e % TILE;
            let kb = e / TILE;
            b_tile[kb * TILE + nn] = load_feature(k0 + kb, n0 + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a_reg: array<f32, 4>;
            var b_reg: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_reg[i] = a_tile[kk * TILE + lid.y + i * 16u];
                b_reg[i] = b_tile[kk * TILE + lid.x + i * 16u];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a_reg[i], b_reg[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + i * 16u;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + j * 16u;
            if (m < c && n < params.n) {
                let index = m * params.n + n;
                var value = unscale(acc[i * 4u + j], 1u) * column_weights[n];
                if ((params.flags & 4u) != 0u) {
                    value += dst[index];
                }
                dst[index] = value;
            }
        }
    }
}

fn store_masked_gram_grad(m: u32, col: u32, acc: vec4<f32>) {
    if (m >= params.channels) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = col + j;
        if (n >= params.n) {
            return;
        }
        let index = m * params.n + n;
        var value = unscale(acc[j], 1u) * column_weights[n];
        if ((params.flags & 4u) != 0u) {
            value += dst[index];
        }
        dst[index] = value;
    }
}

@compute @workgroup_size(16, 1, 1)
fn gram_backward_direct_masked(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let m0 = (group / params.tiles) * 16u;
    let col = ((group % params.tiles) * 16u + lid) * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0);
    var acc9 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc12 = vec4<f32>(0.0);
    var acc13 = vec4<f32>(0.0);
    var acc14 = vec4<f32>(0.0);
    var acc15 = vec4<f32>(0.0);
    for (var k = 0u; k < params.channels; k++) {
        let f = load_feature4(k, col);
        acc0 = fma(vec4<f32>(symmetric_grad(m0 + 0u, k)), f, acc0);
        acc1 = fma(vec4<f32>(symmetric_grad(m0 + 1u, k)), f, acc1);
        acc2 = fma(vec4<f32>(symmetric_grad(m0 + 2u, k)), f, acc2);
        acc3 = fma(vec4<f32>(symmetric_grad(m0 + 3u, k)), f, acc3);
        acc4 = fma(vec4<f32>(symmetric_grad(m0 + 4u, k)), f, acc4);
        acc5 = fma(vec4<f32>(symmetric_grad(m0 + 5u, k)), f, acc5);
        acc6 = fma(vec4<f32>(symmetric_grad(m0 + 6u, k)), f, acc6);
        acc7 = fma(vec4<f32>(symmetric_grad(m0 + 7u, k)), f, acc7);
        acc8 = fma(vec4<f32>(symmetric_grad(m0 + 8u, k)), f, acc8);
        acc9 = fma(vec4<f32>(symmetric_grad(m0 + 9u, k)), f, acc9);
        acc10 = fma(vec4<f32>(symmetric_grad(m0 + 10u, k)), f, acc10);
        acc11 = fma(vec4<f32>(symmetric_grad(m0 + 11u, k)), f, acc11);
        acc12 = fma(vec4<f32>(symmetric_grad(m0 + 12u, k)), f, acc12);
        acc13 = fma(vec4<f32>(symmetric_grad(m0 + 13u, k)), f, acc13);
        acc14 = fma(vec4<f32>(symmetric_grad(m0 + 14u, k)), f, acc14);
        acc15 = fma(vec4<f32>(symmetric_grad(m0 + 15u, k)), f, acc15);
    }
    if (col >= params.n) {
        return;
    }
    store_masked_gram_grad(m0 + 0u, col, acc0);
    store_masked_gram_grad(m0 + 1u, col, acc1);
    store_masked_gram_grad(m0 + 2u, col, acc2);
    store_masked_gram_grad(m0 + 3u, col, acc3);
    store_masked_gram_grad(m0 + 4u, col, acc4);
    store_masked_gram_grad(m0 + 5u, col, acc5);
    store_masked_gram_grad(m0 + 6u, col, acc6);
    store_masked_gram_grad(m0 + 7u, col, acc7);
    store_masked_gram_grad(m0 + 8u, col, acc8);
    store_masked_gram_grad(m0 + 9u, col, acc9);
    store_masked_gram_grad(m0 + 10u, col, acc10);
    store_masked_gram_grad(m0 + 11u, col, acc11);
    store_masked_gram_grad(m0 + 12u, col, acc12);
    store_masked_gram_grad(m0 + 13u, col, acc13);
    store_masked_gram_grad(m0 + 14u, col, acc14);
    store_masked_gram_grad(m0 + 15u, col, acc15);
}
