//! `stylize plan`: the tiled schedule of one step, from the library's planner; no device.

use anyhow::Result;
use clap::Args;

use super::values::{ModelArg, positive_f64};

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Image side in pixels (the image is N x N), up to the 16384 a run allows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub size: u32,
    /// The network whose schedule to report (its layer table and widths, to conv5_1).
    #[arg(long, value_enum, default_value_t = ModelArg::Vgg19)]
    pub model: ModelArg,
    /// Tile side in pixels, a multiple of 16. Default: untiled when everything fits, else
    /// the largest tile that fits the budget and the binding limit.
    #[arg(long, value_name = "T", value_parser = tile_side)]
    pub tile: Option<usize>,
    /// GPU memory to fit in, GiB (the network's buffers and the image-sized state).
    #[arg(long, value_name = "GIB", default_value_t = stylize::net::tiling::DEFAULT_MEMORY_BUDGET as f64 / stylize::net::tiling::GIB as f64, value_parser = positive_f64)]
    pub memory_budget: f64,
    /// Bytes one buffer binding may hold (the default is wgpu's cap on Vulkan, DX12 and Metal).
    #[arg(long, value_name = "BYTES", default_value_t = stylize::net::tiling::DEFAULT_BINDING_LIMIT, value_parser = clap::value_parser!(u64).range(1..))]
    pub binding_limit: u64,
    /// Print one JSON object instead.
    #[arg(long)]
    pub json: bool,
}

pub fn run(PlanArgs { size, model, tile, memory_budget, binding_limit, json }: PlanArgs) -> Result<()> {
    plan(model.into(), size as usize, tile, memory_budget, binding_limit, json)
}

fn tile_side(s: &str) -> Result<usize, String> {
    let grid = stylize::net::tiling::TILE_GRID;
    match s.parse::<usize>() {
        Ok(t) if t > 0 && t.is_multiple_of(grid) => Ok(t),
        _ => Err(format!("a tile side is a positive multiple of {grid} pixels, not {s}")),
    }
}

/// `stylize plan`: the schedule's figures, no device.
fn plan(
    model: stylize::Model,
    size: usize,
    tile: Option<usize>,
    memory_gib: f64,
    binding_limit: u64,
    json: bool,
) -> Result<()> {
    use stylize::net::tiling;
    let budget = tiling::Budget { memory: (memory_gib * tiling::GIB as f64) as u64, binding_limit };
    let report = tiling::report(&tiling::model_plan(model, size, size)?, tile, budget)?;
    if json {
        println!("{}", report.to_json());
        return Ok(());
    }
    let gib = |b: u64| b as f64 / tiling::GIB as f64;
    println!("model            {}", model.name());
    println!("image            {}x{}", report.width, report.height);
    match report.tile {
        None => println!("tile             untiled"),
        Some(t) => println!("tile             {t} px ({} tiles, halo {} px)", report.tiles, report.halo),
    }
    println!("gpu_bytes        {} ({:.2} GiB, the network's buffers)", report.gpu_bytes, gib(report.gpu_bytes));
    println!(
        "image state      {} ({:.2} GiB in {} band(s) per array)",
        report.state_bytes,
        gib(report.state_bytes),
        report.state_bands
    );
    println!(
        "total            {:.2} GiB of a {:.2} GiB budget: {}",
        gib(report.total_bytes()),
        gib(budget.memory),
        if report.fits { "fits" } else { "does NOT fit" }
    );
    println!(
        "largest_binding  {} ({:.2} GiB, {}) of {:.2} GiB allowed",
        report.largest_binding,
        gib(report.largest_binding),
        report.largest_binding_what,
        gib(binding_limit)
    );
    println!(
        "FLOPs per step   {:.1} GFLOP ({:.2}x the untiled {:.1} GFLOP)",
        report.flops_per_step as f64 / 1e9,
        report.overhead(),
        report.untiled_flops_per_step as f64 / 1e9
    );
    Ok(())
}
