// The Gram forward G = F F^T (gram.wgsl's gram_forward) and its backward dL/dF = S F with
// S = dL/dG + dL/dG^T (gram.wgsl's gram_backward) on cooperative matrices, for mixed precision on
// adapters with matrix units, after a shape prelude and coop_tile.wgsl (the tile walk: 32 x 32
// tiles per 32-invocation workgroup, each subgroup owning its own quads). Forward: each workgroup
// computes one 32 x 32 tile on or above the diagonal over one chunk of the N axis, from 16-wide
// blocks of F staged in workgroup memory as f16 (scaled by F's range and rounded to nearest even
// by round_f16 first, so the f16 conversion is exact and the operands are the emulation's).
// Partials [split][C][C] are written mirrored and unscaled, then summed by reduce.wgsl, as
// gram_forward's. Backward: each workgroup computes a 32 x 32 tile of dL/dF (32 channels by 32
// positions) over the whole C axis, S scaled by dL/dG's range and one octave more, F by its own,
// both rounded as the emulation rounds them; the sum is unscaled and written (or added: flag bit 2).
// Flag bit 3: the guided Gram of spatial control (gram.wgsl's masked entry points, the same
// operands): the forward's left operand is F w scaled by one more octave, e, the backward's sums
// are weighted by w as stored. Binding 4 holds w (any buffer without bit 3).

struct Params {
    groups: u32,   // logical workgroups (filled by the host)
    channels: u32, // C
    n: u32,        // N = H * W
    chunk: u32,    // products per split (a multiple of 16)
    tiles: u32,    // forward: ceil(C / 32); backward: ceil(N / 32)
    flags: u32,    // bit 2 (backward) accumulates into dst; bit 3 masked (mixed is implied)
    weight_exponent: i32, // masked forward: e with 2^(e-1) < max w <= 2^e
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;  // F, [C][N]
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // forward: partials [splits][C][C]; backward: dL/dF
@group(0) @binding(3) var<storage, read> grad_gram: array<f32>; // backward only: dL/dG, [C][C]
// range[0]: the largest biased f32 exponent of |F|, range[1] that of |dL/dG| (range.wgsl).
@group(0) @binding(6) var<storage, read> range: array<u32>;
@group(0) @binding(4) var<storage, read> column_weights: array<f32>; // flag bit 3: w, [N]

fn is_masked() -> bool {
    return (params.flags & 8u) != 0u;
}

fn range_scale() -> i32 {
    return scale_of(0u);
}

// gram.wgsl's range_scale(slot): S = dG + dG^T takes one octave more than dG.
fn scale_of(slot: u32) -> i32 {
    return clamp(i32(range[slot]) - 141, -126, 126) + i32(slot);
}

// F[row, col] as the product takes it: scaled, rounded, f16 (0 outside F).
fn feature_f16(row: u32, col: u32, k_end: u32) -> f16 {
    if (row < params.channels && col < k_end) {
        return f16(round_f16(ldexp(features[row * params.n + col], -range_scale())));
    }
    return f16(0.0);
}

// The forward's left operand: F, or F w scaled by one more octave (masked), as gram.wgsl's
// weighted_feature rounds it.
fn left_f16(row: u32, col: u32, k_end: u32) -> f16 {
    if (!is_masked()) {
        return feature_f16(row, col, k_end);
    }
    if (row < params.channels && col < k_end) {
        let value = features[row * params.n + col] * column_weights[col];
        return f16(round_f16(ldexp(value, -(range_scale() + params.weight_exponent))));
    }
    return f16(0.0);
}

@compute @workgroup_size(32)
fn gram_forward_coop(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups_here: u32,
) {
    // No early return: cooperative operations need uniform control flow. A workgroup past the
    // logical count (a folded grid's padding) takes an empty reduction and stores nothing.
    let group = min(group_index(wid, nwg), params.groups - 1u);
    let live = group_index(wid, nwg) < params.groups;
    let pairs = params.tiles * (params.tiles + 1u) / 2u;
    let split = group / pairs;
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
    let subgroups = workgroup_subgroups(lid, subgroups_here);
    for (var turn = 0u; turn < quad_passes(subgroups); turn++) {
        let origin = quad_origin(turn, subgroup, subgroups);
        var c00 = MatC();
        var c01 = MatC();
        var c10 = MatC();
        var c11 = MatC();
        for (var k0 = k_begin; k0 < k_end; k0 += STEP) {
            for (var i = 0u; i < 16u; i++) {
                let e = lid + i * 32u;
                // A[m][k] = F[m0 + m][k0 + k]; B[k][n] = F[n0 + n][k0 + k].
                a_stage[e] = left_f16(m0 + e / STEP, k0 + e % STEP, k_end);
                b_stage[(e % STEP) * TILE + e / STEP] = feature_f16(n0 + e / STEP, k0 + e % STEP, k_end);
            }
            workgroupBarrier();
            multiply_staged(origin, &c00, &c01, &c10, &c11);
            workgroupBarrier();
        }
        store_quad(origin, &c00, &c01, &c10, &c11);
    }
    workgroupBarrier();
    let c = params.channels;
    let base = split * c * c;
    let scale = range_scale();
    let weight_octave = select(0, params.weight_exponent, is_masked());
    for (var i = 0u; i < 32u; i++) {
        let e = lid + i * 32u;
        let m = m0 + e / TILE;
        let n = n0 + e % TILE;
        // m <= n: a diagonal tile's (m, n) and (n, m) would otherwise both write both places.
        if (live && m < c && n < c && m <= n) {
            let value = ldexp(ldexp(ldexp(c_stage[e], scale), scale), weight_octave);
            dst[base + m * c + n] = value;
            dst[base + n * c + m] = value;
        }
    }
}

// S[row, col] = dL/dG[row, col] + dL/dG[col, row] as the backward takes it: summed in f32, scaled,
// rounded, f16 (0 outside C x C).
fn gradient_f16(row: u32, col: u32) -> f16 {
    let c = params.channels;
    if (row < c && col < c) {
        let s = grad_gram[row * c + col] + grad_gram[col * c + row];
        return f16(round_f16(ldexp(s, -scale_of(1u))));
    }
    return f16(0.0);
}

// F[row, col] as the backward takes it (0 outside C x N).
fn position_f16(row: u32, col: u32) -> f16 {
    if (row < params.channels && col < params.n) {
        return f16(round_f16(ldexp(features[row * params.n + col], -scale_of(0u))));
    }
    return f16(0.0);
}

// dL/dF[m, p] = sum_k S[m, k] F[k, p]: a GEMM with M = C, K = C, N = N, one 32 x 32 tile per workgroup.
@compute @workgroup_size(32)
fn gram_backward_coop(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups_here: u32,
) {
    // No early return: cooperative operations need uniform control flow (as the forward).
    let group = min(group_index(wid, nwg), params.groups - 1u);
    let live = group_index(wid, nwg) < params.groups;
    let m0 = (group / params.tiles) * TILE;
    let p0 = (group % params.tiles) * TILE;
    let subgroups = workgroup_subgroups(lid, subgroups_here);
    for (var turn = 0u; turn < quad_passes(subgroups); turn++) {
        let origin = quad_origin(turn, subgroup, subgroups);
        var c00 = MatC();
        var c01 = MatC();
        var c10 = MatC();
        var c11 = MatC();
        for (var k0 = 0u; k0 < params.channels; k0 += STEP) {
            for (var i = 0u; i < 16u; i++) {
                let e = lid + i * 32u;
                // A[m][k] = S[m0 + m][k0 + k], [TILE][STEP]; B[k][p] = F[k0 + k][p0 + p], [STEP][TILE].
                a_stage[e] = gradient_f16(m0 + e / STEP, k0 + e % STEP);
                b_stage[e] = position_f16(k0 + e / TILE, p0 + e % TILE);
            }
            workgroupBarrier();
            multiply_staged(origin, &c00, &c01, &c10, &c11);
            workgroupBarrier();
        }
        store_quad(origin, &c00, &c01, &c10, &c11);
    }
    workgroupBarrier();
    let s0 = scale_of(0u);
    let s1 = scale_of(1u);
    for (var i = 0u; i < 32u; i++) {
        let e = lid + i * 32u;
        let m = m0 + e / TILE;
        let p = p0 + e % TILE;
        if (live && m < params.channels && p < params.n) {
            let index = m * params.n + p;
            var value = ldexp(ldexp(c_stage[e], s0), s1);
            if (is_masked()) {
                value *= column_weights[p];
            }
            if ((params.flags & 4u) != 0u) {
                value += dst[index];
            }
            dst[index] = value;
        }
    }
}
