// 3x3 convolution, padding 1, stride 1, as an implicit GEMM:
//   out[m, p] = sum_k a[m, k] * im2col(input)[k, p]  (+ bias[m]) (then ReLU),
// with k = ci * 9 + ky * 3 + kx and p = y * width + x.
// Forward: a = the torchvision weight [cout, cin, 3, 3] read as [cout, cin * 9].
// Backward to the input: the same product with a = the flipped, transposed weight
// a'[ci, co * 9 + k] = w[co, ci, 8 - k], applied to the output gradient. Both read the one
// torchvision buffer: `ci_stride` / `row_stride` and the flip flag say how (k = channel * 9 + tap).
// conv3x3: each workgroup computes a 64 x 64 tile of out, each thread a 4 x 4 block in registers.
// conv3x3_8x8: 128 x 128 or 64 x 256 tiles, 8 x 8 per thread. conv3x3_thin: one pixel per thread,
// 4 rows at a time (for a handful of rows, e.g. the gradient of the 3-channel image).
// conv3x3_direct: no workgroup memory, for CPU implementations.

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

// The logical workgroup index of a grid the host may have folded into 2-D or 3-D.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
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
// The output's ReLU mask as bits (bit 6), the words binding 5 reads in the backward: bit index % 32
// of word index / 32 set where out[index] > 0 after the epilogue (0, -0 and NaN clear it), as
// relu_mask.wgsl would pack it from `out`; the buffer of binding 4 otherwise (never touched).
// Atomic because up to 32 values of one word come from different invocations.
@group(0) @binding(7) var<storage, read_write> mask_out: array<atomic<u32>>;

// The power of two `input` is divided by before rounding, from its range (ops/mixed.rs,
// `scale_exponent`): its largest magnitude lands in [2^14, 2^15), so f16 neither overflows nor
// flushes what matters.
fn range_scale() -> i32 {
    return clamp(i32(range[0]) - 141, -126, 126);
}

// x rounded to the nearest f16 value, ties to even (ops/mixed.rs, `round_f16`, bit for bit):
// magnitudes from 65520 become infinite, those up to 2^-25 zero; NaN and infinities pass.
// Written with integer operations because pack2x16float's rounding is implementation-defined.
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

// Whether the epilogue writes the ReLU mask bits (bit 6).
fn writes_mask() -> bool {
    return (params.flags & 64u) != 0u;
}

// Sets the bits `owned` of mask word `word` to those of `ones` (a subset of `owned`) and leaves the
// others. Each value's bit has exactly one owner in a dispatch, and it writes the bit whether it
// is 0 or 1, so the word comes out right whatever it held before (no clearing pass, no reliance
// on a zeroed buffer); owners of other bits of the same word act concurrently and commute.
// The atomics return nothing that is used (reductions in L2 on GPUs, no round trip).
fn write_mask_bits(word: u32, owned: u32, ones: u32) {
    let cleared = owned & ~ones;
    if (cleared != 0u) {
        atomicAnd(&mask_out[word], ~cleared);
    }
    if (ones != 0u) {
        atomicOr(&mask_out[word], ones);
    }
}

// The mask bits of the `count` (1 to 4) consecutive outputs from `first`: bit j of `positive` for
// output first + j. They span one word, or two where the run crosses a word boundary. The owner
// of the last output also owns the spare bits after it in the last word and writes them 0.
fn store_mask_run(first: u32, count: u32, positive: u32) {
    let word = first / 32u;
    let shift = first % 32u;
    let run = (1u << count) - 1u;
    var owned = run << shift;
    var owned_next = 0u;
    var ones_next = 0u;
    if (shift + count > 32u) {
        let back = 32u - shift;
        owned_next = run >> back;
        ones_next = positive >> back;
    }
    let end = first + count;
    if (end == params.out_channels * params.height * params.width && end % 32u != 0u) {
        let spare = ~0u << (end % 32u);
        if (end / 32u == word) {
            owned |= spare;
        } else {
            owned_next |= spare;
        }
    }
    write_mask_bits(word, owned, positive << shift);
    if (owned_next != 0u) {
        write_mask_bits(word + 1u, owned_next, ones_next);
    }
}

// out[index] and, with bit 6, its mask bit: for outputs whose neighbours in memory other
// invocations own.
fn store_output(m: u32, index: u32, product: f32) {
    let value = epilogue(m, index, product);
    if (writes_mask()) {
        store_mask_run(index, 1u, select(0u, 1u, value > 0.0));
    }
}

// out[index] = the product's value for row m after the epilogue the flags ask for: unscaled
// (bit 5), + bias[m] (bit 0), ReLU (bit 1), + the value already there (bit 2). Returns it.
fn epilogue(m: u32, index: u32, product: f32) -> f32 {
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
    return value;
}

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> a_tile: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> b_tile: array<f32, 1024>; // [TILE_K][TILE_N]

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

@compute @workgroup_size(16, 16, 1)
fn conv3x3(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let work = split_work(group, TILE_M, TILE_N);
    let m0 = work.m0;
    let n0 = work.n0;
    let k_end = work.k_end;
    let hw = params.height * params.width;
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = work.k_begin; k0 < k_end; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            // a is row-major [M][K]: consecutive threads read consecutive k.
            let kk = e % TILE_K;
            let mm = e / TILE_K;
            let m = m0 + mm;
            let k = k0 + kk;
            var value = 0.0;
            if (m < params.out_channels && k < k_end) {
                value = a[weight_index(m, k)];
            }
            a_tile[kk * TILE_M + mm] = value;
            // b: consecutive threads read consecutive pixels.
            let nn = e % TILE_N;
            let kb = e / TILE_N;
            b_tile[kb * TILE_N + nn] = im2col(k0 + kb, n0 + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a_reg: array<f32, 4>;
            var b_reg: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_reg[i] = a_tile[kk * TILE_M + lid.y + i * 16u];
                b_reg[i] = b_tile[kk * TILE_N + lid.x + i * 16u];
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
        if (m >= params.out_channels) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + j * 16u;
            if (n >= hw) {
                continue;
            }
            store_output(m, work.out_base + m * hw + n, acc[i * 4u + j]);
        }
    }
}

// The same implicit GEMM with 8 x 8 outputs per invocation, 256 invocations: tiles of tile_m x
// (16384 / tile_m) outputs (128 x 128, or 64 x 256 for 64-row products), reduction steps of 8.
// Workgroup memory holds the tiles as vec4 so each invocation reads its 8 rows and 8 columns with
// four 16-byte loads per step and does 64 FMAs with them; the next step's tiles are loaded from
// memory into registers while the current one is multiplied. An invocation's 8 rows (and
// columns) are two groups of 4, half a tile apart, so a warp's loads hit distinct banks.
const BLOCK_K: u32 = 8u;
var<workgroup> a_block: array<vec4<f32>, 256>; // [BLOCK_K][tile_m / 4]
var<workgroup> b_block: array<vec4<f32>, 512>; // [BLOCK_K][tile_n / 4]

// a[m .. m + 3, k], zero outside the matrix.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k >= params.in_channels * 9u) {
        return v;
    }
    let offset = tap_offset(k);
    let rows = params.out_channels;
    if (m < rows) {
        v.x = a[offset + m * params.row_stride];
    }
    if (m + 1u < rows) {
        v.y = a[offset + (m + 1u) * params.row_stride];
    }
    if (m + 2u < rows) {
        v.z = a[offset + (m + 2u) * params.row_stride];
    }
    if (m + 3u < rows) {
        v.w = a[offset + (m + 3u) * params.row_stride];
    }
    return v;
}

// im2col(k, p) for the four pixels at rows ys, columns xs (a row of -4 marks a pixel past the end).
fn load_b4(k: u32, ys: vec4<i32>, xs: vec4<i32>) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k >= params.in_channels * 9u) {
        return v;
    }
    let ci = k / 9u;
    let tap = k - ci * 9u;
    let ky = i32(tap / 3u) - 1;
    let kx = i32(tap % 3u) - 1;
    let yy = ys + vec4<i32>(ky);
    let xx = xs + vec4<i32>(kx);
    let h = i32(params.height);
    let w = i32(params.width);
    let inside = (yy >= vec4<i32>(0)) & (yy < vec4<i32>(h)) & (xx >= vec4<i32>(0)) & (xx < vec4<i32>(w));
    let base = ci * params.height * params.width;
    if (inside.x) {
        v.x = masked_input(base + u32(yy.x * w + xx.x));
    }
    if (inside.y) {
        v.y = masked_input(base + u32(yy.y * w + xx.y));
    }
    if (inside.z) {
        v.z = masked_input(base + u32(yy.z * w + xx.z));
    }
    if (inside.w) {
        v.w = masked_input(base + u32(yy.w * w + xx.w));
    }
    return v;
}

// Epilogue for out[m, n .. n + 3]: bias, ReLU, accumulate, as the flags say, and the four mask
// bits in one run (at most two words); skips what lies outside.
fn store_quad(out_base: u32, m: u32, n: u32, v: vec4<f32>) {
    if (m >= params.out_channels) {
        return;
    }
    let hw = params.height * params.width;
    let values = array<f32, 4>(v.x, v.y, v.z, v.w);
    let first = out_base + m * hw + n;
    var count = 0u;
    var positive = 0u;
    for (var j = 0u; j < 4u; j++) {
        if (n + j >= hw) {
            break;
        }
        let value = epilogue(m, first + j, values[j]);
        positive |= select(0u, 1u << j, value > 0.0);
        count += 1u;
    }
    if (writes_mask() && count > 0u) {
        store_mask_run(first, count, positive);
    }
}

@compute @workgroup_size(256)
fn conv3x3_8x8(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let tile_m = params.tile_m;
    let tile_n = 16384u / tile_m;
    let quads_m = tile_m / 4u;
    let quads_n = tile_n / 4u;
    let work = split_work(group, tile_m, tile_n);
    let m0 = work.m0;
    let n0 = work.n0;
    let hw = params.height * params.width;

    // Loading: a's BLOCK_K x quads_m quads, one per invocation (the first 128 when tile_m = 64),
    // consecutive invocations on consecutive k; b's BLOCK_K x quads_n quads, one or two per
    // invocation, consecutive invocations on consecutive pixels. Each invocation keeps its pixels.
    let a_k = tid % BLOCK_K;
    let a_quad = tid / BLOCK_K;
    let loads_a = a_quad < quads_m;
    let b_quad = tid % quads_n;
    let b_k = tid / quads_n;
    let two_b = quads_n == 64u;
    let pixels = vec4<u32>(n0 + b_quad * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    let width = vec4<u32>(params.width);
    let ys = select(vec4<i32>(-4), vec4<i32>(pixels / width), pixels < vec4<u32>(hw));
    let xs = vec4<i32>(pixels % width);

    // Computing: rows m0 + 4 ty (+ tile_m / 2), columns n0 + 4 tx (+ tile_n / 2).
    let tx = tid % (quads_n / 2u);
    let ty = tid / (quads_n / 2u);

    var a_next = vec4<f32>(0.0);
    var b_next0 = vec4<f32>(0.0);
    var b_next1 = vec4<f32>(0.0);
    if (loads_a) {
        a_next = load_a4(m0 + a_quad * 4u, work.k_begin + a_k);
    }
    b_next0 = load_b4(work.k_begin + b_k, ys, xs);
    if (two_b) {
        b_next1 = load_b4(work.k_begin + b_k + 4u, ys, xs);
    }
    var c00 = vec4<f32>(0.0);
    var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0);
    var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0);
    var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0);
    var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0);
    var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0);
    var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0);
    var c71 = vec4<f32>(0.0);
    for (var k0 = work.k_begin; k0 < work.k_end; k0 += BLOCK_K) {
        workgroupBarrier();
        if (loads_a) {
            a_block[a_k * quads_m + a_quad] = a_next;
        }
        b_block[b_k * quads_n + b_quad] = b_next0;
        if (two_b) {
            b_block[(b_k + 4u) * quads_n + b_quad] = b_next1;
        }
        workgroupBarrier();
        let k_next = k0 + BLOCK_K;
        if (k_next < work.k_end) {
            if (loads_a) {
                a_next = load_a4(m0 + a_quad * 4u, k_next + a_k);
            }
            b_next0 = load_b4(k_next + b_k, ys, xs);
            if (two_b) {
                b_next1 = load_b4(k_next + b_k + 4u, ys, xs);
            }
        }
        for (var kk = 0u; kk < BLOCK_K; kk++) {
            let a0 = a_block[kk * quads_m + ty];
            let a1 = a_block[kk * quads_m + quads_m / 2u + ty];
            let b0 = b_block[kk * quads_n + tx];
            let b1 = b_block[kk * quads_n + quads_n / 2u + tx];
            c00 = fma(vec4<f32>(a0.x), b0, c00);
            c01 = fma(vec4<f32>(a0.x), b1, c01);
            c10 = fma(vec4<f32>(a0.y), b0, c10);
            c11 = fma(vec4<f32>(a0.y), b1, c11);
            c20 = fma(vec4<f32>(a0.z), b0, c20);
            c21 = fma(vec4<f32>(a0.z), b1, c21);
            c30 = fma(vec4<f32>(a0.w), b0, c30);
            c31 = fma(vec4<f32>(a0.w), b1, c31);
            c40 = fma(vec4<f32>(a1.x), b0, c40);
            c41 = fma(vec4<f32>(a1.x), b1, c41);
            c50 = fma(vec4<f32>(a1.y), b0, c50);
            c51 = fma(vec4<f32>(a1.y), b1, c51);
            c60 = fma(vec4<f32>(a1.z), b0, c60);
            c61 = fma(vec4<f32>(a1.z), b1, c61);
            c70 = fma(vec4<f32>(a1.w), b0, c70);
            c71 = fma(vec4<f32>(a1.w), b1, c71);
        }
    }
    let m_low = m0 + ty * 4u;
    let m_high = m_low + tile_m / 2u;
    let n_low = n0 + tx * 4u;
    let n_high = n_low + tile_n / 2u;
    store_quad(work.out_base, m_low, n_low, c00);
    store_quad(work.out_base, m_low, n_high, c01);
    store_quad(work.out_base, m_low + 1u, n_low, c10);
    store_quad(work.out_base, m_low + 1u, n_high, c11);
    store_quad(work.out_base, m_low + 2u, n_low, c20);
    store_quad(work.out_base, m_low + 2u, n_high, c21);
    store_quad(work.out_base, m_low + 3u, n_low, c30);
    store_quad(work.out_base, m_low + 3u, n_high, c31);
    store_quad(work.out_base, m_high, n_low, c40);
    store_quad(work.out_base, m_high, n_high, c41);
    store_quad(work.out_base, m_high + 1u, n_low, c50);
    store_quad(work.out_base, m_high + 1u, n_high, c51);
    store_quad(work.out_base, m_high + 2u, n_low, c60);
    store_quad(work.out_base, m_high + 2u, n_high, c61);
    store_quad(work.out_base, m_high + 3u, n_low, c70);
    store_quad(work.out_base, m_high + 3u, n_high, c71);
}

// One invocation per pixel and 4 rows: for products with a handful of rows (the gradient of the
// 3-channel image), where any 64-row tile would be mostly padding. tiles_n counts pixel blocks of
// 256; the weights each invocation reads are the same across the workgroup.
@compute @workgroup_size(256)
fn conv3x3_thin(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let m0 = (group / params.tiles_n) * 4u;
    let p = (group % params.tiles_n) * 256u + lid;
    let hw = params.height * params.width;
    if (p >= hw) {
        return;
    }
    let y = i32(p / params.width);
    let x = i32(p % params.width);
    let rows = params.out_channels;
    let r1 = min(m0 + 1u, rows - 1u) * params.row_stride;
    let r2 = min(m0 + 2u, rows - 1u) * params.row_stride;
    let r3 = min(m0 + 3u, rows - 1u) * params.row_stride;
    let r0 = m0 * params.row_stride;
    var acc = vec4<f32>(0.0);
    for (var ci = 0u; ci < params.in_channels; ci++) {
        for (var tap = 0u; tap < 9u; tap++) {
            let yy = y + i32(tap / 3u) - 1;
            let xx = x + i32(tap % 3u) - 1;
            if (yy >= 0 && xx >= 0 && yy < i32(params.height) && xx < i32(params.width)) {
                let value = masked_input(ci * hw + u32(yy) * params.width + u32(xx));
                let offset = tap_offset(ci * 9u + tap);
                let w = vec4<f32>(a[offset + r0], a[offset + r1], a[offset + r2], a[offset + r3]);
                acc = fma(vec4<f32>(value), w, acc);
            }
        }
    }
    let values = array<f32, 4>(acc.x, acc.y, acc.z, acc.w);
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + r;
        if (m >= rows) {
            return;
        }
        store_output(m, m * hw + p, values[r]);
    }
}

// Finishes a split-K product: out = the sum of the `splits` partial products in `input` (each
// M * H * W long), then bias, ReLU and accumulation as the flags say.
// A workgroup's 256 outputs start at a multiple of 256, so it owns its 8 mask words whole: their
// bits meet in workgroup memory and 8 invocations store the words (no atomics contend).
var<workgroup> sum_bits: array<u32, 256>;

@compute @workgroup_size(256)
fn conv3x3_split_sum(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    let i = group * 256u + lid;
    let hw = params.height * params.width;
    let len = params.out_channels * hw;
    var bit = 0u;
    if (i < len) {
        var value = 0.0;
        for (var split = 0u; split < params.splits; split++) {
            value += input[split * len + i];
        }
        let stored = epilogue(i / hw, i, value);
        bit = select(0u, 1u << (lid % 32u), stored > 0.0);
    }
    if (!writes_mask()) {
        return;
    }
    sum_bits[lid] = bit;
    workgroupBarrier();
    let word = group * 8u + lid;
    if (lid < 8u && word * 32u < len) {
        var packed = 0u;
        for (var j = 0u; j < 32u; j++) {
            packed |= sum_bits[lid * 32u + j];
        }
        atomicStore(&mask_out[word], packed);
    }
}

// The same product computed directly, without workgroup memory or barriers: each invocation owns
// 16 rows of `a` (output channels) times 4 neighbouring pixels of one image row, loads each input
// row segment once (6 values cover the 3 taps of 4 pixels), and all invocations of a workgroup
// share their 16 rows, so every load of `a` is uniform across the workgroup. This suits CPU
// implementations (lavapipe, SwiftShader), where barriers are expensive and caches do the tiling.
// The 16 accumulators are written out as separate variables (not an array): CPU compilers keep
// them in registers only when no index into them is dynamic.
const DIRECT_PIXELS: u32 = 4u;
const DIRECT_THREADS: u32 = 16u;

fn load_padded(row_ok: bool, row_base: u32, ix: i32) -> f32 {
    if (row_ok && ix >= 0 && ix < i32(params.width)) {
        return masked_input(row_base + u32(ix));
    }
    return 0.0;
}

fn store_direct(m: u32, y: u32, x0: u32, acc: vec4<f32>) {
    if (m >= params.out_channels) {
        return;
    }
    let hw = params.height * params.width;
    let first = m * hw + y * params.width + x0;
    var count = 0u;
    var positive = 0u;
    for (var j = 0u; j < DIRECT_PIXELS; j++) {
        if (x0 + j >= params.width) {
            break;
        }
        let value = epilogue(m, first + j, acc[j]);
        positive |= select(0u, 1u << j, value > 0.0);
        count += 1u;
    }
    if (writes_mask() && count > 0u) {
        store_mask_run(first, count, positive);
    }
}

@compute @workgroup_size(16, 1, 1)
fn conv3x3_direct(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    // tiles_n counts workgroups along the pixel blocks here.
    let m0 = (group / params.tiles_n) * 16u;
    let blocks_per_row = (params.width + DIRECT_PIXELS - 1u) / DIRECT_PIXELS;
    let block = (group % params.tiles_n) * DIRECT_THREADS + lid;
    let y = block / blocks_per_row;
    let x0 = (block % blocks_per_row) * DIRECT_PIXELS;
    let in_image = y < params.height;
    let hw = params.height * params.width;
    let last_row = params.out_channels - 1u;
    // Rows past the last are clamped onto it (their results are never stored).
    let w0 = min(m0 + 0u, last_row) * params.row_stride;
    let w1 = min(m0 + 1u, last_row) * params.row_stride;
    let w2 = min(m0 + 2u, last_row) * params.row_stride;
    let w3 = min(m0 + 3u, last_row) * params.row_stride;
    let w4 = min(m0 + 4u, last_row) * params.row_stride;
    let w5 = min(m0 + 5u, last_row) * params.row_stride;
    let w6 = min(m0 + 6u, last_row) * params.row_stride;
    let w7 = min(m0 + 7u, last_row) * params.row_stride;
    let w8 = min(m0 + 8u, last_row) * params.row_stride;
    let w9 = min(m0 + 9u, last_row) * params.row_stride;
    let w10 = min(m0 + 10u, last_row) * params.row_stride;
    let w11 = min(m0 + 11u, last_row) * params.row_stride;
    let w12 = min(m0 + 12u, last_row) * params.row_stride;
    let w13 = min(m0 + 13u, last_row) * params.row_stride;
    let w14 = min(m0 + 14u, last_row) * params.row_stride;
    let w15 = min(m0 + 15u, last_row) * params.row_stride;
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
    for (var ci = 0u; ci < params.in_channels; ci++) {
        for (var ky = 0u; ky < 3u; ky++) {
            // Input row y + ky - 1, columns x0 - 1 .. x0 + 4, zero outside the image.
            let iy = i32(y) + i32(ky) - 1;
            let row_ok = in_image && iy >= 0 && iy < i32(params.height);
            let row_base = ci * hw + u32(max(iy, 0)) * params.width;
            let s0 = load_padded(row_ok, row_base, i32(x0) - 1);
            let s1 = load_padded(row_ok, row_base, i32(x0));
            let s2 = load_padded(row_ok, row_base, i32(x0) + 1);
            let s3 = load_padded(row_ok, row_base, i32(x0) + 2);
            let s4 = load_padded(row_ok, row_base, i32(x0) + 3);
            let s5 = load_padded(row_ok, row_base, i32(x0) + 4);
            let left = vec4<f32>(s0, s1, s2, s3);
            let mid = vec4<f32>(s1, s2, s3, s4);
            let right = vec4<f32>(s2, s3, s4, s5);
            // Taps kx = 0, 1, 2 of this row of the kernel, flipped for the backward pass.
            let flipped = (params.flags & 16u) != 0u;
            let k = ci * params.ci_stride + select(ky * 3u, 8u - ky * 3u, flipped);
            let k1 = select(k + 1u, k - 1u, flipped);
            let k2 = select(k + 2u, k - 2u, flipped);
            acc0 = fma(vec4<f32>(a[w0 + k]), left, fma(vec4<f32>(a[w0 + k1]), mid, fma(vec4<f32>(a[w0 + k2]), right, acc0)));
            acc1 = fma(vec4<f32>(a[w1 + k]), left, fma(vec4<f32>(a[w1 + k1]), mid, fma(vec4<f32>(a[w1 + k2]), right, acc1)));
            acc2 = fma(vec4<f32>(a[w2 + k]), left, fma(vec4<f32>(a[w2 + k1]), mid, fma(vec4<f32>(a[w2 + k2]), right, acc2)));
            acc3 = fma(vec4<f32>(a[w3 + k]), left, fma(vec4<f32>(a[w3 + k1]), mid, fma(vec4<f32>(a[w3 + k2]), right, acc3)));
            acc4 = fma(vec4<f32>(a[w4 + k]), left, fma(vec4<f32>(a[w4 + k1]), mid, fma(vec4<f32>(a[w4 + k2]), right, acc4)));
            acc5 = fma(vec4<f32>(a[w5 + k]), left, fma(vec4<f32>(a[w5 + k1]), mid, fma(vec4<f32>(a[w5 + k2]), right, acc5)));
            acc6 = fma(vec4<f32>(a[w6 + k]), left, fma(vec4<f32>(a[w6 + k1]), mid, fma(vec4<f32>(a[w6 + k2]), right, acc6)));
            acc7 = fma(vec4<f32>(a[w7 + k]), left, fma(vec4<f32>(a[w7 + k1]), mid, fma(vec4<f32>(a[w7 + k2]), right, acc7)));
            acc8 = fma(vec4<f32>(a[w8 + k]), left, fma(vec4<f32>(a[w8 + k1]), mid, fma(vec4<f32>(a[w8 + k2]), right, acc8)));
            acc9 = fma(vec4<f32>(a[w9 + k]), left, fma(vec4<f32>(a[w9 + k1]), mid, fma(vec4<f32>(a[w9 + k2]), right, acc9)));
            acc10 = fma(vec4<f32>(a[w10 + k]), left, fma(vec4<f32>(a[w10 + k1]), mid, fma(vec4<f32>(a[w10 + k2]), right, acc10)));
            acc11 = fma(vec4<f32>(a[w11 + k]), left, fma(vec4<f32>(a[w11 + k1]), mid, fma(vec4<f32>(a[w11 + k2]), right, acc11)));
            acc12 = fma(vec4<f32>(a[w12 + k]), left, fma(vec4<f32>(a[w12 + k1]), mid, fma(vec4<f32>(a[w12 + k2]), right, acc12)));
            acc13 = fma(vec4<f32>(a[w13 + k]), left, fma(vec4<f32>(a[w13 + k1]), mid, fma(vec4<f32>(a[w13 + k2]), right, acc13)));
            acc14 = fma(vec4<f32>(a[w14 + k]), left, fma(vec4<f32>(a[w14 + k1]), mid, fma(vec4<f32>(a[w14 + k2]), right, acc14)));
            acc15 = fma(vec4<f32>(a[w15 + k]), left, fma(vec4<f32>(a[w15 + k1]), mid, fma(vec4<f32>(a[w15 + k2]), right, acc15)));
        }
    }
    if (!in_image) {
        return;
    }
    store_direct(m0 + 0u, y, x0, acc0);
    store_direct(m0 + 1u, y, x0, acc1);
    store_direct(m0 + 2u, y, x0, acc2);
    store_direct(m0 + 3u, y, x0, acc3);
    store_direct(m0 + 4u, y, x0, acc4);
    store_direct(m0 + 5u, y, x0, acc5);
    store_direct(m0 + 6u, y, x0, acc6);
    store_direct(m0 + 7u, y, x0, acc7);
    store_direct(m0 + 8u, y, x0, acc8);
    store_direct(m0 + 9u, y, x0, acc9);
    store_direct(m0 + 10u, y, x0, acc10);
    store_direct(m0 + 11u, y, x0, acc11);
    store_direct(m0 + 12u, y, x0, acc12);
    store_direct(m0 + 13u, y, x0, acc13);
    store_direct(m0 + 14u, y, x0, acc14);
    store_direct(m0 + 15u, y, x0, acc15);
}

// Winograd F(2x2, 3x3), f32 only: the same convolution with 16 multiplications per 2 x 2 outputs
// and input channel instead of 36. conv3x3_winograd_weights first writes U = G g G^T (4 x 4) for
// every row m and channel c of the product into `out` (the host binds a scratch buffer there),
// reading g through tap_offset, so the backward's flipped, transposed weights come out of the same
// strides and flags. conv3x3_winograd then reads U as `a`: each invocation owns one 2 x 2 output
// tile of one row, transforms each channel's 4 x 4 input patch (V = B^T d B, through
// masked_input, so the fused ReLU backward works as everywhere), accumulates U .* V and
// transforms back (Y = A^T M A) into the shared epilogue. tiles_n counts workgroups of 64 tiles.
const WINOGRAD_THREADS: u32 = 64u;

@compute @workgroup_size(64)
fn conv3x3_winograd_weights(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let index = group_index(wid, nwg) * WINOGRAD_THREADS + lid;
    if (index >= params.out_channels * params.in_channels) {
        return;
    }
    let m = index / params.in_channels;
    let c = index % params.in_channels;
    var g: array<f32, 9>;
    for (var t = 0u; t < 9u; t++) {
        g[t] = a[weight_index(m, c * 9u + t)];
    }
    // G g (4 x 3), G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], then (G g) G^T (4 x 4).
    var gg: array<f32, 12>;
    for (var j = 0u; j < 3u; j++) {
        let g0 = g[j];
        let g1 = g[3u + j];
        let g2 = g[6u + j];
        gg[j] = g0;
        gg[3u + j] = 0.5 * (g0 + g1 + g2);
        gg[6u + j] = 0.5 * (g0 - g1 + g2);
        gg[9u + j] = g2;
    }
    for (var i = 0u; i < 4u; i++) {
        let r0 = gg[i * 3u];
        let r1 = gg[i * 3u + 1u];
        let r2 = gg[i * 3u + 2u];
        let base = index * 16u + i * 4u;
        out[base] = r0;
        out[base + 1u] = 0.5 * (r0 + r1 + r2);
        out[base + 2u] = 0.5 * (r0 - r1 + r2);
        out[base + 3u] = r2;
    }
}

@compute @workgroup_size(64)
fn conv3x3_winograd(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = group_index(wid, nwg);
    if (group >= params.groups) {
        return;
    }
    let m = group / params.tiles_n;
    let tile = (group % params.tiles_n) * WINOGRAD_THREADS + lid;
    let tiles_x = (params.width + 1u) / 2u;
    let tiles_y = (params.height + 1u) / 2u;
    if (tile >= tiles_x * tiles_y) {
        return;
    }
    let y0 = i32(tile / tiles_x) * 2 - 1;
    let x0 = i32(tile % tiles_x) * 2 - 1;
    let hw = params.height * params.width;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var c = 0u; c < params.in_channels; c++) {
        // d: the 4 x 4 patch with its top-left at (y0, x0), zero outside the image.
        var d: array<f32, 16>;
        for (var i = 0u; i < 4u; i++) {
            let y = y0 + i32(i);
            for (var j = 0u; j < 4u; j++) {
                let x = x0 + i32(j);
                var value = 0.0;
                if (y >= 0 && x >= 0 && y < i32(params.height) && x < i32(params.width)) {
                    value = masked_input(c * hw + u32(y) * params.width + u32(x));
                }
                d[i * 4u + j] = value;
            }
        }
        // B^T d (rows), B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
        var bd: array<f32, 16>;
        for (var j = 0u; j < 4u; j++) {
            bd[j] = d[j] - d[8u + j];
            bd[4u + j] = d[4u + j] + d[8u + j];
            bd[8u + j] = d[8u + j] - d[4u + j];
            bd[12u + j] = d[4u + j] - d[12u + j];
        }
        // (B^T d) B (columns), then M += U .* V.
        let u = (m * params.in_channels + c) * 16u;
        for (var i = 0u; i < 4u; i++) {
            let r = i * 4u;
            let v0 = bd[r] - bd[r + 2u];
            let v1 = bd[r + 1u] + bd[r + 2u];
            let v2 = bd[r + 2u] - bd[r + 1u];
            let v3 = bd[r + 1u] - bd[r + 3u];
            acc[r] = fma(a[u + r], v0, acc[r]);
            acc[r + 1u] = fma(a[u + r + 1u], v1, acc[r + 1u]);
            acc[r + 2u] = fma(a[u + r + 2u], v2, acc[r + 2u]);
            acc[r + 3u] = fma(a[u + r + 3u], v3, acc[r + 3u]);
        }
    }
    // Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1].
    var am: array<f32, 8>;
    for (var j = 0u; j < 4u; j++) {
        am[j] = acc[j] + acc[4u + j] + acc[8u + j];
        am[4u + j] = acc[4u + j] - acc[8u + j] - acc[12u + j];
    }
    for (var i = 0u; i < 2u; i++) {
        let y = u32(y0 + 1) + i;
        let r = i * 4u;
        let out0 = am[r] + am[r + 1u] + am[r + 2u];
        let out1 = am[r + 1u] - am[r + 2u] - am[r + 3u];
        let x = u32(x0 + 1);
        if (y < params.height) {
            let first = m * hw + y * params.width + x;
            var count = 1u;
            var positive = select(0u, 1u, epilogue(m, first, out0) > 0.0);
            if (x + 1u < params.width) {
                positive |= select(0u, 2u, epilogue(m, first + 1u, out1) > 0.0);
                count = 2u;
            }
            if (writes_mask()) {
                store_mask_run(first, count, positive);
            }
        }
    }
}
