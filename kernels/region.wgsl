// Copies a rectangle of a C x H x W tensor into another C x H' x W' tensor at another place, one
// element per invocation: how the tiled executor moves a window of the image into a network's
// input, a tile's owned features out of a window, and a tile's image gradient back. And pads a
// tensor by a border (of zeros, or of its edges replicated), with the replicated border's
// backward, which folds the border's gradient back onto the edges: how a first convolution with
// replicate padding runs on the ordinary zero-padded kernels.

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    channels: u32,
    rect_h: u32,
    rect_w: u32,
    src_h: u32,
    src_w: u32,
    src_y: u32,
    src_x: u32,
    dst_h: u32,
    dst_w: u32,
    dst_y: u32,
    dst_x: u32,
    // pad: 0 zeros, 1 the edges replicated.
    mode: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The element of this invocation: one per element, 256 to a workgroup, over a grid that may be
// folded across dimensions.
fn element_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
}

@compute @workgroup_size(256)
fn copy_rect(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element_index(lid, wid, nwg);
    let plane = params.rect_h * params.rect_w;
    if (i >= params.channels * plane) {
        return;
    }
    let c = i / plane;
    let y = (i % plane) / params.rect_w;
    let x = i % params.rect_w;
    let src_index = (c * params.src_h + params.src_y + y) * params.src_w + params.src_x + x;
    let dst_index = (c * params.dst_h + params.dst_y + y) * params.dst_w + params.dst_x + x;
    dst[dst_index] = src[src_index];
}

// dst (C x (H + 2b) x (W + 2b), b = dst_y) = src (C x H x W, H = src_h, W = src_w) with a border
// of b: zeros (mode 0), or the nearest edge value (mode 1, PyTorch's padding_mode='replicate').
@compute @workgroup_size(256)
fn pad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element_index(lid, wid, nwg);
    let plane = params.dst_h * params.dst_w;
    if (i >= params.channels * plane) {
        return;
    }
    let c = i / plane;
    let y = i32((i % plane) / params.dst_w) - i32(params.dst_y);
    let x = i32(i % params.dst_w) - i32(params.dst_y);
    let inside = y >= 0 && y < i32(params.src_h) && x >= 0 && x < i32(params.src_w);
    if (params.mode == 0u && !inside) {
        dst[i] = 0.0;
        return;
    }
    let sy = u32(clamp(y, 0, i32(params.src_h) - 1));
    let sx = u32(clamp(x, 0, i32(params.src_w) - 1));
    dst[i] = src[(c * params.src_h + sy) * params.src_w + sx];
}

// The backward of `pad` with replicated edges: dst (C x H x W) = the sum of the gradient src
// (C x (H + 2b) x (W + 2b)) over every padded position that reads it: its own, and on an edge
// the border's positions beyond it. H = dst_h, W = dst_w, b = dst_y.
@compute @workgroup_size(256)
fn fold_replicate(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element_index(lid, wid, nwg);
    let plane = params.dst_h * params.dst_w;
    if (i >= params.channels * plane) {
        return;
    }
    let c = i / plane;
    let y = (i % plane) / params.dst_w;
    let x = i % params.dst_w;
    let b = params.dst_y;
    let padded_h = params.dst_h + 2u * b;
    let padded_w = params.dst_w + 2u * b;
    // Rows (columns) of the padded tensor that read row y (column x): y + b, and the border too
    // on the first and last row.
    var row_lo = y + b;
    var row_hi = y + b;
    if (y == 0u) { row_lo = 0u; }
    if (y == params.dst_h - 1u) { row_hi = padded_h - 1u; }
    var col_lo = x + b;
    var col_hi = x + b;
    if (x == 0u) { col_lo = 0u; }
    if (x == params.dst_w - 1u) { col_hi = padded_w - 1u; }
    var sum = 0.0;
    for (var r = row_lo; r <= row_hi; r++) {
        for (var q = col_lo; q <= col_hi; q++) {
            sum += src[(c * padded_h + r) * padded_w + q];
        }
    }
    dst[i] = sum;
}
