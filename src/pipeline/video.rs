//! A clip, frame by frame, without flicker (Ruder, Dosovitskiy & Brox 2016): frame t starts
//! from frame t-1's result warped along the backward flow (t -> t-1) and is held to it by the
//! temporal term where the flow is reliable (`transfer::Temporal`). Each frame is one `Job` on
//! one GPU context and one copy of the weights, so every single-image option applies to it.
//! The frames are written to a folder as they are done, with a record of what made them: a
//! rerun of the same command continues at the first frame not yet written.

use std::path::{Path, PathBuf};

use super::inputs::{fit_content, load_masks, load_style_images};
use super::{FrameInputs, Job, Outputs, checkpointing, load_network_weights, open_context};
use crate::image_io::{self, Image};
use crate::net::{ConvLayerWeights, Losses};
use crate::plot::{LossHistory, LossRow};
use crate::serve::{Preview, RunInfo};
use crate::transfer::{InvalidOption, Observer, Options, Temporal, TransferError};
use crate::video::flo::{self, Flow, VideoError};
use crate::video::frames::{FrameSource, frame_output_name, frame_source};
use crate::video::{ffmpeg, motion};
use crate::{Error, gpu};

/// The temporal term's default weight (`--temporal-weight`), against the method's content
/// weight 1 and style weight 1e6. Measured on tests/video.rs's panning clip (tiny network, 200
/// then 100 steps a frame): 1e5 makes the temporal error 41x lower than independent frames'
/// (1e6: 125x) with every frame's style loss lower, not higher. Ruder et al.'s 1e3 against
/// content weight 5 on Caffe's 0-255 input is about 7e5 in this normalized space, if the two
/// networks' features compare.
pub const DEFAULT_TEMPORAL_WEIGHT: f64 = 1e5;

/// Output extensions encoded into a video file (with ffmpeg) after the frames.
pub const ENCODED: [&str; 5] = ["mp4", "webm", "mkv", "mov", "gif"];

/// The frame rate of an encoded clip made from a folder of frames, without `--fps`.
pub const DEFAULT_FPS: &str = "25";

/// A frame rate ffmpeg's `-framerate` takes: a positive number or a fraction of two.
fn valid_frame_rate(rate: &str) -> bool {
    let positive = |s: &str| s.parse::<f64>().is_ok_and(|v| v.is_finite() && v > 0.0);
    match rate.split_once('/') {
        Some((n, d)) => positive(n) && positive(d),
        None => positive(rate),
    }
}

/// The file in the frames folder that records what made its frames.
pub const RECORD_NAME: &str = "stylize-video.txt";

/// Where frame t > 1 starts (`--init` of `stylize video`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameInit {
    /// The previous result warped to this frame (Ruder et al.).
    #[default]
    PrevWarped,
    /// The previous result as it is.
    Prev,
    /// This frame (`Options::init`).
    Content,
}

/// What `stylize video` adds to the single-image options.
#[derive(Clone, Debug)]
pub struct VideoOptions {
    /// Weight of the temporal term; 0: independent frames.
    pub temporal_weight: f64,
    pub init: FrameInit,
    /// Steps of each frame after the first (`Options::iterations` counts the first's); `None`:
    /// half of those.
    pub frame_iterations: Option<usize>,
    /// A folder of Middlebury `.flo` flows (and optionally `reliable_*.pgm` maps) named as
    /// artistic-videos names them, at the frames' run size; `None`: TV-L1 on the GPU.
    pub flow_dir: Option<PathBuf>,
    /// Where to write the flows and reliability maps the clip used, in `flow_dir`'s layout.
    pub save_flow: Option<PathBuf>,
    /// Serve a live preview of the frame being computed at this address (`serve::resolve`),
    /// and whether addresses other machines can reach are allowed.
    pub serve: Option<(String, bool)>,
    /// The frame rate of an encoded output (`-o clip.mp4`); `None`: the input video's, or
    /// `DEFAULT_FPS` for frames.
    pub fps: Option<String>,
    /// ffmpeg output options of an encoded output, after stylize's (e.g. `-c:v libx264 -crf 18`,
    /// or `-c:v ffv1 -pix_fmt bgr0` for a lossless file); they do not change the frames.
    pub encode_options: Vec<String>,
    /// A CSV of every step's losses, `frame,step,content,style,[tv,]temporal,total`; a rerun
    /// keeps the rows of the frames it does not compute again.
    pub loss_log: Option<PathBuf>,
    /// A PNG of the clip's losses, every step of every frame one after the other (with the
    /// temporal term); the frames an earlier run computed come from `loss_log` when it has them.
    pub loss_plot: Option<PathBuf>,
    /// A folder for each frame's content | style (| mask) | result figure, named as the frames.
    pub side_by_side: Option<PathBuf>,
    /// The earlier frames t - j each frame is held to, closest first, starting with 1 (`[1]`:
    /// short-term only; more: Ruder et al.'s long-term consistency, §3.2).
    pub temporal_frames: Vec<usize>,
    /// Bits per sample of the frames written (8, or 16): the next frame warps them as written.
    pub depth: u8,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            temporal_weight: DEFAULT_TEMPORAL_WEIGHT,
            init: FrameInit::default(),
            frame_iterations: None,
            flow_dir: None,
            save_flow: None,
            serve: None,
            fps: None,
            encode_options: Vec::new(),
            loss_log: None,
            loss_plot: None,
            side_by_side: None,
            temporal_frames: vec![1],
            depth: 8,
        }
    }
}

impl VideoOptions {
    /// Steps of frame `index` (from 1).
    pub fn steps(&self, options: &Options, index: usize) -> usize {
        match index {
            1 => options.iterations,
            _ => self.frame_iterations.unwrap_or((options.iterations / 2).max(1)),
        }
    }
}

/// What a clip's run reports besides each frame's own run.
pub trait VideoObserver {
    /// Frame `index` (from 1) of `count` starts, with `steps` steps; `first` is the first frame
    /// this run computes (the frames before it were written by an earlier run).
    fn on_frame(&mut self, index: usize, count: usize, steps: usize, first: usize);
    /// The observer of the frame's run (steps, losses, stop requests).
    fn frame_observer(&mut self) -> &mut dyn Observer;
}

/// A clip whose inputs are found and checked, ready to go to the GPU.
pub struct Video {
    /// The frames, in order (a video file's once `run` decoded it).
    frames: Vec<PathBuf>,
    input: PathBuf,
    /// A video file to decode (with ffmpeg) and what ffprobe says of it.
    clip_file: Option<(PathBuf, ffmpeg::VideoInfo)>,
    /// A video file to encode the frames into at the end (`-o clip.mp4`).
    encode_to: Option<PathBuf>,
    /// The live preview (`VideoOptions::serve`), shown each frame's run in turn.
    preview: Option<Preview>,
    styles: Vec<Image>,
    masks: Vec<Image>,
    options: Options,
    video: VideoOptions,
    out_dir: PathBuf,
    /// The frames' size once fitted to `options.size`.
    size: (u32, u32),
}

/// How a clip's run ended.
pub struct VideoFinished {
    pub frames: usize,
    /// Frames computed by this run (the others were already written).
    pub computed: usize,
    pub stopped: bool,
}

impl Video {
    /// Finds the frames of `input` (a folder, a pattern) and checks that they share one size,
    /// loads the styles and masks, checks the options and the flows of `video.flow_dir` and
    /// the output folder; touches no GPU and writes nothing.
    pub fn new<P: AsRef<Path>>(
        input: &Path,
        styles: &[P],
        output: &Path,
        options: Options,
        video: VideoOptions,
    ) -> Result<Video, Error> {
        options.validate()?;
        if options.scales > 1 {
            return Err(InvalidOption::new("scales", "a video runs each frame on one scale: {scales} 1").into());
        }
        crate::transfer::rules::non_negative(video.temporal_weight)
            .map_err(|why| Error::Output(format!("--temporal-weight {why}")))?;
        let list = &video.temporal_frames;
        if list.first() != Some(&1) || list.windows(2).any(|w| w[0] >= w[1]) {
            let list: Vec<String> = list.iter().map(usize::to_string).collect();
            return Err(Error::Output(format!(
                "--temporal-frames must start with 1 and increase (e.g. 1,2,4), not {}",
                list.join(",")
            )));
        }
        let (frames, clip_file, size) = match frame_source(input)? {
            FrameSource::Files(frames) => {
                let size = frame_size(&frames, &options)?;
                (frames, None, size)
            }
            FrameSource::Video(path) => {
                let info = ffmpeg::probe(&path)?;
                let size = image_io::fitted_size(info.width, info.height, options.size);
                (Vec::new(), Some((path, info)), size)
            }
        };
        // `-o clip.mp4`: the frames go to clip_frames/ beside it, and are encoded at the end.
        let (out_dir, encode_to) = match output.extension().and_then(|e| e.to_str()) {
            Some(ext) if ENCODED.contains(&ext.to_ascii_lowercase().as_str()) && !output.is_dir() => {
                let stem = output.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                (output.with_file_name(format!("{stem}_frames")), Some(output.to_path_buf()))
            }
            _ => (output.to_path_buf(), None),
        };
        let out_dir = out_dir.as_path();
        if encode_to.is_none() && (video.fps.is_some() || !video.encode_options.is_empty()) {
            return Err(Error::Output(format!(
                "--fps and --encode-options apply to a video -o ({}), not to a folder of frames",
                ENCODED.join(", ")
            )));
        }
        if let Some(fps) = &video.fps
            && !valid_frame_rate(fps)
        {
            return Err(Error::Output(format!("--fps takes a rate such as 24, 29.97 or 30000/1001, not {fps}")));
        }
        let styles = load_style_images(styles)?;
        let masks = load_masks(&options.masks, styles.len())?;
        check_out_dir(out_dir)?;
        if let Some(log) = &video.loss_log {
            super::check_parent_folder("loss log", log)?;
        }
        if let Some(plot) = &video.loss_plot {
            super::check_loss_plot(plot)?;
        }
        if let Some(dir) = &video.side_by_side {
            check_out_dir(dir)?;
            if dir == out_dir {
                return Err(Error::Output(format!(
                    "--side-by-side {}: is the frames folder; give a folder of its own",
                    dir.display()
                )));
            }
        }
        if let Some(path) = &encode_to {
            image_io::check_output_path(&path.with_extension("png"), 8).map_err(|_| VideoError::Invalid {
                path: path.clone(),
                reason: "its folder does not exist or cannot be written".into(),
            })?;
        }
        let input = input.to_path_buf();
        let out_dir = out_dir.into();
        let mut clip =
            Video { frames, input, clip_file, encode_to, preview: None, styles, masks, options, video, out_dir, size };
        clip.check_flows()?;
        if let Some((addr, public)) = &clip.video.serve {
            clip.preview = Some(Preview::bind(addr, *public)?);
        }
        Ok(clip)
    }

    /// The frames found, in order.
    pub fn frames(&self) -> &[PathBuf] {
        &self.frames
    }

    /// The frames' run size.
    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// Loads the weights, opens the GPU, checks the frames folder's record (or writes it) and
    /// runs every frame not yet written.
    pub fn run(mut self, observer: &mut dyn VideoObserver) -> Result<VideoFinished, Error> {
        let (model, seed) = (self.options.model, self.options.seed);
        let weights = load_network_weights(model, self.options.weights.as_deref(), seed, &mut |e| {
            observer.frame_observer().on_fetch(&e)
        })?;
        create_out_dir(&self.out_dir)?;
        if let Some((path, info)) = &self.clip_file {
            self.frames = ffmpeg::decode(path, info, &self.out_dir.join("input"))?;
            self.check_flows()?;
        }
        let options = &self.options;
        let first = self.content(1)?;
        self.check_record(&first, &weights)?;
        for dir in [&self.video.save_flow, &self.video.side_by_side].into_iter().flatten() {
            create_out_dir(dir)?;
        }
        let mut ctx = Some(open_context(options)?);
        let solver = match &self.video.flow_dir {
            None if self.frames.len() > 1 && self.needs_flows() => {
                Some(motion::FlowSolver::new(ctx.as_ref().expect("the context"), self.size.0, self.size.1)?)
            }
            _ => None,
        };
        let count = self.frames.len();
        let start = (1..=count).find(|&t| !self.output(t).is_file()).unwrap_or(count + 1);
        if let Some(log) = &self.video.loss_log {
            keep_rows_before(log, start)?;
        }
        let mut plot = match &self.video.loss_plot {
            Some(_) => Some(self.earlier_plot_rows(start)?),
            None => None,
        };
        let mut computed = 0;
        let mut last = None;
        for index in start..=count {
            let steps = self.video.steps(options, index);
            observer.on_frame(index, count, steps, start);
            let (mut job, content) =
                self.frame_job(ctx.as_ref().expect("the context"), solver.as_ref(), index, steps)?;
            if let Some(preview) = self.preview.take() {
                let thumbnails = self.styles.iter().map(|s| image_io::fit_within(s, 256)).collect();
                let history = crate::plot::LossHistory::new(&Options { iterations: steps, ..self.options.clone() });
                let info = RunInfo { content, styles: thumbnails, total_steps: steps, scales: 1, history };
                job = job.show_in(preview, info);
            }
            let ctx_now = ctx.take().expect("the context");
            let run = match plot.as_mut() {
                Some(history) => {
                    let mut rows =
                        PlotRows { inner: observer.frame_observer(), history, frame: index, inner_losses: false };
                    job.run_on(ctx_now, &weights, &mut rows)
                }
                None => job.run_on(ctx_now, &weights, observer.frame_observer()),
            };
            let (mut finished, back) = match run {
                Ok(done) => done,
                Err(e) => {
                    // What the clip computed until then is still plotted.
                    self.write_plot(plot.as_ref())?;
                    return Err(e);
                }
            };
            ctx = Some(back);
            self.preview = finished.preview.take();
            last = Some(finished.outcome.target);
            computed += 1;
            if finished.stopped {
                // The frame was written as it stood; the next run recomputes it from scratch.
                std::fs::remove_file(self.output(index)).ok();
                self.write_plot(plot.as_ref())?;
                return Ok(VideoFinished { frames: count, computed: computed - 1, stopped: true });
            }
        }
        if let (Some(preview), Some(image)) = (self.preview.take(), last) {
            preview.finish(image, crate::serve::FINAL_GRACE);
        }
        self.write_plot(plot.as_ref())?;
        if let Some(path) = &self.encode_to {
            let rate = self.video.fps.clone();
            let rate = rate.or_else(|| self.clip_file.as_ref().map(|(_, info)| info.frame_rate.clone()));
            let audio = self.clip_file.as_ref().filter(|(_, info)| info.has_audio).map(|(p, _)| p.as_path());
            let rate = rate.unwrap_or_else(|| DEFAULT_FPS.into());
            ffmpeg::encode(&self.out_dir, &rate, audio, &self.video.encode_options, path)?;
        }
        Ok(VideoFinished { frames: count, computed, stopped: false })
    }

    /// The clip's loss plot to start from: the rows `loss_log` holds of the frames before `start`
    /// (written by an earlier run; none without a log), in order.
    fn earlier_plot_rows(&self, start: usize) -> Result<LossHistory, Error> {
        let mut history = LossHistory { temporal: true, ..LossHistory::new(&self.options) };
        let Some(log) = self.video.loss_log.as_ref().filter(|_| start > 1) else { return Ok(history) };
        let text = match std::fs::read_to_string(log) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(history),
            Err(e) => return Err(VideoError::Io { path: log.into(), source: e }.into()),
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let bad = || VideoError::Invalid { path: log.into(), reason: "not a clip's loss log".into() };
        let [frame, step, content, style, temporal, total] =
            ["frame", "step", "content", "style", "temporal", "total"].map(column);
        let tv = column("tv");
        for line in lines {
            let values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect();
            let at = |i: Option<usize>| i.and_then(|i| values.get(i).copied()).ok_or_else(bad);
            let losses = Losses {
                content_terms: Vec::new(),
                style_terms: Vec::new(),
                content: at(content)?,
                style: at(style)?,
                tv: tv.map_or(Ok(0.0), |i| at(Some(i)))?,
                temporal: at(temporal)?,
                total: at(total)?,
            };
            let (frame, step) = (at(frame)? as usize, at(step)? as usize);
            let run_step = history.rows.len();
            history.rows.push(LossRow { scale: frame.saturating_sub(1), step, run_step, losses });
        }
        Ok(history)
    }

    /// Writes the clip's loss plot, when there is one.
    fn write_plot(&self, history: Option<&LossHistory>) -> Result<(), Error> {
        if let (Some(path), Some(history)) = (&self.video.loss_plot, history) {
            crate::plot::write_png(path, history)?;
        }
        Ok(())
    }

    /// The live preview's address, with `VideoOptions::serve`.
    pub fn preview_url(&self) -> Option<String> {
        self.preview.as_ref().map(Preview::url)
    }

    /// The folder the frames are written to.
    pub fn frames_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The video file the frames are encoded into at the end, if any.
    pub fn encoded(&self) -> Option<&Path> {
        self.encode_to.as_deref()
    }

    /// Whether a frame reads the previous result: independent frames (no temporal term, each
    /// starting from itself) need no flows.
    fn needs_flows(&self) -> bool {
        self.video.temporal_weight > 0.0 || self.video.init != FrameInit::Content || self.video.save_flow.is_some()
    }

    /// Frame `index` (from 1) fitted to the run's size.
    fn content(&self, index: usize) -> Result<Image, Error> {
        let frame = image_io::load_image(&self.frames[index - 1])?;
        Ok(fit_content(&frame, self.options.size, &self.options))
    }

    fn output(&self, index: usize) -> PathBuf {
        self.out_dir.join(frame_output_name(index))
    }

    /// Frame `index`'s run (its content, its start and temporal term from earlier results),
    /// and that content at the run's size.
    fn frame_job(
        &self,
        ctx: &gpu::Context,
        solver: Option<&motion::FlowSolver>,
        index: usize,
        steps: usize,
    ) -> Result<(Job, Image), Error> {
        let content = self.content(index)?;
        let options = Options { iterations: steps, initial_iterations: None, ..self.options.clone() };
        let outputs = Outputs {
            output: Some(self.output(index)),
            depth: self.video.depth,
            loss_log: self.video.loss_log.clone(),
            loss_log_frame: Some(index),
            side_by_side: self.video.side_by_side.as_ref().map(|dir| dir.join(frame_output_name(index))),
            ..Outputs::default()
        };
        let frame = FrameInputs { content: content.clone(), styles: self.styles.clone(), masks: self.masks.clone() };
        if index == 1 || !self.needs_flows() {
            return Ok((Job::for_frame(frame, options, outputs, None, Vec::new())?, content));
        }
        // One warped result and reliability per earlier frame t - j, closest first.
        let mut earlier: Vec<(Image, Vec<f32>)> = Vec::new();
        for &j in self.video.temporal_frames.iter().filter(|&&j| j < index) {
            let result = image_io::load_image(&self.output(index - j))?;
            let result = image_io::resize_exact(&result, content.width, content.height);
            let (forward, backward, reliable) = match solver {
                Some(solver) => {
                    let (forward, backward) = solver.pair(ctx, &self.content(index - j)?, &content)?;
                    (forward, backward, None)
                }
                None => self.read_flows(index - j, index)?,
            };
            let warped = motion::warp_previous(ctx, &result, &backward)?;
            let reliability = match reliable {
                Some(map) => map,
                None => motion::reliability(ctx, &forward, &backward)?,
            };
            if let Some(dir) = &self.video.save_flow {
                save_flows(dir, index - j, index, &forward, &backward, &reliability)?;
            }
            earlier.push((warped, reliability));
        }
        let init = match self.video.init {
            FrameInit::PrevWarped => Some(earlier[0].0.clone()),
            FrameInit::Prev => {
                let previous = image_io::load_image(&self.output(index - 1))?;
                Some(image_io::resize_exact(&previous, content.width, content.height))
            }
            FrameInit::Content => None,
        };
        let weight = self.video.temporal_weight;
        let reliabilities = long_term_weights(earlier.iter().map(|(_, c)| c.clone()).collect());
        let terms = earlier.into_iter().zip(reliabilities);
        let temporal = terms.map(|((warped, _), reliability)| Temporal { warped, reliability, weight });
        let temporal = if weight > 0.0 { temporal.collect() } else { Vec::new() };
        Ok((Job::for_frame(frame, options, outputs, init, temporal)?, content))
    }

    /// The flows between frames `from` and `to` (forward `from -> to`, backward `to -> from`)
    /// and the reliability map when the flow folder has one.
    fn read_flows(&self, from: usize, to: usize) -> Result<(Flow, Flow, Option<Vec<f32>>), Error> {
        let Some(dir) = &self.video.flow_dir else {
            unreachable!("flows are read from a flow folder");
        };
        let (width, height) = (self.size.0 as usize, self.size.1 as usize);
        let read = |name: String| -> Result<Flow, VideoError> {
            let path = dir.join(name);
            let flow = flo::read_flo(&path)?;
            flow.check_size(&path, width, height)?;
            Ok(flow)
        };
        let forward = read(flo::forward_name(from, to))?;
        let backward = read(flo::backward_name(to, from))?;
        let reliable = dir.join(flo::reliable_name(to, from));
        let reliable = if reliable.is_file() { Some(flo::read_reliability(&reliable, width, height)?) } else { None };
        Ok((forward, backward, reliable))
    }

    /// Every flow (and reliability map) the clip will read, read and checked now: a bad file
    /// is reported before any frame is written.
    fn check_flows(&self) -> Result<(), Error> {
        if self.video.flow_dir.is_some() && self.needs_flows() {
            for index in 2..=self.frames.len() {
                for &j in self.video.temporal_frames.iter().filter(|&&j| j < index) {
                    self.read_flows(index - j, index)?;
                }
            }
        }
        Ok(())
    }

    /// What made the frames: the inputs' hashes (first frame, styles, masks, weights) and every
    /// option that shapes them, one `key<TAB>value` per line.
    fn record(&self, first: &Image, weights: &[ConvLayerWeights]) -> Vec<(String, String)> {
        let options = &self.options;
        let fingerprint = checkpointing::fingerprint(first, &self.styles, &self.masks, first, weights, options);
        let video = &self.video;
        let mut entries = fingerprint.entries;
        entries.extend([
            ("input".to_string(), self.input.display().to_string()),
            ("frames".to_string(), self.frames.len().to_string()),
            ("--iterations".to_string(), options.iterations.to_string()),
            ("--frame-iterations".to_string(), video.steps(options, 2).to_string()),
            ("--temporal-weight".to_string(), video.temporal_weight.to_string()),
            ("--init".to_string(), format!("{:?}", video.init)),
            ("--temporal-frames".to_string(), format!("{:?}", video.temporal_frames)),
            ("--flow-dir".to_string(), video.flow_dir.as_ref().map_or("tv-l1".into(), |d| d.display().to_string())),
            ("--output-depth".to_string(), video.depth.to_string()),
        ]);
        entries.into_iter().map(|(k, v)| (k.replace(['\t', '\n'], " "), v.replace(['\t', '\n'], " "))).collect()
    }

    /// Refuses a frames folder whose frames another command made (naming the first difference);
    /// records this command's when it has no record.
    fn check_record(&self, first: &Image, weights: &[ConvLayerWeights]) -> Result<(), Error> {
        let path = self.out_dir.join(RECORD_NAME);
        let entries = self.record(first, weights);
        let text: String = entries.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
        match std::fs::read_to_string(&path) {
            Ok(saved) => {
                let saved: Vec<(&str, &str)> = saved.lines().filter_map(|l| l.split_once('\t')).collect();
                for (key, value) in &entries {
                    let old = saved.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
                    if old != Some(value.as_str()) {
                        let reason = format!(
                            "its frames were made with {key} {}, this run has {value}: give another output folder, or remove it",
                            old.unwrap_or("(none)")
                        );
                        return Err(VideoError::Invalid { path, reason }.into());
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.output(1).exists() {
                    let reason = format!(
                        "holds {} but no record of what made it; give another output folder",
                        frame_output_name(1)
                    );
                    return Err(VideoError::Invalid { path: self.out_dir.clone(), reason }.into());
                }
                std::fs::write(&path, text).map_err(|e| VideoError::Io { path, source: e }.into())
            }
            Err(e) => Err(VideoError::Io { path, source: e }.into()),
        }
    }
}

/// Drops the loss log's rows of frames from `start` on (a stopped frame's, which is computed
/// again); a missing log stays missing.
fn keep_rows_before(log: &Path, start: usize) -> Result<(), Error> {
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(VideoError::Io { path: log.into(), source: e }.into()),
    };
    let kept: String = text
        .lines()
        .enumerate()
        .filter(|(i, line)| {
            *i == 0 || line.split(',').next().and_then(|f| f.parse::<usize>().ok()).is_some_and(|f| f < start)
        })
        .map(|(_, line)| format!("{line}\n"))
        .collect();
    if kept != text {
        image_io::write_atomically(log, kept.as_bytes()).map_err(|e| VideoError::Io { path: log.into(), source: e })?;
    }
    Ok(())
}

/// The long-term terms' reliabilities (Ruder et al. §3.2), closest earlier frame first: each
/// pixel counts for the closest frame where it is reliable, `c_j = max(0, c_j - sum of the
/// closer frames' c_i)`.
pub fn long_term_weights(reliabilities: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let mut closer: Option<Vec<f32>> = None;
    reliabilities
        .into_iter()
        .map(|c| {
            let own: Vec<f32> = match &closer {
                Some(sum) => c.iter().zip(sum).map(|(c, s)| (c - s).max(0.0)).collect(),
                None => c.clone(),
            };
            closer = Some(match closer.take() {
                Some(sum) => sum.iter().zip(&c).map(|(s, c)| s + c).collect(),
                None => c,
            });
            own
        })
        .collect()
}

/// Writes the flows between frames `from` and `to` and the reliability map into `dir` as
/// `--flow-dir` reads them.
fn save_flows(
    dir: &Path,
    from: usize,
    to: usize,
    forward: &Flow,
    backward: &Flow,
    reliability: &[f32],
) -> Result<(), Error> {
    flo::write_flo(&dir.join(flo::forward_name(from, to)), forward)?;
    flo::write_flo(&dir.join(flo::backward_name(to, from)), backward)?;
    let path = dir.join(flo::reliable_name(to, from));
    flo::write_reliability(&path, backward.width, backward.height, reliability)?;
    Ok(())
}

/// The frames' common size fitted to `options.size`, read from their headers; frames of
/// different sizes or an unreadable one: one line naming it.
fn frame_size(frames: &[PathBuf], options: &Options) -> Result<(u32, u32), Error> {
    let dimensions = |path: &PathBuf| {
        image::image_dimensions(path)
            .map_err(|e| VideoError::Invalid { path: path.clone(), reason: format!("not a readable image: {e}") })
    };
    let first = dimensions(&frames[0])?;
    for path in &frames[1..] {
        let size = dimensions(path)?;
        if size != first {
            let reason = format!(
                "{}x{}, where the first frame ({}) is {}x{}: the frames of a clip share one size",
                size.0,
                size.1,
                frames[0].display(),
                first.0,
                first.1
            );
            return Err(VideoError::Invalid { path: path.clone(), reason }.into());
        }
    }
    Ok(image_io::fitted_size(first.0, first.1, options.size))
}

/// The output folder: it may exist (a folder) or be created in an existing folder.
fn check_out_dir(dir: &Path) -> Result<(), Error> {
    let refuse = |reason: &str| Err(VideoError::Invalid { path: dir.into(), reason: reason.into() }.into());
    if dir.is_file() {
        return refuse("is a file: give a folder for the frames");
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() && !parent.is_dir() {
        return refuse("its parent folder does not exist");
    }
    Ok(())
}

/// Creates the output folder if it is missing.
fn create_out_dir(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(|e| VideoError::Io { path: dir.into(), source: e })?;
    }
    Ok(())
}

/// A frame's observer that also adds every step's losses to the clip's loss plot, each frame's
/// steps after the frames before it.
struct PlotRows<'a> {
    inner: &'a mut dyn Observer,
    history: &'a mut LossHistory,
    frame: usize,
    /// Whether the inner observer asked for this step's losses (it hears of them only then).
    inner_losses: bool,
}

impl Observer for PlotRows<'_> {
    fn wants_losses(&mut self, step: usize) -> bool {
        self.inner_losses = self.inner.wants_losses(step);
        true
    }

    fn wants_image(&mut self, step: usize) -> bool {
        self.inner.wants_image(step)
    }

    fn on_step(&mut self, step: usize, losses: Option<&Losses>, image: Option<&Image>) -> Result<(), TransferError> {
        if let Some(losses) = losses {
            let run_step = self.history.rows.len();
            let row = LossRow { scale: self.frame - 1, step, run_step, losses: losses.clone() };
            self.history.rows.push(row);
        }
        self.inner.on_step(step, losses.filter(|_| self.inner_losses), image)
    }

    fn on_fetch(&mut self, event: &crate::weights::FetchEvent) {
        self.inner.on_fetch(event);
    }

    fn on_scale(&mut self, index: usize, count: usize, width: u32, height: u32) {
        self.inner.on_scale(index, count, width, height);
    }

    fn should_stop(&mut self) -> bool {
        self.inner.should_stop()
    }

    fn on_preview(&mut self, url: &str) {
        self.inner.on_preview(url);
    }

    fn on_gpu(&mut self, gpu: &crate::transfer::GpuInfo) -> Result<(), TransferError> {
        self.inner.on_gpu(gpu)
    }

    fn on_warning(&mut self, message: &str) {
        self.inner.on_warning(message);
    }

    fn on_schedule(&mut self, schedule: &str) {
        self.inner.on_schedule(schedule);
    }
}

#[cfg(test)]
mod tests {
    use super::long_term_weights;

    #[test]
    fn long_term_weights_count_each_pixel_for_the_closest_reliable_frame() {
        let c1 = vec![1.0, 0.0, 0.0, 1.0, 0.25];
        let c2 = vec![1.0, 1.0, 0.0, 0.0, 1.0];
        let c4 = vec![0.0, 1.0, 1.0, 1.0, 1.0];
        let weights = long_term_weights(vec![c1.clone(), c2, c4]);
        assert_eq!(weights[0], c1);
        assert_eq!(weights[1], vec![0.0, 1.0, 0.0, 0.0, 0.75]);
        assert_eq!(weights[2], vec![0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(long_term_weights(vec![vec![0.5, 1.0]]), vec![vec![0.5, 1.0]]);
    }
}
