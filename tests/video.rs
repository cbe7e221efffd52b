//! `stylize video` from a folder of frames with --flow-dir: a clip that pans and zooms over a
//! sample image, with its exact flows. The temporal term makes the clip consistent (the temporal error of
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
/// The pan between two frames, in pixels of the picture.
const PAN: (f64, f64) = (3.0, 1.0);
/// The zoom between two frames: each frame magnifies the picture this much more, about the
/// frame's centre.
const ZOOM: f64 = 1.02;
/// Steps enough for the tiny network's frames to settle (flicker is frames settling apart).
const ITERATIONS: &str = "200";
const FRAME_ITERATIONS: &str = "100";
const LEARNING_RATE: &str = "0.05";

/// Where frame `t`'s pixel p (pixel centres at integer coordinates) lies in the picture:
/// q_t(p) = c + t PAN + (p - c) / ZOOM^(t-1), c the frame's centre.
fn picture_point(t: usize, (x, y): (f64, f64)) -> (f64, f64) {
    let (cx, cy) = ((WIDTH - 1) as f64 / 2.0, (HEIGHT - 1) as f64 / 2.0);
    let zoom = ZOOM.powi(t as i32 - 1);
    (cx + t as f64 * PAN.0 + (x - cx) / zoom, cy + t as f64 * PAN.1 + (y - cy) / zoom)
}

/// The exact flow from frame `a` to frame `b`: at p, the point p' of frame b that shows what
/// frame a shows at p, minus p (q_b(p') = q_a(p), solved for p'). Planar u then v, f64.
fn exact_flow(a: usize, b: usize) -> Vec<f64> {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let (cx, cy) = ((WIDTH - 1) as f64 / 2.0, (HEIGHT - 1) as f64 / 2.0);
    let zoom_b = ZOOM.powi(b as i32 - 1);
    let mut flow = vec![0.0; 2 * w * h];
    for y in 0..h {
        for x in 0..w {
            let (qx, qy) = picture_point(a, (x as f64, y as f64));
            let px = cx + zoom_b * (qx - cx - b as f64 * PAN.0);
            let py = cy + zoom_b * (qy - cy - b as f64 * PAN.1);
            flow[y * w + x] = px - x as f64;
            flow[w * h + y * w + x] = py - y as f64;
        }
    }
    flow
}

struct Clip {
    dir: tempfile::TempDir,
    frames: usize,
}

impl Clip {
    /// `frames` frames of coffee.png, each panned and zoomed further on (`picture_point`, sampled
    /// bilinearly), and their exact flows (to the frame before and the one before that).
    fn new(frames: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let picture = image_io::load_image(&shared_image("coffee.png")).unwrap();
        let picture = image_io::resize_exact(&picture, 160, 120);
        std::fs::create_dir(dir.path().join("frames")).unwrap();
        std::fs::create_dir(dir.path().join("flows")).unwrap();
        for t in 1..=frames {
            let frame = sample(&picture, |p| picture_point(t, p));
            image_io::save_image(&dir.path().join(format!("frames/f{t}.png")), &frame, 8).unwrap();
        }
        let clip = Self { dir, frames };
        let as_flow = |data: Vec<f64>| Flow {
            width: WIDTH as usize,
            height: HEIGHT as usize,
            data: data.into_iter().map(|v| v as f32).collect(),
        };
        for t in 2..=frames {
            for j in (1..t).filter(|j| [1, 2].contains(j)) {
                let backward = clip.path(&format!("flows/{}", flo::backward_name(t, t - j)));
                flo::write_flo(&backward, &as_flow(exact_flow(t, t - j))).unwrap();
                let forward = clip.path(&format!("flows/{}", flo::forward_name(t - j, t)));
                flo::write_flo(&forward, &as_flow(exact_flow(t - j, t))).unwrap();
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

/// The WIDTH x HEIGHT frame whose pixel p shows `picture` at `at(p)`, sampled bilinearly.
fn sample(picture: &Image, at: impl Fn((f64, f64)) -> (f64, f64)) -> Image {
    let (pw, ph) = (picture.width as usize, picture.height as usize);
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut data = vec![0.0; 3 * w * h];
    for y in 0..h {
        for x in 0..w {
            let (qx, qy) = at((x as f64, y as f64));
            let (x0, y0) = (qx.floor() as usize, qy.floor() as usize);
            let (fx, fy) = ((qx - x0 as f64) as f32, (qy - y0 as f64) as f32);
            for c in 0..3 {
                let v = |xx: usize, yy: usize| picture.data[c * pw * ph + yy * pw + xx];
                let top = v(x0, y0) * (1.0 - fx) + v(x0 + 1, y0) * fx;
                let bottom = v(x0, y0 + 1) * (1.0 - fx) + v(x0 + 1, y0 + 1) * fx;
                data[c * w * h + y * w + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    Image::new(WIDTH, HEIGHT, data)
}

/// Ruder et al.'s temporal error: the mean over frames t > 1 and pixels of
/// c |y_t - warp(y_{t-1})|^2 (RGB in [0, 1]), with the exact flows and their reliability c.
fn temporal_error(frames: &[Image]) -> f64 {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let n = w * h;
    let shape = ActShape { channels: 3, height: h, width: w };
    let mut sum = 0.0;
    for (index, pair) in frames.windows(2).enumerate() {
        let t = index + 2;
        let (backward, forward) = (exact_flow(t, t - 1), exact_flow(t - 1, t));
        let c = flow::reference::consistency(h, w, &forward, &backward);
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
    let clip = Clip::new(6);
    let log = clip.path("losses.csv");
    let plot = clip.path("losses.png");
    let log_arg = ["--loss-log", log.to_str().unwrap(), "--loss-plot", plot.to_str().unwrap()];
    let run = clip.run("out", &log_arg);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("stylize: 6 frames of 64x48"), "{stderr}");
    assert!(stderr.contains("wrote 6 frames") && stderr.contains("(6 computed"), "{stderr}");
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
    for frame in 1..=6 {
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
    // The plot: every frame's steps one after the other, the temporal term among the curves.
    let first_plot = std::fs::read(&plot).unwrap();
    let drawn = image::load_from_memory(&first_plot).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), (stylize::plot::PLOT_WIDTH, stylize::plot::PLOT_HEIGHT));
    let temporal = stylize::plot::TEMPORAL_COLOR;
    let orange = drawn.pixels().filter(|p| p.0 == [temporal.0, temporal.1, temporal.2]).count();
    assert!(orange > 100, "the temporal curve: {orange} pixels");
    // A rerun of the same command continues where the frames stop.
    let last = clip.path("out/frame_0006.png");
    let before = std::fs::read(&last).unwrap();
    std::fs::remove_file(clip.path("out/frame_0005.png")).unwrap();
    std::fs::remove_file(&last).unwrap();
    let rerun = clip.run("out", &log_arg);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    // The log keeps the frames it did not compute again, and has the others once.
    assert_eq!((rows(4).len(), rows(5).len(), rows(6).len()), (100, 100, 100));
    assert!(
        stderr.contains("(2 computed") && stderr.contains("frame 5/6") && !stderr.contains("frame 4/6"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&last).unwrap(), before, "a resumed clip writes what an uninterrupted one wrote");
    // Its plot takes the frames before from the log: the uninterrupted clip's plot, exactly.
    assert!(std::fs::read(&plot).unwrap() == first_plot, "the resumed clip's plot differs");
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
    let figures = clip.path("figures");
    let run = clip.run("long", &["--temporal-frames", "1,2", "--side-by-side", figures.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let long = temporal_error(&clip.written("long"));
    // --side-by-side: each frame's content | style | result, named as the frames.
    for t in 1..=clip.frames {
        let figure = image::open(figures.join(format!("frame_{t:04}.png"))).unwrap();
        assert_eq!((figure.width(), figure.height()), (3 * WIDTH, HEIGHT), "frame {t}'s figure");
    }
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
/// sixth of a pixel of the exact flows away from the borders, and the clip 4x more consistent than
/// independent frames.
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
        for (name, expected) in
            [(flo::backward_name(t, t - 1), exact_flow(t, t - 1)), (flo::forward_name(t - 1, t), exact_flow(t - 1, t))]
        {
            let flow = flo::read_flo(&clip.path(&format!("ours/{name}"))).unwrap();
            let (mut sum, mut count) = (0.0, 0);
            for y in 8..h - 8 {
                for x in 8..w - 8 {
                    let i = y * w + x;
                    let (u, v) = (flow.data[i] as f64, flow.data[w * h + i] as f64);
                    sum += ((u - expected[i]).powi(2) + (v - expected[w * h + i]).powi(2)).sqrt();
                    count += 1;
                }
            }
            let epe = sum / count as f64;
            eprintln!("{name}: average endpoint error {epe:.4} px");
            // 0.04-0.10 px measured (the zoom's frames are each resampled: their blur differs).
            assert!(epe < 0.15, "{name}: {epe} px");
        }
        assert!(clip.path(&format!("ours/{}", flo::reliable_name(t, t - 1))).is_file());
    }
    let consistent = temporal_error(&clip.written("out"));
    let run = clip.run("independent", &["--temporal-weight", "0"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let independent = temporal_error(&clip.written("independent"));
    eprintln!("temporal error with TV-L1's flows: {consistent:.3e}, independent frames {independent:.3e}");
    // 5.5x measured (11x with the exact flows): the warps' bilinear blur of the zooming texture
    // sets a floor under both.
    assert!(consistent * 4.0 < independent, "{consistent} vs {independent}");
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

/// ffmpeg's `args` (the files among them as paths), its stdout; panics with its stderr on failure.
fn ffmpeg_output(program: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = std::process::Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A video file's frames as ffmpeg decodes them (rgb24), checking ffprobe's size: 64x48.
fn decode_video(path: &Path) -> Vec<Image> {
    let size = ffmpeg_output(
        "ffprobe",
        &["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"]
            .map(std::ffi::OsStr::new)
            .iter()
            .copied()
            .chain([path.as_os_str()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(String::from_utf8_lossy(&size).trim(), format!("{WIDTH},{HEIGHT}"), "{}", path.display());
    let raw = ffmpeg_output(
        "ffmpeg",
        &[std::ffi::OsStr::new("-v"), "error".as_ref(), "-i".as_ref(), path.as_os_str()]
            .into_iter()
            .chain(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"].map(std::ffi::OsStr::new))
            .collect::<Vec<_>>(),
    );
    let frame_bytes = (WIDTH * HEIGHT * 3) as usize;
    assert_eq!(raw.len() % frame_bytes, 0, "{}: whole frames", path.display());
    raw.chunks(frame_bytes).map(|frame| Image::from_rgb8(WIDTH, HEIGHT, frame)).collect()
}

/// With the real ffmpeg on PATH (CI installs it and sets STYLIZE_REQUIRE_FFMPEG=1, so that there
/// this test cannot skip): a 4-frame clip that ffmpeg encodes losslessly (ffv1) is stylized with
/// the exact flows into a lossless .mkv (`--encode-options`), and with the temporal weight 0 into
/// another. Both decode to 4 frames of 64x48, exactly the frames written; the temporal error E
/// of the decoded clip is at least 5x below the independent frames'. A rerun with the default
/// encoding (libx264, 4:2:0) computes no frame again and decodes to the frames written within
/// 15 dB, and 3 dB closer to them than to the other clip's (the random style's texture at 64x48
/// is a codec's worst case: about 21 dB).
#[test]
fn video_round_trip_through_the_real_ffmpeg() {
    if gpu_or_skip("video_round_trip_through_the_real_ffmpeg").is_none() {
        return;
    }
    if std::process::Command::new("ffmpeg").arg("-version").output().is_err() {
        assert!(
            std::env::var_os("STYLIZE_REQUIRE_FFMPEG").is_none(),
            "STYLIZE_REQUIRE_FFMPEG is set and ffmpeg is not on PATH"
        );
        eprintln!("video_round_trip_through_the_real_ffmpeg: skipped, no ffmpeg on PATH");
        return;
    }
    const FRAMES: usize = 4;
    let clip = Clip::new(FRAMES);
    let lossless = ["-c:v", "ffv1", "-pix_fmt", "bgr0"];
    let mut encode = vec![std::ffi::OsString::from("-v"), "error".into(), "-y".into(), "-framerate".into()];
    encode.extend(["10".into(), "-i".into(), clip.path("frames/f%d.png").into_os_string()]);
    encode.extend(lossless.map(Into::into));
    encode.push(clip.path("clip.mkv").into_os_string());
    ffmpeg_output("ffmpeg", &encode.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let video = |out: &str, extra: &[&str]| {
        let mut cmd = stylize();
        cmd.arg("video").arg("--input").arg(clip.path("clip.mkv")).arg("--style").arg(clip.path("style.png"));
        cmd.arg("--flow-dir").arg(clip.path("flows")).arg("--weights").arg(tiny_weights());
        cmd.args(["--size", "64", "--iterations", ITERATIONS, "--frame-iterations", FRAME_ITERATIONS]);
        cmd.args(["--learning-rate", LEARNING_RATE]).args(extra).arg("-o").arg(clip.path(out));
        let run = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        assert!(run.status.success(), "{stderr}");
        stderr
    };
    let lossless_options = lossless.join(" ");
    let stderr = video("styled.mkv", &["--encode-options", &lossless_options]);
    assert!(stderr.contains("stylize: 4 frames of 64x48") && stderr.contains("encoded"), "{stderr}");
    for t in 1..=FRAMES {
        let decoded = image_io::load_image(&clip.path(&format!("styled_frames/input/{t:04}.png"))).unwrap();
        let frame = image_io::load_image(&clip.path(&format!("frames/f{t}.png"))).unwrap();
        assert!(decoded.data == frame.data, "ffmpeg's decoding of frame {t} differs from the frame");
    }
    let styled = decode_video(&clip.path("styled.mkv"));
    assert_eq!(styled.len(), FRAMES);
    for (t, frame) in styled.iter().enumerate() {
        let written = image_io::load_image(&clip.path(&format!("styled_frames/frame_{:04}.png", t + 1))).unwrap();
        assert!(frame.data == written.data, "the lossless file's frame {} differs from the one written", t + 1);
    }
    video("independent.mkv", &["--temporal-weight", "0", "--encode-options", &lossless_options]);
    let independent = decode_video(&clip.path("independent.mkv"));
    let (consistent, free) = (temporal_error(&styled), temporal_error(&independent));
    eprintln!("temporal error of the decoded clips: {consistent:.3e} with the default weight, {free:.3e} without");
    assert!(consistent * 5.0 < free, "{consistent} vs {free}");
    // The default encoding: the same frames (none computed again), 4:2:0 and lossy.
    let stderr = video("styled.mkv", &[]);
    assert!(stderr.contains("(0 computed") && stderr.contains("encoded"), "{stderr}");
    let lossy = decode_video(&clip.path("styled.mkv"));
    assert_eq!(lossy.len(), FRAMES);
    let psnr = |a: &Image, b: &Image| {
        let mse = a.data.iter().zip(&b.data).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.data.len() as f64;
        -10.0 * mse.log10()
    };
    // Frame 1 is the same in both clips (no earlier frame to hold it).
    for (t, ((frame, exact), other)) in lossy.iter().zip(&styled).zip(&independent).enumerate() {
        let (own, to_other) = (psnr(frame, exact), psnr(frame, other));
        eprintln!(
            "libx264 4:2:0 frame {}: {own:.1} dB from the frame written, {to_other:.1} dB from the other clip's",
            t + 1
        );
        assert!(own > 15.0 && (t == 0 || own > to_other + 3.0), "frame {}: {own} dB, {to_other} dB", t + 1);
    }
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
    // Encoding options without a video to encode.
    let output = clip.run("f", &["--encode-options", "-crf 18"]);
    refused("--encode-options to frames", "f", output, &["--encode-options apply to a video -o"]);
    // A loss plot that is no PNG.
    let output = clip.run("g", &["--loss-plot", clip.path("plot.jpg").to_str().unwrap()]);
    refused("--loss-plot not a PNG", "g", output, &["plot.jpg", "PNG"]);
    // A frame of another size.
    random_png(&clip.path("frames/f2.png"), 40, 30, 3);
    refused("frame size", "c", clip.run("c", &[]), &["f2.png", "40x30", "64x48"]);
    // An empty folder, and a video file (no decoder yet).
    std::fs::create_dir(clip.path("empty")).unwrap();
    let mut cmd = stylize();
    cmd.args(["video", "--input"]).arg(clip.path("empty")).arg("--style").arg(clip.path("style.png"));
    refused("empty folder", "d", cmd.arg("-o").arg(clip.path("d")).output().unwrap(), &["empty", "no image files"]);
    // Flags a clip does not take.
    let output = clip.run("e", &["--save-every", "5"]);
    refused("--save-every", "e", output, &["does not take --save-every"]);
}
