//! `stylize bench`: K full optimization steps of the default method at N x N after a warm-up,
//! timed on the wall clock with the device synchronised, with the FLOP count derived from the
//! layer shapes and the bytes of every buffer the run holds; and (`flow`) the TV-L1 optical flow
//! that `stylize video` computes between two frames, timed the same way.

use std::time::Instant;

use crate::gpu::{Context, GpuError, KernelTime};
use crate::image_io::Image;
use crate::ops::tvl1::{Size, Tvl1, Tvl1Config};
use crate::pipeline::video::VideoOptions;
use crate::rng::Rng;
use crate::video::motion::FlowSolver;
use crate::{ConvLayerWeights, Error, Options, StyleTransfer};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The image's width (its side: the step bench is usually square).
    pub size: u32,
    pub height: u32,
    pub iterations: usize,
    pub warmup: usize,
    /// `random[:SEED]` (He-initialized, the default) or a weights file.
    pub weights: String,
    /// Also time every kernel of one step with timestamp queries.
    pub profile: bool,
    /// Backend, adapter and seed come from here.
    pub options: Options,
}

/// The figures of one benchmark run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    /// The products' arithmetic and why (`PrecisionChoice::reason`).
    pub precision: String,
    /// `f32`, `mixed-emulated` or `mixed-matrix`.
    pub arithmetic: String,
    /// The image's width and height.
    pub size: u32,
    pub height: u32,
    pub iterations: usize,
    pub ms_per_step: f64,
    /// Host time inside `StyleTransfer::step` (uniform writes, recording, submit): when it nears
    /// `ms_per_step` on a GPU, the host bounds the step (CPU drivers such as lavapipe may also
    /// execute work inside the submit).
    pub cpu_ms_per_step: f64,
    pub flops_per_step: u64,
    /// Effective GFLOP/s: `flops_per_step` over the measured wall time of a step.
    pub gflops: f64,
    /// Bytes of every GPU buffer the run holds (weights, activations, gradients, targets, scratch, moments).
    pub peak_gpu_bytes: u64,
    pub profile: Option<Vec<KernelTime>>,
    /// How the step went over the image when tiled (`StyleTransfer::schedule`); None: untiled.
    pub schedule: Option<String>,
}

fn noise_image(width: u32, height: u32, rng: &mut Rng) -> Image {
    let len = 3 * (width as usize) * (height as usize);
    Image::new(width, height, (0..len).map(|_| rng.uniform() as f32).collect())
}

/// Runs the benchmark.
pub fn run(bench: &BenchOptions) -> Result<BenchReport, Error> {
    let options = &bench.options;
    let weights = crate::load_network_weights(options.model, Some(&bench.weights), options.seed, &mut |_| {})?;
    let ctx = Context::new(&options.context_options())?;
    time_steps(bench, &weights, ctx)
}

/// The steps of `bench` on `ctx`: `warmup` untimed, then `iterations` on the wall clock.
fn time_steps(bench: &BenchOptions, weights: &[ConvLayerWeights], ctx: Context) -> Result<BenchReport, Error> {
    let options = &bench.options;
    let (adapter, backend, device_type) =
        (ctx.adapter.name.clone(), ctx.adapter.backend.clone(), ctx.adapter.device_type.clone());
    let precision = ctx.precision.reason.clone();
    let arithmetic = ctx.precision.arithmetic.name().to_string();
    let mut rng = Rng::new(options.seed);
    let content = noise_image(bench.size, bench.height, &mut rng);
    let style = noise_image(bench.size, bench.height, &mut rng);
    let mut transfer = StyleTransfer::new(ctx, weights, &content, &style, &content, options)?;
    for _ in 0..bench.warmup {
        transfer.step();
    }
    transfer.sync()?;
    let started = Instant::now();
    let mut recording = std::time::Duration::ZERO;
    for _ in 0..bench.iterations {
        let submitted = Instant::now();
        transfer.step();
        recording += submitted.elapsed();
    }
    transfer.sync()?;
    let seconds = started.elapsed().as_secs_f64() / bench.iterations.max(1) as f64;
    let profile = if bench.profile { Some(transfer.profile_step()?) } else { None };
    let flops_per_step = transfer.flops_per_step();
    let schedule = transfer.schedule();
    Ok(BenchReport {
        schedule,
        adapter,
        backend,
        device_type,
        precision,
        arithmetic,
        size: bench.size,
        height: bench.height,
        iterations: bench.iterations,
        ms_per_step: seconds * 1e3,
        cpu_ms_per_step: recording.as_secs_f64() * 1e3 / bench.iterations.max(1) as f64,
        flops_per_step,
        gflops: flops_per_step as f64 / seconds / 1e9,
        peak_gpu_bytes: transfer.gpu_bytes(),
        profile,
    })
}

/// What `flow` measures: TV-L1 between two `width x height` frames as `stylize video` runs it.
#[derive(Clone, Debug)]
pub struct FlowBenchOptions {
    pub width: u32,
    pub height: u32,
    /// Timed flows (and, as many, timed frame pairs) after `warmup` untimed ones.
    pub flows: usize,
    pub warmup: usize,
    /// The step at the frames' size (`size`, `height`, `warmup` and `iterations` its own; the
    /// context's options from here), for the flow's share of a frame's optimization; None: no step.
    pub step: Option<BenchOptions>,
    /// Backend and adapter; the frames' seed.
    pub options: Options,
}

/// The figures of one flow benchmark.
#[derive(Clone, Debug)]
pub struct FlowReport {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub width: u32,
    pub height: u32,
    pub config: Tvl1Config,
    /// The pyramid's sizes, finest first.
    pub levels: Vec<Size>,
    /// Dispatches in one flow (`Tvl1::dispatches`).
    pub dispatches: usize,
    pub flows: usize,
    /// Median wall time of one `Tvl1::flow` with the device synchronised after it.
    pub ms_per_flow: f64,
    /// Median host time inside `Tvl1::flow` (copies, recording the dispatches, submit).
    pub cpu_ms_per_flow: f64,
    /// Median GPU time from a timestamp before the flow's first submit to one after its last,
    /// where the adapter has timestamp queries (it includes any idle gap while the host records).
    pub gpu_ms_per_flow: Option<f64>,
    /// Median wall time of one `FlowSolver::pair` (forward and backward flows, the frames
    /// uploaded and both flows read back): what `stylize video` pays per frame and distance.
    pub ms_per_pair: f64,
    /// The step at the frames' size, when timed.
    pub step: Option<BenchReport>,
    /// Steps of each frame after the first at `stylize video`'s default (half of `iterations`).
    pub frame_steps: usize,
}

impl FlowReport {
    /// The frame pair's time as a fraction of one frame's `frame_steps` steps, when a step was timed.
    pub fn pair_fraction(&self) -> Option<f64> {
        self.step.as_ref().map(|s| self.ms_per_pair / (s.ms_per_step * self.frame_steps as f64))
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let number = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.6}"));
        let levels: Vec<String> = self.levels.iter().map(|l| format!("[{},{}]", l.width, l.height)).collect();
        format!(
            "{{\"ms_per_flow\":{:.4},\"cpu_ms_per_flow\":{:.4},\"gpu_ms_per_flow\":{},\"ms_per_pair\":{:.4},\"dispatches\":{},\"levels\":[{}],\"width\":{},\"height\":{},\"flows\":{},\"adapter\":{},\"backend\":{},\"device_type\":{},\"ms_per_step\":{},\"frame_steps\":{},\"pair_fraction_of_frame\":{}}}",
            self.ms_per_flow,
            self.cpu_ms_per_flow,
            number(self.gpu_ms_per_flow),
            self.ms_per_pair,
            self.dispatches,
            levels.join(","),
            self.width,
            self.height,
            self.flows,
            quote(&self.adapter),
            quote(&self.backend),
            quote(&self.device_type),
            number(self.step.as_ref().map(|s| s.ms_per_step)),
            self.frame_steps,
            number(self.pair_fraction())
        )
    }
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// Two frames of a random texture, the second the first moved by (3, 2) px: TV-L1 runs a fixed
/// number of iterations, so its time does not depend on what the frames show.
fn frame_pair(width: u32, height: u32, rng: &mut Rng) -> (Image, Image) {
    const SHIFT: (usize, usize) = (3, 2);
    let (w, h) = (width as usize, height as usize);
    let (fw, fh) = (w + SHIFT.0, h + SHIFT.1);
    let field: Vec<f32> = (0..3 * fw * fh).map(|_| rng.uniform() as f32).collect();
    let crop = |dx: usize, dy: usize| {
        let mut data = Vec::with_capacity(3 * w * h);
        for c in 0..3 {
            for y in 0..h {
                let row = (c * fh + y + dy) * fw + dx;
                data.extend_from_slice(&field[row..row + w]);
            }
        }
        Image::new(width, height, data)
    };
    (crop(SHIFT.0, SHIFT.1), crop(0, 0))
}

/// Timestamps written by empty compute passes submitted around other work, on one queue.
struct Stopwatch {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    count: u32,
}

impl Stopwatch {
    /// Room for `spans` start and end pairs; None where the adapter has no timestamp queries.
    fn new(ctx: &Context, spans: usize) -> Option<Self> {
        let count = (2 * spans) as u32;
        if !ctx.timestamp_queries || count == 0 || count > wgpu::QUERY_SET_MAX_QUERIES {
            return None;
        }
        let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("flow timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved flow timestamps"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Self { queries, resolved, count })
    }

    /// Submits timestamp `index`: the start of span `index / 2` when even, its end when odd.
    fn mark(&self, ctx: &Context, index: u32) {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let write = Some(index);
        let (beginning_of_pass_write_index, end_of_pass_write_index) =
            if index.is_multiple_of(2) { (write, None) } else { (None, write) };
        drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("flow timestamp"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.queries,
                beginning_of_pass_write_index,
                end_of_pass_write_index,
            }),
        }));
        ctx.queue.submit([encoder.finish()]);
    }

    /// Every span's milliseconds, once the submitted work is done.
    fn spans(&self, ctx: &Context) -> Result<Vec<f64>, GpuError> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.resolve_query_set(&self.queries, 0..self.count, &self.resolved, 0);
        ctx.queue.submit([encoder.finish()]);
        // `read` gives f32s: their bits are the u64 ticks' low and high words.
        let words = ctx.read(&self.resolved, 2 * self.count as usize)?;
        let ticks: Vec<u64> = words.chunks(2).map(|w| w[0].to_bits() as u64 | (w[1].to_bits() as u64) << 32).collect();
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        Ok(ticks.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6).collect())
    }
}

/// Times TV-L1 as `stylize video` runs it between two frames (`Tvl1Config::default()`): `warmup`
/// flows untimed, then `flows` flows one at a time with the device synchronised after each (their
/// median), then as many `FlowSolver::pair` calls; then the step at the frames' size, if asked.
pub fn flow(bench: &FlowBenchOptions) -> Result<FlowReport, Error> {
    let options = &bench.options;
    let weights = match &bench.step {
        Some(step) => {
            Some(crate::load_network_weights(step.options.model, Some(&step.weights), step.options.seed, &mut |_| {})?)
        }
        None => None,
    };
    let ctx = Context::new(&options.context_options())?;
    let (adapter, backend, device_type) =
        (ctx.adapter.name.clone(), ctx.adapter.backend.clone(), ctx.adapter.device_type.clone());
    let (width, height) = (bench.width as usize, bench.height as usize);
    let config = Tvl1Config::default();
    let tvl1 = Tvl1::new(&ctx, width, height, config)?;
    let (first, second) = frame_pair(bench.width, bench.height, &mut Rng::new(options.seed));
    let first_buffer = ctx.upload("bench first frame", &first.data)?;
    let second_buffer = ctx.upload("bench second frame", &second.data)?;
    let out = ctx.buffer("bench flow", 2 * width * height)?;
    for _ in 0..bench.warmup {
        tvl1.flow(&ctx, &first_buffer, &second_buffer, &out)?;
    }
    ctx.wait()?;
    let stopwatch = Stopwatch::new(&ctx, bench.flows);
    let (mut wall, mut host) = (Vec::new(), Vec::new());
    for i in 0..bench.flows as u32 {
        let started = Instant::now();
        if let Some(s) = &stopwatch {
            s.mark(&ctx, 2 * i);
        }
        tvl1.flow(&ctx, &first_buffer, &second_buffer, &out)?;
        host.push(started.elapsed().as_secs_f64() * 1e3);
        if let Some(s) = &stopwatch {
            s.mark(&ctx, 2 * i + 1);
        }
        ctx.wait()?;
        wall.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let gpu_ms_per_flow = match &stopwatch {
        Some(s) => Some(median(s.spans(&ctx)?)),
        None => None,
    };
    let solver = FlowSolver::new(&ctx, bench.width, bench.height)?;
    for _ in 0..bench.warmup.min(1) {
        solver.pair(&ctx, &first, &second)?;
    }
    let mut pairs = Vec::new();
    for _ in 0..bench.flows {
        let started = Instant::now();
        solver.pair(&ctx, &first, &second)?;
        pairs.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let levels = tvl1.level_sizes();
    let dispatches = tvl1.dispatches();
    drop((solver, tvl1, first_buffer, second_buffer, out));
    let frame_steps = match &bench.step {
        Some(step) => VideoOptions::default().steps(&step.options, 2),
        None => VideoOptions::default().steps(options, 2),
    };
    let step = match (&bench.step, &weights) {
        (Some(step), Some(weights)) => Some(time_steps(step, weights, ctx)?),
        _ => None,
    };
    Ok(FlowReport {
        adapter,
        backend,
        device_type,
        width: bench.width,
        height: bench.height,
        config,
        levels,
        dispatches,
        flows: bench.flows,
        ms_per_flow: median(wall),
        cpu_ms_per_flow: median(host),
        gpu_ms_per_flow,
        ms_per_pair: median(pairs),
        step,
        frame_steps,
    })
}

impl BenchReport {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        format!(
            "{{\"ms_per_step\":{:.4},\"cpu_ms_per_step\":{:.4},\"gflops\":{:.4},\"peak_gpu_bytes\":{},\"adapter\":{},\"backend\":{},\"device_type\":{},\"size\":{},\"height\":{},\"iterations\":{},\"flops_per_step\":{},\"precision\":{},\"schedule\":{}}}",
            self.ms_per_step,
            self.cpu_ms_per_step,
            self.gflops,
            self.peak_gpu_bytes,
            quote(&self.adapter),
            quote(&self.backend),
            quote(&self.device_type),
            self.size,
            self.height,
            self.iterations,
            self.flops_per_step,
            quote(&self.arithmetic),
            self.schedule.as_deref().map_or("null".to_string(), quote)
        )
    }

    /// Kernel times summed by kernel name (`shader::entry`), largest first.
    pub fn profile_by_kernel(&self) -> Vec<(String, f64, usize)> {
        let mut totals: Vec<(String, f64, usize)> = Vec::new();
        for t in self.profile.iter().flatten() {
            match totals.iter_mut().find(|(l, _, _)| *l == t.label) {
                Some(entry) => {
                    entry.1 += t.milliseconds;
                    entry.2 += 1;
                }
                None => totals.push((t.label.clone(), t.milliseconds, 1)),
            }
        }
        totals.sort_by(|a, b| b.1.total_cmp(&a.1));
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::{frame_pair, median};
    use crate::rng::Rng;

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn the_second_frame_is_the_first_moved() {
        let (first, second) = frame_pair(7, 5, &mut Rng::new(1));
        let at = |image: &crate::Image, c: usize, x: usize, y: usize| image.data[(c * 5 + y) * 7 + x];
        // first(x, y) = field(x + 3, y + 2) = second(x + 3, y + 2).
        for c in 0..3 {
            for (x, y) in [(0, 0), (3, 2), (1, 1)] {
                assert_eq!(at(&first, c, x, y), at(&second, c, x + 3, y + 2));
            }
        }
    }
}
