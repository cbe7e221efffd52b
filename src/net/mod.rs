//! The VGG-19 layer table and its executor: the forward pass, the losses and the backward pass to
//! the image, recorded once as a `Step` over buffers allocated once. Knows layers, not WGSL.

mod buffers;
mod execute;
mod executor;
mod network;
mod plan;
pub mod reference;
pub mod style_grams;
mod temporal;
mod tiled;
pub mod tiling;
mod training;
pub mod vgg;

pub use buffers::{BufferKind, BufferSpec, Buffers, GpuBytes};
pub use execute::Execute;
pub use executor::{Executor, SharedBuffers};
pub use network::Network;
pub use plan::{
    ActShape, GramNorm, LossLayers, LossTerm, Node, Padding, Plan, Pooling, Storage, StyleLoss, TermMask, TvLoss,
    pool_mask,
};
pub use temporal::TemporalTerm;
pub use tiled::TiledExecutor;
pub use training::FiniteGuard;
pub use vgg::ConvLayerWeights;

use crate::gpu::GpuError;

/// Errors from building or running the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    UnknownLayer(String),
    #[error("weights do not fit the network: {0}")]
    WeightsMismatch(String),
    #[error("{0}")]
    BadSize(String),
    /// Options that do not go together yet, in one sentence.
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "a {width}x{height} image needs {needed_mib} MiB in one buffer ({what}), but this adapter allows {limit_mib} MiB per buffer; the largest image that fits untiled has a longer side of {largest_side} px (--size {largest_side}; tiles lift the limit: --tile auto)"
    )]
    TooLarge { width: usize, height: usize, needed_mib: u64, what: String, limit_mib: u64, largest_side: usize },
}

/// He-initialized (normal, std sqrt(2 / fan_in)) weights and small biases for convolutions of the
/// given output widths, starting from 3 input channels. For benchmarks and tests.
pub fn random_weights(widths: &[usize], seed: u64) -> Vec<ConvLayerWeights> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut in_channels = 3;
    widths
        .iter()
        .map(|&out_channels| {
            let std = (2.0 / (in_channels * 9) as f64).sqrt();
            let layer = ConvLayerWeights {
                in_channels,
                out_channels,
                weight: (0..out_channels * in_channels * 9).map(|_| (rng.normal() * std) as f32).collect(),
                bias: (0..out_channels).map(|_| rng.range(-0.05, 0.05) as f32).collect(),
            };
            in_channels = out_channels;
            layer
        })
        .collect()
}

/// Loss values of one evaluation: each term as defined by the method, unweighted, the weighted
/// total variation and temporal term, and the total alpha * content + beta * style + tv + temporal.
#[derive(Clone, Debug, PartialEq)]
pub struct Losses {
    pub content_terms: Vec<f64>,
    pub style_terms: Vec<f64>,
    pub content: f64,
    pub style: f64,
    /// `tv_weight * TV(image)` (already weighted; 0 without the term).
    pub tv: f64,
    /// A video frame's `temporal_weight * mean(c (x - w)^2)` (`TemporalTerm`; already weighted,
    /// 0 without the term).
    pub temporal: f64,
    pub total: f64,
}

impl Losses {
    /// Builds the summary from the per-term values in slot order (content terms, then style, then
    /// the weighted total variation when the plan has it).
    pub fn from_slots(plan: &Plan, slots: &[f64]) -> Self {
        let (content_terms, rest) = slots.split_at(plan.content.len());
        let (style_terms, tv) = rest.split_at(plan.style.len());
        let tv: f64 = tv.iter().sum();
        let content: f64 = content_terms.iter().sum();
        let style: f64 = style_terms.iter().sum();
        Self {
            content_terms: content_terms.to_vec(),
            style_terms: style_terms.to_vec(),
            content,
            style,
            tv,
            temporal: 0.0,
            total: plan.content_weight * content + plan.style_weight * style + tv,
        }
    }

    /// With a temporal term of (weighted) value `temporal` added.
    pub fn with_temporal(self, temporal: f64) -> Self {
        Self { temporal: self.temporal + temporal, total: self.total + temporal, ..self }
    }
}
