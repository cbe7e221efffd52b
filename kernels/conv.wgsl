// 3x3 convolution, padding 1, stride 1, as an implicit GEMM:
//   out[m, p] = sum_k a[m, k] * im2col(input)[k, p]  (+ bias[m]) (then ReLU),
// with k = ci * 9 + ky * 3 + kx and p = y * width + x.
// Forward: a = the torchvision weight [cout, cin, 3, 3] read as [cout, cin * 9].
// Backward to the input: the same product with a = the flipped, transposed weight
// a'[ci, co * 9 + k] = w[co, ci, 8 - k], applied to the output gradient. Both read the one
// torchvision buffer: `ci_stride` / `row_stride` and the flip flag say how (k = channel * 9 + tap).
// Each workgroup computes a 64 x 64 tile of out; each thread a 4 x 4 block in registers.

struct Params {
    groups: u32,        // logical workgroups (filled by the host); grid may be folded
    in_channels: u32,   // channels of `input` (K = in_channels * 9)
    out_channels: u32,  // rows of `a` (M)
    height: u32,
    width: u32,
    tiles_n: u32,       // ceil(height * width / 64)
    flags: u32,         // bit 0: add bias, bit 1: apply ReLU, bit 2: accumulate into out,
                        // bit 3: read input * (mask > 0) (the ReLU backward fused into the load),
                        // bit 4: taps flipped (8 - tap), for the backward pass
    ci_stride: u32,     // distance in `a` between consecutive input channels of one row
    row_stride: u32,    // distance in `a` between consecutive rows
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Index in `a` of row m, reduction index k = channel * 9 + tap.
fn weight_index(m: u32, k: u32) -> u32 {
    let channel = k / 9u;
    var tap = k - channel * 9u;
    if ((params.flags & 16u) != 0u) {
        tap = 8u - tap;
    }
    return channel * params.ci_stride + m * params.row_stride + tap;
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The forward ReLU's mask as bits (bit 3): bit index % 32 of word index / 32 is set where the ReLU
// output at `index` is > 0 and lets the input through (`relu_mask.wgsl` packs it); any buffer otherwise.
@group(0) @binding(5) var<storage, read> mask: array<u32>;

// input[index], or 0 where the fused ReLU backward blocks it.
fn masked_input(index: u32) -> f32 {
    let value = input[index];
    if ((params.flags & 8u) != 0u && ((mask[index / 32u] >> (index % 32u)) & 1u) == 0u) {
        return 0.0;
    }
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
    let group = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    if (group >= params.groups) {
        return;
    }
    let m0 = (group / params.tiles_n) * TILE_M;
    let n0 = (group % params.tiles_n) * TILE_N;
    let k_total = params.in_channels * 9u;
    let hw = params.height * params.width;
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = 0u; k0 < k_total; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            // a is row-major [M][K]: consecutive threads read consecutive k.
            let kk = e % TILE_K;
            let mm = e / TILE_K;
            let m = m0 + mm;
            let k = k0 + kk;
            var value = 0.0;
            if (m < params.out_channels && k < k_total) {
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
            var value = acc[i * 4u + j];
            if ((params.flags & 1u) != 0u) {
                value += bias[m];
            }
            if ((params.flags & 2u) != 0u) {
                value = max(value, 0.0);
            }
            let index = m * hw + n;
            if ((params.flags & 4u) != 0u) {
                value += out[index];
            }
            out[index] = value;
        }
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
    for (var j = 0u; j < DIRECT_PIXELS; j++) {
        let x = x0 + j;
        if (x >= params.width) {
            return;
        }
        var value = acc[j];
        if ((params.flags & 1u) != 0u) {
            value += bias[m];
        }
        if ((params.flags & 2u) != 0u) {
            value = max(value, 0.0);
        }
        let index = m * hw + y * params.width + x;
        if ((params.flags & 4u) != 0u) {
            value += out[index];
        }
        out[index] = value;
    }
}

@compute @workgroup_size(16, 1, 1)
fn conv3x3_direct(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
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
