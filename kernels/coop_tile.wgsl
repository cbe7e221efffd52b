// The tile walk the cooperative-matrix kernels (conv_coop.wgsl, gram_coop.wgsl) share, for every
// matrix shape: the host composes one module as a shape prelude (coop_8x8.wgsl or
// coop_16x16.wgsl: the matrix types MatA, MatB, MatC and their side S), this file, then the
// kernel's own file (`gpu::MatrixShape`, `ops::coop_shader`).
//
// A workgroup of 32 invocations computes one 32 x 32 tile of the output. The reduction is walked in
// steps of 16: the whole workgroup stages a 32 x 16 block of the left operand and a 16 x 32 block of
// the right one in workgroup memory as f16 (already rounded to nearest even, so the conversion is
// exact and the operands are the emulation's, bit for bit), then each subgroup multiplies its own
// square of 2 x 2 matrices of the tile (a quad: 2S x 2S outputs). The 32 invocations form 32 / the
// subgroup size subgroups (1 on NVIDIA and Apple, 4 on lavapipe's 8-wide subgroups); the tile has
// (32 / 2S)^2 quads (1 for 16x16, 4 for 8x8). Each subgroup owns whole quads, never another's:
// where a workgroup has fewer subgroups than quads, each takes several in turn (one per pass, each
// walking the reduction again). The host only chooses shapes for which no subgroup is left without
// a quad (`gpu::precision::matrix_shape`).

const TILE: u32 = 32u;
const STEP: u32 = 16u;
const QUAD: u32 = 2u * S;
const QUADS_ACROSS: u32 = TILE / QUAD;
const QUADS: u32 = QUADS_ACROSS * QUADS_ACROSS;

var<workgroup> a_stage: array<f16, 512>;  // [TILE rows][STEP reduction indices], row-major
var<workgroup> b_stage: array<f16, 512>;  // [STEP reduction indices][TILE columns], row-major
var<workgroup> c_stage: array<f32, 1024>; // [TILE rows][TILE columns], row-major
var<workgroup> subgroup_count: u32;

// The logical workgroup index of a grid the host may have folded into 2-D or 3-D.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

// The workgroup's number of subgroups as a workgroup-uniform value, so that the passes over it
// may hold barriers and cooperative operations (which need uniform control flow).
fn workgroup_subgroups(lid: u32, subgroups: u32) -> u32 {
    if (lid == 0u) {
        subgroup_count = subgroups;
    }
    return workgroupUniformLoad(&subgroup_count);
}

// Passes of the reduction a workgroup with `subgroups` subgroups makes: one per quad a subgroup owns.
fn quad_passes(subgroups: u32) -> u32 {
    return max(QUADS / subgroups, 1u);
}

// The first row and column in the tile of the quad `subgroup` owns in pass `turn`. (More subgroups than
// quads, which the host never chooses, would repeat the last quad with the same values.)
fn quad_origin(turn: u32, subgroup: u32, subgroups: u32) -> vec2<u32> {
    let quad = min(turn * subgroups + subgroup, QUADS - 1u);
    return vec2<u32>((quad / QUADS_ACROSS) * QUAD, (quad % QUADS_ACROSS) * QUAD);
}

// Adds the staged step's products to the quad at `origin`: for each S-long part of the step, the
// two S x S blocks of a_stage on its rows times the two of b_stage on its columns.
fn multiply_staged(
    origin: vec2<u32>,
    c00: ptr<function, MatC>,
    c01: ptr<function, MatC>,
    c10: ptr<function, MatC>,
    c11: ptr<function, MatC>,
) {
    let step = STEP;
    let tile = TILE;
    for (var k = 0u; k < STEP; k += S) {
        // The offsets as named values: naga 30's SPIR-V writer fails on an index computed
        // inside a cooperative load's pointer ("Expression is not cached").
        let a_top = origin.x * STEP + k;
        let a_bottom = a_top + S * STEP;
        let b_left = k * TILE + origin.y;
        let b_right = b_left + S;
        let a0 = coopLoadT<MatA>(&a_stage[a_top], step);
        let a1 = coopLoadT<MatA>(&a_stage[a_bottom], step);
        let b0 = coopLoadT<MatB>(&b_stage[b_left], tile);
        let b1 = coopLoadT<MatB>(&b_stage[b_right], tile);
        *c00 = coopMultiplyAdd(a0, b0, *c00);
        *c01 = coopMultiplyAdd(a0, b1, *c01);
        *c10 = coopMultiplyAdd(a1, b0, *c10);
        *c11 = coopMultiplyAdd(a1, b1, *c11);
    }
}

// Writes the quad at `origin` into c_stage, from which the kernel's epilogue reads the tile.
fn store_quad(
    origin: vec2<u32>,
    c00: ptr<function, MatC>,
    c01: ptr<function, MatC>,
    c10: ptr<function, MatC>,
    c11: ptr<function, MatC>,
) {
    let tile = TILE;
    let top_left = origin.x * TILE + origin.y;
    let top_right = top_left + S;
    let bottom_left = top_left + S * TILE;
    let bottom_right = bottom_left + S;
    coopStoreT(*c00, &c_stage[top_left], tile);
    coopStoreT(*c01, &c_stage[top_right], tile);
    coopStoreT(*c10, &c_stage[bottom_left], tile);
    coopStoreT(*c11, &c_stage[bottom_right], tile);
}

// x rounded to the nearest f16 value, ties to even (ops/mixed.rs, `round_f16`, and conv.wgsl's and
// gram.wgsl's copies, bit for bit): magnitudes from 65520 become infinite, those up to 2^-25 zero;
// NaN and infinities pass. Written with integer operations because pack2x16float's rounding is
// implementation-defined.
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
