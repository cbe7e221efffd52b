//! Exact resume: `--checkpoint` then `--resume` writes the same bytes as a run never interrupted
//! (Adam, L-BFGS, the iterate average, several scales, SIGINT), and a checkpoint from other
//! inputs or options, or a damaged one, is refused in one line.

mod common;
use common::{random_png, tiny_weights};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use stylize::rng::Rng;
use stylize::test_support::gpu_or_skip;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        random_png(&dir.path().join("content.png"), 24, 20, 1);
        random_png(&dir.path().join("style.png"), 17, 13, 2);
        random_png(&dir.path().join("other.png"), 24, 20, 3);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    /// A 16-bit run (so that a difference of one f32 ulp in many pixels shows in the bytes) on
    /// the content and style images with the tiny weights, `extra` flags after.
    fn command<S: AsRef<std::ffi::OsStr>>(&self, output: &str, extra: &[S]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stylize"));
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir()).env_remove("STYLIZE_WEIGHTS");
        cmd.arg("--content").arg(self.path("content.png"));
        cmd.arg("--style").arg(self.path("style.png"));
        cmd.arg("--weights").arg(tiny_weights());
        cmd.args(["--output-depth", "16"]);
        cmd.arg("--output").arg(self.path(output));
        cmd.args(extra);
        cmd
    }

    fn run<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(&self, output: &str, extra: &[S]) -> Output {
        let out = self.command(output, extra).output().unwrap();
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// A run that must fail; returns its one line of stderr.
    fn refused(&self, output: &str, extra: &[&str]) -> String {
        let out = self.command(output, extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(!self.path(output).exists(), "a refused run wrote {output}");
        lines[0].to_string()
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

/// `steps` straight, and `first` steps with a checkpoint then resumed to `steps`: same bytes.
/// Also checks that restarting from the saved image (`--init`) does not give them, so that the
/// comparison can tell a resume that lost the optimizer's state.
fn resume_is_exact(test: &str, flags: &[&str], first: usize, steps: usize) {
    if gpu_or_skip(test).is_none() {
        return;
    }
    let f = Fixture::new();
    let (ckpt, first_s, steps_s) = (f.arg("run.ckpt"), first.to_string(), steps.to_string());
    let with = |more: &[&str]| -> Vec<String> { flags.iter().chain(more).map(|s| s.to_string()).collect() };
    f.run("straight.png", &with(&["--iterations", &steps_s]));
    f.run("first.png", &with(&["--iterations", &first_s, "--checkpoint", &ckpt]));
    let out = f.run("resumed.png", &with(&["--iterations", &steps_s, "--resume", &ckpt]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("after {steps} steps ({} after the resume)", steps - first)), "{stderr}");
    assert!(f.bytes("straight.png") == f.bytes("resumed.png"), "{test}: the resumed run wrote other bytes");
    f.run("init.png", &with(&["--iterations", &(steps - first).to_string(), "--init", &f.arg("first.png")]));
    assert!(f.bytes("straight.png") != f.bytes("init.png"), "{test}: --init alone already matched");
}

#[test]
fn adam_three_steps_then_resumed_to_six_writes_the_same_bytes() {
    resume_is_exact("adam_three_steps_then_resumed_to_six_writes_the_same_bytes", &["--learning-rate", "0.1"], 3, 6);
}

#[test]
fn lbfgs_resumed_writes_the_same_bytes_with_a_full_history() {
    // A history of 2 is full after 3 steps: the resumed run evicts and reuses slots.
    let flags = ["--optimizer", "lbfgs", "--learning-rate", "1", "--lbfgs-history", "2"];
    resume_is_exact("lbfgs_resumed_writes_the_same_bytes_with_a_full_history", &flags, 4, 8);
}

#[test]
fn the_iterate_average_is_resumed_too() {
    let flags = ["--learning-rate", "0.1", "--average-decay", "0.5"];
    resume_is_exact("the_iterate_average_is_resumed_too", &flags, 3, 6);
}

/// Stops the library's run after a given number of steps over all scales.
struct StopAfter {
    steps: usize,
    seen: usize,
}

impl stylize::Observer for StopAfter {
    fn on_step(
        &mut self,
        _: usize,
        _: Option<&stylize::Losses>,
        _: Option<&stylize::Image>,
    ) -> Result<(), stylize::TransferError> {
        self.seen += 1;
        Ok(())
    }
    fn should_stop(&mut self) -> bool {
        self.seen >= self.steps
    }
}

fn bits(image: &stylize::Image) -> Vec<u32> {
    image.data.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn library_multiscale_resumed_in_either_scale_gives_the_same_result() {
    if gpu_or_skip("library_multiscale_resumed_in_either_scale_gives_the_same_result").is_none() {
        return;
    }
    let f = Fixture::new();
    let options = stylize::Options {
        weights: Some(tiny_weights().to_str().unwrap().to_string()),
        iterations: 6,
        learning_rate: 0.1,
        scales: 2,
        size: 24,
        // Scales of 20x17 and 24x20 (the smallest the network's five pools take).
        min_size: Some(20),
        ..stylize::Options::default()
    };
    let (content, style) = (f.path("content.png"), f.path("style.png"));
    let run = |options: &stylize::Options, stop: usize| {
        stylize::apply_style_transfer_with(&content, &style, options, &mut StopAfter { steps: stop, seen: 0 })
            .unwrap()
            .target
    };
    let straight = run(&options, usize::MAX);
    // Stopped at step 3 of the first scale, and at step 2 of the second.
    for (stop, name) in [(3, "first.ckpt"), (8, "second.ckpt")] {
        let ckpt = f.path(name);
        let stopped = run(&stylize::Options { checkpoint: Some(ckpt.clone()), ..options.clone() }, stop);
        let saved = stylize::checkpoint::Checkpoint::load(&ckpt).unwrap();
        assert_eq!((saved.scale, saved.state.steps_done, saved.total_steps), (stop / 6, stop as u64 % 6, stop as u64));
        assert_ne!(bits(&stopped), bits(&straight));
        let resumed = run(&stylize::Options { resume: Some(ckpt), ..options.clone() }, usize::MAX);
        assert!(bits(&resumed) == bits(&straight), "resumed from {name}: another result");
    }
}

#[test]
fn a_checkpoint_from_other_inputs_or_options_is_refused_naming_the_difference() {
    if gpu_or_skip("a_checkpoint_from_other_inputs_or_options_is_refused_naming_the_difference").is_none() {
        return;
    }
    let f = Fixture::new();
    let ckpt = f.arg("run.ckpt");
    f.run("first.png", &["--iterations", "2", "--checkpoint", &ckpt]);
    let line = f.refused("out.png", &["--iterations", "4", "--resume", &ckpt, "--style-weight", "1e5"]);
    assert!(line.ends_with("was made with --style-weight 1000000, this run has 100000"), "{line}");
    assert!(line.contains("run.ckpt"), "{line}");
    let line = f.refused("out.png", &["--iterations", "4", "--resume", &ckpt, "--optimizer", "lbfgs"]);
    assert!(line.contains("--optimizer adam, this run has lbfgs"), "{line}");
    // Same flags, another content file.
    std::fs::copy(f.path("other.png"), f.path("content.png")).unwrap();
    let line = f.refused("out.png", &["--iterations", "4", "--resume", &ckpt]);
    assert!(line.contains("the content image differs"), "{line}");
}

#[test]
fn a_damaged_or_truncated_checkpoint_is_refused_and_not_used() {
    if gpu_or_skip("a_damaged_or_truncated_checkpoint_is_refused_and_not_used").is_none() {
        return;
    }
    let f = Fixture::new();
    let ckpt = f.arg("run.ckpt");
    f.run("first.png", &["--iterations", "2", "--checkpoint", &ckpt]);
    let good = f.bytes("run.ckpt");
    let resume = ["--iterations", "4", "--resume", &ckpt];
    std::fs::write(&ckpt, &good[..good.len() / 2]).unwrap();
    let line = f.refused("out.png", &resume);
    assert!(line.contains("run.ckpt") && line.contains("truncated"), "{line}");
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 1;
    std::fs::write(&ckpt, &flipped).unwrap();
    let line = f.refused("out.png", &resume);
    assert!(line.contains("checksum mismatch"), "{line}");
    std::fs::write(&ckpt, b"P6\n1 1\n255\n\0\0\0").unwrap();
    let line = f.refused("out.png", &resume);
    assert!(line.contains("not a stylize checkpoint"), "{line}");
    let line = f.refused("out.png", &["--iterations", "4", "--resume", &f.arg("missing.ckpt")]);
    assert!(line.contains("missing.ckpt") && line.contains("no such file"), "{line}");
    // The intact file still resumes, and a total below its step is refused.
    std::fs::write(&ckpt, &good).unwrap();
    let line = f.refused("out.png", &["--iterations", "1", "--resume", &ckpt]);
    assert!(line.contains("at step 2 of scale 1, beyond --iterations 1"), "{line}");
    f.run("out.png", &resume);
}

#[test]
fn save_every_writes_the_checkpoint_as_it_goes() {
    if gpu_or_skip("save_every_writes_the_checkpoint_as_it_goes").is_none() {
        return;
    }
    let f = Fixture::new();
    let ckpt = f.arg("run.ckpt");
    f.run("out.png", &["--iterations", "5", "--save-every", "2", "--checkpoint", &ckpt]);
    let saved = stylize::checkpoint::Checkpoint::load(&f.path("run.ckpt")).unwrap();
    assert_eq!(saved.state.steps_done, 5, "the last checkpoint is the end of the run");
    let names: Vec<_> = std::fs::read_dir(f.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp-")), "temporary files left: {names:?}");
}

/// Interrupts a two-scale run with SIGINT once `ready` appears on stderr; returns the step count
/// of its "interrupted after N of M steps" line.
fn interrupt_when(f: &Fixture, flags: &[&str], ready: &str) -> usize {
    let mut child = f.command("out.png", flags).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with(&ready) {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("the run never got there");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no exit after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{lines:?}");
    let last = lines.last().unwrap();
    assert!(last.contains("--resume") && last.contains("run.ckpt"), "{last}");
    let after = last.split("interrupted after ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_sigint_run_resumed_to_the_end_equals_a_straight_run_in_either_scale() {
    if gpu_or_skip("a_sigint_run_resumed_to_the_end_equals_a_straight_run_in_either_scale").is_none() {
        return;
    }
    let f = Fixture::new();
    let iterations = 30;
    let ckpt = f.arg("run.ckpt");
    let base = ["--learning-rate", "0.05", "--scales", "2", "--size", "24", "--min-size", "20", "--iterations", "30"];
    f.run("straight.png", &base);
    let mut scales_seen = Vec::new();
    // After the first step line (in the first scale), and after the second scale's first step.
    for ready in ["step", "stylize: scale 2/2"] {
        let flags = [&base[..], &["--print-every", "1", "--checkpoint", &ckpt]].concat();
        let steps = interrupt_when(&f, &flags, ready);
        assert!(steps < 2 * iterations, "the run ended before the signal ({steps} steps)");
        scales_seen.push(steps / iterations);
        f.run("resumed.png", &[&base[..], &["--resume", &ckpt]].concat());
        assert!(f.bytes("straight.png") == f.bytes("resumed.png"), "resumed after {steps} steps: other bytes");
    }
    assert_eq!(scales_seen, [0, 1], "interrupted in these scales (0 = first)");
}

#[test]
fn a_checkpoint_on_an_output_path_is_a_one_line_error() {
    let f = Fixture::new();
    let line = f.refused("out.png", &["--checkpoint", &f.arg("out.png")]);
    assert!(line.contains("is also an output"), "{line}");
}

#[test]
fn a_non_finite_state_is_never_checkpointed() {
    if gpu_or_skip("a_non_finite_state_is_never_checkpointed").is_none() {
        return;
    }
    let f = Fixture::new();
    let ckpt = f.arg("run.ckpt");
    // A style weight beyond f32's range makes the first gradient infinite (see tests/hardening.rs).
    let out = f
        .command(
            "out.png",
            &["--iterations", "40", "--style-weight", "1e300", "--save-every", "1", "--checkpoint", &ckpt],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!f.path("run.ckpt").exists(), "a checkpoint of a non-finite state was written");
}

#[test]
fn help_documents_checkpoint_and_resume() {
    let out = Command::new(env!("CARGO_BIN_EXE_stylize")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--checkpoint <PATH>") && help.contains("--resume <PATH>"), "{help}");
}

/// `state()` of a transfer restored from a state is that state, bit for bit (every field,
/// host-side counters included), for both optimizers with the average and a used history.
#[test]
fn a_restored_state_reads_back_unchanged() {
    let Some(ctx) = gpu_or_skip("a_restored_state_reads_back_unchanged") else {
        return;
    };
    let weights = stylize::load_network_weights(Default::default(), tiny_weights().to_str(), 0, &mut |_| {}).unwrap();
    let mut rng = Rng::new(9);
    let image = |rng: &mut Rng| stylize::Image::new(20, 18, (0..3 * 360).map(|_| rng.uniform() as f32).collect());
    let (content, style) = (image(&mut rng), image(&mut rng));
    let mut ctx = Some(ctx);
    for optimizer in [stylize::Optimizer::Adam, stylize::Optimizer::Lbfgs] {
        let options = stylize::Options {
            optimizer,
            learning_rate: 0.5,
            lbfgs_history: 2,
            average_decay: 0.7,
            ..stylize::Options::default()
        };
        let build = |ctx| stylize::StyleTransfer::new(ctx, &weights, &content, &style, &content, &options).unwrap();
        let mut first = build(ctx.take().unwrap());
        for _ in 0..4 {
            first.step();
        }
        let saved = first.state().unwrap();
        let mut second = build(first.into_context());
        second.restore_state(&saved).unwrap();
        let read = second.state().unwrap();
        // Debug output shows every f32 and f64 with its exact value (NaN payloads aside).
        assert_eq!(format!("{read:?}"), format!("{saved:?}"), "{optimizer:?}");
        assert_eq!(read.steps_done, 4);
        ctx = Some(second.into_context());
    }
}
