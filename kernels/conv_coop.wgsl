// The 3x3 convolution's implicit GEMM (conv.wgsl) on cooperative matrices (matrix units), for
// mixed precision on adapters that have them, after a shape prelude and coop_tile.wgsl (the tile
// walk: 32 x 32 tiles per 32-invocation workgroup, each subgroup owning its own quads). Every
// reduction step of 16 stages the 32 x 16 block of `a` and the 16 x 32 block of im2col(input) in
// workgroup memory as f16 (rounded to nearest even by round_f16 first, so the conversion is exact
// and the operands are the emulation's, bit for bit). The epilogue (unscale, bias, ReLU,
// accumulate, mask bits) and split-K are conv.wgsl's; the helpers below are copies of conv.wgsl's
// (WGSL has no includes, and this module needs `enable f16;`, which adapters without f16 reject).
// Forward and backward to the input, like conv.wgsl (flags, strides). The host always sets flag
// bit 5 (mixed) here.

struct Params {
    groups: u32,        // logical workgroups (filled by the host); grid may be folded
    in_channels: u32,   // channels of `input` (K = in_channels * 9)
    out_channels: u32,  // rows of `a` (M)
    height: u32,
    width: u32,
    tiles_n: u32,       // tiles along the pixels (ceil(height * width / tile width))
    flags: u32,         // bit 0: add bias, bit 1: apply ReLU, bit 2: accumulate into out,
                        // bit 3: read input only where its mask bit is set (the ReLU backward fused into the load),
                        // bit 4: taps flipped (8 - tap), for the backward pass,
                        // bit 5: mixed precision: `input` is scaled by 2^-range_scale() and rounded
                        // to f16 as it is loaded (`a` arrives f16-rounded), the f32 sum unscaled,
                        // bit 6: write the output's ReLU mask bits into `mask_out` (the training forward)
    ci_stride: u32,     // distance in `a` between consecutive input channels of one row
    row_stride: u32,    // distance in `a` between consecutive rows
    tile_m: u32,        // conv3x3_8x8: rows per tile, 128 (128 x 128 tiles) or 64 (64 x 256)
    tiles: u32,         // tiles of one split (tiles_m * tiles_n)
    k_chunk: u32,       // reduction indices per split (a multiple of 16); k_total when not split
    splits: u32,        // split-K: workgroup g reduces over split g / tiles and writes partial sums
                        // at split * M * H * W (conv3x3_split_sum finishes them)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Which tile and which part of the reduction a workgroup owns.
struct Work {
    m0: u32,
    n0: u32,
    k_begin: u32,
    k_end: u32,
    out_base: u32,
}

fn split_work(group: u32, tile_m: u32, tile_n: u32) -> Work {
    let split = group / params.tiles;
    let tile = group % params.tiles;
    let k_begin = split * params.k_chunk;
    let k_end = min(k_begin + params.k_chunk, params.in_channels * 9u);
    let out_base = split * params.out_channels * params.height * params.width;
    return Work((tile / params.tiles_n) * tile_m, (tile % params.tiles_n) * tile_n, k_begin, k_end, out_base);
}

// Offset in `a` of reduction index k = channel * 9 + tap within any row.
fn tap_offset(k: u32) -> u32 {
    let channel = k / 9u;
    var tap = k - channel * 9u;
    if ((params.flags & 16u) != 0u) {
        tap = 8u - tap;
    }
    return channel * params.ci_stride + tap;
}

// Index in `a` of row m, reduction index k.
fn weight_index(m: u32, k: u32) -> u32 {
    return tap_offset(k) + m * params.row_stride;
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The forward ReLU's mask as bits (bit 3): bit index % 32 of word index / 32 is set where the ReLU
// output at `index` is > 0 and lets the input through (`relu_mask.wgsl` packs it); any buffer otherwise.
@group(0) @binding(5) var<storage, read> mask: array<u32>;
// Mixed precision (bit 5): range[0] is the largest biased f32 exponent of |input| (range.wgsl);
// any buffer otherwise.
@group(0) @binding(6) var<storage, read> range: array<u32>;
// The output's ReLU mask as bits (bit 6), as in conv.wgsl; the buffer of binding 4 otherwise.
@group(0) @binding(7) var<storage, read_write> mask_out: array<atomic<u32>>;

// The power of two `input` is divided by before rounding, from its range (ops/mixed.rs,
// `scale_exponent`): its largest magnitude lands in [2^14, 2^15), so f16 neither overflows nor
// flushes what matters.
fn range_scale() -> i32 {
    return clamp(i32(range[0]) - 141, -126, 126);
}

// input[index] (scaled and rounded to f16 in mixed precision), or 0 where the fused ReLU backward blocks it.
fn masked_input(index: u32) -> f32 {
    let value = input[index];
    if ((params.flags & 8u) != 0u && ((mask[index / 32u] >> (index % 32u)) & 1u) == 0u) {
        return 0.0;
    }
    if ((params.flags & 32u) != 0u) {
        return round_f16(ldexp(value, -range_scale()));
    }
    return value;
}

// Sets the bits `owned` of mask word `word` to those of `ones` (a subset of `owned`), leaving the
// others: each value's bit has one owner, which writes it 0 or 1, so no clearing pass is needed
// (conv.wgsl, write_mask_bits).
fn write_mask_bits(word: u32, owned: u32, ones: u32) {
    let cleared = owned & ~ones;
    if (cleared != 0u) {
        atomicAnd(&mask_out[word], ~cleared);
    }
    if (ones != 0u) {
        atomicOr(&mask_out[word], ones);
    }
}

// out[index] = the product's value for row m after the epilogue the flags ask for: unscaled
// (bit 5), + bias[m] (bit 0), ReLU (bit 1), + the value already there (bit 2); then its mask
// bit (bit 6).
fn store_output(m: u32, index: u32, product: f32) {
    var value = product;
    if ((params.flags & 32u) != 0u) {
        value = ldexp(value, range_scale());
    }
    if ((params.flags & 1u) != 0u) {
        value += bias[m];
    }
    if ((params.flags & 2u) != 0u) {
        value = max(value, 0.0);
    }
    if ((params.flags & 4u) != 0u) {
        value += out[index];
    }
    out[index] = value;
    if ((params.flags & 64u) != 0u) {
        let bit = 1u << (index % 32u);
        var owned = bit;
        // The owner of the last output also writes the spare bits after it 0.
        let end = index + 1u;
        if (end == params.out_channels * params.height * params.width && end % 32u != 0u) {
            owned |= ~0u << (end % 32u);
        }
        write_mask_bits(index / 32u, owned, select(0u, bit, value > 0.0));
    }
}

fn im2col(k: u32, p: u32) -> f32 {
    let hw = params.height * params.width;
    if (k >= params.in_channels * 9u || p >= hw) {
        return 0.0;
    }
    let ci = k / 9u;
    let r = k - ci * 9u;
    let ky = r / 3u;
    let kx = r - ky * 3u;
    let y = i32(p / params.width) + i32(ky) - 1;
    let x = i32(p % params.width) + i32(kx) - 1;
    if (y < 0 || x < 0 || y >= i32(params.height) || x >= i32(params.width)) {
        return 0.0;
    }
    return masked_input(ci * hw + u32(y) * params.width + u32(x));
}


// Stages reduction step k0 of the tile at (work.m0, work.n0): the weights' 32 x 16 block (rounded
// to f16 at upload: exact) and im2col's 16 x 32 block, 16 values per invocation, consecutive
// invocations on consecutive reduction indices of one row (a) and on consecutive pixels (b).
fn stage_conv(lid: u32, work: Work, k0: u32) {
    for (var i = 0u; i < 16u; i++) {
        let e = lid + i * 32u;
        let m = work.m0 + e / STEP;
        let k = k0 + e % STEP;
        var w = 0.0;
        if (m < params.out_channels && k < work.k_end) {
            w = a[weight_index(m, k)];
        }
        a_stage[e] = f16(w);
        b_stage[e] = f16(im2col(k0 + e / TILE, work.n0 + e % TILE));
    }
}

@compute @workgroup_size(32)
fn conv3x3_coop(
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
    let work = split_work(group, TILE, TILE);
    let hw = params.height * params.width;
    let subgroups = workgroup_subgroups(lid, subgroups_here);
    for (var turn = 0u; turn < quad_passes(subgroups); turn++) {
        let origin = quad_origin(turn, subgroup, subgroups);
        var c00 = MatC();
        var c01 = MatC();
        var c10 = MatC();
        var c11 = MatC();
        for (var k0 = work.k_begin; k0 < work.k_end; k0 += STEP) {
            stage_conv(lid, work, k0);
            workgroupBarrier();
            multiply_staged(origin, &c00, &c01, &c10, &c11);
            workgroupBarrier();
        }
        store_quad(origin, &c00, &c01, &c10, &c11);
    }
    workgroupBarrier();
    for (var i = 0u; i < 32u; i++) {
        let e = lid + i * 32u;
        let m = work.m0 + e / TILE;
        let n = work.n0 + e % TILE;
        if (live && m < params.out_channels && n < hw) {
            store_output(m, work.out_base + m * hw + n, c_stage[e]);
        }
    }
}
