//! `stylize bench`: times full steps of the default method and prints the library's report.

use anyhow::Result;
use clap::Args;
use stylize::Options;

use super::values::{BackendArg, ModelArg, PrecisionArg, defaults, positive_f64, tile_choice};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Image side in pixels (the image is N x N).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub size: u32,
    /// Timed steps (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Untimed steps first (pipeline creation, caches).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
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
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        size,
        iterations,
        warmup,
        model,
        weights,
        profile,
        json,
        backend,
        adapter,
        precision,
        tile,
        memory_budget,
    } = args;
    let options = Options {
        model: model.into(),
        backend: backend.map(Into::into),
        adapter,
        precision: precision.into(),
        tile,
        memory_budget,
        ..Options::default()
    };
    let bench =
        stylize::bench::BenchOptions { size, iterations: iterations as usize, warmup, weights, profile, options };
    report(bench, json)
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
    println!("size         {0}x{0}, {1} timed steps after {2} warm-up", report.size, report.iterations, options.warmup);
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
