// 2x2 max-pool and average pool, stride 2, floor on odd sizes (PyTorch's default). The max-pool
// forward also writes each output's arg-max as a 2-bit code (0..3, the window position in row-major
// order; ties go to the first maximum, PyTorch's rule), 16 codes to a u32 word, least significant
// bits first. The backward gathers from those codes alone: each input element takes its window's
// output gradient if it is the window's arg-max, and 0 otherwise (also for the last row/column
// that an odd size drops).

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    channels: u32,
    height: u32, // input
    width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;       // forward: x; backward: dL/dy
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;   // forward: y; backward: dL/dx
@group(0) @binding(3) var<storage, read_write> codes: array<u32>; // max-pool: arg-max codes, 16 per word

// The codes of one forward workgroup's 256 outputs, each shifted into its place in its word.
var<workgroup> staged_codes: array<u32, 256>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
}

// Index (0..3, row-major) of the first maximum of the window at output (c, oy, ox).
fn window_argmax(c: u32, oy: u32, ox: u32) -> u32 {
    let base = (c * params.height + oy * 2u) * params.width + ox * 2u;
    var best = input[base];
    var best_index = 0u;
    let candidates = array<u32, 3>(base + 1u, base + params.width, base + params.width + 1u);
    for (var i = 0u; i < 3u; i++) {
        let value = input[candidates[i]];
        if (value > best) {
            best = value;
            best_index = i + 1u;
        }
    }
    return best_index;
}

// One invocation per output; a workgroup's 256 codes meet in workgroup memory and 16 of its
// invocations write its 16 words (the bits past the last output are 0).
@compute @workgroup_size(256)
fn maxpool_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    if (group >= params.groups) {
        return;
    }
    let i = group * 256u + lid;
    let plane = params.out_height * params.out_width;
    let outputs = params.channels * plane;
    var code = 0u;
    if (i < outputs) {
        let c = i / plane;
        let oy = (i % plane) / params.out_width;
        let ox = i % params.out_width;
        let base = (c * params.height + oy * 2u) * params.width + ox * 2u;
        dst[i] = max(max(input[base], input[base + 1u]),
                     max(input[base + params.width], input[base + params.width + 1u]));
        code = window_argmax(c, oy, ox);
    }
    staged_codes[lid] = code << ((lid % 16u) * 2u);
    workgroupBarrier();
    let word = group * 16u + lid;
    if (lid < 16u && word * 16u < outputs) {
        var packed = 0u;
        for (var j = 0u; j < 16u; j++) {
            packed |= staged_codes[lid * 16u + j];
        }
        codes[word] = packed;
    }
}

// Reads the forward's codes, not its input: `input` (binding 1) holds dL/dy here.
@compute @workgroup_size(256)
fn maxpool_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    let plane = params.height * params.width;
    if (i >= params.channels * plane) {
        return;
    }
    let c = i / plane;
    let y = (i % plane) / params.width;
    let x = i % params.width;
    let oy = y / 2u;
    let ox = x / 2u;
    var grad = 0.0;
    if (oy < params.out_height && ox < params.out_width) {
        let o = (c * params.out_height + oy) * params.out_width + ox;
        let code = (codes[o / 16u] >> ((o % 16u) * 2u)) & 3u;
        if (code == (y % 2u) * 2u + (x % 2u)) {
            grad = input[o];
        }
    }
    dst[i] = grad;
}

// Average pool: y = (x00 + x01 + x10 + x11) / 4, like PyTorch's AvgPool2d(2, 2) (no padding).
@compute @workgroup_size(256)
fn avgpool_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    let plane = params.out_height * params.out_width;
    if (i >= params.channels * plane) {
        return;
    }
    let c = i / plane;
    let oy = (i % plane) / params.out_width;
    let ox = i % params.out_width;
    let base = (c * params.height + oy * 2u) * params.width + ox * 2u;
    dst[i] = 0.25 * ((input[base] + input[base + 1u]) + (input[base + params.width] + input[base + params.width + 1u]));
}

// Average-pool backward, a gather: every input element of a window takes a quarter of the window's
// output gradient, which arrives in `input` (binding 1) so that this entry uses bindings 1 and 2 only;
// the last row/column that an odd size drops gets 0.
@compute @workgroup_size(256)
fn avgpool_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = element(wid, nwg, lid);
    let plane = params.height * params.width;
    if (i >= params.channels * plane) {
        return;
    }
    let c = i / plane;
    let oy = ((i % plane) / params.width) / 2u;
    let ox = (i % params.width) / 2u;
    var grad = 0.0;
    if (oy < params.out_height && ox < params.out_width) {
        grad = 0.25 * input[(c * params.out_height + oy) * params.out_width + ox];
    }
    dst[i] = grad;
}
