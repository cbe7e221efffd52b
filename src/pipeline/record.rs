//! An observer around the caller's that writes what a run records as it goes: the CSV loss log
//! (every step's losses) and the periodic saves of the image (`Outputs::save_every`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::inputs::finish_colors;
use crate::image_io::{self, Image};
use crate::net::Losses;
use crate::transfer::{GpuInfo, Observer, Options, TransferError};
use crate::weights::FetchEvent;

pub(super) struct Record<'a> {
    inner: &'a mut dyn Observer,
    log: Option<(PathBuf, BufWriter<File>)>,
    /// A video frame's number: the log's leading column (and its temporal column).
    frame: Option<usize>,
    /// Where the periodic saves go, every this many steps, at this bit depth.
    saves: Option<(PathBuf, usize, u8)>,
    options: Options,
    /// The content before fitting, and at the current scale (for colour preservation of saves).
    original: Image,
    content: Image,
    scale: usize,
    inner_losses: bool,
    inner_image: bool,
}

/// The loss log could not be written.
fn log_error(path: &std::path::Path, e: std::io::Error) -> TransferError {
    TransferError::Observer(format!("loss log {}: {e}", path.display()))
}

impl<'a> Record<'a> {
    /// Creates the loss log (with its header) if `log` is given; a video frame's (`log.1`, its
    /// number) is appended to, its header written only into an empty file.
    pub fn new(
        inner: &'a mut dyn Observer,
        log: Option<(PathBuf, Option<usize>)>,
        saves: Option<(PathBuf, usize, u8)>,
        original: &Image,
        options: &Options,
    ) -> Result<Self, TransferError> {
        let frame = log.as_ref().and_then(|(_, frame)| *frame);
        let log = match log {
            Some((path, frame)) => {
                let cannot = |e| TransferError::Observer(format!("loss log {}: cannot create: {e}", path.display()));
                let file = match frame {
                    Some(_) => std::fs::OpenOptions::new().create(true).append(true).open(&path),
                    None => File::create(&path),
                }
                .map_err(cannot)?;
                let empty = file.metadata().map_err(cannot)?.len() == 0;
                let mut writer = BufWriter::new(file);
                if empty {
                    let frame = if frame.is_some() { "frame," } else { "" };
                    let temporal = if frame.is_empty() { "" } else { "temporal," };
                    let scale = if options.scales > 1 { "scale," } else { "" };
                    let tv = if options.tv_weight > 0.0 { "tv," } else { "" };
                    writeln!(writer, "{frame}{scale}step,content,style,{tv}{temporal}total")
                        .map_err(|e| log_error(&path, e))?;
                }
                Some((path, writer))
            }
            None => None,
        };
        Ok(Self {
            inner,
            log,
            frame,
            saves,
            options: options.clone(),
            original: original.clone(),
            content: original.clone(),
            scale: 0,
            inner_losses: false,
            inner_image: false,
        })
    }

    /// Flushes the loss log; a failure is a warning to the caller, the run's result stands.
    pub fn finish(&mut self) {
        if let Some((path, writer)) = &mut self.log
            && let Err(e) = writer.flush()
        {
            let warning = format!("loss log {}: {e}", path.display());
            self.inner.on_warning(&warning);
        }
    }

    fn save_due(&self, step: usize) -> bool {
        self.saves.as_ref().is_some_and(|&(_, n, _)| {
            (step + 1).is_multiple_of(n) && step + 1 < self.options.scale_iterations(self.scale)
        })
    }
}

impl Observer for Record<'_> {
    fn wants_losses(&mut self, step: usize) -> bool {
        self.inner_losses = self.inner.wants_losses(step);
        self.log.is_some() || self.inner_losses
    }

    fn wants_image(&mut self, step: usize) -> bool {
        self.inner_image = self.inner.wants_image(step);
        self.save_due(step) || self.inner_image
    }

    fn on_step(&mut self, step: usize, losses: Option<&Losses>, image: Option<&Image>) -> Result<(), TransferError> {
        if let (Some(l), Some((path, writer))) = (losses, &mut self.log) {
            let tv = if self.options.tv_weight > 0.0 { format!("{:e},", l.tv) } else { String::new() };
            let scale = if self.options.scales > 1 { format!("{},", self.scale + 1) } else { String::new() };
            let (frame, temporal) = match self.frame {
                Some(frame) => (format!("{frame},"), format!("{:e},", l.temporal)),
                None => (String::new(), String::new()),
            };
            writeln!(writer, "{frame}{scale}{step},{:e},{:e},{tv}{temporal}{:e}", l.content, l.style, l.total)
                .map_err(|e| log_error(path, e))?;
        }
        self.inner.on_step(step, losses.filter(|_| self.inner_losses), image.filter(|_| self.inner_image))?;
        if let (Some(image), Some((path, _, depth))) = (image.filter(|_| self.save_due(step)), &self.saves) {
            let image = finish_colors(image, &self.content, &self.options);
            image_io::save_image(path, &image, *depth).map_err(|e| TransferError::Observer(e.to_string()))?;
        }
        Ok(())
    }

    fn on_fetch(&mut self, event: &FetchEvent) {
        self.inner.on_fetch(event);
    }

    fn on_scale(&mut self, index: usize, count: usize, width: u32, height: u32) {
        self.scale = index;
        self.content = image_io::resize_exact(&self.original, width, height);
        self.inner.on_scale(index, count, width, height);
    }

    fn should_stop(&mut self) -> bool {
        self.inner.should_stop()
    }

    fn on_preview(&mut self, url: &str) {
        self.inner.on_preview(url);
    }

    fn on_gpu(&mut self, gpu: &GpuInfo) -> Result<(), TransferError> {
        self.inner.on_gpu(gpu)
    }

    fn on_warning(&mut self, message: &str) {
        self.inner.on_warning(message);
    }

    fn on_schedule(&mut self, schedule: &str) {
        self.inner.on_schedule(schedule);
    }
}
