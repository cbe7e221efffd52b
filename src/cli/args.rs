//! The command line's shape: the top-level flags of a run (`run::RunArgs`) and the subcommands
//! (each file of `cli` holds its own arguments; their shared parsers are in `values`).

use clap::{Parser, Subcommand};

use super::{
    bench::BenchArgs, devices::DevicesArgs, models::ModelsArgs, plan::PlanArgs, recolor::RecolorArgs, run::RunArgs,
    video::VideoArgs, weights::WeightsArgs,
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
// Parsed once per process: the run's flags inside `Video` make it the large variant.
#[allow(clippy::large_enum_variant)]
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
    /// Stylize a clip frame by frame without flicker (Ruder, Dosovitskiy & Brox 2016): each
    /// frame starts from the previous result warped along the optical flow and is held to it
    /// where the flow is reliable. Every flag of a run applies to each frame; -o is the folder
    /// the frames are written to (frame_0001.png, ...), and rerunning the same command continues
    /// at the first frame not yet written. --init: prev-warped (default), prev or content.
    #[command(
        mut_arg("content", |a| a.required(false).hide(true)),
        mut_arg("output", |a| a.default_value("frames").help("Folder the frames are written to (created if missing)")),
        mut_arg("init", |a| a.default_value("prev-warped").value_name("prev-warped|prev|content")
            .help("Where each frame after the first starts: the previous result warped to it (Ruder et al.), as it is, or the frame itself"))
    )]
    Video(VideoArgs),
}
