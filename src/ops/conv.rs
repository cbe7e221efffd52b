//! 3x3 convolution (padding 1, stride 1, bias): forward, backward to the input, and their f64
//! references. Weights are frozen in style transfer, so no weight gradient exists.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{AdapterClass, Arithmetic, Context, GpuError, KERNEL_OVERRIDE_VAR, Kernel, ShaderSource, Step};

pub const SHADER: ShaderSource = ShaderSource { name: "conv", source: include_str!("../../kernels/conv.wgsl") };
/// The same product on cooperative matrices (mixed precision on adapters with matrix units).
pub const COOP_SHADER: super::CoopShader = coop_shader!("conv_coop", "../../kernels/conv_coop.wgsl");
/// Rows and pixels of one cooperative-matrix tile (`conv3x3_coop`).
const COOP_TILE: u32 = 32;

const TILE: u32 = 64;
const FLAG_BIAS: u32 = 1;
const FLAG_RELU: u32 = 2;
const FLAG_ACCUMULATE: u32 = 4;
const FLAG_MASK_INPUT: u32 = 8;
const FLAG_FLIP_TAPS: u32 = 16;
/// Mixed precision: the input operand is scaled by its range and rounded to f16 as it is loaded,
/// the f32 sum unscaled before the epilogue; the weights are f16-rounded at upload.
const FLAG_MIXED: u32 = 32;
/// The training forward: the epilogue also writes the output's ReLU mask bits (`relu::pack_mask`'s
/// words, which `backward_input` reads), so that no separate pass reads the activation again.
const FLAG_MASK_OUTPUT: u32 = 64;

/// Sizes of one convolution layer on a CHW image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ConvShape {
    pub fn input_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }
    pub fn output_len(&self) -> usize {
        self.out_channels * self.height * self.width
    }
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * 9
    }
    /// Multiply-adds of the forward pass times two (the backward to the input costs the same).
    pub fn flops(&self) -> u64 {
        2 * (self.output_len() as u64) * (self.in_channels as u64) * 9
    }
    /// `Cin->Cout @HxW`, for profiles.
    pub fn describe(&self) -> String {
        format!("{}->{} @{}x{}", self.in_channels, self.out_channels, self.height, self.width)
    }
}

/// A layer's weights uploaded to the GPU, in torchvision's layout [out, in, 3, 3]; the backward reads
/// the same buffer transposed and flipped, so no second copy is kept. Under mixed precision
/// (`Context::precision` when uploading) the weights are stored rounded to f16 (nearest even),
/// the operand every product with them takes; the bias stays f32.
#[derive(Clone)]
pub struct GpuConvWeights {
    pub in_channels: usize,
    pub out_channels: usize,
    pub weight: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    /// Whether `weight` holds f16-rounded values (uploaded under mixed precision).
    pub f16_rounded: bool,
}

impl GpuConvWeights {
    /// Uploads `weight` (`[out, in, 3, 3]` row-major) and `bias` (`[out]`).
    pub fn upload(
        ctx: &Context,
        label: &str,
        weight: &[f32],
        bias: &[f32],
        out_channels: usize,
        in_channels: usize,
    ) -> Result<Self, GpuError> {
        assert_eq!(weight.len(), out_channels * in_channels * 9, "{label} weight length");
        assert_eq!(bias.len(), out_channels, "{label} bias length");
        let f16_rounded = ctx.precision.arithmetic.is_mixed();
        Ok(Self {
            f16_rounded,
            in_channels,
            out_channels,
            weight: if f16_rounded {
                let rounded: Vec<f32> = weight.iter().map(|&w| super::mixed::round_f16(w)).collect();
                ctx.upload(&format!("{label}.weight (f16-rounded)"), &rounded)?
            } else {
                ctx.upload(&format!("{label}.weight"), weight)?
            },
            bias: ctx.upload(&format!("{label}.bias"), bias)?,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    tiles_n: u32,
    flags: u32,
    ci_stride: u32,
    row_stride: u32,
    tile_m: u32,
    tiles: u32,
    k_chunk: u32,
    splits: u32,
    _pad: [u32; 3],
}

/// Which formulation of the same product a kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Choose for me: the GPU tiling that suits each product's shape (`ConvAlgorithm::choose`),
    /// the default on GPUs (`STYLIZE_CONV=tiled`).
    Auto,
    /// 64 x 64 tiles staged in workgroup memory, 4 x 4 outputs per invocation.
    Tiled64,
    /// 64 x 256 tiles, 8 x 8 outputs per invocation.
    Wide,
    /// 128 x 128 tiles, 8 x 8 outputs per invocation.
    Square,
    /// One pixel and 4 rows per invocation: for a handful of rows (the image's gradient).
    Thin,
    /// No workgroup memory or barriers, uniform weight loads: for CPU implementations.
    Direct,
    /// Winograd F(2x2, 3x3): 16 multiplications per 2 x 2 outputs and channel instead of 36,
    /// after a transform of the weights into the shared scratch; f32 only (mixed products
    /// take `Auto` instead), never split. Only when forced (`STYLIZE_CONV=winograd`); measured
    /// against the default rule on a card by `benches/device_run.sh`, to earn a place in `choose`.
    Winograd,
}

impl ConvAlgorithm {
    /// The formulation forced on `ctx` (`Context::kernel_override`, from `STYLIZE_CONV`), else
    /// the one that suits the adapter's class; an unknown forced name is an error.
    pub fn for_context(ctx: &Context) -> Result<Self, GpuError> {
        match &ctx.kernel_override {
            Some(name) => Self::forced(name),
            None => Ok(Self::for_class(ctx.adapter.class())),
        }
    }

    /// The formulation a forced `name` means, or the error that lists the names.
    fn forced(name: &str) -> Result<Self, GpuError> {
        Self::parse(name).ok_or_else(|| {
            GpuError::Device(format!(
                "{KERNEL_OVERRIDE_VAR}={name}: expected tiled, tiled64, wide, square, thin, direct or winograd"
            ))
        })
    }

    /// The default formulation on adapters of `class`.
    pub fn for_class(class: AdapterClass) -> Self {
        match class {
            AdapterClass::Cpu => ConvAlgorithm::Direct,
            AdapterClass::Gpu => ConvAlgorithm::Auto,
        }
    }

    /// The adapter class this formulation is written for: `Direct` is the CPU form.
    pub fn class(self) -> AdapterClass {
        if self == ConvAlgorithm::Direct { AdapterClass::Cpu } else { AdapterClass::Gpu }
    }

    /// Forces this formulation on the kernels `ctx` builds from now on (tests run every one).
    pub fn force(self, ctx: &mut Context) {
        ctx.kernel_override = Some(self.name().to_string());
    }

    /// Every formulation, for tests and benchmarks.
    pub const ALL: [ConvAlgorithm; 7] = [
        ConvAlgorithm::Auto,
        ConvAlgorithm::Tiled64,
        ConvAlgorithm::Wide,
        ConvAlgorithm::Square,
        ConvAlgorithm::Thin,
        ConvAlgorithm::Direct,
        ConvAlgorithm::Winograd,
    ];

    /// The formulation's `STYLIZE_CONV` value.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgorithm::Auto => "tiled",
            ConvAlgorithm::Tiled64 => "tiled64",
            ConvAlgorithm::Wide => "wide",
            ConvAlgorithm::Square => "square",
            ConvAlgorithm::Thin => "thin",
            ConvAlgorithm::Direct => "direct",
            ConvAlgorithm::Winograd => "winograd",
        }
    }

    /// Parses `tiled`, `tiled64`, `wide`, `square`, `thin`, `direct` or `winograd` (`STYLIZE_CONV`),
    /// in any case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The concrete tiling `Auto` stands for on a product of `rows` x `pixels` outputs with a reduction
    /// over `channels` x 9, from per-layer timings of every tiling on an H200 at 128 to 1024 px
    /// (BENCHMARKS.md): the thin kernel for a handful of rows (3.5x faster than any tile for
    /// the image's gradient at 512 px); 64 x 64 tiles for short reductions (conv1_1, K = 27);
    /// else the largest tile that fits the rows (128 x 128 from 128 rows, 64 x 256 from 64),
    /// unless even split-K leaves it under 128 workgroups (about one per multiprocessor), where
    /// 64 x 64 tiles keep more of the GPU busy. Every other formulation stands for itself.
    pub fn choose(self, rows: usize, channels: usize, pixels: usize) -> Self {
        if self != ConvAlgorithm::Auto {
            return self;
        }
        let k_total = channels * 9;
        let groups = |tm: usize, tn: usize| {
            let tiles = rows.div_ceil(tm) * pixels.div_ceil(tn);
            tiles * split_parts(tiles, k_total)
        };
        if rows <= 4 {
            ConvAlgorithm::Thin
        } else if k_total < 64 {
            ConvAlgorithm::Tiled64
        } else if rows >= 128 && groups(128, 128) >= 128 {
            ConvAlgorithm::Square
        } else if (64..128).contains(&rows) && groups(64, 256) >= 128 {
            ConvAlgorithm::Wide
        } else {
            ConvAlgorithm::Tiled64
        }
    }
}

/// Split-K parts for `tiles` workgroups over a reduction of `k_total`: enough to reach
/// SPLIT_TARGET_GROUPS workgroups, each reducing over at least SPLIT_MIN_CHUNK indices.
fn split_parts(tiles: usize, k_total: usize) -> usize {
    if tiles >= SPLIT_TARGET_GROUPS {
        return 1;
    }
    SPLIT_TARGET_GROUPS.div_ceil(tiles.max(1)).min(k_total / SPLIT_MIN_CHUNK).max(1)
}

const DIRECT_ROWS: u32 = 16;
const DIRECT_BLOCKS: u32 = 16;
const DIRECT_PIXELS: u32 = 4;
const THIN_ROWS: u32 = 4;
const THIN_PIXELS: u32 = 256;
/// 2 x 2 output tiles per workgroup of `conv3x3_winograd`.
const WINOGRAD_TILES: u32 = 64;
/// Split-K: enough workgroups to fill a large GPU, each reducing over at least this many indices.
const SPLIT_TARGET_GROUPS: usize = 256;
const SPLIT_MIN_CHUNK: usize = 256;

/// How one product is dispatched.
#[derive(Clone, Copy, Debug)]
struct Layout {
    shader: ShaderSource,
    entry: &'static str,
    tiles_m: u32,
    tiles_n: u32,
    tile_m: u32,
    /// Split-K parts (1: none) and reduction indices per part (a multiple of 16).
    splits: u32,
    k_chunk: u32,
}

fn layout(ctx: &Context, rows: usize, in_channels: usize, height: usize, width: usize) -> Result<Layout, GpuError> {
    let mut algorithm = ConvAlgorithm::for_context(ctx)?;
    if algorithm == ConvAlgorithm::Winograd && ctx.precision.arithmetic.is_mixed() {
        // Rounded operands are defined in the direct product's terms, not in Winograd's transforms.
        algorithm = ConvAlgorithm::Auto;
    }
    let pixels = (height * width) as u32;
    let m = rows as u32;
    let (tiles_m, tiles_n, tile_m, entry) = match algorithm.choose(rows, in_channels, height * width) {
        ConvAlgorithm::Auto | ConvAlgorithm::Tiled64 => (m.div_ceil(TILE), pixels.div_ceil(TILE), TILE, "conv3x3"),
        ConvAlgorithm::Wide => (m.div_ceil(64), pixels.div_ceil(256), 64, "conv3x3_8x8"),
        ConvAlgorithm::Square => (m.div_ceil(128), pixels.div_ceil(128), 128, "conv3x3_8x8"),
        ConvAlgorithm::Thin => (m.div_ceil(THIN_ROWS), pixels.div_ceil(THIN_PIXELS), THIN_ROWS, "conv3x3_thin"),
        ConvAlgorithm::Direct => {
            let blocks = (height as u32) * (width as u32).div_ceil(DIRECT_PIXELS);
            (m.div_ceil(DIRECT_ROWS), blocks.div_ceil(DIRECT_BLOCKS), DIRECT_ROWS, "conv3x3_direct")
        }
        ConvAlgorithm::Winograd => {
            let tiles = ((height as u32).div_ceil(2)) * ((width as u32).div_ceil(2));
            (m, tiles.div_ceil(WINOGRAD_TILES), 1, "conv3x3_winograd")
        }
    };
    // Mixed precision on matrix units: every product but the handful-of-rows one (the image's
    // gradient, where a 32-row tile would be mostly padding) runs on cooperative matrices.
    let coop = ctx.precision.arithmetic == Arithmetic::MixedMatrix && entry != "conv3x3_thin";
    let (shader, tiles_m, tiles_n, tile_m, entry) = if coop {
        (COOP_SHADER.for_context(ctx)?, m.div_ceil(COOP_TILE), pixels.div_ceil(COOP_TILE), COOP_TILE, "conv3x3_coop")
    } else {
        (SHADER, tiles_m, tiles_n, tile_m, entry)
    };
    let k_total = in_channels * 9;
    // Few tiles over a long reduction (the deep layers at small sizes, conv5_1 at 512 px) leave
    // most of a GPU idle while each workgroup walks the whole reduction: split it, sum after.
    let tiles = (tiles_m * tiles_n) as usize;
    let splittable = matches!(entry, "conv3x3" | "conv3x3_8x8" | "conv3x3_coop");
    let splits = if splittable { split_parts(tiles, k_total) } else { 1 };
    let k_chunk = k_total.div_ceil(splits).next_multiple_of(16);
    Ok(Layout {
        shader,
        entry,
        tiles_m,
        tiles_n,
        tile_m,
        splits: k_total.div_ceil(k_chunk) as u32,
        k_chunk: k_chunk as u32,
    })
}

/// Floats of shared scratch the product needs: its split-K partial sums (0 when not split), or
/// Winograd's transformed weights (16 per row and channel).
fn scratch_len(layout: &Layout, rows: usize, channels: usize, height: usize, width: usize) -> usize {
    if layout.entry == "conv3x3_winograd" {
        return rows * channels * 16;
    }
    if layout.splits > 1 { layout.splits as usize * rows * height * width } else { 0 }
}

/// Floats of shared scratch (`Context::shared_scratch`) the forward and backward of `shape` need:
/// ask for the largest first so that one buffer serves every layer. An unknown forced
/// formulation needs none: the kernels this scratch would serve report it.
pub fn scratch_floats(ctx: &Context, shape: ConvShape) -> usize {
    let (c_in, c_out, h, w) = (shape.in_channels, shape.out_channels, shape.height, shape.width);
    let need = |rows, channels| layout(ctx, rows, channels, h, w).map_or(0, |l| scratch_len(&l, rows, channels, h, w));
    need(c_out, c_in).max(need(c_in, c_out))
}

/// The product `product` describes: its `out_channels` are the GEMM's rows, its `in_channels`
/// the channels of the reduction (swapped from the layer's for the backward pass).
fn gemm_kernel(
    ctx: &Context,
    product: ConvShape,
    flags: u32,
    [input, weight, bias, output, mask]: [&wgpu::Buffer; 5],
    mask_out: Option<&wgpu::Buffer>,
    rounded_weights: bool,
    work: (String, u64),
) -> Result<Step, GpuError> {
    let layout = layout(ctx, product.out_channels, product.in_channels, product.height, product.width)?;
    let mixed = ctx.precision.arithmetic.is_mixed();
    check_weight_rounding(&work.0, rounded_weights, mixed)?;
    let mut step = Step::new();
    // Mixed precision: the input operand's range, found on the GPU just before the product.
    let range = if mixed {
        let range = super::mixed::range_buffer(ctx)?;
        step.extend(super::mixed::range(ctx, product.input_len(), input, &range, 0)?);
        Some(range)
    } else {
        None
    };
    let flags = if mixed { flags | FLAG_MIXED } else { flags };
    let flags = if mask_out.is_some() { flags | FLAG_MASK_OUTPUT } else { flags };
    // The range binding is unused without FLAG_MIXED; any buffer satisfies the layout. The mask
    // words binding is unused without FLAG_MASK_OUTPUT: the products bind their output there
    // then (read-write twice is allowed; bound read-only elsewhere it would not be).
    let operands = [input, weight, bias, output, mask, range.as_ref().unwrap_or(input), mask_out.unwrap_or(output)];
    step.extend(if layout.entry == "conv3x3_winograd" {
        winograd_product(ctx, product, &layout, flags, operands, work)?
    } else {
        tiled_product(ctx, product, &layout, flags, operands, work)?
    });
    Ok(step)
}

/// Refuses weights rounded for another arithmetic than the context's.
fn check_weight_rounding(detail: &str, rounded_weights: bool, mixed: bool) -> Result<(), GpuError> {
    if mixed == rounded_weights {
        return Ok(());
    }
    Err(GpuError::Device(format!(
        "{detail}: weights uploaded for {} used in a {} product",
        if rounded_weights { "mixed precision" } else { "f32" },
        if mixed { "mixed-precision" } else { "f32" }
    )))
}

/// The uniform of `product` dispatched as `layout`, with `flags` (including FLAG_MIXED).
fn gemm_params(product: ConvShape, layout: &Layout, flags: u32) -> Params {
    let ConvShape { in_channels, out_channels: rows, height, width } = product;
    let split = layout.splits > 1;
    Params {
        groups: 0,
        in_channels: in_channels as u32,
        out_channels: rows as u32,
        height: height as u32,
        width: width as u32,
        tiles_n: layout.tiles_n,
        // Split parts write raw partial sums; the epilogue (bias, ReLU, accumulate, mask bits) comes after.
        flags: if split { flags & !(FLAG_BIAS | FLAG_RELU | FLAG_ACCUMULATE | FLAG_MASK_OUTPUT) } else { flags },
        // Forward: row m, channel c, tap t at m * (in * 9) + c * 9 + t. Backward (rows are the
        // forward's input channels, channels its outputs): c * (rows * 9) + m * 9 + (8 - t).
        ci_stride: if flags & FLAG_FLIP_TAPS != 0 { (rows * 9) as u32 } else { 9 },
        row_stride: if flags & FLAG_FLIP_TAPS != 0 { 9 } else { (in_channels * 9) as u32 },
        tile_m: layout.tile_m,
        tiles: layout.tiles_m * layout.tiles_n,
        k_chunk: layout.k_chunk,
        splits: layout.splits,
        _pad: [0; 3],
    }
}

/// Winograd's two kernels: U = G g G^T into the shared scratch (written through `out`), then the
/// product, which reads U as `a`. `operands` are input, weight, bias, output, mask, range and mask_out.
fn winograd_product(
    ctx: &Context,
    product: ConvShape,
    layout: &Layout,
    flags: u32,
    [input, weight, bias, output, mask, range, mask_out]: [&wgpu::Buffer; 7],
    (detail, flops): (String, u64),
) -> Result<Step, GpuError> {
    let ConvShape { in_channels, out_channels: rows, height, width } = product;
    let params = gemm_params(product, layout, flags);
    let groups = layout.tiles_m * layout.tiles_n * layout.splits;
    let transformed = ctx.shared_scratch(scratch_len(layout, rows, in_channels, height, width))?;
    let pairs = (rows * in_channels) as u32;
    let mut step = Step::new();
    step.push(Kernel::with_bindings(
        ctx,
        SHADER,
        "conv3x3_winograd_weights",
        bytemuck::bytes_of(&params),
        &[(2, weight), (4, &transformed)],
        pairs.div_ceil(WINOGRAD_TILES),
    )?);
    step.push(
        Kernel::new(
            ctx,
            SHADER,
            layout.entry,
            bytemuck::bytes_of(&params),
            &[input, &transformed, bias, output, mask, range, mask_out],
            groups,
        )?
        .with_work(detail, flops),
    );
    Ok(step)
}

/// The tiled, thin, direct or cooperative-matrix product: one kernel, or, split along the
/// reduction, the parts into the shared scratch and then their sum with the epilogue.
/// `operands` are input, weight, bias, output, mask, range and mask_out.
fn tiled_product(
    ctx: &Context,
    product: ConvShape,
    layout: &Layout,
    flags: u32,
    [input, weight, bias, output, mask, range, mask_out]: [&wgpu::Buffer; 7],
    (detail, flops): (String, u64),
) -> Result<Step, GpuError> {
    let ConvShape { in_channels, out_channels: rows, height, width } = product;
    let params = gemm_params(product, layout, flags);
    let groups = layout.tiles_m * layout.tiles_n * layout.splits;
    let split = layout.splits > 1;
    let partials =
        if split { Some(ctx.shared_scratch(scratch_len(layout, rows, in_channels, height, width))?) } else { None };
    let detail = if split { format!("{detail} ({} splits)", layout.splits) } else { detail };
    let mut step = Step::new();
    // Split parts write no mask bits (the sum does): their dummy mask binding is their output's.
    let (part_output, part_mask_out) = match &partials {
        Some(partials) => (partials, partials),
        None => (output, mask_out),
    };
    step.push(
        Kernel::new(
            ctx,
            layout.shader,
            layout.entry,
            bytemuck::bytes_of(&params),
            &[input, weight, bias, part_output, mask, range, part_mask_out],
            groups,
        )?
        .with_work(detail, flops),
    );
    let Some(partials) = partials else { return Ok(step) };
    // The parts were unscaled as they were written: the sum adds f32 values.
    let sum = Params { flags: flags & !FLAG_MIXED, ..params };
    let len = (rows * height * width) as u32;
    // The partial sums are read as `input` (binding 1); the sum uses neither `a` nor `mask`.
    step.push(Kernel::with_bindings(
        ctx,
        SHADER,
        "conv3x3_split_sum",
        bytemuck::bytes_of(&sum),
        &[(1, &partials), (3, bias), (4, output), (6, range), (7, mask_out)],
        len.div_ceil(256),
    )?);
    Ok(step)
}

/// output = conv(input) + bias, optionally followed by ReLU (fused in the epilogue): one dispatch,
/// or two where the reduction is split (the second sums the parts in `Context::shared_scratch`).
pub fn forward(
    ctx: &Context,
    shape: ConvShape,
    input: &wgpu::Buffer,
    weights: &GpuConvWeights,
    output: &wgpu::Buffer,
    relu: bool,
) -> Result<Step, GpuError> {
    forward_product(ctx, shape, input, weights, output, relu, None)
}

/// `forward` with the ReLU fused, writing also the mask of its output into `relu_mask`
/// (`relu::mask_words(shape.output_len())` words, bit i % 32 of word i / 32 set where output i
/// is > 0: the words `relu::pack_mask` packs and `backward_input` reads), in the epilogue, so
/// that the training forward needs no second pass over the activation. Every word is written
/// whatever it held before: each value's owner sets or clears its own bit with an atomic (the
/// split-K sum stores whole words), so neither a clearing pass nor a zeroed buffer is needed.
pub fn forward_relu_masked(
    ctx: &Context,
    shape: ConvShape,
    input: &wgpu::Buffer,
    weights: &GpuConvWeights,
    output: &wgpu::Buffer,
    relu_mask: &wgpu::Buffer,
) -> Result<Step, GpuError> {
    forward_product(ctx, shape, input, weights, output, true, Some(relu_mask))
}

fn forward_product(
    ctx: &Context,
    shape: ConvShape,
    input: &wgpu::Buffer,
    weights: &GpuConvWeights,
    output: &wgpu::Buffer,
    relu: bool,
    relu_mask: Option<&wgpu::Buffer>,
) -> Result<Step, GpuError> {
    let flags = FLAG_BIAS | if relu { FLAG_RELU } else { 0 };
    gemm_kernel(
        ctx,
        shape,
        flags,
        // The mask binding is unused without FLAG_MASK_INPUT; any buffer satisfies the layout.
        [input, &weights.weight, &weights.bias, output, input],
        relu_mask,
        weights.f16_rounded,
        (format!("forward {}", shape.describe()), shape.flops()),
    )
}

/// grad_input (=, or += when `accumulate`) the gradient of the loss with respect to the conv's
/// input, given the gradient with respect to its output. With `relu_mask`, the conv is followed by
/// a ReLU and that is its output's mask packed as bits (`forward_relu_masked`, `relu::pack_mask`): `grad_output` is then
/// the gradient after the ReLU and the ReLU's backward (masking by output > 0) is fused into the loads.
pub fn backward_input(
    ctx: &Context,
    shape: ConvShape,
    grad_output: &wgpu::Buffer,
    weights: &GpuConvWeights,
    grad_input: &wgpu::Buffer,
    accumulate: bool,
    relu_mask: Option<&wgpu::Buffer>,
) -> Result<Step, GpuError> {
    let flags = FLAG_FLIP_TAPS
        | if accumulate { FLAG_ACCUMULATE } else { 0 }
        | if relu_mask.is_some() { FLAG_MASK_INPUT } else { 0 };
    gemm_kernel(
        ctx,
        ConvShape { in_channels: shape.out_channels, out_channels: shape.in_channels, ..shape },
        flags,
        // The bias binding is unused without FLAG_BIAS; any buffer satisfies the layout.
        [grad_output, &weights.weight, &weights.bias, grad_input, relu_mask.unwrap_or(grad_output)],
        None,
        weights.f16_rounded,
        (format!("backward {}", shape.describe()), shape.flops()),
    )
}

/// f64 references, written from the definitions (no im2col, no flipping) so that they check the kernel.
pub mod reference {
    use super::ConvShape;
    use crate::ops::mixed;

    /// `forward` on the operands a mixed-precision convolution takes: the input scaled by its
    /// range and rounded to f16, the weight rounded to f16 (the bias stays as given).
    pub fn forward_mixed(shape: ConvShape, input: &[f32], weight: &[f32], bias: &[f64]) -> Vec<f64> {
        forward(shape, &mixed::round_operand(input), &rounded_weight(weight), bias)
    }

    /// `backward_input` on the operands a mixed-precision backward takes: the output gradient,
    /// masked by `keep` (the fused ReLU's output > 0) where given, scaled by the range of the
    /// unmasked gradient (what the kernel measures) and rounded to f16; the weight rounded to f16.
    pub fn backward_input_mixed(
        shape: ConvShape,
        grad_output: &[f32],
        keep: Option<&[bool]>,
        weight: &[f32],
    ) -> Vec<f64> {
        let exponent = mixed::scale_exponent(mixed::max_biased_exponent(grad_output));
        let masked: Vec<f32> = match keep {
            Some(keep) => grad_output.iter().zip(keep).map(|(&g, &k)| if k { g } else { 0.0 }).collect(),
            None => grad_output.to_vec(),
        };
        backward_input(shape, &mixed::round_scaled(&masked, exponent), &rounded_weight(weight))
    }

    fn rounded_weight(weight: &[f32]) -> Vec<f64> {
        weight.iter().map(|&w| mixed::round_f16(w) as f64).collect()
    }

    /// `out[co, y, x] = bias[co] + sum over ci, ky, kx of w[co, ci, ky, kx] * in[ci, y + ky - 1, x + kx - 1]`.
    pub fn forward(shape: ConvShape, input: &[f64], weight: &[f64], bias: &[f64]) -> Vec<f64> {
        let ConvShape { in_channels, out_channels, height, width } = shape;
        let mut out = vec![0.0; shape.output_len()];
        for co in 0..out_channels {
            for y in 0..height {
                for x in 0..width {
                    let mut sum = bias[co];
                    for ci in 0..in_channels {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= height as isize || ix >= width as isize {
                                    continue;
                                }
                                sum += weight[((co * in_channels + ci) * 3 + ky) * 3 + kx]
                                    * input[(ci * height + iy as usize) * width + ix as usize];
                            }
                        }
                    }
                    out[(co * height + y) * width + x] = sum;
                }
            }
        }
        out
    }

    /// The adjoint of `forward` (without bias): scatters each output gradient back over its window.
    pub fn backward_input(shape: ConvShape, grad_output: &[f64], weight: &[f64]) -> Vec<f64> {
        let ConvShape { in_channels, out_channels, height, width } = shape;
        let mut grad_input = vec![0.0; shape.input_len()];
        for co in 0..out_channels {
            for y in 0..height {
                for x in 0..width {
                    let g = grad_output[(co * height + y) * width + x];
                    for ci in 0..in_channels {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= height as isize || ix >= width as isize {
                                    continue;
                                }
                                grad_input[(ci * height + iy as usize) * width + ix as usize] +=
                                    weight[((co * in_channels + ci) * 3 + ky) * 3 + kx] * g;
                            }
                        }
                    }
                }
            }
        }
        grad_input
    }
}

#[cfg(test)]
mod tests {
    use super::ConvAlgorithm::{self, *};

    /// The tiling `Auto` picks for VGG-19's products, against the fastest measured on an H200
    /// (benches/device_conv_variants.sh; BENCHMARKS.md): (rows, channels, side, expected).
    #[test]
    fn auto_picks_the_measured_fastest_tiling() {
        let cases = [
            (64, 3, 512, Tiled64),   // conv1_1 forward, K = 27
            (64, 64, 512, Wide),     // conv1_2 forward
            (3, 64, 512, Thin),      // conv1_1 backward: the image's gradient
            (256, 256, 128, Square), // conv3_x at 512 px
            (512, 512, 32, Square),  // conv5_1 at 512 px, split 8 ways
            (512, 512, 8, Tiled64),  // conv5_1 at 128 px: 4 big tiles even split
            (256, 512, 16, Tiled64), // conv4_1 backward at 128 px
            (512, 512, 16, Square),  // conv4_x at 128 px
            (64, 128, 64, Tiled64),  // conv2_1 backward at 128 px
            (64, 128, 128, Wide),    // conv2_1 backward at 256 px
        ];
        for (rows, channels, side, expected) in cases {
            assert_eq!(ConvAlgorithm::Auto.choose(rows, channels, side * side), expected, "{rows}x{channels}@{side}");
        }
        assert_eq!(ConvAlgorithm::Direct.choose(64, 64, 512 * 512), Direct, "forced choices stand");
    }

    /// `STYLIZE_CONV` takes each formulation's name in any case (`tiled` is `Auto`) and names
    /// the accepted values otherwise.
    #[test]
    fn forced_names_parse_and_unknown_ones_are_refused() {
        for (name, expected) in [
            ("tiled", Auto),
            ("TILED", Auto),
            ("tiled64", Tiled64),
            ("Wide", Wide),
            ("square", Square),
            ("thin", Thin),
            ("direct", Direct),
            ("winograd", Winograd),
        ] {
            assert_eq!(ConvAlgorithm::forced(name).unwrap(), expected, "{name}");
        }
        for algorithm in ConvAlgorithm::ALL {
            assert_eq!(ConvAlgorithm::forced(algorithm.name()).unwrap(), algorithm);
        }
        for bad in ["auto", "", "tiled 64", "bogus"] {
            let err = ConvAlgorithm::forced(bad).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "GPU error: STYLIZE_CONV={bad}: expected tiled, tiled64, wide, square, thin, direct or winograd"
                )
            );
        }
    }

    /// The CPU form is `Direct` both ways; every other formulation is written for GPUs.
    #[test]
    fn adapter_classes_map_to_their_formulations() {
        use crate::gpu::AdapterClass;
        assert_eq!(ConvAlgorithm::for_class(AdapterClass::Cpu), Direct);
        assert_eq!(ConvAlgorithm::for_class(AdapterClass::Gpu), Auto);
        for algorithm in ConvAlgorithm::ALL {
            let class = if algorithm == Direct { AdapterClass::Cpu } else { AdapterClass::Gpu };
            assert_eq!(algorithm.class(), class, "{algorithm:?}");
        }
    }
}
