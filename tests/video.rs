//! `stylize video` from a folder of frames with --flow-dir: a clip that pans over a sample image
//! with its exact flows. The temporal term makes the clip consistent (the temporal error of
//! Ruder et al. far below the independent frames'), a rerun continues where the last one
//! stopped, another command's frames folder is refused, and bad frames or flows get one line
//! with nothing written.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use stylize::image_io::{self, Image};
use stylize::ops::{ActShape, flow};
use stylize::video::flo::{self, Flow};

const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
/// The pan between two frames, in pixels: frame t shows the picture shifted by t times this.
const PAN: (i64, i64) = (3, 1);
/// Steps enough for the tiny network's frames to settle (flicker is frames settling apart).
const ITERATIONS: &str = "200";
const FRAME_ITERATIONS: &str = "100";
const LEARNING_RATE: &str = "0.05";

struct Clip {
    dir: tempfile::TempDir,
    frames: usize,
}

impl Clip {
    /// `frames` frames cut from coffee.png, each PAN further on, and their exact flows.
    fn new(frames: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let picture = image_io::load_image(&shared_image("coffee.png")).unwrap();
        let picture = image_io::resize_exact(&picture, 160, 120);
        std::fs::create_dir(dir.path().join("frames")).unwrap();
        std::fs::create_dir(dir.path().join("flows")).unwrap();
        for t in 1..=frames {
            let offset = (PAN.0 * t as i64, PAN.1 * t as i64);
            let frame = crop(&picture, offset);
            image_io::save_image(&dir.path().join(format!("frames/f{t}.png")), &frame, 8).unwrap();
        }
        let clip = Self { dir, frames };
        // Frame t at p shows what frame t-j shows at p + j PAN: backward flow +j PAN, forward -j PAN.
        let constant = |u: f32, v: f32| {
            let n = (WIDTH * HEIGHT) as usize;
            Flow { width: WIDTH as usize, height: HEIGHT as usize, data: [vec![u; n], vec![v; n]].concat() }
        };
        for t in 2..=frames {
            for j in (1..t).filter(|j| [1, 2].contains(j)) {
                let (u, v) = ((j as i64 * PAN.0) as f32, (j as i64 * PAN.1) as f32);
                let backward = clip.path(&format!("flows/{}", flo::backward_name(t, t - j)));
                flo::write_flo(&backward, &constant(u, v)).unwrap();
                flo::write_flo(&clip.path(&format!("flows/{}", flo::forward_name(t - j, t))), &constant(-u, -v))
                    .unwrap();
            }
        }
        random_png(&clip.path("style.png"), 64, 48, 7);
        clip
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `stylize video` of the tiny network over the clip into `out`, with `extra` flags.
    fn run(&self, out: &str, extra: &[&str]) -> std::process::Output {
        let mut cmd = stylize();
        cmd.arg("video").arg("--input").arg(self.path("frames")).arg("--style").arg(self.path("style.png"));
        cmd.arg("--flow-dir").arg(self.path("flows")).arg("--weights").arg(tiny_weights());
        cmd.args(["--size", &WIDTH.to_string()]);
        for (flag, value) in
            [("--iterations", ITERATIONS), ("--frame-iterations", FRAME_ITERATIONS), ("--learning-rate", LEARNING_RATE)]
        {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.arg("-o").arg(self.path(out)).args(extra);
        cmd.output().unwrap()
    }

    /// The frames written to `out`, in order.
    fn written(&self, out: &str) -> Vec<Image> {
        (1..=self.frames)
            .map(|t| image_io::load_image(&self.path(&format!("{out}/frame_{t:04}.png"))).unwrap())
            .collect()
    }
}

fn shared_image(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/images").join(name)
}

/// The WIDTH x HEIGHT window of `picture` at `offset`.
fn crop(picture: &Image, offset: (i64, i64)) -> Image {
    let (pw, ph) = (picture.width as usize, picture.height as usize);
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut data = vec![0.0; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = (x + offset.0 as usize, y + offset.1 as usize);
                data[c * w * h + y * w + x] = picture.data[c * pw * ph + sy * pw + sx];
            }
        }
    }
    Image::new(WIDTH, HEIGHT, data)
}

/// Ruder et al.'s temporal error: the mean over frames t > 1 and pixels of
/// c |y_t - warp(y_{t-1})|^2 (RGB in [0, 1]), with the exact flows' reliability c.
fn temporal_error(frames: &[Image]) -> f64 {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let n = w * h;
    let backward: Vec<f64> = [vec![PAN.0 as f64; n], vec![PAN.1 as f64; n]].concat();
    let forward: Vec<f64> = backward.iter().map(|v| -v).collect();
    let c = flow::reference::consistency(h, w, &forward, &backward);
    let shape = ActShape { channels: 3, height: h, width: w };
    let mut sum = 0.0;
    for pair in frames.windows(2) {
        let previous: Vec<f64> = pair[0].data.iter().map(|&v| v as f64).collect();
        let warped = flow::reference::warp(shape, &previous, &backward, [0.485, 0.456, 0.406]);
        for i in 0..3 * n {
            sum += c[i % n] * (pair[1].data[i] as f64 - warped[i]).powi(2);
        }
    }
    sum / ((frames.len() - 1) * n) as f64
}

#[test]
fn video_with_the_temporal_term_is_consistent_and_resumes() {
    if gpu_or_skip("video_with_the_temporal_term_is_consistent_and_resumes").is_none() {
        return;
    }
    let clip = Clip::new(5);
    let log = clip.path("losses.csv");
    let log_arg = ["--loss-log", log.to_str().unwrap()];
    let run = clip.run("out", &log_arg);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("stylize: 5 frames of 64x48"), "{stderr}");
    assert!(stderr.contains("wrote 5 frames") && stderr.contains("(5 computed"), "{stderr}");
    let consistent = temporal_error(&clip.written("out"));
    let independent_log = clip.path("independent.csv");
    let run = clip.run("independent", &["--temporal-weight", "0", "--loss-log", independent_log.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let independent = temporal_error(&clip.written("independent"));
    eprintln!("temporal error: {consistent:.3e} with the default weight, {independent:.3e} without");
    assert!(consistent * 5.0 < independent, "{consistent} vs {independent}");

    // The loss log: a frame column, the temporal term (0 on the first frame), every step.
    let rows_of = |log: &Path, frame: usize| -> Vec<Vec<f64>> {
        let text = std::fs::read_to_string(log).unwrap();
        assert_eq!(text.lines().next(), Some("frame,step,content,style,temporal,total"));
        let parse = |l: &str| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<f64>>();
        text.lines().skip(1).map(parse).filter(|r| r[0] == frame as f64).collect()
    };
    let rows = |frame: usize| rows_of(&log, frame);
    // Each frame's style loss (its last step's) stays within 1.5x of the independent frame's.
    for frame in 1..=5 {
        let (held, free) = (rows(frame).last().unwrap()[3], rows_of(&independent_log, frame).last().unwrap()[3]);
        assert!(held <= 1.5 * free, "frame {frame}: style {held:.3e} held, {free:.3e} independent");
    }
    assert_eq!(rows(1).len(), 200);
    assert!(rows(1).iter().all(|r| r[4] == 0.0));
    let frame3 = rows(3);
    assert_eq!(frame3.len(), 100);
    assert!(
        frame3[50][4] > 0.0
            && (frame3[50][5] - (frame3[50][2] + 1e6 * frame3[50][3] + frame3[50][4])).abs() < 1e-3 * frame3[50][5]
    );
    // A rerun of the same command continues where the frames stop.
    let last = clip.path("out/frame_0005.png");
    let before = std::fs::read(&last).unwrap();
    std::fs::remove_file(clip.path("out/frame_0004.png")).unwrap();
    std::fs::remove_file(&last).unwrap();
    let rerun = clip.run("out", &log_arg);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    // The log keeps the frames it did not compute again, and has the others once.
    assert_eq!((rows(3).len(), rows(4).len(), rows(5).len()), (100, 100, 100));
    assert!(
        stderr.contains("(2 computed") && stderr.contains("frame 4/5") && !stderr.contains("frame 3/5"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&last).unwrap(), before, "a resumed clip writes what an uninterrupted one wrote");
    // Another command's frames folder is refused, naming the difference.
    let other = clip.run("out", &["--temporal-weight", "7"]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stylize-video.txt") && stderr.contains("--temporal-weight"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Long-term consistency (--temporal-frames 1,2) reads the flows to the frame before the previous
/// one too, and is as consistent; a list that does not start with 1 is refused.
#[test]
fn video_long_term_consistency() {
    if gpu_or_skip("video_long_term_consistency").is_none() {
        return;
    }
    let clip = Clip::new(4);
    let run = clip.run("long", &["--temporal-frames", "1,2"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let long = temporal_error(&clip.written("long"));
    let run = clip.run("independent", &["--temporal-weight", "0"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let independent = temporal_error(&clip.written("independent"));
    eprintln!("temporal error with frames 1,2: {long:.3e}, independent frames {independent:.3e}");
    assert!(long * 5.0 < independent, "{long} vs {independent}");
    // Without the flows to t - 2 the clip is refused before any frame, naming the file.
    std::fs::remove_file(clip.path(&format!("flows/{}", flo::backward_name(4, 2)))).unwrap();
    let run = clip.run("missing", &["--temporal-frames", "1,2"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backward_4_2.flo") && !clip.path("missing").exists(), "{stderr}");
    let run = clip.run("bad", &["--temporal-frames", "2,4"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.code() == Some(1) && stderr.contains("--temporal-frames must start with 1"), "{stderr}");
}

/// Without --flow-dir the flows come from TV-L1 on the GPU: written with --save-flow within a
/// tenth of a pixel of the pan away from the borders, and the clip as consistent as with the
/// exact flows.
#[test]
fn video_with_flows_computed_on_the_gpu() {
    if gpu_or_skip("video_with_flows_computed_on_the_gpu").is_none() {
        return;
    }
    let clip = Clip::new(4);
    let mut cmd = stylize();
    cmd.arg("video").arg("--input").arg(clip.path("frames")).arg("--style").arg(clip.path("style.png"));
    cmd.arg("--weights").arg(tiny_weights()).args(["--size", &WIDTH.to_string()]);
    cmd.args(["--iterations", ITERATIONS, "--frame-iterations", FRAME_ITERATIONS, "--learning-rate", LEARNING_RATE]);
    cmd.arg("--save-flow").arg(clip.path("ours")).arg("-o").arg(clip.path("out"));
    let run = cmd.output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    for t in 2..=clip.frames {
        for (name, expected) in [
            (flo::backward_name(t, t - 1), (PAN.0 as f64, PAN.1 as f64)),
            (flo::forward_name(t - 1, t), (-PAN.0 as f64, -PAN.1 as f64)),
        ] {
            let flow = flo::read_flo(&clip.path(&format!("ours/{name}"))).unwrap();
            let (mut sum, mut count) = (0.0, 0);
            for y in 8..h - 8 {
                for x in 8..w - 8 {
                    let i = y * w + x;
                    let (u, v) = (flow.data[i] as f64, flow.data[w * h + i] as f64);
                    sum += ((u - expected.0).powi(2) + (v - expected.1).powi(2)).sqrt();
                    count += 1;
                }
            }
            let epe = sum / count as f64;
            eprintln!("{name}: average endpoint error {epe:.4} px");
            assert!(epe < 0.1, "{name}: {epe} px");
        }
        assert!(clip.path(&format!("ours/{}", flo::reliable_name(t, t - 1))).is_file());
    }
    let consistent = temporal_error(&clip.written("out"));
    let run = clip.run("independent", &["--temporal-weight", "0"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let independent = temporal_error(&clip.written("independent"));
    eprintln!("temporal error with TV-L1's flows: {consistent:.3e}, independent frames {independent:.3e}");
    assert!(consistent * 5.0 < independent, "{consistent} vs {independent}");
}

/// Programs standing in for ffprobe and ffmpeg (shell scripts in `dir`): ffprobe describes a
/// 64x48 25 fps clip with audio, ffmpeg decodes to `raw` (rgb24 frames) or records its arguments
/// in `log` and writes the file it was given last.
#[cfg(unix)]
fn fake_ffmpeg(dir: &Path, raw: &Path, log: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let scripts = [
        (
            "ffprobe",
            format!(
                "#!/bin/sh\nprintf 'codec_type=video\\nwidth={WIDTH}\\nheight={HEIGHT}\\nr_frame_rate=25/1\\ncodec_type=audio\\nr_frame_rate=0/0\\n'\n"
            ),
        ),
        (
            "ffmpeg",
            format!(
                "#!/bin/sh\ncase \"$*\" in *rawvideo*) cat '{}' ;; *) echo \"$*\" > '{}'; for last; do :; done; echo encoded > \"$last\" ;; esac\n",
                raw.display(),
                log.display()
            ),
        ),
    ];
    for (name, text) in scripts {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A video file in, a video file out, through ffmpeg's pipes (stand-in programs: the protocol,
/// not ffmpeg itself): the frames are decoded into the frames folder's input/, stylized into
/// clip_frames/, and encoded at the input's rate with its audio; without ffmpeg, one line.
#[cfg(unix)]
#[test]
fn video_files_go_through_ffmpeg_pipes() {
    if gpu_or_skip("video_files_go_through_ffmpeg_pipes").is_none() {
        return;
    }
    let clip = Clip::new(3);
    let mut raw = Vec::new();
    for t in 1..=3 {
        raw.extend(image::open(clip.path(&format!("frames/f{t}.png"))).unwrap().to_rgb8().into_raw());
    }
    std::fs::write(clip.path("clip.raw"), &raw).unwrap();
    std::fs::write(clip.path("clip.mp4"), b"a video").unwrap();
    std::fs::create_dir(clip.path("bin")).unwrap();
    fake_ffmpeg(&clip.path("bin"), &clip.path("clip.raw"), &clip.path("ffmpeg.log"));
    let video = |out: &str, bin: &Path| {
        let mut cmd = stylize();
        cmd.env("STYLIZE_FFMPEG_DIR", bin).arg("video").arg("--input").arg(clip.path("clip.mp4"));
        cmd.arg("--style").arg(clip.path("style.png")).arg("--weights").arg(tiny_weights());
        cmd.args(["--size", "64", "--iterations", "4", "--frame-iterations", "2", "-o"]).arg(clip.path(out));
        cmd.output().unwrap()
    };
    let run = video("styled.mp4", &clip.path("bin"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("stylize: 3 frames of 64x48") && stderr.contains("encoded"), "{stderr}");
    for t in 1..=3 {
        let decoded = image_io::load_image(&clip.path(&format!("styled_frames/input/{t:04}.png"))).unwrap();
        let frame = image_io::load_image(&clip.path(&format!("frames/f{t}.png"))).unwrap();
        assert_eq!(decoded.data, frame.data, "decoded frame {t}");
        assert!(clip.path(&format!("styled_frames/frame_{t:04}.png")).is_file());
    }
    assert_eq!(std::fs::read_to_string(clip.path("styled.mp4")).unwrap(), "encoded\n");
    let args = std::fs::read_to_string(clip.path("ffmpeg.log")).unwrap();
    for needle in ["-framerate 25/1", "styled_frames/frame_%04d.png", "-map 1:a:0?", "-c:a copy", "-pix_fmt yuv420p"] {
        assert!(args.contains(needle), "{needle} not in {args}");
    }
    assert!(!clip.dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("partial")));
    // Without the programs: one line, nothing written.
    let run = video("nothing.mp4", &clip.path("no-bin"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.lines().count() == 1 && stderr.contains("ffprobe is not on PATH"), "{stderr}");
    assert!(!clip.path("nothing_frames").exists() && !clip.path("nothing.mp4").exists());
}

/// With the real ffmpeg on PATH: a clip encoded by it, stylized, and decoded again has its
/// frames and size (skipped, saying so, where ffmpeg is not installed).
#[test]
fn video_round_trip_through_the_real_ffmpeg() {
    if gpu_or_skip("video_round_trip_through_the_real_ffmpeg").is_none() {
        return;
    }
    if std::process::Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("video_round_trip_through_the_real_ffmpeg: skipped, no ffmpeg on PATH");
        return;
    }
    let clip = Clip::new(3);
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "10", "-i"])
        .arg(clip.path("frames/f%d.png"))
        .args(["-c:v", "ffv1"])
        .arg(clip.path("clip.mkv"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut cmd = stylize();
    cmd.arg("video").arg("--input").arg(clip.path("clip.mkv")).arg("--style").arg(clip.path("style.png"));
    cmd.arg("--weights").arg(tiny_weights()).args(["--size", "64", "--iterations", "4", "--frame-iterations", "2"]);
    let run = cmd.arg("-o").arg(clip.path("styled.mkv")).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip.path("styled.mkv"))
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 3 * (WIDTH * HEIGHT * 3) as usize, "3 frames of 64x48");
}

/// `--serve` shows the frame being computed: the page's content is frame 1, then frame 2, and
/// the server ends with the clip.
#[test]
fn video_serve_shows_the_current_frame() {
    use std::io::BufRead;
    if gpu_or_skip("video_serve_shows_the_current_frame").is_none() {
        return;
    }
    let clip = Clip::new(2);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("stylize"));
    cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir()).env_remove("STYLIZE_WEIGHTS");
    cmd.arg("video").arg("--input").arg(clip.path("frames")).arg("--style").arg(clip.path("style.png"));
    cmd.arg("--flow-dir").arg(clip.path("flows")).arg("--weights").arg(tiny_weights());
    cmd.args(["--size", "64", "--iterations", "1500", "--frame-iterations", "1500", "--serve", "127.0.0.1:0"]);
    cmd.arg("-o").arg(clip.path("out")).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| send.send(l).unwrap_or(())));
    let mut seen = Vec::new();
    let mut wait_line = |needle: &str| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(200)) {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no line with {needle:?}; stderr so far:\n{}", seen.join("\n"));
    };
    let url = wait_line("live preview at http://");
    let addr: std::net::SocketAddr = url.split("http://").nth(1).unwrap().trim_end_matches('/').parse().unwrap();
    // The frame's line comes before its run is handed the page: poll until the page shows it.
    let shows = |t: usize| {
        let frame = image::open(clip.path(&format!("frames/f{t}.png"))).unwrap().to_rgb8().into_raw();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (status, png) = http_get(addr, "/content.png");
            let shown = image::load_from_memory(&png).ok().map(|i| i.to_rgb8().into_raw());
            if status == 200 && shown.as_ref() == Some(&frame) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the page never showed frame {t}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_line("frame 1/2");
    shows(1);
    wait_line("frame 2/2");
    shows(2);
    assert!(child.wait().unwrap().success());
}

#[test]
fn video_bad_inputs_get_one_line_and_write_nothing() {
    let clip = Clip::new(3);
    let refused = |what: &str, out: &str, output: std::process::Output, needles: &[&str]| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{what}: {needle} not in {stderr}");
        }
        assert!(!clip.path(out).exists(), "{what}: {out} written");
    };
    // A truncated flow, named.
    let backward = clip.path(&format!("flows/{}", flo::backward_name(3, 2)));
    let bytes = std::fs::read(&backward).unwrap();
    std::fs::write(&backward, &bytes[..bytes.len() - 5]).unwrap();
    refused("truncated flow", "a", clip.run("a", &[]), &["backward_3_2.flo"]);
    std::fs::write(&backward, &bytes).unwrap();
    // A flow of another size, named with both sizes.
    let small = Flow { width: 8, height: 6, data: vec![0.0; 96] };
    flo::write_flo(&backward, &small).unwrap();
    refused("small flow", "b", clip.run("b", &[]), &["backward_3_2.flo", "8x6", "64x48"]);
    std::fs::write(&backward, &bytes).unwrap();
    // A frame of another size.
    random_png(&clip.path("frames/f2.png"), 40, 30, 3);
    refused("frame size", "c", clip.run("c", &[]), &["f2.png", "40x30", "64x48"]);
    // An empty folder, and a video file (no decoder yet).
    std::fs::create_dir(clip.path("empty")).unwrap();
    let mut cmd = stylize();
    cmd.args(["video", "--input"]).arg(clip.path("empty")).arg("--style").arg(clip.path("style.png"));
    refused("empty folder", "d", cmd.arg("-o").arg(clip.path("d")).output().unwrap(), &["empty", "no image files"]);
    // Flags a clip does not take.
    let output = clip.run("e", &["--loss-plot", "x.png"]);
    refused("--loss-plot", "e", output, &["does not take --loss-plot"]);
}
