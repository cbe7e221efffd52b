// Copies a rectangle of a C x H x W tensor into another C x H' x W' tensor at another place, one
// element per invocation: how the tiled executor moves a window of the image into a network's
// input, a tile's owned features out of a window, and a tile's image gradient back.

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
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn copy_rect(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
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
