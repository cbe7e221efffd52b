//! Adam with PyTorch's exact update (torch.optim.Adam defaults: betas (0.9, 0.999), eps 1e-8, no
//! weight decay), on a GPU buffer. The f64 reference is the same update written plainly.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource};
use crate::ops::bands::{Bands, check_split};

pub const SHADER: ShaderSource = ShaderSource { name: "adam", source: include_str!("../../kernels/adam.wgsl") };

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamConfig {
    /// Learning rate `lr` with the rest as torch.optim.Adam's defaults. The method's rate is
    /// `Options::default().learning_rate`, its one source.
    pub fn new(lr: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    _pad: [u32; 4],
}

/// The optimizer state of one parameter array: its moments and the step count. The step count
/// reaches the shader as its two bias corrections, computed here in f64 as PyTorch does. The
/// parameters may be in bands (`ops::bands`): one kernel per band, the same update.
pub struct Adam {
    pub config: AdamConfig,
    pub exp_avg: Bands,
    pub exp_avg_sq: Bands,
    /// Values per band, in band order (each band's kernel has its own length).
    band_lens: Vec<usize>,
    steps_taken: u64,
}

impl Adam {
    /// Zeroed moments for `len` parameters in one buffer, and the kernel that updates `param` from `grad`.
    pub fn new(
        ctx: &Context,
        len: usize,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        config: AdamConfig,
    ) -> Result<(Self, Kernel), GpuError> {
        let (adam, mut kernels) =
            Self::banded(ctx, &Bands::flat(len, param.clone()), &Bands::flat(len, grad.clone()), config)?;
        Ok((adam, kernels.remove(0)))
    }

    /// Zeroed moments split as `param` is, and one kernel per band that updates it from `grad`
    /// (split alike).
    pub fn banded(
        ctx: &Context,
        param: &Bands,
        grad: &Bands,
        config: AdamConfig,
    ) -> Result<(Self, Vec<Kernel>), GpuError> {
        check_split("Adam's parameters and gradient", &[param, grad])?;
        let exp_avg = param.zeros_like(ctx, "adam exp_avg")?;
        let exp_avg_sq = param.zeros_like(ctx, "adam exp_avg_sq")?;
        let band_lens = param.bands().iter().map(|b| b.shape.len()).collect();
        let adam = Self { config, exp_avg, exp_avg_sq, band_lens, steps_taken: 0 };
        let kernels = (0..adam.band_lens.len())
            .map(|b| {
                let len = adam.band_lens[b];
                let buffers = [grad, param, &adam.exp_avg, &adam.exp_avg_sq].map(|a| &a.bands()[b].buffer);
                let params = adam.params(1, len);
                Kernel::new(ctx, SHADER, "adam_step", bytemuck::bytes_of(&params), &buffers, (len as u32).div_ceil(256))
            })
            .collect::<Result<_, GpuError>>()?;
        Ok((adam, kernels))
    }

    fn params(&self, step: u64, len: usize) -> Params {
        let c = self.config;
        Params {
            groups: 0,
            len: len as u32,
            beta2: c.beta2 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            eps: c.eps as f32,
            step_size: (c.lr / (1.0 - c.beta1.powf(step as f64))) as f32,
            bias_correction2_sqrt: (1.0 - c.beta2.powf(step as f64)).sqrt() as f32,
            _pad: [0; 4],
        }
    }

    /// Counts one more step and writes its bias corrections into `kernel`'s uniform (the one
    /// kernel of `new`); call before submitting the step that contains it.
    pub fn advance(&mut self, ctx: &Context, kernel: &Kernel) {
        self.advance_bands(ctx, &[kernel]);
    }

    /// As `advance` for the kernels of `banded`, in band order.
    pub fn advance_bands(&mut self, ctx: &Context, kernels: &[&Kernel]) {
        debug_assert_eq!(kernels.len(), self.band_lens.len());
        self.steps_taken += 1;
        for (kernel, &len) in kernels.iter().zip(&self.band_lens) {
            kernel.set_params(ctx, bytemuck::bytes_of(&self.params(self.steps_taken, len)));
        }
    }

    /// Steps counted so far.
    pub fn steps_taken(&self) -> u64 {
        self.steps_taken
    }

    /// The moments as the GPU holds them (exact f32 bits) and the step count, for a checkpoint.
    pub fn state(&self, ctx: &Context) -> Result<AdamSnapshot, GpuError> {
        Ok(AdamSnapshot {
            steps_taken: self.steps_taken,
            exp_avg: self.exp_avg.read(ctx)?,
            exp_avg_sq: self.exp_avg_sq.read(ctx)?,
        })
    }

    /// Puts a `state()` back: the next `advance` continues from its step count.
    pub fn restore_state(&mut self, ctx: &Context, state: &AdamSnapshot) -> Result<(), GpuError> {
        let len = self.exp_avg.len();
        for (what, values) in [("exp_avg", &state.exp_avg), ("exp_avg_sq", &state.exp_avg_sq)] {
            if values.len() != len {
                return Err(GpuError::Device(format!(
                    "Adam's saved {what} has {} values for {len} parameters",
                    values.len(),
                )));
            }
        }
        self.exp_avg.write(ctx, &state.exp_avg);
        self.exp_avg_sq.write(ctx, &state.exp_avg_sq);
        self.steps_taken = state.steps_taken;
        Ok(())
    }

    /// Bytes of GPU memory its moments hold.
    pub fn bytes(&self) -> u64 {
        self.exp_avg.bytes() + self.exp_avg_sq.bytes()
    }
}

/// Adam's whole state: the step count and both moments, bit for bit as the GPU held them.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamSnapshot {
    pub steps_taken: u64,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

pub mod reference {
    use super::AdamConfig;

    /// Moments of one parameter vector.
    #[derive(Clone, Debug)]
    pub struct AdamState {
        pub exp_avg: Vec<f64>,
        pub exp_avg_sq: Vec<f64>,
        pub step: u64,
    }

    impl AdamState {
        pub fn new(len: usize) -> Self {
            Self { exp_avg: vec![0.0; len], exp_avg_sq: vec![0.0; len], step: 0 }
        }
    }

    /// One step of torch.optim.Adam on `param`.
    pub fn step(config: AdamConfig, state: &mut AdamState, param: &mut [f64], grad: &[f64]) {
        state.step += 1;
        let t = state.step as f64;
        let bias_correction1 = 1.0 - config.beta1.powf(t);
        let bias_correction2 = 1.0 - config.beta2.powf(t);
        for i in 0..param.len() {
            let g = grad[i];
            state.exp_avg[i] = config.beta1 * state.exp_avg[i] + (1.0 - config.beta1) * g;
            state.exp_avg_sq[i] = config.beta2 * state.exp_avg_sq[i] + (1.0 - config.beta2) * g * g;
            let denom = state.exp_avg_sq[i].sqrt() / bias_correction2.sqrt() + config.eps;
            param[i] -= config.lr / bias_correction1 * state.exp_avg[i] / denom;
        }
    }
}
