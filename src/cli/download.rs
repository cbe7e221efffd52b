//! The weights download's bar and lines, shared by a run and `stylize weights fetch`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stylize::weights::FetchEvent;

/// A progress bar for weight downloads: size, bytes, rate and ETA (the bar itself only on a
/// terminal; the lines about starts, retries, resumes and waits always).
#[derive(Default)]
pub struct DownloadBar {
    bar: Option<ProgressBar>,
}

impl DownloadBar {
    pub fn event(&mut self, event: &FetchEvent) {
        match event {
            FetchEvent::Started { url, total } => {
                let size = total.map(|t| format!(" ({})", indicatif::HumanBytes(t))).unwrap_or_default();
                eprintln!("stylize: downloading {url}{size}");
                let bar = ProgressBar::with_draw_target(*total, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}")
                        .expect("valid template"),
                );
                self.bar = Some(bar);
            }
            FetchEvent::Progress { done, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*done);
                }
            }
            FetchEvent::Resumed { from, total } => {
                let of = total.map(|t| format!(" of {}", indicatif::HumanBytes(t))).unwrap_or_default();
                self.say(&format!("stylize: resuming the download at {}{of}", indicatif::HumanBytes(*from)));
                if let Some(bar) = &self.bar {
                    // The bytes from before the resume are not part of the rate.
                    bar.set_position(*from);
                    bar.reset_eta();
                }
            }
            FetchEvent::Retrying { attempt, attempts, delay, reason } => {
                let secs = delay.as_secs_f64();
                self.say(&format!("stylize: download: {reason}; try {attempt} of {attempts} in {secs:.0} s"));
            }
            FetchEvent::Restarted { reason } => self.say(&format!("stylize: download starts over: {reason}")),
            FetchEvent::Waiting { lock, holder } => {
                let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                eprintln!(
                    "stylize: another process{who} is downloading the weights (lock {}); waiting for it",
                    lock.display()
                );
            }
            FetchEvent::LockStalled { lock, holder } => {
                let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                eprintln!(
                    "stylize: the other download{who} has made no progress for a while (lock {}); downloading here",
                    lock.display()
                );
            }
            FetchEvent::Reused { path } => {
                eprintln!("stylize: using the weights downloaded meanwhile at {}", path.display())
            }
            FetchEvent::Verifying => {}
            FetchEvent::Done { path } => {
                self.finish();
                eprintln!("stylize: weights verified and saved to {}", path.display());
            }
        }
    }

    /// One line above the bar (or plainly when there is none).
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
