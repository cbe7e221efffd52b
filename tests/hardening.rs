//! A multi-minute run must never lose the user's work: real signals on a running process,
//! resuming from a saved image, and a run whose loss becomes non-finite.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stylize::test_support::gpu_or_skip;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn command(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stylize"));
    cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .arg("--content")
        .arg(fixture("examples/astronaut.png"))
        .arg("--style")
        .arg(fixture("examples/coffee.png"))
        .arg("--weights")
        .arg(fixture("tests/fixtures/vgg19_tiny_legacy.pth"))
        .args(["--size", "32"])
        .arg("--output")
        .arg(out)
        .args(extra);
    cmd
}

/// Starts a long run and returns once it has printed its first loss line.
fn start_long_run(out: &Path) -> (Child, std::thread::JoinHandle<Vec<String>>) {
    let mut child =
        command(out, &["--iterations", "1000000", "--print-every", "1"]).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with("step") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("the run never printed a step");
    (child, reader)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupted_run_saves_the_image(signal_name: &str, expected_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let (mut child, reader) = start_long_run(&out);
    signal(&child, signal_name);
    let status = wait_within(&mut child, Duration::from_secs(20));
    let lines = reader.join().unwrap();
    assert_eq!(status.code(), Some(expected_code), "{lines:?}");
    let last = lines.last().unwrap();
    assert!(last.contains("interrupted") && last.contains("out.png"), "{last}");
    let image = image::open(&out).unwrap();
    assert_eq!((image.width(), image.height()), (32, 32));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn sigint_finishes_the_step_saves_the_image_and_exits_130() {
    if gpu_or_skip("sigint_finishes_the_step_saves_the_image_and_exits_130").is_some() {
        interrupted_run_saves_the_image("INT", 130);
    }
}

#[test]
fn sigterm_finishes_the_step_saves_the_image_and_exits_143() {
    if gpu_or_skip("sigterm_finishes_the_step_saves_the_image_and_exits_143").is_some() {
        interrupted_run_saves_the_image("TERM", 143);
    }
}

#[test]
fn a_second_sigint_exits_at_once() {
    if gpu_or_skip("a_second_sigint_exits_at_once").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let (mut child, reader) = start_long_run(&out);
    signal(&child, "INT");
    signal(&child, "INT");
    let status = wait_within(&mut child, Duration::from_secs(20));
    reader.join().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn init_resumes_from_a_saved_image() {
    if gpu_or_skip("init_resumes_from_a_saved_image").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.png");
    let status = command(&first, &["--iterations", "3", "--learning-rate", "0.1"]).status().unwrap();
    assert!(status.success());
    let resumed = dir.path().join("resumed.png");
    let log = dir.path().join("log.csv");
    let status = command(&resumed, &["--iterations", "1", "--init", first.to_str().unwrap(), "--loss-log"])
        .arg(&log)
        .status()
        .unwrap();
    assert!(status.success());
    // Starting from the earlier result, the content loss of step 0 is no longer zero.
    let csv = std::fs::read_to_string(&log).unwrap();
    let content: f64 = csv.lines().nth(1).unwrap().split(',').nth(1).unwrap().parse().unwrap();
    assert!(content > 0.0, "{csv}");
    let random_log = dir.path().join("random.csv");
    let status = command(&dir.path().join("random.png"), &["--iterations", "1", "--init", "random", "--loss-log"])
        .arg(&random_log)
        .status()
        .unwrap();
    assert!(status.success());
    let csv = std::fs::read_to_string(&random_log).unwrap();
    let random_content: f64 = csv.lines().nth(1).unwrap().split(',').nth(1).unwrap().parse().unwrap();
    assert!(random_content > content, "noise is farther from the content than a resumed result");
}

#[test]
fn a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_finite_image() {
    if gpu_or_skip("a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_finite_image").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    // A style weight beyond f32's range makes the first gradient infinite; Adam turns it into NaN.
    let output =
        command(&out, &["--iterations", "40", "--style-weight", "1e300", "--print-every", "0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // The one line besides the CPU adapter's notice (lavapipe).
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty() && !l.contains("running on the CPU")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("at step") && lines[0].contains("is kept"), "{stderr}");
    let image = image::open(&out).expect("the last finite image is written");
    assert_eq!((image.width(), image.height()), (32, 32));
}

/// With `--average-decay` the average takes the non-finite steps in: it is dropped, and what is
/// written is the last finite image (here the initial one, the content at 32 px), not NaN.
#[test]
fn a_non_finite_loss_with_an_iterate_average_writes_the_last_finite_image() {
    let test = "a_non_finite_loss_with_an_iterate_average_writes_the_last_finite_image";
    if gpu_or_skip(test).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (kept, reference) = (dir.path().join("kept.png"), dir.path().join("content.png"));
    let args = ["--iterations", "40", "--style-weight", "1e300", "--print-every", "0", "--average-decay", "0.9"];
    let output = command(&kept, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not the iterate average"), "{stderr}");
    // Zero steps write the initial image as it is.
    let status = command(&reference, &["--iterations", "0"]).status().unwrap();
    assert!(status.success());
    let (a, b) = (image::open(&kept).unwrap().to_rgb8(), image::open(&reference).unwrap().to_rgb8());
    let worst = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    assert!(worst <= 1, "the written image differs from the initial one by {worst} levels");
}
