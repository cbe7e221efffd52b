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
pub mod gpu;
pub mod image_io;
pub mod net;
pub mod ops;
pub mod optim;
pub mod testing;
pub mod transfer;
pub mod weights;

use std::path::Path;

pub use image_io::Image;
pub use net::{ConvLayerWeights, Losses};
pub use transfer::{Backend, Init, InvalidOption, Observer, Options, Silent, StyleTransfer, TransferError};

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
    options.validate()?;
    let (content, style) = load_inputs(content_path.as_ref(), style_path.as_ref(), options.size)?;
    let weights = load_network_weights(options.weights.as_deref(), options.seed, &mut |e| observer.on_fetch(&e))?;
    let init = initial_image(&options.init, &content, options.seed)?;
    let ctx = gpu::Context::new(&options.context_options())?;
    let mut transfer = StyleTransfer::new(ctx, &weights, &content, &style, &init, options)?;
    let target = transfer.run(options.iterations, observer)?;
    Ok(Outcome { content, style, target })
}

/// Loads the content image (longer side fitted to `size`, never upscaled) and the style image
/// resized to exactly the content's size.
pub fn load_inputs(content_path: &Path, style_path: &Path, size: u32) -> Result<(Image, Image), Error> {
    let content = image_io::fit_within(&image_io::load_image(content_path)?, size);
    let style = image_io::load_image(style_path)?;
    let style = image_io::resize_exact(&style, content.width, content.height);
    Ok((content, style))
}

/// The image the optimization starts from, at the content's size.
pub fn initial_image(init: &Init, content: &Image, seed: u64) -> Result<Image, Error> {
    Ok(match init {
        Init::Content => content.clone(),
        Init::Random => {
            let mut rng = testing::Rng::new(seed);
            let plane = content.plane_len();
            let data = (0..3 * plane)
                .map(|i| {
                    let c = i / plane;
                    let normalized = 0.001 * rng.normal();
                    (normalized * ops::normalize::IMAGENET_STD[c] + ops::normalize::IMAGENET_MEAN[c]) as f32
                })
                .collect();
            Image::new(content.width, content.height, data)
        }
        Init::Image(path) => {
            let image = image_io::load_image(path)?;
            if (image.width, image.height) == (content.width, content.height) {
                image
            } else {
                image_io::resize_exact(&image, content.width, content.height)
            }
        }
    })
}

/// Resolves and loads VGG-19 weights: a file path, an http(s) URL (downloaded into the cache),
/// `random` / `random:SEED` (He-initialized, for tests and benchmarks), or `None` for
/// `$STYLIZE_WEIGHTS`, then the user cache, then a verified download of the manifest's default.
pub fn load_network_weights(
    spec: Option<&str>,
    seed: u64,
    on_fetch: &mut dyn FnMut(weights::FetchEvent),
) -> Result<Vec<ConvLayerWeights>, Error> {
    if let Some(random) = spec.and_then(|s| s.strip_prefix("random")) {
        let seed = match random.strip_prefix(':') {
            Some(n) => {
                n.parse().map_err(|_| InvalidOption(format!("--weights random:SEED needs a number, not {n}")))?
            }
            None if random.is_empty() => seed,
            None => return load_file_weights(spec.expect("some"), on_fetch),
        };
        return Ok(net::random_weights(&net::vgg::VGG19_WIDTHS, seed));
    }
    match spec {
        Some(arg) => load_file_weights(arg, on_fetch),
        None => {
            let entry = weights::default_entry();
            let dest = weights::default_weights_path(&entry)?;
            let path = weights::ensure_weights(&entry, &dest, on_fetch)?;
            Ok(to_layers(weights::load_vgg19(&path)?))
        }
    }
}

fn load_file_weights(arg: &str, on_fetch: &mut dyn FnMut(weights::FetchEvent)) -> Result<Vec<ConvLayerWeights>, Error> {
    let path = weights::resolve_weights_arg(arg, on_fetch)?;
    Ok(to_layers(weights::load_vgg19(&path)?))
}

fn to_layers(vgg: weights::VggWeights) -> Vec<ConvLayerWeights> {
    vgg.convs
        .into_iter()
        .map(|c| ConvLayerWeights {
            in_channels: c.in_channels,
            out_channels: c.out_channels,
            weight: c.weight,
            bias: c.bias,
        })
        .collect()
}
