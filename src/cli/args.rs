//! The command line's shape: the top-level flags of a run (`run::RunArgs`) and the subcommands
//! (each file of `cli` holds its own arguments; their shared parsers are in `values`).

use clap::{Parser, Subcommand};

use super::{
    bench::BenchArgs, devices::DevicesArgs, models::ModelsArgs, plan::PlanArgs, recolor::RecolorArgs, run::RunArgs,
    weights::WeightsArgs,
};

#[derive(Parser, Debug)]
#[command(
    name = "stylize",
    version,
    about = "Neural style transfer (Gatys, Ecker & Bethge 2016) on any Vulkan, Metal or DX12 GPU",
    long_about = super::values::long_about(),
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    // A run's flags, used when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// One variant per subcommand; a new subcommand is a file of `cli` with its `Args` and its `run`,
/// one variant here and one arm in `main`'s dispatch.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List GPU adapters with their backend, type and key limits.
    Devices(DevicesArgs),
    /// Time full optimization steps of the default method (random weights unless given) and
    /// report ms per step, effective GFLOP/s, GPU memory and, with --profile, every kernel's time.
    Bench(BenchArgs),
    /// Move only the colours of --style onto --content, no network: each pixel x becomes
    /// A (x - mean_c) + mean_s with A = Cov_s^1/2 Cov_c^-1/2 (RGB mean and covariance of each image,
    /// symmetric square roots), clamped to [0, 1]. 16-bit PNG/TIFF content gives 16-bit output
    /// where the output format allows.
    Recolor(RecolorArgs),
    /// Manage the models' weight files (`weights fetch [--model NAME]`).
    Weights(WeightsArgs),
    /// List the networks --model takes: what each is, its weights file (size, how it is
    /// verified) and whether it is in the cache.
    Models(ModelsArgs),
    /// Print, without touching a device, the tiled schedule of one step of the default method
    /// (VGG-19's widths, the default layers) on an N x N image: GPU bytes, the largest binding,
    /// the tile side (or untiled), tiles, halo, FLOPs per step and the tiling overhead: the
    /// schedule a run's --tile auto picks for the same budget and binding limit.
    Plan(PlanArgs),
}
