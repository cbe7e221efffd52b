//! `stylize bench`: K full optimization steps of the default method at N x N after a warm-up,
//! timed on the wall clock with the device synchronised, with the FLOP count derived from the
//! layer shapes and the bytes of every buffer the run holds.

use std::time::Instant;

use crate::gpu::{Context, KernelTime};
use crate::image_io::Image;
use crate::rng::Rng;
use crate::{Error, Options, StyleTransfer};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub size: u32,
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
    pub size: u32,
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

fn noise_image(size: u32, rng: &mut Rng) -> Image {
    let len = 3 * (size as usize) * (size as usize);
    Image::new(size, size, (0..len).map(|_| rng.uniform() as f32).collect())
}

/// Runs the benchmark.
pub fn run(bench: &BenchOptions) -> Result<BenchReport, Error> {
    let options = &bench.options;
    let weights = crate::load_network_weights(options.model, Some(&bench.weights), options.seed, &mut |_| {})?;
    let ctx = Context::new(&options.context_options())?;
    let (adapter, backend, device_type) =
        (ctx.adapter.name.clone(), ctx.adapter.backend.clone(), ctx.adapter.device_type.clone());
    let precision = ctx.precision.reason.clone();
    let arithmetic = ctx.precision.arithmetic.name().to_string();
    let mut rng = Rng::new(options.seed);
    let content = noise_image(bench.size, &mut rng);
    let style = noise_image(bench.size, &mut rng);
    let mut transfer = StyleTransfer::new(ctx, &weights, &content, &style, &content, options)?;
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
        iterations: bench.iterations,
        ms_per_step: seconds * 1e3,
        cpu_ms_per_step: recording.as_secs_f64() * 1e3 / bench.iterations.max(1) as f64,
        flops_per_step,
        gflops: flops_per_step as f64 / seconds / 1e9,
        peak_gpu_bytes: transfer.gpu_bytes(),
        profile,
    })
}

impl BenchReport {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        format!(
            "{{\"ms_per_step\":{:.4},\"cpu_ms_per_step\":{:.4},\"gflops\":{:.4},\"peak_gpu_bytes\":{},\"adapter\":{},\"backend\":{},\"device_type\":{},\"size\":{},\"iterations\":{},\"flops_per_step\":{},\"precision\":{},\"schedule\":{}}}",
            self.ms_per_step,
            self.cpu_ms_per_step,
            self.gflops,
            self.peak_gpu_bytes,
            quote(&self.adapter),
            quote(&self.backend),
            quote(&self.device_type),
            self.size,
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
