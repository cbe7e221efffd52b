// One Adam step with PyTorch's exact update (torch.optim.Adam, no weight decay, no amsgrad):
//   m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
//   p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
// step_size = lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t) are computed from the
// step count t on the host in f64, as PyTorch computes them in Python floats, and arrive in the uniform.

struct Params {
    groups: u32, // logical workgroups (filled by the host)
    len: u32,
    beta2: f32,
    one_minus_beta1: f32, // 1 - beta1 and 1 - beta2 rounded from f64, as PyTorch's scalars are
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
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
    let denom = sqrt(v) / params.bias_correction2_sqrt + params.eps;
    param[i] = param[i] - params.step_size * (m / denom);
}
