// ReLU forward and backward, one element per invocation.
// The backward reads the forward's output: y > 0 exactly where x > 0.

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Bindings every entry uses come first, so each entry's bindings are consecutive.
@group(0) @binding(1) var<storage, read> src: array<f32>;       // forward: x; backward: y
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // forward: y; backward: dL/dx
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;  // backward only: dL/dy

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
}

@compute @workgroup_size(256)
fn relu_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = max(src[i], 0.0);
}

@compute @workgroup_size(256)
fn relu_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    if (i >= params.len) {
        return;
    }
    dst[i] = select(0.0, grad_out[i], src[i] > 0.0);
}
