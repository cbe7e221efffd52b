//! The Wasserstein-2 style loss (crowsonkb/style-transfer-pytorch's `StyleLossW2`): the
//! 2-Wasserstein distance between Gaussians fitted to the image's and the style's features, its
//! forward into a loss slot and its backward to the features, on the GPU in f32 (`kernels/w2.wgsl`),
//! with the f64 reference (by eigendecomposition) beside.
//!
//! With F the C x N features of a layer:
//!
//! ```text
//! mu = F 1 / N,  S = F F^T / N,  Sigma = S - mu mu^T + eps I   (eps = 1e-4; the style's likewise)
//! L = mean_c (mu - mu_s)^2 + tr(Sigma + Sigma_s - 2 (Sigma_s^1/2 Sigma Sigma_s^1/2)^1/2) / C
//! ```
//!
//! The style side (`Target`: mu_s, R = Sigma_s^1/2 and tr Sigma_s) is fixed for a run, so it is
//! computed once in f64 on the host (an eigendecomposition) from the style's mean and second raw
//! moment S_s, which blend linearly. Each step's square root, of M = R Sigma R, is the GPU's: a
//! coupled Newton-Schulz iteration (`ITERATIONS`, chosen by the tests in tests/w2.rs) of matrix
//! products, which also gives M^-1/2 for the backward:
//!
//! ```text
//! dL/dSigma = (I - R M^-1/2 R) / C,  dL/dmu = 2 (mu - mu_s) / C - 2 dL/dSigma mu,
//! dL/dF = (2 / N) dL/dSigma F + dL/dmu 1^T / N
//! ```
//!
//! (d tr M^1/2 = tr(M^-1/2 dM) / 2, dM = R dSigma R.)
//!
//! A masked term (`--mask`, one per style region and layer) fits its Gaussian to the region: with
//! the guided Gram's column weights w (`gram::mask_column_weights`: w(p) = T(p)^2 / a, averaging 1
//! over the N positions), the weighted mean and covariance
//!
//! ```text
//! mu^ = F w / N,  S^ = F diag(w) F^T / N,  Sigma^ = S^ - mu^ mu^^T + eps I
//! dL/dF = ((2 / N) dL/dSigma F + dL/dmu 1^T / N) diag(w)
//! ```
//!
//! (dL/dSigma and dL/dmu as above, at mu^ and Sigma^), against the plain moments of the region's
//! style image; the plan scales the term by its coverage a (`Plan`'s masked terms). With w = 1
//! (one all-white mask) this is the unmasked loss exactly. The kernels apply w where F is loaded
//! (the mean's sum, the left operand of S^) and where the gradient is stored
//! (`W2Buffers::masked`).
//!
//! mu and S are sums over positions, so they are taken in blocks (`Block`, `add_moments`: all N
//! positions untiled, each tile's owned ones tiled, each block's sum over the term's N); the loss
//! and the moments' gradients dL/dSigma, dL/dmu then come once from the sums
//! (`forward_from_moments`, `moment_grads`), and dL/dF at any block of positions from those and
//! the block's own features and weights (`feature_grad`: a tiled window's). `forward` and
//! `backward` are these over all N positions.
//!
//! The products are plain f32 tiles: a mixed-
//! precision run keeps them f32, since Sigma = S - mu mu^T cancels and f16 operands would lose it.
//! Measured against f64 (tests/w2.rs): the loss within 3e-5 for well-conditioned covariances and
//! 1.3e-4 for eigenvalues over 1e-4 .. 1e4; the gradient within 7e-6 and 1.5e-2 (there M's
//! condition is 1e16: the iteration cannot reach its smallest eigenvalues in f32).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

/// The compiled `kernels/w2.wgsl`.
pub const SHADER: ShaderSource = ShaderSource { name: "w2", source: include_str!("../../kernels/w2.wgsl") };

/// The covariances' ridge, crowsonkb's.
pub const EPS: f64 = 1e-4;

/// Newton-Schulz iterations of every square root: the fewest with which the iteration's trace
/// of sqrt(M), in f64, is within 1e-6 of the eigendecomposition's for covariances with
/// eigenvalues over 1e-4 .. 1e4 (32, tests/w2.rs), and a margin of 2. In f32 a badly-conditioned
/// iteration stops improving earlier; the kernels keep its best iterate (`w2_guard`, `w2_keep`).
pub const ITERATIONS: usize = 34;

const FLAG_TRANSPOSED_B: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
const FLAG_ROW_VECTOR: u32 = 4;
/// A's column k times the column weights' k-th value (the masked S^'s left operand, the mean's sum).
const FLAG_WEIGHT_INNER: u32 = 8;
/// Each output column n times the column weights' n-th value (the masked gradient's store).
const FLAG_WEIGHT_COLS: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    groups: u32,
    rows: u32,
    inner: u32,
    cols: u32,
    flags: u32,
    offset: u32,
    alpha: f32,
    beta: f32,
    gamma: f32,
    chunk: u32,
    splits: u32,
    _pad: u32,
}

/// The features a term reads: C channels of N positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct W2Shape {
    pub channels: usize,
    pub n: usize,
}

/// Some of a term's N positions, as one product reads them: C x `positions` compact features
/// (all N of them untiled; a tile's owned positions, or a window's, tiled) and, for a masked
/// term, their block of the column weights (one per position; None for a plain term).
#[derive(Clone, Copy)]
pub struct Block<'a> {
    pub features: &'a wgpu::Buffer,
    pub positions: usize,
    pub weights: Option<&'a wgpu::Buffer>,
}

impl Block<'_> {
    /// `flag` where the block's positions are weighted, else 0.
    fn weight_flag(&self, flag: u32) -> u32 {
        if self.weights.is_some() { flag } else { 0 }
    }
}

/// The style's Gaussian as the loss needs it, from its mean and second raw moment (f64).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub channels: usize,
    /// mu_s
    pub mean: Vec<f64>,
    /// R = Sigma_s^1/2 (C x C, symmetric)
    pub cov_sqrt: Vec<f64>,
    /// tr Sigma_s
    pub cov_trace: f64,
}

impl Target {
    /// A placeholder of the right width (zero), replaced before a step runs.
    pub fn empty(channels: usize) -> Self {
        Self { channels, mean: vec![0.0; channels], cov_sqrt: vec![0.0; channels * channels], cov_trace: 0.0 }
    }

    /// From mu_s and S_s = F_s F_s^T / N_s (blended styles: their mu and S combined linearly).
    pub fn from_moments(mean: &[f64], srm: &[f64]) -> Self {
        let channels = mean.len();
        let cov = reference::covariance(mean, srm);
        Self {
            channels,
            mean: mean.to_vec(),
            cov_sqrt: reference::sqrtm(&cov, channels),
            cov_trace: (0..channels).map(|i| cov[i * channels + i]).sum(),
        }
    }
}

/// A term's buffers: the target on the GPU and the scratch matrices of its iteration, allocated
/// once. Clones are handles on the same buffers (a tiled run's windows share one term's).
#[derive(Clone)]
pub struct W2Buffers {
    shape: W2Shape,
    /// [mu (C), mu_s (C)]
    means: wgpu::Buffer,
    /// R
    cov_sqrt: wgpu::Buffer,
    /// |M|_F^2, the iteration's last residual and whether it froze, tr Sigma_s.
    scalars: wgpu::Buffer,
    /// C x C: S, Sigma, R Sigma, M, Y, Z, T, two spares for the iteration's products, and the
    /// iterate of the smallest residual (Y, Z).
    mats: Vec<wgpu::Buffer>,
    /// dL/dmu / N (C)
    mean_grad: wgpu::Buffer,
    /// The split S = F F^T / N's partial blocks (one C x C per split of the longest block of
    /// positions `add_moments` takes; one value when it does not split).
    partials: wgpu::Buffer,
    /// A masked term's column weights w (N values, the executor's: not counted in `bytes`); None
    /// for a plain term.
    column_weights: Option<wgpu::Buffer>,
}

impl W2Buffers {
    /// The buffers with `target` (which `set_target` may replace before any step runs).
    pub fn new(ctx: &Context, shape: W2Shape, target: &Target) -> Result<Self, GpuError> {
        Self::with_blocks(ctx, shape, shape.n, target)
    }

    /// As `new`, for moments summed over blocks of at most `block` of the N positions
    /// (`add_moments`: a tiled run's owned positions of each tile).
    pub fn with_blocks(ctx: &Context, shape: W2Shape, block: usize, target: &Target) -> Result<Self, GpuError> {
        let c = shape.channels;
        let mats = (0..11).map(|_| ctx.buffer("w2 matrix", c * c)).collect::<Result<_, _>>()?;
        let buffers = Self {
            shape,
            means: ctx.buffer("w2 means", 2 * c)?,
            cov_sqrt: ctx.buffer("w2 style covariance root", c * c)?,
            scalars: ctx.buffer("w2 scalars", 4)?,
            mats,
            mean_grad: ctx.buffer("w2 mean gradient", c)?,
            partials: ctx.buffer("w2 partial products", (splits_of(block, FLAG_TRANSPOSED_B) * c * c).max(1))?,
            column_weights: None,
        };
        buffers.set_target(ctx, target);
        Ok(buffers)
    }

    /// Writes the style's side: mu_s, R and tr Sigma_s.
    pub fn set_target(&self, ctx: &Context, target: &Target) {
        assert_eq!(target.channels, self.shape.channels, "a target of the term's width");
        let c = self.shape.channels;
        let mean: Vec<f32> = target.mean.iter().map(|&v| v as f32).collect();
        ctx.queue.write_buffer(&self.means, (4 * c) as u64, bytemuck::cast_slice(&mean));
        let root: Vec<f32> = target.cov_sqrt.iter().map(|&v| v as f32).collect();
        ctx.queue.write_buffer(&self.cov_sqrt, 0, bytemuck::cast_slice(&root));
        ctx.queue.write_buffer(&self.scalars, 12, bytemuck::bytes_of(&(target.cov_trace as f32)));
    }

    /// The buffers of a masked term: `forward` and `backward` weight the N positions by
    /// `column_weights` (`gram::mask_column_weights` of the term's mask, N values), as the module
    /// says.
    pub fn masked(self, column_weights: wgpu::Buffer) -> Self {
        assert!(column_weights.size() >= 4 * self.shape.n as u64, "a column weight per position");
        Self { column_weights: Some(column_weights), ..self }
    }

    pub fn shape(&self) -> W2Shape {
        self.shape
    }

    /// Whether the term weights its positions (`masked`).
    pub fn is_masked(&self) -> bool {
        self.column_weights.is_some()
    }

    /// All N positions of the term's layer in `features`, with the term's column weights.
    pub fn whole<'a>(&'a self, features: &'a wgpu::Buffer) -> Block<'a> {
        Block { features, positions: self.shape.n, weights: self.column_weights.as_ref() }
    }

    /// GPU bytes the term holds.
    pub fn bytes(&self) -> u64 {
        let c = self.shape.channels as u64;
        4 * (3 * c + c * c * (self.mats.len() as u64 + 1) + 4) + self.partials.size()
    }
}

fn kernel(
    ctx: &Context,
    entry: &str,
    p: Params,
    buffers: &[(u32, &wgpu::Buffer)],
    groups: u32,
) -> Result<Kernel, GpuError> {
    Kernel::with_bindings(ctx, SHADER, entry, bytemuck::bytes_of(&p), buffers, groups)
}

/// `dst = alpha A B + beta I` (+ a row vector, or accumulated, by `flags`); A is rows x inner, B
/// inner x cols (or cols x inner with `FLAG_TRANSPOSED_B`). No weights: `weighted_matmul`'s.
#[allow(clippy::too_many_arguments)]
fn matmul(
    ctx: &Context,
    buffers: &W2Buffers,
    dims: (usize, usize, usize),
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    scales: (f32, f32),
    flags: u32,
) -> Result<Kernel, GpuError> {
    weighted_matmul(ctx, buffers, dims, (a, b, dst), scales, flags, None)
}

/// `matmul` whose weight flags read `weights` (binding 7; A stands in there without them, never read).
fn weighted_matmul(
    ctx: &Context,
    buffers: &W2Buffers,
    (rows, inner, cols): (usize, usize, usize),
    (a, b, dst): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (alpha, beta): (f32, f32),
    flags: u32,
    weights: Option<&wgpu::Buffer>,
) -> Result<Kernel, GpuError> {
    let row_vector = &buffers.mean_grad;
    debug_assert!(flags & (FLAG_WEIGHT_INNER | FLAG_WEIGHT_COLS) == 0 || weights.is_some());
    let columns = weights.unwrap_or(a);
    let u = |v: usize| v as u32;
    let splits = splits_of(inner, flags);
    let p = Params {
        rows: u(rows),
        inner: u(inner),
        cols: u(cols),
        flags,
        alpha,
        beta,
        chunk: u(inner.div_ceil(splits).next_multiple_of(16)),
        splits: u(splits),
        ..Default::default()
    };
    let groups = rows.div_ceil(64) * cols.div_ceil(64) * splits;
    let flops = 2 * (rows * inner * cols) as u64;
    let bound = [(1, a), (2, b), (3, dst), (5, row_vector), (7, columns)];
    Ok(kernel(ctx, "w2_matmul", p, &bound, groups as u32)?.with_work(format!("{rows}x{inner}x{cols}"), flops))
}

/// Products of `K_SPLIT` or fewer terms per accumulator: the long S = F F^T (K = N) is split into
/// that many runs (its partial blocks then summed by `reduce::sum_splits`), so that small C still
/// spreads over many workgroups and no f32 sum runs over hundreds of thousands of products.
const K_SPLIT: usize = 4096;

/// How many splits a product with `inner` terms takes: only a product without an epilogue splits
/// (weighted loads are none).
fn splits_of(inner: usize, flags: u32) -> usize {
    if flags & !(FLAG_TRANSPOSED_B | FLAG_WEIGHT_INNER) == 0 { inner.div_ceil(K_SPLIT).max(1) } else { 1 }
}

fn elementwise(len: usize) -> u32 {
    (len as u32).div_ceil(256)
}

/// Appends the forward: `losses[slot] = scale * L(features)` (the module's definition; a masked
/// term's weighted moments), leaving in `buffers` what `backward` needs. `features` holds C x N
/// values. `add_moments` over all N positions, then `forward_from_moments`.
pub fn forward(
    ctx: &Context,
    step: &mut Step,
    buffers: &W2Buffers,
    features: &wgpu::Buffer,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    add_moments(ctx, step, buffers, buffers.whole(features), true)?;
    forward_from_moments(ctx, step, buffers, losses, slot, scale)
}

/// Appends `block`'s share of the moments into `buffers`: mu = F w / N and S = F diag(w) F^T / N
/// are sums over positions (N the term's, whatever the block's), so the first block writes them
/// (`first`) and each later one adds its own. A later block's S goes through Sigma's buffer
/// (free until `forward_from_moments` writes it).
pub fn add_moments(
    ctx: &Context,
    step: &mut Step,
    buffers: &W2Buffers,
    block: Block<'_>,
    first: bool,
) -> Result<(), GpuError> {
    let W2Shape { channels: c, n } = buffers.shape;
    step.push(mean_kernel(ctx, buffers.shape, block, &buffers.means, !first)?);
    let flags = FLAG_TRANSPOSED_B | block.weight_flag(FLAG_WEIGHT_INNER);
    let splits = splits_of(block.positions, flags);
    assert!(buffers.partials.size() >= 4 * (splits * c * c) as u64, "a block within the buffers' longest");
    let (s, sigma) = (&buffers.mats[0], &buffers.mats[1]);
    let block_srm = if first { s } else { sigma };
    let product = if splits > 1 { &buffers.partials } else { block_srm };
    let operands = (block.features, block.features, product);
    let dims = (c, block.positions, c);
    step.push(weighted_matmul(ctx, buffers, dims, operands, (1.0 / n as f32, 0.0), flags, block.weights)?);
    if splits > 1 {
        step.push(super::reduce::sum_splits(ctx, c * c, splits, &buffers.partials, block_srm)?);
    }
    if !first {
        step.push(super::vector::axpy(ctx, c * c, 1.0, sigma, s)?);
    }
    Ok(())
}

/// Appends the rest of the forward from the moments `add_moments` left: Sigma, the square root
/// of M = R Sigma R and `losses[slot] = scale * L`, leaving in `buffers` what `moment_grads` needs.
pub fn forward_from_moments(
    ctx: &Context,
    step: &mut Step,
    buffers: &W2Buffers,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    let c = buffers.shape.channels;
    let [s, sigma, r_sigma, m, y, z, t, spare_y, spare_z, y_best, z_best] = std::array::from_fn(|i| &buffers.mats[i]);
    let cu = c as u32;
    let (means, root) = (&buffers.means, &buffers.cov_sqrt);
    let p = Params { rows: cu, beta: EPS as f32, ..Default::default() };
    step.push(kernel(ctx, "w2_covariance", p, &[(1, s), (3, sigma), (5, means)], elementwise(c * c))?);
    step.push(matmul(ctx, buffers, (c, c, c), root, sigma, r_sigma, (1.0, 0.0), 0)?);
    step.push(matmul(ctx, buffers, (c, c, c), r_sigma, root, m, (1.0, 0.0), 0)?);
    super::vector::dot(ctx, step, c * c, m, m, &buffers.scalars, 0, 1.0)?;
    let p = Params { rows: cu, ..Default::default() };
    step.push(kernel(ctx, "w2_normalize", p, &[(1, m), (3, y), (4, &buffers.scalars), (6, z)], elementwise(c * c))?);
    // Y and Z alternate with the spares; the iterate of the smallest residual is kept aside.
    let (mut y_now, mut z_now, mut y_next, mut z_next) = (y, z, spare_y, spare_z);
    step.push(kernel(ctx, "w2_guard_reset", p, &[(3, &buffers.scalars)], 1)?);
    for _ in 0..ITERATIONS {
        step.push(matmul(ctx, buffers, (c, c, c), z_now, y_now, t, (-0.5, 1.5), 0)?);
        step.push(kernel(ctx, "w2_guard", p, &[(1, t), (3, &buffers.scalars)], 1)?);
        let keep = [(1, y_now), (2, z_now), (3, y_best), (4, &buffers.scalars), (6, z_best)];
        step.push(kernel(ctx, "w2_keep", p, &keep, elementwise(c * c))?);
        step.push(matmul(ctx, buffers, (c, c, c), y_now, t, y_next, (1.0, 0.0), 0)?);
        step.push(matmul(ctx, buffers, (c, c, c), t, z_now, z_next, (1.0, 0.0), 0)?);
        std::mem::swap(&mut y_now, &mut y_next);
        std::mem::swap(&mut z_now, &mut z_next);
    }
    let p = Params { rows: cu, offset: slot as u32, alpha: scale as f32, ..Default::default() };
    let bound = [(1, sigma), (2, y_best), (3, losses), (4, &buffers.scalars), (5, means)];
    step.push(kernel(ctx, "w2_loss", p, &bound, 1)?);
    Ok(())
}

/// Appends `means = F 1 / N` of C x N `features` (a style image's, for its `Target`).
pub fn row_means(
    ctx: &Context,
    shape: W2Shape,
    features: &wgpu::Buffer,
    means: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    add_row_means(ctx, shape, Block { features, positions: shape.n, weights: None }, means, true)
}

/// Appends `block`'s share of `means = F w / N` (N = `shape.n`, whatever the block's): written by
/// the `first` block, added by each later one (a tiled style image's owned positions).
pub fn add_row_means(
    ctx: &Context,
    shape: W2Shape,
    block: Block<'_>,
    means: &wgpu::Buffer,
    first: bool,
) -> Result<Kernel, GpuError> {
    mean_kernel(ctx, shape, block, means, !first)
}

/// `means (=, or += with accumulate) F w / N` of `block` (`F 1 / N` without weights).
fn mean_kernel(
    ctx: &Context,
    shape: W2Shape,
    block: Block<'_>,
    means: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Kernel, GpuError> {
    let flags = block.weight_flag(FLAG_WEIGHT_INNER) | if accumulate { FLAG_ACCUMULATE } else { 0 };
    let u = |v: usize| v as u32;
    let p =
        Params { rows: u(shape.channels), inner: u(block.positions), cols: u(shape.n), flags, ..Default::default() };
    // F stands in for the weights of a plain mean (never read).
    let bound = [(1, block.features), (3, means), (7, block.weights.unwrap_or(block.features))];
    kernel(ctx, "w2_row_mean", p, &bound, shape.channels as u32)
}

/// Appends the backward of `scale * L` after `forward`: `grad_features` (=, or += with
/// `accumulate`) dL/dF, C x N (a masked term's columns each times its weight as stored).
/// `moment_grads`, then `feature_grad` over all N positions.
pub fn backward(
    ctx: &Context,
    step: &mut Step,
    buffers: &W2Buffers,
    features: &wgpu::Buffer,
    grad_features: &wgpu::Buffer,
    scale: f64,
    accumulate: bool,
) -> Result<(), GpuError> {
    moment_grads(ctx, step, buffers, scale)?;
    feature_grad(ctx, step, buffers, buffers.whole(features), grad_features, accumulate)
}

/// Appends, after `forward_from_moments`, the gradients of `scale * L` with respect to the
/// moments as `feature_grad` takes them: dL/dSigma / N and dL/dmu / N (N the term's positions).
pub fn moment_grads(ctx: &Context, step: &mut Step, buffers: &W2Buffers, scale: f64) -> Result<(), GpuError> {
    let W2Shape { channels: c, n } = buffers.shape;
    let cu = c as u32;
    let (means, root) = (&buffers.means, &buffers.cov_sqrt);
    let z = &buffers.mats[10];
    // Free after the forward: the buffers of R Sigma, T and M.
    let (r_z, q, grad_cov) = (&buffers.mats[2], &buffers.mats[6], &buffers.mats[3]);
    step.push(matmul(ctx, buffers, (c, c, c), root, z, r_z, (1.0, 0.0), 0)?);
    step.push(matmul(ctx, buffers, (c, c, c), r_z, root, q, (1.0, 0.0), 0)?);
    let gamma = 1.0 / (c * n) as f32;
    let p = Params { rows: cu, alpha: scale as f32, gamma, ..Default::default() };
    step.push(kernel(ctx, "w2_cov_grad", p, &[(1, q), (3, grad_cov), (4, &buffers.scalars)], elementwise(c * c))?);
    let p = Params { rows: cu, alpha: scale as f32, gamma, ..Default::default() };
    step.push(kernel(ctx, "w2_mean_grad", p, &[(1, grad_cov), (3, &buffers.mean_grad), (5, means)], elementwise(c))?);
    Ok(())
}

/// Appends `grad_features` (=, or += with `accumulate`) dL/dF at `block`'s positions from the
/// gradients `moment_grads` left: ((2 / N) dL/dSigma F + dL/dmu 1^T / N) diag(w), C x
/// `block.positions` (each position's column depends on the moments and its own features only,
/// so a tiled window takes the whole image's moment gradients with its own features and weights).
pub fn feature_grad(
    ctx: &Context,
    step: &mut Step,
    buffers: &W2Buffers,
    block: Block<'_>,
    grad_features: &wgpu::Buffer,
    accumulate: bool,
) -> Result<(), GpuError> {
    let c = buffers.shape.channels;
    let grad_cov = &buffers.mats[3];
    let flags = FLAG_ROW_VECTOR | block.weight_flag(FLAG_WEIGHT_COLS) | if accumulate { FLAG_ACCUMULATE } else { 0 };
    let (dims, operands) = ((c, c, block.positions), (grad_cov, block.features, grad_features));
    step.push(weighted_matmul(ctx, buffers, dims, operands, (2.0, 0.0), flags, block.weights)?);
    Ok(())
}

/// The loss and its gradient in f64, by eigendecomposition.
pub mod reference {
    use super::{EPS, Target};

    /// mu = F 1 / N and S = F F^T / N of C x N features.
    pub fn moments(features: &[f64], channels: usize) -> (Vec<f64>, Vec<f64>) {
        moments_weighted(features, channels, &ones(features, channels))
    }

    /// The weighted moments of a masked term: mu^ = F w / N and S^ = F diag(w) F^T / N, with the
    /// N column weights w (`gram::mask_column_weights`, averaging 1).
    pub fn moments_weighted(features: &[f64], channels: usize, weights: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = features.len() / channels;
        assert_eq!(weights.len(), n, "a weight per position");
        let row = |i: usize| &features[i * n..(i + 1) * n];
        let mean = (0..channels).map(|i| row(i).iter().zip(weights).map(|(f, w)| f * w).sum::<f64>() / n as f64);
        let mut srm = vec![0.0; channels * channels];
        for i in 0..channels {
            for j in 0..channels {
                let products = row(i).iter().zip(row(j)).zip(weights).map(|((a, b), w)| a * b * w);
                srm[i * channels + j] = products.sum::<f64>() / n as f64;
            }
        }
        (mean.collect(), srm)
    }

    /// The weights of an unmasked term: 1 at each of the N positions.
    fn ones(features: &[f64], channels: usize) -> Vec<f64> {
        vec![1.0; features.len() / channels]
    }

    /// Sigma = S - mu mu^T + eps I.
    pub fn covariance(mean: &[f64], srm: &[f64]) -> Vec<f64> {
        let c = mean.len();
        (0..c * c).map(|i| srm[i] - mean[i / c] * mean[i % c] + if i / c == i % c { EPS } else { 0.0 }).collect()
    }

    /// Eigenvalues and eigenvectors (columns of the row-major n x n result) of a symmetric matrix,
    /// by cyclic Jacobi rotations until the off-diagonal is negligible.
    pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut a = a.to_vec();
        let mut v: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
        let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        for _sweep in 0..100 {
            let off: f64 = (0..n * n).filter(|i| i / n != i % n).map(|i| a[i] * a[i]).sum::<f64>().sqrt();
            if off <= 1e-15 * norm {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    let apq = a[p * n + q];
                    if apq.abs() <= 1e-300 {
                        continue;
                    }
                    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let cos = 1.0 / (t * t + 1.0).sqrt();
                    let sin = t * cos;
                    for k in 0..n {
                        let (akp, akq) = (a[k * n + p], a[k * n + q]);
                        a[k * n + p] = cos * akp - sin * akq;
                        a[k * n + q] = sin * akp + cos * akq;
                    }
                    for k in 0..n {
                        let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                        a[p * n + k] = cos * apk - sin * aqk;
                        a[q * n + k] = sin * apk + cos * aqk;
                    }
                    for k in 0..n {
                        let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                        v[k * n + p] = cos * vkp - sin * vkq;
                        v[k * n + q] = sin * vkp + cos * vkq;
                    }
                }
            }
        }
        ((0..n).map(|i| a[i * n + i]).collect(), v)
    }

    /// f(A) = V f(Lambda) V^T of a symmetric matrix.
    pub fn sym_fn(a: &[f64], n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
        let (values, v) = sym_eigen(a, n);
        let fv: Vec<f64> = values.iter().map(|&l| f(l)).collect();
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = (0..n).map(|k| v[i * n + k] * fv[k] * v[j * n + k]).sum();
            }
        }
        out
    }

    /// The symmetric square root of a symmetric positive semi-definite matrix (negative
    /// eigenvalues, rounding's, taken as 0).
    pub fn sqrtm(a: &[f64], n: usize) -> Vec<f64> {
        sym_fn(a, n, |l| l.max(0.0).sqrt())
    }

    pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                for j in 0..n {
                    out[i * n + j] += aik * b[k * n + j];
                }
            }
        }
        out
    }

    /// sqrt(M) by the kernels' coupled Newton-Schulz iteration, in f64: how far `iterations` of it
    /// get, apart from f32's rounding.
    pub fn newton_schulz_sqrt(m: &[f64], n: usize, iterations: usize) -> Vec<f64> {
        let norm = m.iter().map(|v| v * v).sum::<f64>().sqrt();
        let identity = |i: usize| if i / n == i % n { 1.0 } else { 0.0 };
        let mut y: Vec<f64> = m.iter().map(|v| v / norm).collect();
        let mut z: Vec<f64> = (0..n * n).map(identity).collect();
        for _ in 0..iterations {
            let zy = matmul(&z, &y, n);
            let t: Vec<f64> = (0..n * n).map(|i| 1.5 * identity(i) - 0.5 * zy[i]).collect();
            (y, z) = (matmul(&y, &t, n), matmul(&t, &z, n));
        }
        y.iter().map(|v| v * norm.sqrt()).collect()
    }

    /// L of C x N features against `target` (the module's definition).
    pub fn loss(features: &[f64], target: &Target) -> f64 {
        loss_weighted(features, &ones(features, target.channels), target)
    }

    /// L of a masked term: at the weighted moments (`moments_weighted`) of the features.
    pub fn loss_weighted(features: &[f64], weights: &[f64], target: &Target) -> f64 {
        let c = target.channels;
        let (mean, srm) = moments_weighted(features, c, weights);
        let cov = covariance(&mean, &srm);
        let r = &target.cov_sqrt;
        let m = matmul(&matmul(r, &cov, c), r, c);
        let root = sqrtm(&m, c);
        let mean_term = mean.iter().zip(&target.mean).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / c as f64;
        let trace = |x: &[f64]| (0..c).map(|i| x[i * c + i]).sum::<f64>();
        mean_term + (trace(&cov) + target.cov_trace - 2.0 * trace(&root)) / c as f64
    }

    /// dL/dF (the module's formulas, M^-1/2 by eigendecomposition).
    pub fn backward(features: &[f64], target: &Target) -> Vec<f64> {
        backward_weighted(features, &ones(features, target.channels), target)
    }

    /// dL/dF of a masked term, `loss_weighted`'s: the unmasked formula at the weighted moments,
    /// each position's column times its weight.
    pub fn backward_weighted(features: &[f64], weights: &[f64], target: &Target) -> Vec<f64> {
        let c = target.channels;
        let n = features.len() / c;
        let (mean, srm) = moments_weighted(features, c, weights);
        let cov = covariance(&mean, &srm);
        let r = &target.cov_sqrt;
        let m = matmul(&matmul(r, &cov, c), r, c);
        let inv_root = sym_fn(&m, c, |l| 1.0 / l.sqrt());
        let q = matmul(&matmul(r, &inv_root, c), r, c);
        let grad_cov: Vec<f64> =
            (0..c * c).map(|i| ((if i / c == i % c { 1.0 } else { 0.0 }) - q[i]) / c as f64).collect();
        let grad_mean: Vec<f64> = (0..c)
            .map(|i| {
                2.0 * (mean[i] - target.mean[i]) / c as f64
                    - 2.0 * (0..c).map(|d| grad_cov[i * c + d] * mean[d]).sum::<f64>()
            })
            .collect();
        (0..c * n)
            .map(|idx| {
                let (i, p) = (idx / n, idx % n);
                let unweighted = 2.0 / n as f64
                    * (0..c).map(|d| grad_cov[i * c + d] * features[d * n + p]).sum::<f64>()
                    + grad_mean[i] / n as f64;
                unweighted * weights[p]
            })
            .collect()
    }
}
