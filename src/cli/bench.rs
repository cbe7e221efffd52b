//! `stylize bench`: times full steps of the default method, or (`--flow`) the optical flow of
//! `stylize video`, and prints the library's report.

use anyhow::Result;
use clap::Args;
use stylize::Options;

use super::values::{
    BackendArg, ModelArg, PaddingArg, PrecisionArg, StyleLossArg, defaults, positive_f64, tile_choice,
};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Image size in pixels: N (an N x N image; with --flow, frames of N x round(3N/4), N the
    /// longer side as --size has it for a run) or WxH (exactly, with or without --flow).
    #[arg(long, value_name = "N|WxH", default_value = "256", value_parser = bench_size)]
    pub size: BenchSize,
    /// Timed steps (after the warm-up); with --flow, timed flows (and as many frame pairs).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Untimed steps first (pipeline creation, caches); with --flow, untimed flows (and steps).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Time the optical flow `stylize video` computes between two frames instead (TV-L1 on the
    /// GPU, IPOL's parameters and 30 iterations per warp): ms per flow (median), its dispatches
    /// and pyramid levels, ms per frame pair (a forward and a backward flow), and the pair's share
    /// of a frame's steps at `stylize video`'s default (half of --iterations 2000), from a step
    /// timed at the frames' size (see --frame-steps). The frames are synthetic (a random texture
    /// moved 3 px across, 2 down): TV-L1's time does not depend on what they show.
    #[arg(long)]
    pub flow: bool,
    /// With --flow: steps timed at the frames' size, after --warmup, for the pair's share of a
    /// frame (0: none; the step options below apply to them).
    #[arg(long, value_name = "K", default_value_t = 3, requires = "flow")]
    pub frame_steps: usize,
    /// The network (as a run's --model).
    #[arg(long, value_enum, default_value_t = defaults().model.into())]
    pub model: ModelArg,
    /// `random[:SEED]` (He-initialized, at --model's widths) or a weights file.
    #[arg(long, default_value = "random")]
    pub weights: String,
    /// Print every kernel's GPU time from timestamp queries.
    #[arg(long)]
    pub profile: bool,
    /// Make the last line one JSON object (ms_per_step, gflops, peak_gpu_bytes, adapter, size, ...).
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// f32, mixed or auto, as for a run (see `stylize --help`).
    #[arg(long, value_enum, default_value_t = defaults().precision.into())]
    pub precision: PrecisionArg,
    /// auto, off or a tile side in pixels, as for a run (see `stylize --help`): tiled and
    /// untiled steps side by side give the tiling's cost.
    #[arg(long, value_name = "auto|off|PX", default_value = "auto", value_parser = tile_choice)]
    pub tile: stylize::net::tiling::TileChoice,
    /// GPU memory, GiB, that --tile auto plans for (default 4).
    #[arg(long, value_name = "GIB", value_parser = positive_f64)]
    pub memory_budget: Option<f64>,
    /// The first convolution's padding, as for a run: zeros or replicate (the padded image's
    /// extra kernels and conv1_1 over 2 more rows and columns).
    #[arg(long, value_enum, default_value_t = defaults().padding.into())]
    pub padding: PaddingArg,
    /// The style loss, as for a run: gram or w2.
    #[arg(long, value_enum, default_value_t = defaults().style_loss.into())]
    pub style_loss: StyleLossArg,
}

/// `--size`: N or WxH, each side 16 to 16384.
#[derive(Clone, Copy, Debug)]
pub struct BenchSize {
    pub width: u32,
    /// None: N alone (square for the step bench, 3:4 for --flow).
    pub height: Option<u32>,
}

impl BenchSize {
    /// The step bench's image: N x N or W x H.
    fn image(self) -> (u32, u32) {
        (self.width, self.height.unwrap_or(self.width))
    }

    /// --flow's frames: N x round(3N/4) or W x H.
    fn frames(self) -> (u32, u32) {
        (self.width, self.height.unwrap_or_else(|| (self.width as f64 * 0.75).round() as u32))
    }
}

fn bench_size(text: &str) -> Result<BenchSize, String> {
    let side = |s: &str| match s.trim().parse::<u32>() {
        Ok(n) if (16..=16384).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is not in 16..=16384")),
        Err(_) => Err(format!("{s:?} is not N or WxH")),
    };
    match text.split_once(['x', 'X']) {
        Some((w, h)) => Ok(BenchSize { width: side(w)?, height: Some(side(h)?) }),
        None => Ok(BenchSize { width: side(text)?, height: None }),
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        size,
        iterations,
        warmup,
        flow,
        frame_steps,
        model,
        weights,
        profile,
        json,
        backend,
        adapter,
        precision,
        tile,
        memory_budget,
        padding,
        style_loss,
    } = args;
    let options = Options {
        model: model.into(),
        backend: backend.map(Into::into),
        adapter,
        precision: precision.into(),
        tile,
        memory_budget,
        padding: padding.into(),
        style_loss: style_loss.into(),
        ..Options::default()
    };
    if flow {
        if profile {
            anyhow::bail!("stylize bench: --profile times a step's kernels, not --flow's");
        }
        let (width, height) = size.frames();
        let step = (frame_steps > 0).then(|| stylize::bench::BenchOptions {
            size: width,
            height,
            iterations: frame_steps,
            warmup,
            weights,
            profile: false,
            options: options.clone(),
        });
        let bench =
            stylize::bench::FlowBenchOptions { width, height, flows: iterations as usize, warmup, step, options };
        return report_flow(bench, json);
    }
    let (size, height) = size.image();
    let bench = stylize::bench::BenchOptions {
        size,
        height,
        iterations: iterations as usize,
        warmup,
        weights,
        profile,
        options,
    };
    report(bench, json)
}

fn report_flow(options: stylize::bench::FlowBenchOptions, json: bool) -> Result<()> {
    let report = stylize::bench::flow(&options)?;
    println!("adapter      {} ({}, {})", report.adapter, report.backend, report.device_type);
    let levels: Vec<String> = report.levels.iter().map(|l| format!("{}x{}", l.width, l.height)).collect();
    let config = &report.config;
    println!(
        "flow         TV-L1 of {}x{} frames: {} pyramid levels ({}), {} warps x {} iterations, {} dispatches per flow",
        report.width,
        report.height,
        report.levels.len(),
        levels.join(", "),
        config.warps,
        config.iterations,
        report.dispatches
    );
    println!(
        "timed        {} flows and {} frame pairs after {} warm-up, medians",
        report.flows, report.flows, options.warmup
    );
    let gpu = match report.gpu_ms_per_flow {
        Some(ms) => format!("; {ms:.2} ms on the GPU's timestamps from its first submit to its last"),
        None => "; no timestamp queries on this adapter".to_string(),
    };
    println!(
        "ms/flow      {:.2} (wall clock, device synchronised; {:.2} ms of it in the host's flow call: copies, recording, submit{gpu})",
        report.ms_per_flow, report.cpu_ms_per_flow
    );
    println!(
        "ms/pair      {:.2} (FlowSolver::pair as stylize video calls it: forward and backward flows, frames uploaded, both read back)",
        report.ms_per_pair
    );
    if let Some(step) = &report.step {
        println!(
            "ms/step      {:.2} (the default step at {}x{}, precision {}, {} timed after {} warm-up)",
            step.ms_per_step, step.size, step.height, step.precision, step.iterations, options.warmup
        );
    }
    if let Some(fraction) = report.pair_fraction() {
        println!("flow pair = {:.3} % of a frame's {} steps", 100.0 * fraction, report.frame_steps);
    }
    if json {
        println!("{}", report.to_json());
    }
    Ok(())
}

fn report(options: stylize::bench::BenchOptions, json: bool) -> Result<()> {
    let report = stylize::bench::run(&options)?;
    println!("adapter      {} ({}, {})", report.adapter, report.backend, report.device_type);
    println!("precision    {}", report.precision);
    if report.arithmetic == stylize::gpu::Arithmetic::MixedEmulated.name()
        && let Some(warning) = stylize::gpu::PrecisionChoice::emulated().warning()
    {
        eprintln!("stylize: warning: {warning}");
    }
    println!(
        "size         {}x{}, {} timed steps after {} warm-up",
        report.size, report.height, report.iterations, options.warmup
    );
    if let Some(schedule) = &report.schedule {
        println!("tiled        {schedule}");
    }
    println!(
        "ms/step      {:.2} ({:.2} ms of it in the host's step call: uniforms, recording, submit)",
        report.ms_per_step, report.cpu_ms_per_step
    );
    println!("GFLOP/s      {:.2} (effective: {:.3} GFLOP per step)", report.gflops, report.flops_per_step as f64 / 1e9);
    println!("GPU memory   {:.1} MiB in our buffers", report.peak_gpu_bytes as f64 / (1u64 << 20) as f64);
    if report.profile.is_some() {
        let total: f64 = report.profile.iter().flatten().map(|t| t.milliseconds).sum();
        println!("kernel times (one step, timestamp queries, {total:.2} ms in all):");
        for (label, ms, count) in report.profile_by_kernel() {
            println!("  {label:<28} {ms:>10.3} ms  {:>5.1} %  ({count} dispatches)", 100.0 * ms / total.max(1e-12));
        }
        println!("convolutions and Gram products, in step order:");
        for t in report.profile.iter().flatten().filter(|t| t.flops > 0) {
            println!(
                "  {:<22} {:<28} {:>10.3} ms  {:>9.1} GFLOP/s",
                t.label,
                t.detail,
                t.milliseconds,
                t.flops as f64 / (t.milliseconds * 1e6).max(1e-12)
            );
        }
    }
    if json {
        println!("{}", report.to_json());
    }
    Ok(())
}
