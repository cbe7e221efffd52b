// Image pre- and post-processing on CHW planes: an RGB image in [0, 1] to the network's input
// (input channel c = (rgb[source[c]] * scale - mean[c]) / stddev[c]), and the inverse clamped to [0, 1].

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,    // 3 * plane
    plane: u32,  // height * width
    scale: f32,  // 1 (torchvision) or 255 (Caffe)
    mean: vec4<f32>,
    stddev: vec4<f32>,
    source: vec4<u32>, // the RGB channel each input channel reads (2, 1, 0: BGR)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
}

@compute @workgroup_size(256)
fn normalize(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    let c = i / params.plane;
    let rgb = params.source[c] * params.plane + i % params.plane;
    dst[i] = (src[rgb] * params.scale - params.mean[c]) / params.stddev[c];
}

@compute @workgroup_size(256)
fn denormalize_clamp(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    let c = i / params.plane;
    let rgb = params.source[c] * params.plane + i % params.plane;
    dst[rgb] = clamp((src[i] * params.stddev[c] + params.mean[c]) / params.scale, 0.0, 1.0);
}
