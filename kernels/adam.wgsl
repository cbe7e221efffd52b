// One Adam step with PyTorch's exact update (torch.optim.Adam, no weight decay, no amsgrad):
//   m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
//   p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
// step_size = lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t) are computed from the
// step count t on the host in f64, as PyTorch computes them in Python floats, and arrive in the uniform.
//
// The parameters are a CHW image (channel = i / plane). Adam may run on another variable than the
// one stored: with the stored p = a_c (x - b_c) per channel (the network's normalized input) and
// Adam on x (RGB in [0, 1], crowsonkb's variable), its update of p is the same formula with
// step_size * a_c and eps / a_c (x's gradient is a_c times p's, its moments a_c and a_c^2 times),
// so the host passes step_scale = a_c and eps_c = eps / a_c (1 and eps: Adam on p itself). With
// `bounded`, p is clamped to [lo_c, hi_c] after the update (x to [0, 1], as crowsonkb's clamp_).

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,
    beta2: f32,
    one_minus_beta1: f32, // 1 - beta1 and 1 - beta2 rounded from f64, as PyTorch's scalars are
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    plane: u32,   // values per channel (len when the array is not an image)
    bounded: u32, // 1: clamp to [lo, hi] after the update
    _pad0: u32,
    _pad1: u32,
    step_scale: vec4<f32>, // per channel
    eps_c: vec4<f32>,      // per channel (replaces eps)
    lo: vec4<f32>,
    hi: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;

@compute @workgroup_size(256)
fn adam_step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * 256u + lid;
    if (i >= params.len) {
        return;
    }
    let g = grad[i];
    let m = exp_avg[i] + params.one_minus_beta1 * (g - exp_avg[i]);
    let v = params.beta2 * exp_avg_sq[i] + params.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let c = min(i / params.plane, 3u);
    let denom = sqrt(v) / params.bias_correction2_sqrt + params.eps_c[c];
    var p = param[i] - (params.step_size * params.step_scale[c]) * (m / denom);
    if (params.bounded != 0u) {
        p = clamp(p, params.lo[c], params.hi[c]);
    }
    param[i] = p;
}
