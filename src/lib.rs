//! stylize: neural style transfer (Gatys, Ecker & Bethge 2016) as a hand-written WGSL compute engine.
//!
//! The one-call entry point mirrors the original PyTorch implementation's
//! `apply_style_transfer(content_path, style_path)`:
//!
//! ```no_run
//! let out = stylize::apply_style_transfer("content.jpg", "style.jpg")?;
//! stylize::image_io::save_image("out.png".as_ref(), &out.target, 8)?;
//! # Ok::<(), stylize::Error>(())
//! ```
//!
//! `apply_style_transfer_with` takes [`Options`] (every knob of the method; `Default` is the
//! original) and an [`Observer`] for progress. [`StyleTransfer`] runs steps one at a time.

pub mod bench;
pub mod checkpoint;
pub mod gpu;
pub mod image_io;
pub mod net;
pub mod ops;
pub mod optim;
pub mod pipeline;
pub mod plot;
pub mod rng;
pub mod serve;
#[cfg(feature = "testing")]
pub mod test_support;
pub mod transfer;
pub mod video;
pub mod weights;

use std::path::{Path, PathBuf};

pub use gpu::{Backend, Precision};
pub use image_io::Image;
pub use net::vgg::Model;
pub use net::{ConvLayerWeights, Losses};
pub use net::{GramNorm, Padding, Pooling, StyleLoss, TvLoss};
pub use pipeline::{Finished, Job, Outputs, finish_colors, load_network_weights, scale_sizes};
pub use transfer::{
    GpuInfo, Init, InvalidOption, Observer, Optimizer, Options, PreserveColors, Preset, Resample, Silent, StyleFit,
    StyleTransfer, TransferError, Variable,
};

/// Every error the library reports; each displays as one line naming the file or the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] image_io::ImageError),
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    #[error(transparent)]
    Options(#[from] InvalidOption),
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// A clip's frames, flows or frames folder (`pipeline::video`).
    #[error(transparent)]
    Video(#[from] video::flo::VideoError),
    /// An output path that cannot be used (`Outputs`, `Options::checkpoint`, `Options::resume`).
    #[error("{0}")]
    Output(String),
    /// The run stopped on a non-finite value; the last finite image was written to `output`.
    #[error("{source}; it was written to {}", output.display())]
    KeptLastFinite { source: TransferError, output: PathBuf },
}

impl From<net::NetError> for Error {
    fn from(e: net::NetError) -> Self {
        Error::Transfer(e.into())
    }
}

/// The three pictures of the original's figure: content and style as the network saw them, and the result.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub content: Image,
    pub style: Image,
    pub target: Image,
}

/// The original method with its defaults on two image files.
pub fn apply_style_transfer(content_path: impl AsRef<Path>, style_path: impl AsRef<Path>) -> Result<Outcome, Error> {
    apply_style_transfer_with(content_path, style_path, &Options::default(), &mut Silent)
}

/// The method with `options`, reporting to `observer`.
pub fn apply_style_transfer_with(
    content_path: impl AsRef<Path>,
    style_path: impl AsRef<Path>,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Outcome, Error> {
    apply_style_transfer_multi(content_path, &[style_path], options, observer)
}

/// The method with several style images (blended by `options.style_blend_weights`).
/// `Outcome::style` is the first style image as the network saw it.
pub fn apply_style_transfer_multi<P: AsRef<Path>>(
    content_path: impl AsRef<Path>,
    style_paths: &[P],
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Outcome, Error> {
    let job = Job::new(content_path.as_ref(), style_paths, options.clone(), Outputs::default(), observer)?;
    Ok(job.run(observer)?.outcome)
}
