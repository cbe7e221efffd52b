//! `stylize video`: a clip frame by frame without flicker (`pipeline::video`). Every flag of a
//! run applies to each frame; --input, the temporal term's flags and the flow folder are its own.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use stylize::pipeline::video::{DEFAULT_TEMPORAL_WEIGHT, FrameInit, Video, VideoObserver, VideoOptions};
use stylize::{Observer, Options};

use super::progress::{CliProgress, Interrupt};
use super::run::RunArgs;
use super::values::non_negative_f64;

#[derive(Args, Debug)]
pub struct VideoArgs {
    /// The clip: a folder of frames (image files, in the natural order of their names), a
    /// printf pattern such as clip/frame_%04d.png (numbered from 0 to 4 on, as ffmpeg reads
    /// them), or a video file (.mp4, .mov, .mkv, .webm, ...) decoded by ffmpeg, which must be on
    /// PATH, into the frames folder's input/.
    #[arg(long, value_name = "PATH", required = true)]
    pub input: Option<PathBuf>,

    /// Weight of the temporal term W * mean(c (x - w)^2), which holds each frame to the previous
    /// result warped along the flow (w) where the flow is reliable (c); 0 stylizes the frames
    /// independently. Raise it if the clip still flickers, lower it if the style washes out.
    #[arg(long, value_name = "W", default_value_t = DEFAULT_TEMPORAL_WEIGHT, value_parser = non_negative_f64)]
    pub temporal_weight: f64,

    /// Steps of each frame after the first (--iterations counts the first's); default: half of
    /// --iterations.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_iterations: Option<u64>,

    /// Read the clip's optical flows instead of computing them (TV-L1 on the GPU, IPOL 2013):
    /// a folder of Middlebury .flo files named as artistic-videos
    /// names them (forward_{t-1}_{t}.flo, backward_{t}_{t-1}.flo; frames numbered from 1), at
    /// the frames' size after --size, and optionally reliable_{t}_{t-1}.pgm reliability maps
    /// (white: reliable); DeepFlow, RAFT or any tool that writes .flo will do.
    #[arg(long, value_name = "DIR")]
    pub flow_dir: Option<PathBuf>,

    /// Also write the flows and reliability maps the clip used into DIR, in --flow-dir's layout
    /// (created if missing), e.g. to inspect them or to rerun with other options without
    /// computing them again.
    #[arg(long, value_name = "DIR")]
    pub save_flow: Option<PathBuf>,

    /// The earlier frames each frame is held to, as distances: 1 (the previous frame, the
    /// default) or a list starting with 1, e.g. 1,2,4: Ruder et al.'s long-term consistency, where
    /// each pixel counts for the closest of them whose flow is reliable there (a region hidden in
    /// the previous frame takes its colours back from an earlier one). Each distance costs a
    /// flow pair per frame.
    #[arg(long, value_name = "1[,J...]", value_delimiter = ',', default_value = "1")]
    pub temporal_frames: Vec<usize>,

    /// Frame rate of an encoded -o (clip.mp4, .webm, .mkv, .mov, .gif): e.g. 24, 29.97 or
    /// 30000/1001; default: the input video's, or 25 for a folder of frames.
    #[arg(long, value_name = "RATE")]
    pub fps: Option<String>,

    /// ffmpeg output options for an encoded -o, given after stylize's own so that they win:
    /// e.g. "-c:v libx264 -crf 18" (higher quality), or "-c:v ffv1 -pix_fmt bgr0" (lossless
    /// .mkv). Split at spaces; they do not change the frames, so a rerun may change them.
    #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
    pub encode_options: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// The flags of a run that a clip does not take (yet), with why.
fn refused_flags(run: &RunArgs) -> Option<&'static str> {
    [
        (
            run.checkpoint.is_some() || run.resume.is_some(),
            "--checkpoint/--resume (a rerun continues at the first frame not written)",
        ),
        (run.save_every.is_some(), "--save-every"),
        (run.content.is_some(), "--content (give the clip with --input)"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
}

/// Runs the clip; `Some(code)` when a signal stopped it.
pub fn run(args: VideoArgs, matches: &clap::ArgMatches) -> Result<Option<i32>> {
    if let Some(flag) = refused_flags(&args.run) {
        anyhow::bail!("stylize video does not take {flag}");
    }
    let (options, _) = super::run::options(&args.run, matches);
    // Without the temporal term the frames are independent: each starts from itself unless
    // --init says otherwise.
    let explicit_init = matches.value_source("init") == Some(clap::parser::ValueSource::CommandLine);
    let init_flag = if args.temporal_weight == 0.0 && !explicit_init { "content" } else { args.run.init.as_str() };
    let init = match init_flag {
        "prev-warped" => FrameInit::PrevWarped,
        "prev" => FrameInit::Prev,
        "content" => FrameInit::Content,
        other => anyhow::bail!("stylize video: --init takes prev-warped, prev or content, not {other}"),
    };
    let options = Options { init: stylize::Init::Content, ..options };
    let video = VideoOptions {
        temporal_weight: args.temporal_weight,
        init,
        frame_iterations: args.frame_iterations.map(|n| n as usize),
        flow_dir: args.flow_dir.clone(),
        save_flow: args.save_flow.clone(),
        temporal_frames: args.temporal_frames.clone(),
        loss_log: args.run.loss_log.clone(),
        loss_plot: args.run.loss_plot.clone(),
        side_by_side: args.run.side_by_side.clone(),
        fps: args.fps.clone(),
        encode_options: args.encode_options.iter().flat_map(|o| o.split_whitespace()).map(String::from).collect(),
        serve: args.run.serve.clone().map(|addr| (addr, args.run.serve_public)),
        depth: args.run.output_depth,
    };
    let input = args.input.clone().expect("required");
    let clip = Video::new(&input, &args.run.style, &args.run.output, options.clone(), video)?;
    let (width, height) = clip.size();
    if let Some(url) = clip.preview_url() {
        eprintln!("stylize: live preview at {url}");
    }
    let out_dir = clip.frames_dir().to_path_buf();
    let encoded = clip.encoded().map(|p| format!(" and encoded {}", p.display())).unwrap_or_default();
    let mut progress = ClipProgress::new(options, args.run.print_every);
    // Said when the first frame starts (a video file's frames are counted once decoded): an
    // error before (weights, another command's frames) stays the only line.
    progress.header = Some(format!(
        "stylize: {{count}} frames of {width}x{height} from {} into {}/",
        input.display(),
        out_dir.display()
    ));
    let finished = clip.run(&mut progress);
    if let Some(frame) = progress.frame.as_mut() {
        frame.finish();
    }
    let finished = finished?;
    let seconds = progress.started.elapsed().as_secs_f64();
    if let Some(code) = progress.interrupt.as_ref().and_then(Interrupt::exit_code) {
        eprintln!(
            "stylize: interrupted; {} of {} frames are in {}/ (rerun the same command to continue)",
            progress.done_before + finished.computed,
            finished.frames,
            out_dir.display()
        );
        return Ok(Some(code));
    }
    eprintln!(
        "stylize: wrote {} frames to {}/{encoded} ({} computed in {seconds:.1} s)",
        finished.frames,
        out_dir.display(),
        finished.computed
    );
    Ok(None)
}

/// A line per frame with the clip's ETA, and the run's progress bar for each frame's steps;
/// the signals are installed once, by the first frame.
struct ClipProgress {
    options: Options,
    print_every: Option<usize>,
    frame: Option<CliProgress>,
    interrupt: Option<Interrupt>,
    started: Instant,
    /// Frames already written by an earlier run.
    done_before: usize,
    /// Steps done by this run and steps it has left, for the ETA.
    steps_done: usize,
    steps_this_frame: usize,
    /// The clip's first line, not yet said.
    header: Option<String>,
}

impl ClipProgress {
    fn new(options: Options, print_every: Option<usize>) -> Self {
        Self {
            options,
            print_every,
            frame: None,
            interrupt: None,
            started: Instant::now(),
            done_before: 0,
            steps_done: 0,
            steps_this_frame: 0,
            header: None,
        }
    }
}

impl VideoObserver for ClipProgress {
    fn on_frame(&mut self, index: usize, count: usize, steps: usize, first: usize) {
        if let Some(mut previous) = self.frame.take() {
            previous.finish();
            self.interrupt = self.interrupt.take().or(previous.interrupt);
            self.steps_done += self.steps_this_frame;
        }
        self.done_before = first - 1;
        if let Some(header) = self.header.take() {
            eprintln!("{}", header.replace("{count}", &count.to_string()));
        }
        let left = |steps_per_frame: usize| (count - index) * steps_per_frame;
        let eta = match self.steps_done {
            0 => String::new(),
            done => {
                let per_step = self.started.elapsed().as_secs_f64() / done as f64;
                format!(", about {:.0} s left", per_step * (steps + left(steps)) as f64)
            }
        };
        eprintln!("stylize: frame {index}/{count} ({steps} steps{eta})");
        let options = Options { iterations: steps, ..self.options.clone() };
        let mut frame = CliProgress::new(&options, self.print_every);
        frame.interrupt = self.interrupt.clone();
        frame.quiet = self.steps_done > 0 || index > first;
        self.frame = Some(frame);
        self.steps_this_frame = steps;
    }

    fn frame_observer(&mut self) -> &mut dyn Observer {
        if self.frame.is_none() {
            self.frame = Some(CliProgress::new(&self.options, self.print_every));
        }
        let frame = self.frame.as_mut().expect("a frame's progress");
        if self.interrupt.is_none() {
            self.interrupt = frame.interrupt.clone();
        }
        frame
    }
}
