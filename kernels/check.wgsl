// Flags non-finite values. Shader compilers may assume floats are finite (WGSL allows it), so
// `x != x` can be folded away; the test looks at the exponent bits instead, which no fast-math
// rule can remove. The flag keeps the smallest step number that saw a non-finite value.

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,
    step: u32,   // the step being checked, written before every submit
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> first_bad_step: array<atomic<u32>>;

fn is_non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn flag_non_finite(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
    if (i >= params.len) {
        return;
    }
    if (is_non_finite(values[i])) {
        atomicMin(&first_bad_step[0], params.step);
    }
}
