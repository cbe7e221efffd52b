// 3x3 convolution, padding 1, stride 1, as an implicit GEMM:
//   out[m, p] = sum_k a[m, k] * im2col(input)[k, p]  (+ bias[m]) (then ReLU),
// with k = ci * 9 + ky * 3 + kx and p = y * width + x.
// Forward: a = the torchvision weight [cout, cin, 3, 3] read as [cout, cin * 9].
// Backward to the input: the same product with a = the flipped, transposed weight
// [cin, cout * 9] (a'[ci, co * 9 + k] = w[co, ci, 8 - k]) applied to the output gradient.
// Each workgroup computes a 64 x 64 tile of out; each thread a 4 x 4 block in registers.

struct Params {
    groups: u32,        // logical workgroups (filled by the host); grid may be folded
    in_channels: u32,   // channels of `input` (K = in_channels * 9)
    out_channels: u32,  // rows of `a` (M)
    height: u32,
    width: u32,
    tiles_n: u32,       // ceil(height * width / 64)
    flags: u32,         // bit 0: add bias, bit 1: apply ReLU, bit 2: accumulate into out
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

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
    return input[ci * hw + u32(y) * params.width + u32(x)];
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
                value = a[m * k_total + k];
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
