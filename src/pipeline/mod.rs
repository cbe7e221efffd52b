//! The one pipeline of a run, for the CLI and the library alike (`Job`): everything that needs
//! no GPU is checked and loaded first (`Job::new`: options, output paths, images, masks, the
//! initial image, the preview's port), so bad input fails before the device is touched; then
//! `Job::run` loads the weights, opens the GPU, runs the scales and writes what `Outputs` asks
//! for (the result, periodic saves, the loss log and plot, the side-by-side figure, the preview),
//! telling an `Observer` as it goes. Nothing here prints.

mod checkpointing;
mod inputs;
mod record;
mod scales;
pub mod video;

use std::path::{Path, PathBuf};

pub use inputs::{finish_colors, first_initial_image, load_network_weights};

use crate::image_io::{self, Image};
use crate::net::ConvLayerWeights;
use crate::serve::{Preview, RunInfo, Watch};
use crate::transfer::{GpuInfo, InvalidOption, Observer, Options, Temporal, TransferError, normalized_blend};
use crate::{Error, Outcome, gpu};
use inputs::{load_masks, load_style_images, prepare_masks};
use record::Record;
use scales::{ScaleInputs, run_scales};

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

/// What a run writes besides its result in memory; every field off by default.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// The result; also the periodic saves (`save_every`) and, when the run stops on a
    /// non-finite value, the last finite image. The format follows the extension.
    pub output: Option<PathBuf>,
    /// Bits per sample of the images written: 8, or 16 for PNG and TIFF.
    pub depth: u8,
    /// Content | style (| mask) ... | result side by side, like the original's figure.
    pub side_by_side: Option<PathBuf>,
    /// A CSV (`[scale,]step,content,style,[tv,]total`) with the losses of every step.
    pub loss_log: Option<PathBuf>,
    /// Also write the image to `output` (and the loss plot) every this many steps.
    pub save_every: Option<usize>,
    /// A PNG plot of the loss curves, written at the end and at every `save_every`.
    pub loss_plot: Option<PathBuf>,
    /// Serve a live preview at this address (`serve::resolve`); `serve_public` allows
    /// addresses other machines can reach.
    pub serve: Option<String>,
    pub serve_public: bool,
    /// A video frame's number (from 1): the loss log gains a leading `frame` column and a
    /// `temporal` one, and is appended to (its header written when it is empty).
    pub loss_log_frame: Option<usize>,
}

impl Default for Outputs {
    fn default() -> Self {
        Self {
            output: None,
            depth: 8,
            side_by_side: None,
            loss_log: None,
            save_every: None,
            loss_plot: None,
            serve: None,
            serve_public: false,
            loss_log_frame: None,
        }
    }
}

/// The GPU context `options` ask for, its convolution algorithm checked (a bad STYLIZE_CONV is
/// reported before anything is written).
pub fn open_context(options: &Options) -> Result<gpu::Context, Error> {
    let ctx = gpu::Context::new(&options.context_options())?;
    crate::ops::conv::ConvAlgorithm::for_context(&ctx)?;
    Ok(ctx)
}

/// A run whose inputs are loaded and checked, ready to go to the GPU.
pub struct Job {
    options: Options,
    outputs: Outputs,
    original: Image,
    raw_styles: Vec<Image>,
    raw_masks: Vec<Image>,
    first_init: Image,
    preview: Option<Preview>,
    temporal: Vec<Temporal>,
    /// Hand the preview back in `Finished` instead of ending it (a clip's frames share one).
    hand_back_preview: bool,
}

/// A run's decoded inputs: the content (any size: it is fitted to `options.size`), the style
/// images and their masks (one per style, or none).
pub struct FrameInputs {
    pub content: Image,
    pub styles: Vec<Image>,
    pub masks: Vec<Image>,
}

/// How a run ended (when it did not fail).
pub struct Finished {
    /// Content and (first) style as the network saw them at the last scale, and the result
    /// (colours finished as `options.preserve_colors` asks).
    pub outcome: Outcome,
    /// Steps taken over every scale, and of those the steps a resumed checkpoint had taken.
    pub steps: usize,
    pub resumed_steps: usize,
    /// Whether the observer stopped the run early (then no side-by-side figure is written).
    pub stopped: bool,
    /// The GPU it ran on.
    pub gpu: GpuInfo,
    /// The live preview, handed back by a run given one with `Job::show_in` (else ended).
    pub preview: Option<Preview>,
}

impl Job {
    /// Checks `options` and the output paths, binds the preview's port (reported with
    /// `observer.on_preview`) and loads every input; touches no GPU.
    pub fn new<P: AsRef<Path>>(
        content: &Path,
        styles: &[P],
        options: Options,
        outputs: Outputs,
        observer: &mut dyn Observer,
    ) -> Result<Job, Error> {
        options.validate()?;
        check_outputs(&outputs, &options)?;
        let preview = match &outputs.serve {
            Some(addr) => {
                let preview = Preview::bind(addr, outputs.serve_public)?;
                observer.on_preview(&preview.url());
                Some(preview)
            }
            None => None,
        };
        normalized_blend(&options.style_blend_weights, styles.len())?;
        let original = image_io::load_image(content)?;
        let raw_styles = load_style_images(styles)?;
        let raw_masks = load_masks(&options.masks, raw_styles.len())?;
        // A bad --init file is reported before the GPU is touched.
        let first_init = first_initial_image(&original, &options)?;
        if let Some(preview) = &preview {
            preview.set_run(RunInfo {
                content: image_io::fit_within(&original, options.size),
                styles: raw_styles.iter().map(|s| image_io::fit_within(s, 256)).collect(),
                total_steps: options.total_steps(options.scales),
                scales: options.scales,
                history: crate::plot::LossHistory::new(&options),
            });
        }
        Ok(Job {
            options,
            outputs,
            original,
            raw_styles,
            raw_masks,
            first_init,
            preview,
            temporal: Vec::new(),
            hand_back_preview: false,
        })
    }

    /// A video frame's run (`pipeline::video`): inputs already decoded, `init` the image it
    /// starts from (`None`: `options.init`), `temporal` the terms tying it to earlier
    /// frames' results (single-scale runs only). No live preview.
    pub fn for_frame(
        frame: FrameInputs,
        options: Options,
        outputs: Outputs,
        init: Option<Image>,
        temporal: Vec<Temporal>,
    ) -> Result<Job, Error> {
        options.validate()?;
        check_outputs(&outputs, &options)?;
        if !temporal.is_empty() && options.scales > 1 {
            return Err(
                InvalidOption::new("scales", "a video frame's temporal term runs on one scale: {scales} 1").into()
            );
        }
        let FrameInputs { content, styles, masks } = frame;
        let first_init = match init {
            Some(image) => image,
            None => first_initial_image(&content, &options)?,
        };
        Ok(Job {
            options,
            outputs,
            original: content,
            raw_styles: styles,
            raw_masks: masks,
            first_init,
            preview: None,
            temporal,
            hand_back_preview: false,
        })
    }

    /// Loads the weights (downloads reported with `observer.on_fetch`), opens the GPU
    /// (`observer.on_gpu`), runs every scale and writes the outputs.
    pub fn run(self, observer: &mut dyn Observer) -> Result<Finished, Error> {
        let options = &self.options;
        let weights = load_network_weights(options.model, options.weights.as_deref(), options.seed, &mut |e| {
            observer.on_fetch(&e)
        })?;
        let ctx = open_context(options)?;
        Ok(self.run_on(ctx, &weights, observer)?.0)
    }

    /// As `run`, on an open context (`open_context`) with the weights loaded: what a clip's
    /// frames share. Gives the context back after a run that did not fail.
    pub fn run_on(
        self,
        ctx: gpu::Context,
        weights: &[ConvLayerWeights],
        observer: &mut dyn Observer,
    ) -> Result<(Finished, gpu::Context), Error> {
        let options = &self.options;
        let gpu = GpuInfo {
            adapter: format!("{} ({})", ctx.adapter.name, ctx.adapter.backend),
            is_cpu: ctx.adapter.is_cpu(),
            precision: match options.style_loss {
                crate::net::StyleLoss::W2 if ctx.precision.arithmetic.is_mixed() => format!(
                    "{}; the w2 style loss's products stay f32 (its covariance S - mu mu^T cancels, which f16 operands lose)",
                    ctx.precision.reason
                ),
                _ => ctx.precision.reason.clone(),
            },
            precision_warning: ctx.precision.warning(),
        };
        observer.on_gpu(&gpu)?;
        let saves = match (&self.outputs.output, self.outputs.save_every) {
            (Some(path), Some(n)) => Some((path.clone(), n, self.outputs.depth)),
            _ => None,
        };
        let log = self.outputs.loss_log.clone().map(|path| (path, self.outputs.loss_log_frame));
        let mut record = Record::new(observer, log, saves, &self.original, options)?;
        let (run, plotted) = self.run_scales_watched(ctx, weights, &mut record);
        record.finish();
        drop(record);
        plotted?;
        let mut stopped = observer.should_stop();
        let scales::ScaleRun { transfer, content, styles, outcome, steps, resumed_steps } = run?;
        let finish = |image: &Image| finish_colors(image, &content, options);
        let target = match outcome {
            Ok(target) => finish(&target),
            Err(err @ TransferError::NonFinite { .. }) => return Err(self.keep_last_finite(err, &transfer, &finish)),
            Err(err) => return Err(err.into()),
        };
        if let Some(path) = &self.outputs.output {
            image_io::save_image(path, &target, self.outputs.depth)?;
        }
        let preview = match self.preview {
            Some(preview) if self.hand_back_preview => {
                preview.publish_image(target.clone());
                Some(preview)
            }
            Some(preview) => {
                preview.finish(target.clone(), crate::serve::FINAL_GRACE);
                None
            }
            None => None,
        };
        stopped |= observer.should_stop();
        if let (Some(path), false) = (&self.outputs.side_by_side, stopped) {
            let masks = prepare_masks(&self.raw_masks, &content);
            image_io::save_image(path, &side_by_side(&content, &styles, &masks, &target), self.outputs.depth)?;
        }
        let style = styles[0].clone();
        let outcome = Outcome { content, style, target };
        let finished = Finished { outcome, steps, resumed_steps, stopped, gpu, preview };
        Ok((finished, transfer.into_context()))
    }

    /// Shows this run in `preview` (a clip's, which outlives each frame's run), as `info`
    /// describes it; `Finished::preview` hands it back.
    pub fn show_in(mut self, preview: Preview, info: RunInfo) -> Job {
        preview.set_run(info);
        self.preview = Some(preview);
        self.hand_back_preview = true;
        self
    }

    /// `run_scales` under the preview and the loss plot's watch; the plot is written at the end
    /// whatever happened (its error comes first).
    fn run_scales_watched(
        &self,
        ctx: gpu::Context,
        weights: &[ConvLayerWeights],
        observer: &mut dyn Observer,
    ) -> (Result<scales::ScaleRun, Error>, Result<(), crate::plot::PlotError>) {
        let save_every = self.outputs.save_every;
        let plot = self.outputs.loss_plot.clone();
        let mut watch = Watch::new(observer, self.preview.as_ref(), plot, save_every, &self.original, &self.options);
        let inputs = ScaleInputs {
            weights,
            original_content: &self.original,
            raw_styles: &self.raw_styles,
            raw_masks: &self.raw_masks,
            first_init: &self.first_init,
            temporal: &self.temporal,
        };
        let run = run_scales(ctx, &inputs, &self.options, &mut watch);
        (run, watch.write_plot())
    }

    /// After a non-finite loss the run already put the last finite image back: it is written to
    /// `output` for the user, and the error says so.
    fn keep_last_finite(
        &self,
        err: TransferError,
        transfer: &crate::transfer::StyleTransfer,
        finish: &dyn Fn(&Image) -> Image,
    ) -> Error {
        let Some(path) = &self.outputs.output else { return err.into() };
        let image = match transfer.image() {
            Ok(image) => finish(&image),
            Err(e) => return e.into(),
        };
        match image_io::save_image(path, &image, self.outputs.depth) {
            Ok(()) => Error::KeptLastFinite { source: err, output: path.clone() },
            Err(e) => e.into(),
        }
    }
}

/// Content | style (| its mask as a grey panel) ... | result.
fn side_by_side(content: &Image, styles: &[Image], masks: &[Vec<f32>], target: &Image) -> Image {
    let shown: Vec<Image> = styles.iter().map(|s| image_io::resize_exact(s, content.width, content.height)).collect();
    let masks: Vec<Image> = masks.iter().map(|m| Image::new(content.width, content.height, m.repeat(3))).collect();
    let mut row = vec![content];
    for (i, style) in shown.iter().enumerate() {
        row.push(style);
        row.extend(masks.get(i));
    }
    row.push(target);
    image_io::side_by_side(&row)
}

/// Every output path can be written, before any work starts.
fn check_outputs(outputs: &Outputs, options: &Options) -> Result<(), Error> {
    let depth = outputs.depth;
    for path in [&outputs.output, &outputs.side_by_side].into_iter().flatten() {
        image_io::check_output_path(path, depth)?;
    }
    if let Some(path) = &outputs.loss_log {
        check_parent_folder("loss log", path)?;
    }
    if let Some(path) = &options.checkpoint {
        check_parent_folder("checkpoint", path)?;
        let others = [outputs.output.as_ref(), outputs.side_by_side.as_ref(), outputs.loss_log.as_ref()];
        if others.into_iter().flatten().any(|other| other == path) {
            return Err(Error::Output(format!(
                "checkpoint {}: is also an output of the run; give it a file of its own",
                path.display()
            )));
        }
    }
    if let Some(path) = options.resume.as_ref().filter(|p| !p.is_file()) {
        return Err(Error::Output(format!("checkpoint {}: no such file", path.display())));
    }
    if let Some(path) = &outputs.loss_plot {
        check_loss_plot(path)?;
    }
    Ok(())
}

/// A `--loss-plot` path: a PNG that can be written.
fn check_loss_plot(path: &Path) -> Result<(), Error> {
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(Error::Output(format!(
            "loss plot {}: the plot is a PNG; give a path ending in .png",
            path.display()
        )));
    }
    image_io::check_output_path(path, 8)?;
    Ok(())
}

/// `path`'s folder exists and `path` is not a folder.
fn check_parent_folder(what: &str, path: &Path) -> Result<(), Error> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Output(format!("{what} {}: folder {} does not exist", path.display(), parent.display())));
    }
    if path.is_dir() {
        return Err(Error::Output(format!("{what} {}: is a directory", path.display())));
    }
    Ok(())
}
