//! TV-L1 optical flow on the GPU: the duality-based method of Zach, Pock & Bischof (2007) as
//! Sánchez, Meinhardt-Llopis & Facciolo, "TV-L1 Optical Flow Estimation" (IPOL 2013) write it
//! and their `tvl1flow_lib.c` computes it, with the departures listed below. f64 references of
//! every kernel and of the whole flow beside (`reference`).
//!
//! The flow `u` from `first` (I0) to `second` (I1) minimizes
//! `sum |grad u1| + |grad u2| + lambda |I1(p + u(p)) - I0(p)|`, so that `first(p) ~ second(p +
//! u(p))`. It is planar `2 x H x W` f32: plane 0 the x displacement, plane 1 the y displacement.
//!
//! What one flow does (`Tvl1::new` records it once into one `Step`):
//!
//! 1. Grayscale: each RGB frame (planar `3 x H x W` in [0, 1]) becomes
//!    `255 (0.299 R + 0.587 G + 0.114 B)`, in [0, 255] where the paper's lambda is tuned. (IPOL
//!    also stretches the pair's joint range to [0, 255]; that is not done: it needs a reduction,
//!    and natural frames span most of the range already.)
//! 2. Pre-smoothing: a Gaussian of `presmoothing` (0.8, IPOL's `PRESMOOTHING_SIGMA`) on both.
//! 3. Pyramid: level `s + 1` is level `s` smoothed by a Gaussian of `0.6 sqrt(1 / zoom^2 - 1)`
//!    (IPOL's `ZOOM_SIGMA_ZERO`; 1.04 at zoom 0.5) and sampled at `(x, y) / zoom`: plain
//!    decimation at zoom 0.5, bilinear at other zooms (IPOL's is bicubic). Sides are
//!    `(int)(side * zoom + 0.5)` as IPOL's `zoom_size`; `levels: None` takes IPOL's count,
//!    `1 + ln(diagonal / 16) / ln(1 / zoom)` truncated, a coarsest level of about 16 px diagonal
//!    (20 x 15 from 160 x 120). Stopping at a coarsest *side* of 16 px instead (40 x 30 there)
//!    measured 5 times the endpoint error on 9 px of motion (0.155 px against 0.031).
//! 4. From the coarsest level, flow 0, dual variable p reset to 0 at each level, `warps` times:
//!    warp I1 by the current flow u0 and take its gradient there (`reference::warp`), then
//!    `iterations` times: the thresholding step v = TH(u) (`reference::threshold`), the primal
//!    update u = v + theta div p (`reference::primal`) and the dual update, Chambolle's
//!    projection p = (p + tau/theta grad u) / (1 + tau/theta |grad u|) (`reference::dual`), in
//!    the order of IPOL's loop.
//! 5. The flow is upsampled to the next finer level (`reference::upsample`), its values times
//!    1 / zoom.
//!
//! Departures from IPOL, all deliberate:
//! - Bilinear sampling everywhere (the warp, the gradient at the warped point, the pyramid, the
//!   upsampling) where IPOL samples bicubically; the gradient of the warped I1 is the central
//!   difference `(I1(q + ex) - I1(q - ex)) / 2` at `q = p + u0(p)`, which equals IPOL's warped
//!   central-difference gradient image interpolated bilinearly, away from the borders.
//! - A fixed number of inner iterations per warp (`Tvl1Config::iterations`, every one submitted
//!   in the one step) instead of IPOL's stopping test `mean |u_new - u|^2 < epsilon^2` (epsilon
//!   0.01, at most 300): the test would need a readback (or a reduction and skipped dispatches)
//!   in every iteration. `reference::flow_until` runs the test, to measure what it would do.
//! - The Gaussian mirrors about the edge pixels (`-k -> k`) on both sides, taps `-floor(5
//!   sigma) ..= floor(5 sigma)` normalized to sum 1 (IPOL mirrors like this on the left only).
//! - The upsampling samples the coarse flow at `(x, y) * zoom`, the inverse of the
//!   downsampling's map (IPOL uses the two sides' ratio), clamped at the coarse borders.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

/// The compiled `kernels/tvl1.wgsl`.
pub const SHADER: ShaderSource = ShaderSource { name: "tvl1", source: include_str!("../../kernels/tvl1.wgsl") };

/// The automatic pyramid has IPOL's `1 + ln(diagonal / MIN_DIAGONAL) / ln(1 / zoom)` levels
/// (truncated, at least 1): its coarsest level's diagonal is about 16 px.
pub const MIN_DIAGONAL: f64 = 16.0;

/// The Gaussian before each zoom out is `ZOOM_SIGMA * sqrt(1 / zoom^2 - 1)` (IPOL's value).
pub const ZOOM_SIGMA: f64 = 0.6;

/// The luma weights (Rec. 601), times 255 in the grayscale frame.
pub const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// The parameters of the method; the defaults are IPOL's, except the fixed `iterations`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tvl1Config {
    /// Time step of the dual update (IPOL: 0.25; at most 0.25, where the projection converges).
    pub tau: f64,
    /// Weight of the data term (0.15, for images in [0, 255]); smaller gives smoother flows.
    pub lambda: f64,
    /// Coupling of u and v (0.3).
    pub theta: f64,
    /// Warpings of I1 per level (5).
    pub warps: usize,
    /// Inner iterations per warp, all run (no stopping test): see `Default`.
    pub iterations: usize,
    /// Ratio of a level's sides to the finer one's (0.5).
    pub zoom: f64,
    /// Levels of the pyramid; `None`: IPOL's rule, a coarsest level of about 16 px diagonal
    /// (`MIN_DIAGONAL`; 4 levels at 160 x 120, the coarsest 20 x 15).
    pub levels: Option<usize>,
    /// Sigma of the Gaussian on both frames before the pyramid (0.8); 0 for none.
    pub presmoothing: f64,
}

impl Default for Tvl1Config {
    /// IPOL's parameters, and 30 inner iterations per warp. On the quality pairs of
    /// tests/gpu_tvl1.rs IPOL's test (epsilon 0.01) runs 31 to 64 iterations in the first warp of
    /// the coarsest level and 3 to 5 in the last of the finest (`reference::flow_until`); fixed
    /// 30 gives endpoint errors within 0.02 px of the test's on the smooth fields (higher: there
    /// the TV-L1 minimizer itself is biased on a rotating, zooming field, so stopping early
    /// helps) and lower on the two-layer pair, where convergence pays (0.010 px against 0.012).
    fn default() -> Self {
        Self {
            tau: 0.25,
            lambda: 0.15,
            theta: 0.3,
            warps: 5,
            iterations: 30,
            zoom: 0.5,
            levels: None,
            presmoothing: 0.8,
        }
    }
}

impl Tvl1Config {
    /// An error naming the first parameter out of its range.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| if v > 0.0 && v.is_finite() { Ok(()) } else { Err(format!("{name} {v}")) };
        positive("tau", self.tau)?;
        if self.tau > 0.25 {
            return Err(format!("tau {} (the dual step diverges past 0.25)", self.tau));
        }
        positive("lambda", self.lambda)?;
        positive("theta", self.theta)?;
        if !(self.zoom > 0.0 && self.zoom < 1.0) {
            return Err(format!("zoom {} (not in (0, 1))", self.zoom));
        }
        if !(self.presmoothing >= 0.0 && self.presmoothing.is_finite()) {
            return Err(format!("presmoothing {}", self.presmoothing));
        }
        if self.warps == 0 || self.iterations == 0 || self.levels == Some(0) {
            return Err("warps, iterations and levels must be at least 1".into());
        }
        Ok(())
    }

    /// Sigma of the Gaussian before each zoom out.
    pub fn zoom_sigma(&self) -> f64 {
        ZOOM_SIGMA * (1.0 / (self.zoom * self.zoom) - 1.0).sqrt()
    }

    /// Levels for `frame`: `levels`, or IPOL's rule (`MIN_DIAGONAL`).
    pub fn level_count(&self, frame: Size) -> usize {
        self.levels.unwrap_or_else(|| {
            let diagonal = (frame.width as f64).hypot(frame.height as f64);
            (1.0 + (diagonal / MIN_DIAGONAL).ln() / (1.0 / self.zoom).ln()).max(1.0) as usize
        })
    }

    /// The pyramid's sizes, finest (the frame's) first; fewer than `level_count` where the sides
    /// stop shrinking (1 px).
    pub fn level_sizes(&self, frame: Size) -> Vec<Size> {
        let zoomed = |side: usize| ((side as f64 * self.zoom + 0.5) as usize).max(1);
        let mut sizes = vec![frame];
        while sizes.len() < self.level_count(frame) {
            let last = sizes[sizes.len() - 1];
            let next = Size { width: zoomed(last.width), height: zoomed(last.height) };
            if next == last {
                break;
            }
            sizes.push(next);
        }
        sizes
    }
}

/// A plane's size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: usize,
    pub height: usize,
}

impl Size {
    pub fn len(self) -> usize {
        self.width * self.height
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The direction of one pass of the separable Gaussian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    X,
    Y,
}

/// Taps on each side of a Gaussian's centre: `floor(5 sigma)`, IPOL's window.
pub fn taps(sigma: f64) -> usize {
    (5.0 * sigma) as usize
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    width: u32,
    height: u32,
    src_width: u32,
    src_height: u32,
    taps: u32,
    axis: u32,
    planes: u32,
    scale: f32,
    factor: f32,
    _pad: [f32; 2],
}

impl Params {
    fn of(size: Size) -> Self {
        let mut p = Self::zeroed();
        p.width = size.width as u32;
        p.height = size.height as u32;
        p
    }

    fn from(mut self, src: Size) -> Self {
        self.src_width = src.width as u32;
        self.src_height = src.height as u32;
        self
    }

    fn scaled(mut self, scale: f64) -> Self {
        self.scale = scale as f32;
        self
    }
}

// The shader's bindings: what is sampled or read pointwise, a second input, the flow, the output.
const SRC: u32 = 1;
const AUX: u32 = 2;
const FLOW: u32 = 3;
const DST: u32 = 4;

/// An error unless `size` has pixels and `planes` of them index within u32.
fn check_size(what: &str, size: Size, planes: usize) -> Result<(), GpuError> {
    let fits = size.len().checked_mul(4 * planes).is_some_and(|b| b > 0 && b <= u32::MAX as usize);
    if fits { Ok(()) } else { Err(GpuError::Device(format!("tvl1::{what}: a {size:?} image is empty or too large"))) }
}

/// An error unless `buffer` holds at least `len` f32 values.
fn holds(what: &str, name: &str, buffer: &wgpu::Buffer, len: usize) -> Result<(), GpuError> {
    if buffer.size() < 4 * len as u64 {
        let bytes = buffer.size();
        return Err(GpuError::Device(format!(
            "tvl1::{what}: the {name} buffer has {bytes} bytes, fewer than {len} values"
        )));
    }
    Ok(())
}

/// The dispatch of `entry` over `outputs` values (one invocation each, 256 a group).
fn kernel(
    ctx: &Context,
    entry: &str,
    params: Params,
    buffers: &[(u32, &wgpu::Buffer)],
    outputs: usize,
) -> Result<Kernel, GpuError> {
    let groups = (outputs as u32).div_ceil(256);
    Kernel::with_bindings(ctx, SHADER, entry, bytemuck::bytes_of(&params), buffers, groups)
}

/// out (`H x W`) = the grayscale frame `255 * LUMA . rgb` of `rgb` (`3 x H x W`, in [0, 1]).
pub fn luma(ctx: &Context, size: Size, rgb: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    check_size("luma", size, 3)?;
    holds("luma", "rgb", rgb, 3 * size.len())?;
    holds("luma", "output", out, size.len())?;
    kernel(ctx, "luma", Params::of(size), &[(SRC, rgb), (DST, out)], size.len())
}

/// out = `src` (`H x W`) convolved along `axis` with the Gaussian of `sigma` (> 0): taps
/// `-taps(sigma)..=taps(sigma)`, weights `exp(-k^2 / (2 sigma^2))` normalized, indices mirrored.
pub fn smooth(
    ctx: &Context,
    size: Size,
    sigma: f64,
    axis: Axis,
    src: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("smooth", size, 1)?;
    holds("smooth", "input", src, size.len())?;
    holds("smooth", "output", out, size.len())?;
    let mut p = Params::of(size).scaled(sigma);
    p.taps = taps(sigma) as u32;
    p.axis = (axis == Axis::Y) as u32;
    kernel(ctx, "gaussian_pass", p, &[(SRC, src), (DST, out)], size.len())
}

/// out (`to`) = `src` (`from`) sampled at `(x, y) / zoom`.
pub fn downsample(
    ctx: &Context,
    from: Size,
    to: Size,
    zoom: f64,
    src: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("downsample", from, 1)?;
    check_size("downsample", to, 1)?;
    holds("downsample", "input", src, from.len())?;
    holds("downsample", "output", out, to.len())?;
    let p = Params::of(to).from(from).scaled(zoom);
    kernel(ctx, "downsample", p, &[(SRC, src), (DST, out)], to.len())
}

/// out (`2 x to`) = the flow `src` (`2 x from`) sampled at `(x, y) * zoom`, times `1 / zoom`.
pub fn upsample(
    ctx: &Context,
    from: Size,
    to: Size,
    zoom: f64,
    src: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("upsample", from, 2)?;
    check_size("upsample", to, 2)?;
    holds("upsample", "input", src, 2 * from.len())?;
    holds("upsample", "output", out, 2 * to.len())?;
    let mut p = Params::of(to).from(from).scaled(zoom);
    p.factor = (1.0 / zoom) as f32;
    kernel(ctx, "upsample", p, &[(SRC, src), (DST, out)], to.len())
}

/// out (`3 x H x W`) = `reference::warp`: `second` warped by `flow`, minus `first`, linearized.
pub fn warp(
    ctx: &Context,
    size: Size,
    first: &wgpu::Buffer,
    second: &wgpu::Buffer,
    flow: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("warp", size, 3)?;
    holds("warp", "first", first, size.len())?;
    holds("warp", "second", second, size.len())?;
    holds("warp", "flow", flow, 2 * size.len())?;
    holds("warp", "output", out, 3 * size.len())?;
    let buffers = [(SRC, second), (AUX, first), (FLOW, flow), (DST, out)];
    kernel(ctx, "warp", Params::of(size), &buffers, size.len())
}

/// out (`2 x H x W`) = `reference::threshold` of `flow` with the `warp` output `warped`.
pub fn threshold(
    ctx: &Context,
    size: Size,
    lambda_theta: f64,
    warped: &wgpu::Buffer,
    flow: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("threshold", size, 3)?;
    holds("threshold", "warped", warped, 3 * size.len())?;
    holds("threshold", "flow", flow, 2 * size.len())?;
    holds("threshold", "output", out, 2 * size.len())?;
    let buffers = [(SRC, warped), (FLOW, flow), (DST, out)];
    kernel(ctx, "threshold", Params::of(size).scaled(lambda_theta), &buffers, size.len())
}

/// out (`2 x H x W`, the flow) = `v + theta div p` (`reference::primal`; `p`: `4 x H x W`).
pub fn primal(
    ctx: &Context,
    size: Size,
    theta: f64,
    v: &wgpu::Buffer,
    p: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("primal", size, 4)?;
    holds("primal", "v", v, 2 * size.len())?;
    holds("primal", "dual", p, 4 * size.len())?;
    holds("primal", "output", out, 2 * size.len())?;
    let buffers = [(SRC, v), (AUX, p), (DST, out)];
    kernel(ctx, "primal", Params::of(size).scaled(theta), &buffers, size.len())
}

/// p (`4 x H x W`, in place) = `reference::dual` of p and `flow`, with `tau / theta`.
pub fn dual(
    ctx: &Context,
    size: Size,
    tau_theta: f64,
    flow: &wgpu::Buffer,
    p: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    check_size("dual", size, 4)?;
    holds("dual", "flow", flow, 2 * size.len())?;
    holds("dual", "dual", p, 4 * size.len())?;
    kernel(ctx, "dual", Params::of(size).scaled(tau_theta), &[(FLOW, flow), (DST, p)], size.len())
}

/// out's first `planes x H x W` values = 0.
pub fn clear(ctx: &Context, size: Size, planes: usize, out: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    check_size("clear", size, planes)?;
    holds("clear", "output", out, planes * size.len())?;
    let mut p = Params::of(size);
    p.planes = planes as u32;
    kernel(ctx, "clear", p, &[(DST, out)], planes * size.len())
}

/// One level of the pyramid: its size, both grayscale frames and its flow.
struct Level {
    size: Size,
    frames: [wgpu::Buffer; 2],
    flow: wgpu::Buffer,
}

/// The buffers every level shares, each of the finest level's size (a level uses its start).
struct Work {
    /// One pass of a Gaussian.
    pass: wgpu::Buffer,
    /// A frame smoothed before its zoom out.
    smoothed: wgpu::Buffer,
    /// `reference::warp`'s output.
    warped: wgpu::Buffer,
    /// The thresholding step's output.
    v: wgpu::Buffer,
    /// The dual variable.
    p: wgpu::Buffer,
}

/// The flow of one frame size, every buffer allocated and every dispatch recorded once (the
/// module's steps, `levels x warps x (1 + 3 iterations)` dispatches and a few more).
pub struct Tvl1 {
    config: Tvl1Config,
    levels: Vec<Level>,
    rgb: [wgpu::Buffer; 2],
    step: Step,
    /// Held with the step whose dispatches bind them.
    _work: Work,
}

impl Tvl1 {
    /// Allocates the pyramids for `width x height` frames and records the flow.
    pub fn new(ctx: &Context, width: usize, height: usize, config: Tvl1Config) -> Result<Self, GpuError> {
        config.validate().map_err(|e| GpuError::Device(format!("tvl1: {e}")))?;
        let frame = Size { width, height };
        check_size("Tvl1::new", frame, 4)?;
        let n = frame.len();
        let rgb = [ctx.buffer("tvl1 first rgb", 3 * n)?, ctx.buffer("tvl1 second rgb", 3 * n)?];
        let levels = config
            .level_sizes(frame)
            .into_iter()
            .map(|size| {
                let frames = [ctx.buffer("tvl1 first", size.len())?, ctx.buffer("tvl1 second", size.len())?];
                Ok(Level { size, frames, flow: ctx.buffer("tvl1 flow", 2 * size.len())? })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        let work = Work {
            pass: ctx.buffer("tvl1 gaussian pass", n)?,
            smoothed: ctx.buffer("tvl1 smoothed", n)?,
            warped: ctx.buffer("tvl1 warped", 3 * n)?,
            v: ctx.buffer("tvl1 v", 2 * n)?,
            p: ctx.buffer("tvl1 dual", 4 * n)?,
        };
        let mut step = Step::new();
        for (frame, rgb) in rgb.iter().enumerate() {
            record_pyramid(ctx, &mut step, &config, rgb, frame, &levels, &work)?;
        }
        record_solver(ctx, &mut step, &config, &levels, &work)?;
        Ok(Self { config, levels, rgb, step, _work: work })
    }

    /// The frame size this was built for.
    pub fn size(&self) -> Size {
        self.levels[0].size
    }

    /// The pyramid's sizes, finest first.
    pub fn level_sizes(&self) -> Vec<Size> {
        self.levels.iter().map(|l| l.size).collect()
    }

    pub fn config(&self) -> &Tvl1Config {
        &self.config
    }

    /// Dispatches in one flow.
    pub fn dispatches(&self) -> usize {
        self.step.len()
    }

    /// Submits the flow from `first` to `second` (RGB, planar `3 x H x W`, in [0, 1]) into
    /// `out` (planar `2 x H x W`: x, then y displacement), so that `first(p) ~ second(p +
    /// out(p))`; returns without waiting (reading `out` waits). The frames are copied in and the
    /// flow out, so the buffers need COPY_SRC and COPY_DST (as `Context::buffer`'s have).
    pub fn flow(
        &self,
        ctx: &Context,
        first: &wgpu::Buffer,
        second: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let n = self.size().len();
        holds("Tvl1::flow", "first", first, 3 * n)?;
        holds("Tvl1::flow", "second", second, 3 * n)?;
        holds("Tvl1::flow", "output", out, 2 * n)?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for (src, dst) in [first, second].into_iter().zip(&self.rgb) {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, 12 * n as u64);
        }
        ctx.queue.submit([encoder.finish()]);
        self.step.submit(ctx);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.levels[0].flow, 0, out, 0, 8 * n as u64);
        ctx.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// `flow` from and to host memory: the frames `3 x H x W`, the flow `2 x H x W`.
    pub fn flow_host(&self, ctx: &Context, first_rgb: &[f32], second_rgb: &[f32]) -> Result<Vec<f32>, GpuError> {
        let n = self.size().len();
        for (name, frame) in [("first", first_rgb), ("second", second_rgb)] {
            if frame.len() != 3 * n {
                let size = self.size();
                return Err(GpuError::Device(format!(
                    "tvl1: the {name} frame has {} values, not 3 x {size:?}",
                    frame.len()
                )));
            }
        }
        ctx.write(&self.rgb[0], first_rgb);
        ctx.write(&self.rgb[1], second_rgb);
        self.step.submit(ctx);
        ctx.read(&self.levels[0].flow, 2 * n)
    }
}

/// Appends `src -> dst` smoothed by the Gaussian of `sigma` (both passes, through `work.pass`).
fn record_gaussian(
    ctx: &Context,
    step: &mut Step,
    size: Size,
    sigma: f64,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    work: &Work,
) -> Result<(), GpuError> {
    step.push(smooth(ctx, size, sigma, Axis::X, src, &work.pass)?);
    step.push(smooth(ctx, size, sigma, Axis::Y, &work.pass, dst)?);
    Ok(())
}

/// Appends frame `frame`'s pyramid: grayscale, pre-smoothed, then each level from the one above.
fn record_pyramid(
    ctx: &Context,
    step: &mut Step,
    config: &Tvl1Config,
    rgb: &wgpu::Buffer,
    frame: usize,
    levels: &[Level],
    work: &Work,
) -> Result<(), GpuError> {
    let finest = &levels[0];
    step.push(luma(ctx, finest.size, rgb, &finest.frames[frame])?);
    if config.presmoothing > 0.0 {
        record_gaussian(
            ctx,
            step,
            finest.size,
            config.presmoothing,
            &finest.frames[frame],
            &finest.frames[frame],
            work,
        )?;
    }
    for pair in levels.windows(2) {
        let (fine, coarse) = (&pair[0], &pair[1]);
        record_gaussian(ctx, step, fine.size, config.zoom_sigma(), &fine.frames[frame], &work.smoothed, work)?;
        step.push(downsample(ctx, fine.size, coarse.size, config.zoom, &work.smoothed, &coarse.frames[frame])?);
    }
    Ok(())
}

/// Appends the solver: coarsest level first from a zero flow, each flow upsampled to the next.
fn record_solver(
    ctx: &Context,
    step: &mut Step,
    config: &Tvl1Config,
    levels: &[Level],
    work: &Work,
) -> Result<(), GpuError> {
    let coarsest = &levels[levels.len() - 1];
    step.push(clear(ctx, coarsest.size, 2, &coarsest.flow)?);
    for s in (0..levels.len()).rev() {
        record_level(ctx, step, config, &levels[s], work)?;
        if s > 0 {
            let (coarse, fine) = (&levels[s], &levels[s - 1]);
            step.push(upsample(ctx, coarse.size, fine.size, config.zoom, &coarse.flow, &fine.flow)?);
        }
    }
    Ok(())
}

/// Appends one level's warps and their inner iterations.
fn record_level(
    ctx: &Context,
    step: &mut Step,
    config: &Tvl1Config,
    level: &Level,
    work: &Work,
) -> Result<(), GpuError> {
    let size = level.size;
    step.push(clear(ctx, size, 4, &work.p)?);
    for _ in 0..config.warps {
        step.push(warp(ctx, size, &level.frames[0], &level.frames[1], &level.flow, &work.warped)?);
        for _ in 0..config.iterations {
            step.push(threshold(ctx, size, config.lambda * config.theta, &work.warped, &level.flow, &work.v)?);
            step.push(primal(ctx, size, config.theta, &work.v, &work.p, &level.flow)?);
            step.push(dual(ctx, size, config.tau / config.theta, &level.flow, &work.p)?);
        }
    }
    Ok(())
}

/// f64 references of every kernel, written plainly, and the whole flow composed of them in the
/// order the step runs them.
pub mod reference {
    use super::{Axis, LUMA, Size, Tvl1Config, taps};

    /// `255 * LUMA . rgb` at every pixel of the `3 x H x W` frame.
    pub fn luma(size: Size, rgb: &[f64]) -> Vec<f64> {
        let n = size.len();
        (0..n).map(|i| 255.0 * (LUMA[0] * rgb[i] + LUMA[1] * rgb[n + i] + LUMA[2] * rgb[2 * n + i])).collect()
    }

    /// `i` reflected about the edge pixels into `0..n` (`-k -> k`, `n-1+k -> n-1-k`), repeatedly.
    pub fn mirror(i: isize, n: usize) -> usize {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n as isize - 1);
        let m = i.rem_euclid(period);
        (if m >= n as isize { period - m } else { m }) as usize
    }

    /// One pass of the Gaussian of `sigma` along `axis` (the launcher's definition).
    pub fn smooth(size: Size, plane: &[f64], sigma: f64, axis: Axis) -> Vec<f64> {
        let r = taps(sigma) as isize;
        let weights: Vec<f64> = (-r..=r).map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp()).collect();
        let norm: f64 = weights.iter().sum();
        let (w, h) = (size.width, size.height);
        let mut out = vec![0.0; size.len()];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0;
                for (k, weight) in (-r..=r).zip(&weights) {
                    let j = match axis {
                        Axis::X => y * w + mirror(x as isize + k, w),
                        Axis::Y => mirror(y as isize + k, h) * w + x,
                    };
                    sum += weight * plane[j];
                }
                out[y * w + x] = sum / norm;
            }
        }
        out
    }

    /// Both passes: x, then y.
    pub fn gaussian(size: Size, plane: &[f64], sigma: f64) -> Vec<f64> {
        smooth(size, &smooth(size, plane, sigma, Axis::X), sigma, Axis::Y)
    }

    /// `plane` (`size`) at `(sx, sy)` clamped into the plane, bilinearly.
    pub fn sample(plane: &[f64], size: Size, sx: f64, sy: f64) -> f64 {
        let (w, h) = (size.width, size.height);
        let (cx, cy) = (sx.clamp(0.0, (w - 1) as f64), sy.clamp(0.0, (h - 1) as f64));
        let (x0, y0) = (cx.floor() as usize, cy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (ax, ay) = (cx - x0 as f64, cy - y0 as f64);
        let at = |x: usize, y: usize| plane[y * w + x];
        let top = (1.0 - ax) * at(x0, y0) + ax * at(x1, y0);
        let bottom = (1.0 - ax) * at(x0, y1) + ax * at(x1, y1);
        (1.0 - ay) * top + ay * bottom
    }

    /// The `to` plane sampled from `plane` (`from`) at `(x, y) / zoom`.
    pub fn downsample(from: Size, plane: &[f64], to: Size, zoom: f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(to.len());
        for y in 0..to.height {
            for x in 0..to.width {
                out.push(sample(plane, from, x as f64 / zoom, y as f64 / zoom));
            }
        }
        out
    }

    /// The `2 x to` flow sampled from `flow` (`2 x from`) at `(x, y) * zoom`, times `1 / zoom`
    /// (a coarse pixel is `1 / zoom` fine ones).
    pub fn upsample(from: Size, flow: &[f64], to: Size, zoom: f64) -> Vec<f64> {
        let mut out = vec![0.0; 2 * to.len()];
        for c in 0..2 {
            let plane = &flow[c * from.len()..(c + 1) * from.len()];
            for y in 0..to.height {
                for x in 0..to.width {
                    let value = sample(plane, from, x as f64 * zoom, y as f64 * zoom);
                    out[c * to.len() + y * to.width + x] = value / zoom;
                }
            }
        }
        out
    }

    /// `second` (I1) warped by `flow` (u0) and linearized there: `3 x H x W` planes
    /// `rho_c = I1(q) - I1x u0_1 - I1y u0_2 - I0(p)`, `I1x = (I1(q + ex) - I1(q - ex)) / 2`, `I1y`
    /// alike, at `q = p + u0(p)`; so that `rho(u) = rho_c + I1x u1 + I1y u2` is the residual
    /// `I1(p + u) - I0(p)` linearized about u0.
    pub fn warp(size: Size, first: &[f64], second: &[f64], flow: &[f64]) -> Vec<f64> {
        let n = size.len();
        let mut out = vec![0.0; 3 * n];
        for i in 0..n {
            let (u1, u2) = (flow[i], flow[n + i]);
            let (qx, qy) = ((i % size.width) as f64 + u1, (i / size.width) as f64 + u2);
            let at = |dx: f64, dy: f64| sample(second, size, qx + dx, qy + dy);
            let gx = 0.5 * (at(1.0, 0.0) - at(-1.0, 0.0));
            let gy = 0.5 * (at(0.0, 1.0) - at(0.0, -1.0));
            out[i] = at(0.0, 0.0) - gx * u1 - gy * u2 - first[i];
            out[n + i] = gx;
            out[2 * n + i] = gy;
        }
        out
    }

    /// Below this `|grad I1|^2` the thresholding leaves v = u (IPOL's `GRAD_IS_ZERO`).
    pub const GRAD_IS_ZERO: f64 = 1e-10;

    /// The thresholding step (`2 x H x W`), pointwise: with `rho = rho_c + grad I1 . u` and
    /// `lt = lambda theta`, v = u + lt grad I1 where `rho < -lt |grad I1|^2`, u - lt grad I1 where
    /// `rho > lt |grad I1|^2`, else `u - rho grad I1 / |grad I1|^2` (u where the gradient is 0).
    pub fn threshold(size: Size, warped: &[f64], flow: &[f64], lambda_theta: f64) -> Vec<f64> {
        let n = size.len();
        let mut v = vec![0.0; 2 * n];
        for i in 0..n {
            let (gx, gy) = (warped[n + i], warped[2 * n + i]);
            let grad = gx * gx + gy * gy;
            let rho = warped[i] + gx * flow[i] + gy * flow[n + i];
            let step = if rho < -lambda_theta * grad {
                lambda_theta
            } else if rho > lambda_theta * grad {
                -lambda_theta
            } else if grad >= GRAD_IS_ZERO {
                -rho / grad
            } else {
                0.0
            };
            v[i] = flow[i] + step * gx;
            v[n + i] = flow[n + i] + step * gy;
        }
        v
    }

    /// The forward differences of a plane, 0 across the last column (x) and row (y).
    pub fn forward_gradient(size: Size, plane: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (w, h) = (size.width, size.height);
        let mut gx = vec![0.0; size.len()];
        let mut gy = vec![0.0; size.len()];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if x + 1 < w {
                    gx[i] = plane[i + 1] - plane[i];
                }
                if y + 1 < h {
                    gy[i] = plane[i + w] - plane[i];
                }
            }
        }
        (gx, gy)
    }

    /// The divergence of `(px, py)`, minus the adjoint of `forward_gradient`: backward
    /// differences, the field taken as 0 in the last column (px) and row (py) and outside.
    pub fn divergence(size: Size, px: &[f64], py: &[f64]) -> Vec<f64> {
        let (w, h) = (size.width, size.height);
        let mut div = vec![0.0; size.len()];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let right = if x + 1 < w { px[i] } else { 0.0 };
                let left = if x > 0 { px[i - 1] } else { 0.0 };
                let below = if y + 1 < h { py[i] } else { 0.0 };
                let above = if y > 0 { py[i - w] } else { 0.0 };
                div[i] = right - left + below - above;
            }
        }
        div
    }

    /// The primal update: `u_c = v_c + theta div (p_c1, p_c2)` for both components (`p`:
    /// planes p11, p12, p21, p22).
    pub fn primal(size: Size, v: &[f64], p: &[f64], theta: f64) -> Vec<f64> {
        let n = size.len();
        let mut u = vec![0.0; 2 * n];
        for c in 0..2 {
            let div = divergence(size, &p[2 * c * n..(2 * c + 1) * n], &p[(2 * c + 1) * n..(2 * c + 2) * n]);
            for i in 0..n {
                u[c * n + i] = v[c * n + i] + theta * div[i];
            }
        }
        u
    }

    /// The dual update (Chambolle's projection): `p_c = (p_c + t grad u_c) / (1 + t |grad u_c|)`
    /// with `t = tau / theta`, forward differences.
    pub fn dual(size: Size, flow: &[f64], p: &[f64], tau_theta: f64) -> Vec<f64> {
        let n = size.len();
        let mut out = vec![0.0; 4 * n];
        for c in 0..2 {
            let (gx, gy) = forward_gradient(size, &flow[c * n..(c + 1) * n]);
            for i in 0..n {
                let norm = 1.0 + tau_theta * gx[i].hypot(gy[i]);
                out[2 * c * n + i] = (p[2 * c * n + i] + tau_theta * gx[i]) / norm;
                out[(2 * c + 1) * n + i] = (p[(2 * c + 1) * n + i] + tau_theta * gy[i]) / norm;
            }
        }
        out
    }

    /// A frame's grayscale pyramid, finest first, at `sizes` (`Tvl1Config::level_sizes`).
    pub fn pyramid(sizes: &[Size], rgb: &[f64], config: &Tvl1Config) -> Vec<Vec<f64>> {
        let mut finest = luma(sizes[0], rgb);
        if config.presmoothing > 0.0 {
            finest = gaussian(sizes[0], &finest, config.presmoothing);
        }
        let mut levels = vec![finest];
        for pair in sizes.windows(2) {
            let smoothed = gaussian(pair[0], &levels[levels.len() - 1], config.zoom_sigma());
            levels.push(downsample(pair[0], &smoothed, pair[1], config.zoom));
        }
        levels
    }

    /// One level's warps and iterations on `flow` (in place), from p = 0. With `epsilon`, each
    /// warp's iterations stop once `mean |u_new - u|^2 < epsilon^2` (IPOL's test) or at
    /// `config.iterations`; returns the iterations each warp ran.
    pub fn solve_level(
        size: Size,
        first: &[f64],
        second: &[f64],
        flow: &mut Vec<f64>,
        config: &Tvl1Config,
        epsilon: Option<f64>,
    ) -> Vec<usize> {
        let mut p = vec![0.0; 4 * size.len()];
        let mut counts = Vec::with_capacity(config.warps);
        for _ in 0..config.warps {
            let warped = warp(size, first, second, flow);
            let mut done = config.iterations;
            for n in 1..=config.iterations {
                let v = threshold(size, &warped, flow, config.lambda * config.theta);
                let u = primal(size, &v, &p, config.theta);
                let change = u.iter().zip(flow.iter()).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / size.len() as f64;
                *flow = u;
                p = dual(size, flow, &p, config.tau / config.theta);
                if epsilon.is_some_and(|e| change < e * e) {
                    done = n;
                    break;
                }
            }
            counts.push(done);
        }
        counts
    }

    /// The flow from `first_rgb` to `second_rgb` (`3 x H x W` in [0, 1]) as `Tvl1::flow`
    /// computes it: `2 x H x W`.
    pub fn flow(size: Size, first_rgb: &[f64], second_rgb: &[f64], config: &Tvl1Config) -> Vec<f64> {
        flow_until(size, first_rgb, second_rgb, config, None).0
    }

    /// `flow`, the inner iterations stopped by IPOL's test when `epsilon` is given (at most
    /// `config.iterations`); also the iterations of every warp, coarsest level first.
    pub fn flow_until(
        size: Size,
        first_rgb: &[f64],
        second_rgb: &[f64],
        config: &Tvl1Config,
        epsilon: Option<f64>,
    ) -> (Vec<f64>, Vec<Vec<usize>>) {
        let sizes = config.level_sizes(size);
        let first = pyramid(&sizes, first_rgb, config);
        let second = pyramid(&sizes, second_rgb, config);
        let mut flow = vec![0.0; 2 * sizes[sizes.len() - 1].len()];
        let mut counts = Vec::new();
        for s in (0..sizes.len()).rev() {
            counts.push(solve_level(sizes[s], &first[s], &second[s], &mut flow, config, epsilon));
            if s > 0 {
                flow = upsample(sizes[s], &flow, sizes[s - 1], config.zoom);
            }
        }
        (flow, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{self, mirror};
    use super::{Axis, Size, Tvl1Config};

    fn size(width: usize, height: usize) -> Size {
        Size { width, height }
    }

    #[test]
    fn levels_follow_ipols_count_and_rounding() {
        let config = Tvl1Config::default();
        let sides = |w, h| config.level_sizes(size(w, h)).iter().map(|s| (s.width, s.height)).collect::<Vec<_>>();
        assert_eq!(sides(160, 120), [(160, 120), (80, 60), (40, 30), (20, 15)]);
        assert_eq!(sides(256, 192), [(256, 192), (128, 96), (64, 48), (32, 24), (16, 12)]);
        assert_eq!(sides(37, 23), [(37, 23), (19, 12)]);
        assert_eq!(sides(5, 3), [(5, 3)]);
        assert_eq!(sides(16, 1), [(16, 1)]);
        let two = Tvl1Config { levels: Some(3), ..config };
        let explicit: Vec<_> = two.level_sizes(size(37, 23)).iter().map(|s| (s.width, s.height)).collect();
        assert_eq!(explicit, [(37, 23), (19, 12), (10, 6)]);
        let one = Tvl1Config { levels: Some(9), ..config };
        assert_eq!(one.level_sizes(size(2, 1)), [size(2, 1), size(1, 1)], "stops where the size stops changing");
    }

    #[test]
    fn mirror_reflects_about_the_edge_pixels() {
        let got: Vec<usize> = (-5..9).map(|i| mirror(i, 4)).collect();
        assert_eq!(got, [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(mirror(-3, 1), 0);
    }

    #[test]
    fn gaussian_keeps_constants_and_ramps_inside() {
        let s = size(7, 5);
        let flat = vec![3.5; s.len()];
        for v in reference::gaussian(s, &flat, 1.04) {
            assert!((v - 3.5).abs() < 1e-12);
        }
        // A ramp along x stays a ramp in the interior (the kernel is symmetric).
        let ramp: Vec<f64> = (0..s.len()).map(|i| (i % 7) as f64).collect();
        let out = reference::smooth(s, &ramp, 0.5, Axis::X);
        assert!((out[3] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn divergence_is_minus_the_adjoint_of_the_forward_gradient() {
        let s = size(5, 4);
        let u: Vec<f64> = (0..s.len()).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        let px: Vec<f64> = (0..s.len()).map(|i| ((i * 13) % 7) as f64 - 3.0).collect();
        let py: Vec<f64> = (0..s.len()).map(|i| ((i * 29) % 5) as f64 - 2.0).collect();
        let (gx, gy) = reference::forward_gradient(s, &u);
        let div = reference::divergence(s, &px, &py);
        let lhs: f64 = (0..s.len()).map(|i| gx[i] * px[i] + gy[i] * py[i]).sum();
        let rhs: f64 = (0..s.len()).map(|i| -u[i] * div[i]).sum();
        assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
    }

    #[test]
    fn threshold_minimizes_its_pointwise_energy() {
        // v = argmin |v - u|^2 / (2 theta) + lambda |rho(v)|: check against a fine search.
        let s = size(1, 1);
        let (lambda, theta) = (0.15, 0.3);
        for (rho_c, gx, gy, u1, u2) in [
            (3.0, 2.0, -1.0, 0.2, 0.1),
            (-0.05, 0.5, 0.4, 0.0, 0.0),
            (9.0, 0.1, 0.0, 1.0, 1.0),
            (0.01, 1.0, 1.0, 0.0, 0.0),
        ] {
            let v = reference::threshold(s, &[rho_c, gx, gy], &[u1, u2], lambda * theta);
            let energy = |a: f64, b: f64| {
                ((a - u1).powi(2) + (b - u2).powi(2)) / (2.0 * theta) + lambda * (rho_c + gx * a + gy * b).abs()
            };
            let best = energy(v[0], v[1]);
            for k in 0..2000 {
                let t = k as f64 / 2000.0 * std::f64::consts::TAU;
                for r in [1e-3, 1e-2, 0.1, 1.0] {
                    assert!(energy(v[0] + r * t.cos(), v[1] + r * t.sin()) >= best - 1e-12);
                }
            }
        }
    }

    #[test]
    fn warp_of_a_linear_image_is_exact_inside() {
        // I1 = 2x + 3y: I1x = 2, I1y = 3 and rho_c = I1(p) - I0(p) for any flow staying inside.
        let s = size(9, 7);
        let second: Vec<f64> = (0..s.len()).map(|i| 2.0 * (i % 9) as f64 + 3.0 * (i / 9) as f64).collect();
        let first = vec![1.0; s.len()];
        let flow: Vec<f64> = (0..2 * s.len()).map(|i| if i < s.len() { 0.3 } else { -0.4 }).collect();
        let warped = reference::warp(s, &first, &second, &flow);
        let i = 3 * 9 + 4;
        assert!((warped[s.len() + i] - 2.0).abs() < 1e-12 && (warped[2 * s.len() + i] - 3.0).abs() < 1e-12);
        assert!((warped[i] - (second[i] - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn upsample_inverts_downsample_on_a_linear_flow() {
        // A flow linear in (x, y) at the coarse level upsamples to the same field in fine pixels.
        let (coarse, fine) = (size(10, 6), size(20, 12));
        let mut flow = vec![0.0; 2 * coarse.len()];
        for i in 0..coarse.len() {
            flow[i] = 0.5 + 0.1 * (i % 10) as f64;
            flow[coarse.len() + i] = -0.25;
        }
        let up = reference::upsample(coarse, &flow, fine, 0.5);
        let i = 5 * 20 + 7;
        assert!((up[i] - 2.0 * (0.5 + 0.1 * 3.5)).abs() < 1e-12);
        assert!((up[fine.len() + i] + 0.5).abs() < 1e-12);
    }

    #[test]
    fn config_validation_names_the_parameter() {
        assert!(Tvl1Config::default().validate().is_ok());
        let bad = Tvl1Config { zoom: 1.0, ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("zoom"));
        let bad = Tvl1Config { tau: -1.0, ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("tau"));
    }
}
