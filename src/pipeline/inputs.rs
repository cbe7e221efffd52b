//! The inputs of a run, loaded and checked before any GPU work: images, masks, the initial image
//! and the network's weights; and how each is fitted to a scale.

use std::path::Path;

use crate::image_io::{self, Image};
use crate::net::vgg::Model;
use crate::net::{self, ConvLayerWeights};
use crate::transfer::{Init, InvalidOption, Options, PreserveColors, Resample, StyleFit};
use crate::{Error, rng, weights};

/// Loads the style images as they are (at least one).
pub fn load_style_images<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Image>, Error> {
    if paths.is_empty() {
        return Err(InvalidOption::new("styles", "no style image").into());
    }
    paths.iter().map(|path| Ok(image_io::load_image(path.as_ref())?)).collect()
}

/// Loads the mask files (`Options::masks`) as they are: none, or one per style image.
pub fn load_masks<P: AsRef<Path>>(paths: &[P], styles: usize) -> Result<Vec<Image>, Error> {
    if !paths.is_empty() && paths.len() != styles {
        return Err(InvalidOption::new(
            "masks",
            format!(
                "{{masks}} is given {} times for {styles} {{styles}} images: give every style a mask (in the same order), or none",
                paths.len()
            ),
        )
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

/// The filter `options.resample` resizes the inputs with.
pub fn input_filter(options: &Options) -> image_io::Filter {
    match options.resample {
        Resample::Lanczos => image_io::Filter::Lanczos3,
        Resample::Bicubic => image_io::Filter::CatmullRom,
    }
}

/// The content at a scale whose longer side is `side`.
pub fn fit_content(original: &Image, side: u32, options: &Options) -> Image {
    image_io::fit_within_with(original, side, input_filter(options))
}

/// The style images for a scale whose longer side is `side` and content `content`: resized to
/// `style_size(content, options.style_scale)` (`StyleFit::Content`), or with their longer side
/// fitted within `side` times the style scale (`StyleFit::Scale`, never enlarged); their colours
/// matched to the content's with `PreserveColors::Histogram`.
pub fn prepare_styles(raw: &[Image], content: &Image, side: u32, options: &Options) -> Vec<Image> {
    let filter = input_filter(options);
    raw.iter()
        .map(|style| {
            let style = match options.style_fit {
                StyleFit::Content => {
                    let (width, height) = style_size(content, options.style_scale);
                    image_io::resize_with(style, width, height, filter)
                }
                StyleFit::Scale => {
                    let longer = ((f64::from(side) * options.style_scale).round() as u32).max(16);
                    image_io::fit_within_with(style, longer, filter)
                }
            };
            match options.preserve_colors {
                PreserveColors::Histogram => image_io::color::match_histogram(&style, content),
                _ => style,
            }
        })
        .collect()
}

/// One scale's result resized to the next scale's content size: Lanczos3 (`Resample::Lanczos`),
/// or PyTorch's bicubic `interpolate` clamped to [0, 1], as crowsonkb's tool carries its image.
pub fn next_scale_image(image: &Image, width: u32, height: u32, options: &Options) -> Image {
    match options.resample {
        Resample::Lanczos => image_io::resize_exact(image, width, height),
        Resample::Bicubic => {
            let data =
                image_io::interpolate::planes(&image.data, (image.width, image.height), (width, height), 3, false)
                    .into_iter()
                    .map(|v| v.clamp(0.0, 1.0) as f32)
                    .collect();
            Image::new(width, height, data)
        }
    }
}

/// The result with the content's colours put back under `PreserveColors::Luminance`; unchanged
/// otherwise.
pub fn finish_colors(target: &Image, content: &Image, options: &Options) -> Image {
    match options.preserve_colors {
        PreserveColors::Luminance => image_io::color::preserve_luminance(target, content),
        _ => target.clone(),
    }
}

/// The image the first scale starts from (`options.init` at the content's size for that
/// scale); built before any GPU work, so that a bad `--init` file is reported first.
pub fn first_initial_image(original_content: &Image, options: &Options) -> Result<Image, Error> {
    let first_size = super::scale_sizes(options.size, options.scales, options.min_size)[0];
    initial_image(&options.init, &fit_content(original_content, first_size, options), options)
}

/// The image the optimization starts from, at the content's size.
/// `Init::Random` is normal noise times 0.001 in the network's input space (so in Caffe's
/// 0-255 space for the Caffe models, as neural-style's `-init random`).
fn initial_image(init: &Init, content: &Image, options: &Options) -> Result<Image, Error> {
    Ok(match init {
        Init::Content => content.clone(),
        Init::Random => {
            let mut rng = rng::Rng::new(options.seed);
            let input: Vec<f64> = (0..3 * content.plane_len()).map(|_| 0.001 * rng.normal()).collect();
            let data = options.model.preprocess().to_rgb(&input).into_iter().map(|v| v as f32).collect();
            Image::new(content.width, content.height, data)
        }
        Init::Image(path) => {
            let image = image_io::load_image(path)?;
            if (image.width, image.height) == (content.width, content.height) {
                image
            } else {
                image_io::resize_with(&image, content.width, content.height, input_filter(options))
            }
        }
    })
}

/// Resolves and loads `model`'s weights: a file path, an http(s) URL (downloaded into the cache),
/// `random` / `random:SEED` (He-initialized at the model's widths, for tests and benchmarks), or
/// `None` for the model's file: `$STYLIZE_WEIGHTS` (vgg19 only), then the user cache, then a
/// verified download of the model's manifest entry.
pub fn load_network_weights(
    model: Model,
    spec: Option<&str>,
    seed: u64,
    on_fetch: &mut dyn FnMut(weights::FetchEvent),
) -> Result<Vec<ConvLayerWeights>, Error> {
    if let Some(random) = spec.and_then(|s| s.strip_prefix("random")) {
        let seed = match random.strip_prefix(':') {
            Some(n) => n.parse().map_err(|_| {
                InvalidOption::new("weights", format!("{{weights}} random:SEED needs a number, not {n}"))
            })?,
            None if random.is_empty() => seed,
            None => return load_file_weights(model, spec.expect("some"), on_fetch),
        };
        return Ok(net::random_weights(model.widths(), seed));
    }
    match spec {
        Some(arg) => load_file_weights(model, arg, on_fetch),
        None => {
            let entry = weights::model_entry(model);
            let dest = weights::default_weights_path(&entry)?;
            let path = weights::ensure_weights(&entry, &dest, on_fetch)?;
            Ok(weights::load_model(&path, model)?.convs)
        }
    }
}

fn load_file_weights(
    model: Model,
    arg: &str,
    on_fetch: &mut dyn FnMut(weights::FetchEvent),
) -> Result<Vec<ConvLayerWeights>, Error> {
    let path = weights::resolve_weights_arg(arg, on_fetch)?;
    Ok(weights::load_model(&path, model)?.convs)
}
