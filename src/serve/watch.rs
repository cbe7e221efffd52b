//! An observer around another one that adds what watching a run needs: the loss history (for
//! `--loss-plot`, written at every `save_every` and at the end) and the live preview's snapshots.
//! It asks for readbacks sparingly: the image at most once a second, the losses about four
//! times a second for the preview and about 200 times a scale for the plot; the inner observer
//! still gets exactly what it asked for.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Preview;
use crate::plot::{LossHistory, LossRow};
use crate::{Image, Losses, Observer, Options, TransferError};

/// The preview's image is read back at most this often.
pub const IMAGE_EVERY: Duration = Duration::from_secs(1);
/// The preview's losses are read back at most this often (when nothing else reads them).
pub const LOSSES_EVERY: Duration = Duration::from_millis(250);
/// `--loss-plot` reads the losses every `iterations / PLOT_POINTS` steps (rounded up).
pub const PLOT_POINTS: usize = 200;

pub struct Watch<'a> {
    inner: &'a mut dyn Observer,
    preview: Option<&'a Preview>,
    plot: Option<PathBuf>,
    save_every: Option<usize>,
    pub history: LossHistory,
    options: Options,
    original: Image,
    content: Image,
    scale: usize,
    plot_stride: usize,
    inner_losses: bool,
    inner_image: bool,
    own_image: bool,
    last_losses: Option<Instant>,
    last_image: Option<Instant>,
}

impl<'a> Watch<'a> {
    /// `original` is the content image before fitting (for colour preservation of snapshots).
    pub fn new(
        inner: &'a mut dyn Observer,
        preview: Option<&'a Preview>,
        plot: Option<PathBuf>,
        save_every: Option<usize>,
        original: &Image,
        options: &Options,
    ) -> Self {
        Self {
            inner,
            preview,
            plot,
            save_every,
            history: LossHistory::new(options),
            options: options.clone(),
            original: original.clone(),
            content: original.clone(),
            scale: 0,
            plot_stride: options.iterations.div_ceil(PLOT_POINTS).max(1),
            inner_losses: false,
            inner_image: false,
            own_image: false,
            last_losses: None,
            last_image: None,
        }
    }

    fn run_step(&self, step: usize) -> usize {
        self.options.steps_before_scale(self.scale) + step
    }

    /// Writes `--loss-plot` (if given) with the rows so far.
    pub fn write_plot(&self) -> Result<(), crate::plot::PlotError> {
        match &self.plot {
            Some(path) => crate::plot::write_png(path, &self.history),
            None => Ok(()),
        }
    }

    fn due(last: Option<Instant>, every: Duration) -> bool {
        last.is_none_or(|t| t.elapsed() >= every)
    }
}

impl Observer for Watch<'_> {
    fn wants_losses(&mut self, step: usize) -> bool {
        self.inner_losses = self.inner.wants_losses(step);
        let for_plot = self.plot.is_some()
            && (step.is_multiple_of(self.plot_stride) || step + 1 == self.options.scale_iterations(self.scale));
        let for_preview = self.preview.is_some() && Self::due(self.last_losses, LOSSES_EVERY);
        self.inner_losses || for_plot || for_preview
    }

    fn wants_image(&mut self, step: usize) -> bool {
        self.inner_image = self.inner.wants_image(step);
        self.own_image = self.preview.is_some() && Self::due(self.last_image, IMAGE_EVERY);
        self.inner_image || self.own_image
    }

    fn on_step(&mut self, step: usize, losses: Option<&Losses>, image: Option<&Image>) -> Result<(), TransferError> {
        let run_step = self.run_step(step);
        if let Some(l) = losses {
            self.last_losses = Some(Instant::now());
            let row = LossRow { scale: self.scale, step, run_step, losses: l.clone() };
            if let Some(preview) = self.preview {
                preview.record_losses(row.clone());
            }
            if self.plot.is_some() {
                self.history.rows.push(row);
            }
        }
        if let Some(preview) = self.preview {
            preview.record_step(run_step + 1);
            if let Some(image) = image.filter(|_| self.own_image) {
                self.last_image = Some(Instant::now());
                preview.publish_image(crate::finish_colors(image, &self.content, &self.options));
            }
        }
        if let Some(n) = self.save_every
            && (step + 1).is_multiple_of(n)
            && step + 1 < self.options.scale_iterations(self.scale)
        {
            self.write_plot().map_err(|e| TransferError::Observer(e.to_string()))?;
        }
        self.inner.on_step(step, losses.filter(|_| self.inner_losses), image.filter(|_| self.inner_image))
    }

    fn on_fetch(&mut self, event: &crate::weights::FetchEvent) {
        self.inner.on_fetch(event);
    }

    fn on_scale(&mut self, index: usize, count: usize, width: u32, height: u32) {
        self.scale = index;
        self.content = crate::image_io::resize_exact(&self.original, width, height);
        if let Some(preview) = self.preview {
            preview.on_scale(index, width, height);
        }
        self.inner.on_scale(index, count, width, height);
    }

    fn should_stop(&mut self) -> bool {
        self.inner.should_stop()
    }

    fn on_preview(&mut self, url: &str) {
        self.inner.on_preview(url);
    }

    fn on_gpu(&mut self, gpu: &crate::GpuInfo) -> Result<(), TransferError> {
        self.inner.on_gpu(gpu)
    }

    fn on_warning(&mut self, message: &str) {
        self.inner.on_warning(message);
    }

    fn on_schedule(&mut self, schedule: &str) {
        self.inner.on_schedule(schedule);
    }
}
