//! The one line a run on a CPU adapter prints, with the run's expected time.

use std::time::Instant;

use stylize::Options;

/// Says once, on a CPU adapter (lavapipe, llvmpipe, WARP, SwiftShader), that the run is on the
/// CPU and slow, with the expected time of the whole run from the speed of the first steps.
pub struct CpuNotice {
    adapter: String,
    created: Instant,
    /// When the first step ended (it includes pipeline creation, so it is not timed).
    first_step_end: Option<Instant>,
    iterations: usize,
    /// The run's work in first-scale steps: Σ over scales of (side / first side)² × iterations.
    work_in_steps: f64,
    said: bool,
}

impl CpuNotice {
    /// Steps timed before the estimate, unless they take longer than `ESTIMATE_AFTER` in all.
    const TIMED_STEPS: usize = 3;
    const ESTIMATE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn new(adapter: &str, options: &Options) -> Self {
        let sides = stylize::scale_sizes(options.size, options.scales.max(1), options.min_size);
        let first = f64::from(sides[0].max(1));
        let work = sides
            .iter()
            .enumerate()
            .map(|(i, &s)| (f64::from(s) / first).powi(2) * options.scale_iterations(i) as f64)
            .sum::<f64>();
        CpuNotice {
            adapter: adapter.to_string(),
            created: Instant::now(),
            first_step_end: None,
            iterations: options.scale_iterations(0),
            work_in_steps: work,
            said: false,
        }
    }

    /// The line to print after `step` of the first scale, once.
    pub fn on_step(&mut self, scale: usize, step: usize) -> Option<String> {
        if self.said || scale > 0 {
            return None;
        }
        let now = Instant::now();
        let per_step = match self.first_step_end {
            None if self.iterations > 1 => {
                self.first_step_end = Some(now);
                return None;
            }
            // A single step: its time, warm-up included, is all there is.
            None => now.duration_since(self.created).as_secs_f64(),
            Some(first) => {
                let timed = now.duration_since(first);
                if step < Self::TIMED_STEPS && timed < Self::ESTIMATE_AFTER && step + 1 < self.iterations {
                    return None;
                }
                timed.as_secs_f64() / step as f64
            }
        };
        self.said = true;
        let done = now.duration_since(self.created).as_secs_f64();
        let expected = done + per_step * (self.work_in_steps - (step + 1) as f64).max(0.0);
        Some(format!(
            "stylize: running on the CPU ({}, no GPU in use), which is slow: {per_step:.2} s per step, \
             about {} for the whole run",
            self.adapter,
            human_duration(expected)
        ))
    }
}

/// `42 s`, `3 min 20 s`, `2 h 05 min`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}
