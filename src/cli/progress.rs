//! The run's terminal side, as the library's `Observer`: the progress bar, the periodic loss
//! lines, the notices (CPU adapter, precision warnings, preview URL) and Ctrl-C/SIGTERM.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stylize::image_io::Image;
use stylize::weights::FetchEvent;
use stylize::{Losses, Observer, Options, TransferError};

use super::download::DownloadBar;
use super::notice::CpuNotice;

/// SIGINT and SIGTERM: the first asks the run to stop after the current step (the image so far is
/// saved); a second one exits at once.
#[derive(Clone)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    sigint: Arc<AtomicBool>,
    sigterm: Arc<AtomicBool>,
}

impl Interrupt {
    pub fn install() -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let interrupt = Self { stop: Arc::default(), sigint: Arc::default(), sigterm: Arc::default() };
        for (signal, seen, code) in [(SIGINT, &interrupt.sigint, 130), (SIGTERM, &interrupt.sigterm, 143)] {
            // Registered first, so it sees the flag as the earlier signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, code, interrupt.stop.clone())?;
            signal_hook::flag::register(signal, interrupt.stop.clone())?;
            signal_hook::flag::register(signal, seen.clone())?;
        }
        Ok(interrupt)
    }

    pub fn requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// 130 after SIGINT, 143 after SIGTERM, as shells report them.
    pub fn exit_code(&self) -> Option<i32> {
        if self.sigint.load(Ordering::SeqCst) {
            Some(130)
        } else if self.sigterm.load(Ordering::SeqCst) {
            Some(143)
        } else {
            None
        }
    }
}

/// Progress bar, periodic loss lines, the download bar, the CPU notice and the signals.
pub struct CliProgress {
    /// Installed once the GPU is open (a Ctrl-C before that ends the process at once).
    pub interrupt: Option<Interrupt>,
    bar: ProgressBar,
    interactive: bool,
    print_every: usize,
    iterations: usize,
    tv: bool,
    options: Options,
    download: DownloadBar,
    adapter: String,
    scale: usize,
    /// When the GPU was opened (the run's time in the final line counts from there).
    pub started: Option<Instant>,
    pub last_losses: Option<Losses>,
    /// On a CPU adapter: the one line saying so, with the expected time of the run.
    cpu: Option<CpuNotice>,
    /// A clip's later frames: the notices (CPU adapter, precision) were given with the first.
    pub quiet: bool,
}

impl CliProgress {
    /// `print_every` as given (`--print-every`); everything else from the run's options.
    pub fn new(options: &Options, print_every: Option<usize>) -> Self {
        let interactive = std::io::stderr().is_terminal();
        let bar = if interactive {
            let bar = ProgressBar::with_draw_target(Some(options.iterations as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}")
                    .expect("valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            interrupt: None,
            bar,
            interactive,
            print_every: match print_every {
                Some(n) => n,
                None if interactive => 50,
                None => 0,
            },
            iterations: options.iterations,
            tv: options.tv_weight > 0.0,
            options: options.clone(),
            download: DownloadBar::default(),
            adapter: String::new(),
            scale: 0,
            started: None,
            last_losses: None,
            cpu: None,
            quiet: false,
        }
    }

    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
    }

    /// A line above the bar, or plainly when there is none.
    pub fn say(&self, line: &str) {
        if self.interactive { self.bar.println(line) } else { eprintln!("{line}") }
    }
}

impl Observer for CliProgress {
    fn should_stop(&mut self) -> bool {
        self.interrupt.as_ref().is_some_and(Interrupt::requested)
    }

    fn on_preview(&mut self, url: &str) {
        eprintln!("stylize: live preview at {url}");
    }

    fn on_fetch(&mut self, event: &FetchEvent) {
        self.download.event(event);
    }

    fn on_gpu(&mut self, gpu: &stylize::GpuInfo) -> Result<(), TransferError> {
        self.download.finish();
        // Once per process: a clip's later frames keep the first frame's (a second
        // registration would exit on the first signal).
        if self.interrupt.is_none() {
            let interrupt = Interrupt::install().map_err(|e| TransferError::Observer(format!("signals: {e}")))?;
            self.interrupt = Some(interrupt);
        }
        if let Some(warning) = gpu.precision_warning.as_ref().filter(|_| !self.quiet) {
            eprintln!("stylize: warning: {warning}");
        }
        self.adapter = gpu.adapter.clone();
        self.cpu = (gpu.is_cpu && !self.quiet).then(|| CpuNotice::new(&gpu.adapter, &self.options));
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_warning(&mut self, message: &str) {
        eprintln!("stylize: warning: {message}");
    }

    fn on_scale(&mut self, index: usize, count: usize, width: u32, height: u32) {
        self.scale = index;
        self.iterations = self.options.scale_iterations(index);
        let line = if count > 1 {
            format!("stylize: scale {}/{count}: {width}x{height} on {}", index + 1, self.adapter)
        } else {
            format!("stylize: {width}x{height} on {}", self.adapter)
        };
        if self.interactive {
            self.bar.reset();
            self.bar.set_length(self.iterations as u64);
            self.bar.println(line);
        } else if count > 1 {
            eprintln!("{line}");
        }
    }

    fn on_schedule(&mut self, schedule: &str) {
        let line = format!("stylize: {schedule}");
        if self.interactive { self.bar.println(line) } else { eprintln!("{line}") }
    }

    fn wants_losses(&mut self, step: usize) -> bool {
        step + 1 == self.iterations || (self.print_every > 0 && step.is_multiple_of(self.print_every))
    }

    fn on_step(&mut self, step: usize, losses: Option<&Losses>, _image: Option<&Image>) -> Result<(), TransferError> {
        self.bar.set_position(step as u64 + 1);
        if let Some(line) = self.cpu.as_mut().and_then(|c| c.on_step(self.scale, step)) {
            self.say(&line);
        }
        if let Some(l) = losses {
            if self.print_every > 0 && step.is_multiple_of(self.print_every) {
                let tv = if self.tv { format!("  tv {:.4e}", l.tv) } else { String::new() };
                let temporal = if l.temporal > 0.0 { format!("  temporal {:.4e}", l.temporal) } else { String::new() };
                let line = format!(
                    "step {step:>5}  content {:.4e}  style {:.4e}{tv}{temporal}  total {:.4e}",
                    l.content, l.style, l.total
                );
                if self.interactive {
                    self.bar.set_message(line);
                } else {
                    eprintln!("{line}");
                }
            }
            self.last_losses = Some(l.clone());
        }
        Ok(())
    }
}
