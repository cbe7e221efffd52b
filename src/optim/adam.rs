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
    /// `None`: Adam on the stored parameters. `Some`: they are a normalized CHW image and Adam
    /// runs on its RGB in [0, 1], clamped there after each step (`RgbVariable`).
    pub rgb: Option<RgbVariable>,
}

impl AdamConfig {
    /// Learning rate `lr` with the rest as torch.optim.Adam's defaults. The method's rate is
    /// `Options::default().learning_rate`, its one source.
    pub fn new(lr: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, rgb: None }
    }
}

/// Adam on the RGB image x in [0, 1] that a stored normalized image p holds (crowsonkb's
/// variable): per stored channel `p = scale[c] * x[source] + shift[c]`, so Adam's update of x is
/// the update of p with `lr * scale[c]` and `eps / scale[c]` (p's gradient is x's divided by
/// `scale[c]`, its moments scaled alike), and x's clamp to [0, 1] is p's to `[lo[c], hi[c]]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RgbVariable {
    pub scale: [f64; 3],
    pub lo: [f64; 3],
    pub hi: [f64; 3],
}

impl RgbVariable {
    /// The RGB variable of a network input made by `input`.
    pub fn of(input: &crate::ops::normalize::Preprocess) -> Self {
        let scale = std::array::from_fn(|c| input.scale / input.std[c]);
        let at = |x: f64, c: usize| (x * input.scale - input.mean[c]) / input.std[c];
        Self { scale, lo: std::array::from_fn(|c| at(0.0, c)), hi: std::array::from_fn(|c| at(1.0, c)) }
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
    plane: u32,
    bounded: u32,
    _pad: [u32; 2],
    step_scale: [f32; 4],
    eps_c: [f32; 4],
    lo: [f32; 4],
    hi: [f32; 4],
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
    /// Values per channel of each band (its length when the parameters are not an image).
    band_planes: Vec<usize>,
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
        let band_planes: Vec<usize> = match config.rgb {
            Some(_) => param.bands().iter().map(|b| b.shape.height * b.shape.width).collect(),
            None => param.bands().iter().map(|b| b.shape.len()).collect(),
        };
        if config.rgb.is_some() && param.bands().iter().any(|b| b.shape.channels != 3) {
            return Err(GpuError::Device("Adam on RGB needs a 3-channel image".into()));
        }
        let adam = Self { config, exp_avg, exp_avg_sq, band_lens, band_planes, steps_taken: 0 };
        let kernels = (0..adam.band_lens.len())
            .map(|b| {
                let len = adam.band_lens[b];
                let buffers = [grad, param, &adam.exp_avg, &adam.exp_avg_sq].map(|a| &a.bands()[b].buffer);
                let params = adam.params(1, len, adam.band_planes[b]);
                Kernel::new(ctx, SHADER, "adam_step", bytemuck::bytes_of(&params), &buffers, (len as u32).div_ceil(256))
            })
            .collect::<Result<_, GpuError>>()?;
        Ok((adam, kernels))
    }

    fn params(&self, step: u64, len: usize, plane: usize) -> Params {
        let c = self.config;
        let widen = |v: [f64; 3]| [v[0] as f32, v[1] as f32, v[2] as f32, 0.0];
        let (scale, lo, hi) = match c.rgb {
            Some(rgb) => (rgb.scale, rgb.lo, rgb.hi),
            None => ([1.0; 3], [0.0; 3], [0.0; 3]),
        };
        Params {
            groups: 0,
            len: len as u32,
            beta2: c.beta2 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            eps: c.eps as f32,
            step_size: (c.lr / (1.0 - c.beta1.powf(step as f64))) as f32,
            bias_correction2_sqrt: (1.0 - c.beta2.powf(step as f64)).sqrt() as f32,
            plane: plane.max(1) as u32,
            bounded: c.rgb.is_some() as u32,
            _pad: [0; 2],
            step_scale: widen(scale),
            eps_c: widen(scale.map(|a| c.eps / a)),
            lo: widen(lo),
            hi: widen(hi),
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
        for ((kernel, &len), &plane) in kernels.iter().zip(&self.band_lens).zip(&self.band_planes) {
            kernel.set_params(ctx, bytemuck::bytes_of(&self.params(self.steps_taken, len, plane)));
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

    /// One step of torch.optim.Adam on `param`. With `config.rgb`, `param` is a normalized CHW
    /// image and the step is Adam's on its RGB values, written plainly: the RGB image, its
    /// gradient and moments are formed, stepped and clamped to [0, 1], and mapped back; `state`
    /// holds the RGB moments.
    pub fn step(config: AdamConfig, state: &mut AdamState, param: &mut [f64], grad: &[f64]) {
        state.step += 1;
        let t = state.step as f64;
        let bias_correction1 = 1.0 - config.beta1.powf(t);
        let bias_correction2 = 1.0 - config.beta2.powf(t);
        let plane = param.len() / 3;
        for i in 0..param.len() {
            // x = (p - lo) / a + 0 on RGB's [0, 1] scale: p = a x + lo.
            let (a, lo) = match config.rgb {
                Some(rgb) => (rgb.scale[i / plane], rgb.lo[i / plane]),
                None => (1.0, 0.0),
            };
            let g = grad[i] * a;
            let mut x = (param[i] - lo) / a;
            state.exp_avg[i] = config.beta1 * state.exp_avg[i] + (1.0 - config.beta1) * g;
            state.exp_avg_sq[i] = config.beta2 * state.exp_avg_sq[i] + (1.0 - config.beta2) * g * g;
            let denom = state.exp_avg_sq[i].sqrt() / bias_correction2.sqrt() + config.eps;
            x -= config.lr / bias_correction1 * state.exp_avg[i] / denom;
            if config.rgb.is_some() {
                x = x.clamp(0.0, 1.0);
            }
            param[i] = a * x + lo;
        }
    }
}
