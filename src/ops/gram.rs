//! Gram matrix G = F F^T of features F (C x N, N = H W), unnormalized, and its backward
//! dL/dF = (dL/dG + dL/dG^T) F. f64 references beside. The guided Gram of spatial control
//! (`--mask`, Gatys et al. 2017), G^ = F diag(T^2) F^T / a, has entry points of its own that
//! weight the same kernels' loads (forward) and stores (backward) by w = T^2 / a.

use bytemuck::{Pod, Zeroable};

use super::{kernel_class, mixed, reduce};
use crate::gpu::{AdapterClass, Context, GpuError, Kernel, ShaderSource, Step};

pub const SHADER: ShaderSource = ShaderSource { name: "gram", source: include_str!("../../kernels/gram.wgsl") };
/// The forward on cooperative matrices (mixed precision on adapters with matrix units), 32 x 32 tiles.
pub const COOP_SHADER: super::CoopShader = coop_shader!("gram_coop", "../../kernels/gram_coop.wgsl");
const COOP_TILE: usize = 32;

const TILE: usize = 64;
/// Products one accumulator sums before its partial is handed to the split-sum: at most CHUNK,
/// fewer (down to MIN_CHUNK) where more splits are needed to give a GPU enough workgroups.
const CHUNK: usize = 1024;
const MIN_CHUNK: usize = 256;
/// Workgroups the forward aims for (triangle tiles times splits).
const TARGET_GROUPS: usize = 256;
const FLAG_ACCUMULATE: u32 = 4;
/// Mixed precision: F (and the backward's dL/dG + dL/dG^T) scaled by its range and rounded to
/// f16 as loaded, the f32 sums unscaled as stored (`ops::mixed`).
const FLAG_MIXED: u32 = 32;
/// gram_coop.wgsl: the guided Gram (binding 4 holds the column weights).
const FLAG_COOP_MASKED: u32 = 8;

/// Features of `channels` rows and `n` = H W columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GramShape {
    pub channels: usize,
    pub n: usize,
}

impl GramShape {
    pub fn gram_len(&self) -> usize {
        self.channels * self.channels
    }
    pub fn features_len(&self) -> usize {
        self.channels * self.n
    }
    /// Splits of the N axis in the forward pass.
    pub fn splits(&self) -> usize {
        self.n.div_ceil(self.chunk()).max(1)
    }
    /// Columns each split of the forward reduces. Few triangle tiles over many columns (relu1_1,
    /// relu2_1) would otherwise leave a large GPU mostly idle while each workgroup walks 1024
    /// columns.
    pub fn chunk(&self) -> usize {
        let tiles = self.channels.div_ceil(TILE);
        let pairs = tiles * (tiles + 1) / 2;
        self.n.div_ceil(TARGET_GROUPS.div_ceil(pairs)).clamp(MIN_CHUNK, CHUNK).next_multiple_of(16)
    }
    /// Values of the forward's partial sums: one C x C matrix per split.
    pub fn partials_len(&self) -> usize {
        self.splits() * self.gram_len()
    }
    /// FLOPs of the forward as a full product (the kernel computes only one triangle).
    pub fn flops(&self) -> u64 {
        2 * (self.gram_len() * self.n) as u64
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    channels: u32,
    n: u32,
    chunk: u32,
    tiles: u32,
    flags: u32,
    /// The masked forward under mixed precision: `weight_exponent` of its column weights.
    weight_exponent: i32,
    _pad: u32,
}

/// Kernels that write G = F F^T into `gram` (a split-K product of the upper-triangle tiles, then
/// the pairwise sum of its splits). The step keeps its partial buffer.
pub fn forward(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    gram: &wgpu::Buffer,
) -> Result<Step, GpuError> {
    let partials = ctx.buffer("gram partials", shape.partials_len())?;
    let mut step = forward_with_partials(ctx, shape, features, &partials, gram)?;
    step.keep(partials);
    Ok(step)
}

/// Under mixed precision, appends to `step` the kernels that find the ranges of F (slot 0) and
/// of dL/dG (slot 1, the backward's) and returns their buffer (`Context::shared_words`) and the flag.
fn mixed_ranges(
    ctx: &Context,
    step: &mut Step,
    shape: GramShape,
    features: &wgpu::Buffer,
    grad_gram: Option<&wgpu::Buffer>,
) -> Result<(Option<wgpu::Buffer>, u32), GpuError> {
    if !ctx.precision.arithmetic.is_mixed() {
        return Ok((None, 0));
    }
    let range = mixed::range_buffer(ctx)?;
    step.extend(mixed::range(ctx, shape.features_len(), features, &range, 0)?);
    if let Some(grad_gram) = grad_gram {
        step.extend(mixed::range(ctx, shape.gram_len(), grad_gram, &range, 1)?);
    }
    Ok((Some(range), FLAG_MIXED))
}

/// The guided Gram matrix's column weights for a mask `t` over the N positions of a layer
/// (Gatys et al. 2017): w(p) = T(p)^2 / a with the coverage a = sum_p T(p)^2 / N, so that
/// G^ = F diag(w) F^T = F diag(T^2) F^T / a. Returns (a, w); w is all 0 when a = 0.
pub fn mask_column_weights(t: &[f64]) -> (f64, Vec<f64>) {
    let coverage = t.iter().map(|v| v * v).sum::<f64>() / t.len().max(1) as f64;
    let weights = t.iter().map(|v| if coverage > 0.0 { v * v / coverage } else { 0.0 }).collect();
    (coverage, weights)
}

/// The bindings of a Gram kernel: gram_coop.wgsl's entry points also read binding 4 (the column
/// weights of a masked Gram, `columns`; F as a placeholder for a plain one, never read there).
fn coop_bindings<'a, const K: usize>(
    coop: bool,
    bindings: [(u32, &'a wgpu::Buffer); K],
    columns: Option<&'a wgpu::Buffer>,
) -> Vec<(u32, &'a wgpu::Buffer)> {
    let mut all = bindings.to_vec();
    if let Some(columns) = columns.or(if coop { Some(bindings[0].1) } else { None }) {
        all.push((4, columns));
    }
    all
}

/// The octave e of a masked Gram's column weights, 2^(e-1) < max w <= 2^e (0 for none above 1,
/// which a coverage's weights, averaging 1, never are): a mixed forward divides its left operand
/// F w by 2^e more than F, so that its largest value stays within f16's range.
pub fn weight_exponent(column_weights: &[f32]) -> i32 {
    let largest = column_weights.iter().fold(0f32, |m, &w| m.max(w));
    if largest <= 1.0 {
        return 0;
    }
    let (mantissa_bits, floor) = (largest.to_bits() & 0x007f_ffff, ((largest.to_bits() >> 23) & 0xff) as i32 - 127);
    if mantissa_bits == 0 { floor } else { floor + 1 }
}

/// `forward` with a caller-owned partial buffer of at least `shape.partials_len()` values, which
/// several Grams computed one after the other may share.
pub fn forward_with_partials(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    partials: &wgpu::Buffer,
    gram: &wgpu::Buffer,
) -> Result<Step, GpuError> {
    forward_weighted(ctx, shape, features, None, partials, gram)
}

/// `forward_with_partials` for the guided Gram G^ = F diag(w) F^T, with `column_weights` the
/// N values of `mask_column_weights` (applied in the forward's loads) and `weight_exponent`
/// theirs (`weight_exponent`; it matters only under mixed precision). Under mixed precision on
/// matrix units, on them; emulated otherwise (the left operand F w, the right F, each rounded).
pub fn forward_masked_with_partials(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    column_weights: &wgpu::Buffer,
    weight_exponent: i32,
    partials: &wgpu::Buffer,
    gram: &wgpu::Buffer,
) -> Result<Step, GpuError> {
    forward_weighted(ctx, shape, features, Some((column_weights, weight_exponent)), partials, gram)
}

/// The plain forward (`columns` None) or the guided one (the column weights and their octave).
fn forward_weighted(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    columns: Option<(&wgpu::Buffer, i32)>,
    partials: &wgpu::Buffer,
    gram: &wgpu::Buffer,
) -> Result<Step, GpuError> {
    let coop = ctx.precision.arithmetic == crate::gpu::Arithmetic::MixedMatrix;
    let masked = columns.is_some();
    let (shader, entry, tile) = match (coop, masked) {
        (true, _) => (COOP_SHADER.for_context(ctx)?, "gram_forward_coop", COOP_TILE),
        (false, false) => (SHADER, "gram_forward", TILE),
        (false, true) => (SHADER, "gram_forward_masked", TILE),
    };
    let tiles = shape.channels.div_ceil(tile);
    let pairs = tiles * (tiles + 1) / 2;
    let splits = shape.splits();
    let mut step = Step::new();
    let (range, mixed_flag) = mixed_ranges(ctx, &mut step, shape, features, None)?;
    let params = Params {
        groups: 0,
        channels: shape.channels as u32,
        n: shape.n as u32,
        chunk: shape.chunk() as u32,
        tiles: tiles as u32,
        flags: mixed_flag | coop_masked_flag(coop, masked),
        weight_exponent: columns.map_or(0, |(_, octave)| octave),
        _pad: 0,
    };
    let bindings = [(1, features), (2, partials), (6, range.as_ref().unwrap_or(features))];
    step.push(
        Kernel::with_bindings(
            ctx,
            shader,
            entry,
            bytemuck::bytes_of(&params),
            &coop_bindings(coop, bindings, columns.map(|(weights, _)| weights)),
            (pairs * splits) as u32,
        )?
        .with_work(format!("{}forward {}x{}", masked_label(masked), shape.channels, shape.n), shape.flops()),
    );
    step.push(reduce::sum_splits(ctx, shape.gram_len(), splits, partials, gram)?);
    Ok(step)
}

/// grad_features (=, or += when `accumulate`) (dL/dG + dL/dG^T) F: a tiled GEMM on GPUs (on
/// cooperative matrices where mixed precision runs on them), the direct form on CPU adapters
/// (`ops::kernel_class`, which honours a forced convolution); under mixed precision preceded by
/// the kernels that find its operands' ranges.
pub fn backward(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    grad_gram: &wgpu::Buffer,
    grad_features: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Step, GpuError> {
    backward_weighted(ctx, shape, features, None, grad_gram, grad_features, accumulate)
}

/// `backward` of the guided Gram: grad_features (=, or +=) ((dL/dG^ + dL/dG^^T) F) diag(w), the
/// weights applied where each gradient value is stored; the operands rounded as `backward`'s
/// under mixed precision (on matrix units where it runs on them).
pub fn backward_masked(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    column_weights: &wgpu::Buffer,
    grad_gram: &wgpu::Buffer,
    grad_features: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Step, GpuError> {
    backward_weighted(ctx, shape, features, Some(column_weights), grad_gram, grad_features, accumulate)
}

/// The plain backward (`column_weights` None) or the guided one.
fn backward_weighted(
    ctx: &Context,
    shape: GramShape,
    features: &wgpu::Buffer,
    column_weights: Option<&wgpu::Buffer>,
    grad_gram: &wgpu::Buffer,
    grad_features: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Step, GpuError> {
    let mut step = Step::new();
    let (range, mixed_flag) = mixed_ranges(ctx, &mut step, shape, features, Some(grad_gram))?;
    let coop = ctx.precision.arithmetic == crate::gpu::Arithmetic::MixedMatrix;
    let masked = column_weights.is_some();
    let (shader, tiles_m, tiles_n, entry) = match kernel_class(ctx)? {
        // On matrix units whatever the class (lavapipe has them too), as the convolutions.
        _ if coop => (
            COOP_SHADER.for_context(ctx)?,
            shape.channels.div_ceil(COOP_TILE),
            shape.n.div_ceil(COOP_TILE),
            "gram_backward_coop",
        ),
        // 16 rows by 16 invocations of 4 columns each.
        AdapterClass::Cpu => (
            SHADER,
            shape.channels.div_ceil(16),
            shape.n.div_ceil(4).div_ceil(16),
            if masked { "gram_backward_direct_masked" } else { "gram_backward_direct" },
        ),
        AdapterClass::Gpu => (
            SHADER,
            shape.channels.div_ceil(TILE),
            shape.n.div_ceil(TILE),
            if masked { "gram_backward_masked" } else { "gram_backward" },
        ),
    };
    let params = Params {
        groups: 0,
        channels: shape.channels as u32,
        n: shape.n as u32,
        chunk: 0,
        tiles: tiles_n as u32,
        flags: if accumulate { FLAG_ACCUMULATE } else { 0 } | mixed_flag | coop_masked_flag(coop, masked),
        weight_exponent: 0,
        _pad: 0,
    };
    let bindings = [(1, features), (2, grad_features), (3, grad_gram), (6, range.as_ref().unwrap_or(features))];
    step.push(
        Kernel::with_bindings(
            ctx,
            shader,
            entry,
            bytemuck::bytes_of(&params),
            &coop_bindings(coop, bindings, column_weights),
            (tiles_m * tiles_n) as u32,
        )?
        .with_work(format!("{}backward {}x{}", masked_label(masked), shape.channels, shape.n), shape.flops()),
    );
    Ok(step)
}

/// gram_coop.wgsl tells a guided Gram by a flag; gram.wgsl by its entry points.
fn coop_masked_flag(coop: bool, masked: bool) -> u32 {
    if coop && masked { FLAG_COOP_MASKED } else { 0 }
}

fn masked_label(masked: bool) -> &'static str {
    if masked { "masked " } else { "" }
}

pub mod reference {
    use super::GramShape;
    use crate::ops::mixed;

    /// `forward` on the operand a mixed-precision Gram takes: F scaled by its range and rounded to f16.
    pub fn forward_mixed(shape: GramShape, features: &[f32]) -> Vec<f64> {
        forward(shape, &mixed::round_operand(features))
    }

    /// `backward` on the operands a mixed-precision Gram backward takes: F as in the forward, and
    /// S = dL/dG + dL/dG^T (summed in f32, as the kernel does) scaled by the range of dL/dG and
    /// one octave more, rounded to f16. Returns (dL/dF).
    pub fn backward_mixed(shape: GramShape, features: &[f32], grad_gram: &[f32]) -> Vec<f64> {
        let c = shape.channels;
        let s: Vec<f32> = (0..c * c).map(|i| grad_gram[i] + grad_gram[(i % c) * c + i / c]).collect();
        let exponent = mixed::scale_exponent(mixed::max_biased_exponent(grad_gram)) + 1;
        let s = mixed::round_scaled(&s, exponent);
        // `backward` symmetrizes its argument: hand it S / 2 so that it forms S (exact in f64).
        let half: Vec<f64> = s.iter().map(|v| v / 2.0).collect();
        backward(shape, &mixed::round_operand(features), &half)
    }

    /// The guided Gram as a mixed forward computes it (`forward_masked_with_partials`): for
    /// m <= n, sum_p r(F[m, p] w(p)) r(F[n, p]) with the left operand (the f32 product) scaled by
    /// F's range and w's octave, the right by F's range, each rounded to f16; mirrored.
    pub fn forward_masked_mixed(shape: GramShape, features: &[f32], column_weights: &[f32]) -> Vec<f64> {
        let (c, n) = (shape.channels, shape.n);
        let scale = mixed::scale_exponent(mixed::max_biased_exponent(features));
        let weighted: Vec<f32> = (0..c * n).map(|i| features[i] * column_weights[i % n]).collect();
        let left = mixed::round_scaled(&weighted, scale + super::weight_exponent(column_weights));
        let right = mixed::round_scaled(features, scale);
        let mut gram = vec![0.0; c * c];
        for i in 0..c {
            for j in i..c {
                let value = (0..n).map(|p| left[i * n + p] * right[j * n + p]).sum();
                gram[i * c + j] = value;
                gram[j * c + i] = value;
            }
        }
        gram
    }

    /// The guided Gram's backward as a mixed one computes it: `backward_mixed` weighted by w.
    pub fn backward_masked_mixed(
        shape: GramShape,
        features: &[f32],
        column_weights: &[f32],
        grad_gram: &[f32],
    ) -> Vec<f64> {
        let n = shape.n;
        let plain = backward_mixed(shape, features, grad_gram);
        plain.iter().enumerate().map(|(i, g)| g * column_weights[i % n] as f64).collect()
    }

    pub fn forward(shape: GramShape, features: &[f64]) -> Vec<f64> {
        let (c, n) = (shape.channels, shape.n);
        let mut gram = vec![0.0; c * c];
        for i in 0..c {
            for j in 0..c {
                gram[i * c + j] = (0..n).map(|p| features[i * n + p] * features[j * n + p]).sum();
            }
        }
        gram
    }

    pub fn backward(shape: GramShape, features: &[f64], grad_gram: &[f64]) -> Vec<f64> {
        let (c, n) = (shape.channels, shape.n);
        let mut grad = vec![0.0; c * n];
        for i in 0..c {
            for p in 0..n {
                grad[i * n + p] =
                    (0..c).map(|k| (grad_gram[i * c + k] + grad_gram[k * c + i]) * features[k * n + p]).sum();
            }
        }
        grad
    }

    /// The guided Gram F diag(T^2) F^T / a with a = sum_p T(p)^2 / N, from the mask T itself
    /// (Gatys et al. 2017, the formula); all 0 when a = 0.
    pub fn forward_masked(shape: GramShape, features: &[f64], mask: &[f64]) -> Vec<f64> {
        let (c, n) = (shape.channels, shape.n);
        let a = mask.iter().map(|t| t * t).sum::<f64>() / n as f64;
        let mut gram = vec![0.0; c * c];
        if a == 0.0 {
            return gram;
        }
        for i in 0..c {
            for j in 0..c {
                gram[i * c + j] =
                    (0..n).map(|p| features[i * n + p] * mask[p] * mask[p] * features[j * n + p]).sum::<f64>() / a;
            }
        }
        gram
    }

    /// dL/dF of the guided Gram: dL/dF[i, p] = T(p)^2 / a sum_k (dL/dG^[i, k] + dL/dG^[k, i]) F[k, p].
    pub fn backward_masked(shape: GramShape, features: &[f64], mask: &[f64], grad_gram: &[f64]) -> Vec<f64> {
        let n = shape.n;
        let a = mask.iter().map(|t| t * t).sum::<f64>() / n as f64;
        let plain = backward(shape, features, grad_gram);
        plain
            .iter()
            .enumerate()
            .map(|(index, g)| if a == 0.0 { 0.0 } else { g * mask[index % n] * mask[index % n] / a })
            .collect()
    }
}
