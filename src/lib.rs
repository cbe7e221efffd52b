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
pub mod plot;
pub mod serve;
pub mod testing;
pub mod transfer;
pub mod weights;

use std::path::Path;

pub use gpu::Precision;
pub use image_io::Image;
pub use net::Pooling;
pub use net::{ConvLayerWeights, Losses};
pub use transfer::{
    Backend, Init, InvalidOption, Observer, Optimizer, Options, PreserveColors, Silent, StyleTransfer, TransferError,
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
    options.validate()?;
    let original = image_io::load_image(content_path.as_ref())?;
    let raw_styles = load_style_images(style_paths)?;
    transfer::normalized_blend(&options.style_blend_weights, raw_styles.len())?;
    // Bad masks are reported before any GPU work.
    let raw_masks = load_masks(&options.masks, raw_styles.len())?;
    let init = first_initial_image(&original, options)?;
    let weights = load_network_weights(options.weights.as_deref(), options.seed, &mut |e| observer.on_fetch(&e))?;
    let ctx = gpu::Context::new(&options.context_options())?;
    let run = run_scales(ctx, &weights, &original, &raw_styles, &raw_masks, &init, options, observer)?;
    let target = finish_colors(&run.outcome?, &run.content, options);
    Ok(Outcome { content: run.content, style: run.styles[0].clone(), target })
}

/// Longer sides of the scales of a coarse-to-fine run, coarse first, the last `size`: each
/// sqrt(2) larger than the one before, or, with `min_size`, spaced geometrically from it.
pub fn scale_sizes(size: u32, scales: usize, min_size: Option<u32>) -> Vec<u32> {
    let n = scales.max(1);
    let ratio = match (min_size, n) {
        (_, 1) => 1.0,
        (Some(min), _) => (size as f64 / min.max(1) as f64).powf(1.0 / (n - 1) as f64),
        (None, _) => std::f64::consts::SQRT_2,
    };
    (0..n).map(|i| ((size as f64 / ratio.powi((n - 1 - i) as i32)).round() as u32).max(1)).collect()
}

/// Where a (multi-scale) run ended: the last scale's transfer (for the image so far and the steps
/// taken), its content and style images, and how its run ended.
pub struct ScaleRun {
    pub transfer: StyleTransfer,
    pub content: Image,
    pub styles: Vec<Image>,
    /// The last scale's result (the last iterate, or the moving average), before any colour
    /// preservation; or why it stopped.
    pub outcome: Result<Image, TransferError>,
    /// Steps taken over every scale.
    pub steps: usize,
    /// Of those, the steps a resumed checkpoint had already taken (0 without `options.resume`).
    pub resumed_steps: usize,
}

/// Runs the method coarse to fine over `scale_sizes(options.size, options.scales, options.min_size)`
/// (one scale: the original method): at each, the content is fitted to the scale's size, the
/// styles are prepared for it (`prepare_styles`), the masks (`load_masks`: one per style, or none)
/// resized to it (`prepare_masks`), and the run starts from `first_init` (first
/// scale; see `first_initial_image`) or the previous scale's result resized to it; each scale runs
/// `options.iterations` steps. Stops after a scale whose run failed or was asked to stop.
/// With `options.resume`, it starts at the checkpoint's scale and step instead (refused if the
/// checkpoint is damaged or was made from other inputs or options); with `options.checkpoint`,
/// it writes one every `options.checkpoint_every` steps, when stopped and at the end.
pub fn run_scales(
    ctx: gpu::Context,
    weights: &[ConvLayerWeights],
    original_content: &Image,
    raw_styles: &[Image],
    raw_masks: &[Image],
    first_init: &Image,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<ScaleRun, Error> {
    let sizes = scale_sizes(options.size, options.scales, options.min_size);
    let checkpoints = checkpoint::Checkpointing::new(
        original_content,
        raw_styles,
        raw_masks,
        first_init,
        weights,
        options,
        sizes.len(),
    )
    .map_err(TransferError::from)?;
    let (checkpoints, mut resume) = match checkpoints {
        Some((checkpoints, resume)) => (Some(checkpoints), resume),
        None => (None, None),
    };
    let mut ctx = Some(ctx);
    let mut previous: Option<Image> = None;
    let mut steps = 0;
    let resumed_steps = resume.as_ref().map_or(0, |r| r.total_steps as usize);
    let first_scale = resume.as_ref().map_or(0, |r| r.scale);
    for (index, &size) in sizes.iter().enumerate().skip(first_scale) {
        let content = image_io::fit_within(original_content, size);
        let styles = prepare_styles(raw_styles, &content, options)?;
        let masks = prepare_masks(raw_masks, &content);
        let init = match &previous {
            None if index == 0 => first_init.clone(),
            // A resumed scale: the checkpoint's image replaces it.
            None => content.clone(),
            Some(image) => image_io::resize_exact(image, content.width, content.height),
        };
        let scale_ctx = ctx.take().expect("one context");
        let mut transfer = if masks.is_empty() {
            new_transfer(scale_ctx, weights, &content, &styles, &init, options)?
        } else {
            StyleTransfer::with_masks(scale_ctx, weights, &content, &styles, &masks, &init, options)?
        };
        if let Some(saved) = resume.take() {
            transfer.restore_state(&saved.state)?;
            steps = (saved.total_steps - saved.state.steps_done) as usize;
        }
        observer.on_scale(index, sizes.len(), content.width, content.height);
        let earlier = steps;
        let outcome = transfer.run_to(options.iterations, observer, &mut |transfer, step| match &checkpoints {
            Some(c) if c.due(step) => c.save(transfer, index, earlier),
            _ => Ok(()),
        });
        steps += transfer.steps_done();
        let last = index + 1 == sizes.len();
        if let (Some(c), Ok(_)) = (&checkpoints, &outcome)
            && (last || observer.should_stop())
        {
            c.save(&mut transfer, index, earlier)?;
        }
        match outcome {
            Ok(image) if !last && !observer.should_stop() => {
                previous = Some(image);
                ctx = Some(transfer.into_context());
            }
            outcome => return Ok(ScaleRun { transfer, content, styles, outcome, steps, resumed_steps }),
        }
    }
    unreachable!("the last scale returns")
}

/// A `StyleTransfer` for one or several style images: the original path (`StyleTransfer::new`)
/// for one image at the content's size, the blended Grams (`StyleTransfer::with_styles`) otherwise.
pub fn new_transfer(
    ctx: gpu::Context,
    weights: &[ConvLayerWeights],
    content: &Image,
    styles: &[Image],
    init: &Image,
    options: &Options,
) -> Result<StyleTransfer, Error> {
    match styles {
        [style] if (style.width, style.height) == (content.width, content.height) => {
            Ok(StyleTransfer::new(ctx, weights, content, style, init, options)?)
        }
        _ => {
            Ok(StyleTransfer::with_styles(ctx, weights, content, styles, &options.style_blend_weights, init, options)?)
        }
    }
}

/// Loads the `--mask` files (`Options::masks`) as they are: none, or one per style image.
pub fn load_masks<P: AsRef<Path>>(paths: &[P], styles: usize) -> Result<Vec<Image>, Error> {
    if !paths.is_empty() && paths.len() != styles {
        return Err(InvalidOption(format!(
            "--mask is given {} times for {styles} --style images: give every style a mask (in the same order), or none",
            paths.len()
        ))
        .into());
    }
    paths.iter().map(|path| Ok(image_io::load_image(path.as_ref())?)).collect()
}

/// The masks at the content's size, one H x W plane each: resized like the images, colour read as
/// luminance 0.299 R + 0.587 G + 0.114 B (grey files have R = G = B), clamped to [0, 1].
pub fn prepare_masks(raw: &[Image], content: &Image) -> Vec<Vec<f32>> {
    raw.iter()
        .map(|mask| {
            let mask = image_io::resize_exact(mask, content.width, content.height);
            let plane = mask.plane_len();
            (0..plane)
                .map(|i| {
                    let [r, g, b] = [mask.data[i], mask.data[plane + i], mask.data[2 * plane + i]];
                    (0.299 * r + 0.587 * g + 0.114 * b).clamp(0.0, 1.0)
                })
                .collect()
        })
        .collect()
}

/// The size a style image is resized to: the content's size times `scale`, rounded, at least 16
/// pixels a side when `scale` is not 1 (exactly the content's size when it is).
pub fn style_size(content: &Image, scale: f64) -> (u32, u32) {
    if scale == 1.0 {
        return (content.width, content.height);
    }
    let side = |v: u32| ((v as f64 * scale).round() as u32).max(16);
    (side(content.width), side(content.height))
}

/// Loads the style images as they are (at least one).
pub fn load_style_images<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Image>, Error> {
    if paths.is_empty() {
        return Err(InvalidOption("no style image".into()).into());
    }
    paths.iter().map(|path| Ok(image_io::load_image(path.as_ref())?)).collect()
}

/// The style images resized to `style_size(content, options.style_scale)`, their colours
/// matched to the content's with `PreserveColors::Histogram`.
pub fn prepare_styles(raw: &[Image], content: &Image, options: &Options) -> Result<Vec<Image>, Error> {
    let (width, height) = style_size(content, options.style_scale);
    Ok(raw
        .iter()
        .map(|style| {
            let style = image_io::resize_exact(style, width, height);
            match options.preserve_colors {
                PreserveColors::Histogram => image_io::color::match_histogram(&style, content),
                _ => style,
            }
        })
        .collect())
}

/// The result with the content's colours put back under `PreserveColors::Luminance`; unchanged
/// otherwise.
pub fn finish_colors(target: &Image, content: &Image, options: &Options) -> Image {
    match options.preserve_colors {
        PreserveColors::Luminance => image_io::color::preserve_luminance(target, content),
        _ => target.clone(),
    }
}

/// The image the first scale of `run_scales` starts from (`options.init` at the content's size
/// for that scale); built before any GPU work, so that a bad `--init` file is reported first.
pub fn first_initial_image(original_content: &Image, options: &Options) -> Result<Image, Error> {
    let first_size = scale_sizes(options.size, options.scales, options.min_size)[0];
    initial_image(&options.init, &image_io::fit_within(original_content, first_size), options.seed)
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
}
