//! Coarse-to-fine over the scales of a run, with checkpoints and resume.

use super::inputs::{fit_content, next_scale_image, prepare_masks, prepare_styles};
use super::{checkpointing, scale_sizes};
use crate::image_io::Image;
use crate::net::ConvLayerWeights;
use crate::transfer::{Frame, Observer, Options, StyleTransfer, Temporal, TransferError};
use crate::{Error, checkpoint, gpu};

/// Where a (multi-scale) run ended: the last scale's transfer (for the image so far and the steps
/// taken), its content and style images, and how its run ended.
pub(super) struct ScaleRun {
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

/// The decoded inputs `run_scales` fits to each scale.
pub(super) struct ScaleInputs<'a> {
    pub weights: &'a [ConvLayerWeights],
    pub original_content: &'a Image,
    pub raw_styles: &'a [Image],
    /// One per style, or none.
    pub raw_masks: &'a [Image],
    /// The first scale's initial image (`first_initial_image`).
    pub first_init: &'a Image,
    /// A video frame's temporal terms (single-scale runs only).
    pub temporal: &'a [Temporal],
}

/// Runs the method coarse to fine over `scale_sizes(options.size, options.scales, options.min_size)`
/// (one scale: the original method): at each, the content is fitted to the scale's size, the
/// styles are prepared for it (`prepare_styles`), the masks resized to it (`prepare_masks`),
/// and the run starts from `first_init` (first scale) or the previous scale's result resized to
/// it (`next_scale_image`), with Adam's state carried over under `options.warm_start`; scale `i`
/// runs `options.scale_iterations(i)` steps. Stops after a scale whose run failed or was
/// asked to stop. With `options.resume`, it starts at the checkpoint's scale and step instead
/// (refused if the checkpoint is damaged or was made from other inputs or options); with
/// `options.checkpoint`, it writes one every `options.checkpoint_every` steps, when stopped and
/// at the end.
pub(super) fn run_scales(
    ctx: gpu::Context,
    inputs: &ScaleInputs<'_>,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<ScaleRun, Error> {
    let sizes = scale_sizes(options.size, options.scales, options.min_size);
    let (checkpoints, mut resume) = checkpointing(inputs, options, sizes.len())?;
    let mut ctx = Some(ctx);
    let mut previous: Option<Image> = None;
    // Adam's state at the end of the previous scale and its size, with `options.warm_start`.
    let mut carried: Option<crate::transfer::ScaleAdam> = None;
    let mut steps = 0;
    let resumed_steps = resume.as_ref().map_or(0, |r| r.total_steps as usize);
    let first_scale = resume.as_ref().map_or(0, |r| r.scale);
    for (index, &size) in sizes.iter().enumerate().skip(first_scale) {
        let content = fit_content(inputs.original_content, size, options);
        let styles = prepare_styles(inputs.raw_styles, &content, size, options);
        let init = match &previous {
            None if index == 0 => inputs.first_init.clone(),
            // A resumed scale: the checkpoint's image replaces it.
            None => content.clone(),
            Some(image) => next_scale_image(image, content.width, content.height, options),
        };
        let scale_ctx = ctx.take().expect("one context");
        let mut transfer = new_transfer(scale_ctx, inputs, &content, &styles, &init, options)?;
        if let Some((state, from)) = carried.take() {
            transfer.warm_start(&state, from)?;
        }
        if let Some(saved) = resume.take() {
            transfer.restore_state(&saved.state)?;
            steps = (saved.total_steps - saved.state.steps_done) as usize;
        }
        observer.on_scale(index, sizes.len(), content.width, content.height);
        if let Some(schedule) = transfer.schedule() {
            observer.on_schedule(&schedule);
        }
        let earlier = steps;
        let outcome =
            transfer.run_to(options.scale_iterations(index), observer, &mut |transfer, step| match &checkpoints {
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
                if options.warm_start {
                    carried = transfer.adam_state()?;
                }
                previous = Some(image);
                ctx = Some(transfer.into_context());
            }
            outcome => return Ok(ScaleRun { transfer, content, styles, outcome, steps, resumed_steps }),
        }
    }
    unreachable!("the last scale returns")
}

/// The run's checkpointing (none without `options.checkpoint`) and the checkpoint it resumes
/// from (none without `options.resume`), checked against these inputs and options.
fn checkpointing(
    inputs: &ScaleInputs<'_>,
    options: &Options,
    scales: usize,
) -> Result<(Option<checkpointing::Checkpointing>, Option<checkpoint::Checkpoint>), Error> {
    let checkpoints = checkpointing::Checkpointing::new(
        inputs.original_content,
        inputs.raw_styles,
        inputs.raw_masks,
        inputs.first_init,
        inputs.weights,
        options,
        scales,
    )
    .map_err(TransferError::from)?;
    Ok(match checkpoints {
        Some((checkpoints, resume)) => (Some(checkpoints), resume),
        None => (None, None),
    })
}

/// The `StyleTransfer` of one scale (`StyleTransfer::for_frame`), the masks resized to its content.
fn new_transfer(
    ctx: gpu::Context,
    inputs: &ScaleInputs<'_>,
    content: &Image,
    styles: &[Image],
    init: &Image,
    options: &Options,
) -> Result<StyleTransfer, Error> {
    let masks = prepare_masks(inputs.raw_masks, content);
    let frame = Frame { content, styles, masks: &masks, init, temporal: inputs.temporal };
    Ok(StyleTransfer::for_frame(ctx, inputs.weights, &frame, options)?)
}
