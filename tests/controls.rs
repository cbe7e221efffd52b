//! The method's extra controls on the command line and in the library, on tiny weights:
//! `--optimizer lbfgs`, `--tv-weight`, `--pooling avg` and friends.

mod common;
use common::{random_png, stylize, tiny_weights};
use std::path::{Path, PathBuf};
use std::process::Output;

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
        random_png(&dir.path().join("style2.png"), 19, 23, 3);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A run on the content and style images with the tiny weights, `extra` flags after.
    fn run(&self, output: &str, extra: &[&str]) -> Output {
        let mut cmd = stylize();
        cmd.arg("--content").arg(self.path("content.png"));
        cmd.arg("--style").arg(self.path("style.png"));
        cmd.arg("--weights").arg(tiny_weights());
        cmd.arg("--output").arg(self.path(output));
        cmd.args(extra);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// The total column of a loss log.
fn totals(log: &Path) -> Vec<f64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .skip(1)
        .map(|row| row.rsplit(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn cli_lbfgs_lowers_the_loss() {
    if gpu_or_skip("cli_lbfgs_lowers_the_loss").is_none() {
        return;
    }
    let f = Fixture::new();
    let log = f.path("lbfgs.csv");
    let log_arg = log.to_str().unwrap();
    f.run("lbfgs.png", &["--optimizer", "lbfgs", "--learning-rate", "1", "--iterations", "6", "--loss-log", log_arg]);
    let totals = totals(&log);
    assert_eq!(totals.len(), 6);
    assert!(totals.iter().all(|t| t.is_finite()), "{totals:?}");
    assert!(totals[5] < totals[0], "L-BFGS should lower the loss: {totals:?}");
    assert!(image::open(f.path("lbfgs.png")).is_ok());
}

#[test]
fn cli_tv_weight_adds_a_logged_term() {
    if gpu_or_skip("cli_tv_weight_adds_a_logged_term").is_none() {
        return;
    }
    let f = Fixture::new();
    let log = f.path("tv.csv");
    f.run("tv.png", &["--tv-weight", "0.01", "--iterations", "2", "--loss-log", log.to_str().unwrap()]);
    let csv = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "step,content,style,tv,total");
    for row in &rows[1..] {
        let v: Vec<f64> = row.split(',').map(|v| v.parse().unwrap()).collect();
        assert!(v[3] > 0.0, "{row}");
        assert!((v[4] - (v[1] + 1e6 * v[2] + v[3])).abs() <= 1e-6 * v[4].abs(), "{row}");
    }
}

#[test]
fn cli_avg_pooling_runs_and_differs_from_max() {
    if gpu_or_skip("cli_avg_pooling_runs_and_differs_from_max").is_none() {
        return;
    }
    let f = Fixture::new();
    let (max_log, avg_log) = (f.path("max.csv"), f.path("avg.csv"));
    f.run("max.png", &["--iterations", "1", "--loss-log", max_log.to_str().unwrap()]);
    f.run("avg.png", &["--iterations", "1", "--pooling", "avg", "--loss-log", avg_log.to_str().unwrap()]);
    let (max, avg) = (totals(&max_log), totals(&avg_log));
    assert!(avg[0].is_finite() && avg[0] > 0.0);
    assert_ne!(max[0], avg[0], "average pools change the style loss");
}

#[test]
fn cli_help_documents_the_controls() {
    let output = stylize().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--optimizer",
        "--lbfgs-history",
        "--tv-weight",
        "--pooling",
        "--style-blend-weights",
        "--style-scale",
        "--preserve-colors",
        "--average-decay",
        "--scales",
        "--min-size",
        "--output-depth",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// Library level: a few L-BFGS steps on the tiny network lower the loss.
#[test]
fn library_lbfgs_steps_lower_the_loss() {
    let Some(ctx) = gpu_or_skip("library_lbfgs_steps_lower_the_loss") else {
        return;
    };
    let weights = stylize::load_network_weights(Default::default(), tiny_weights().to_str(), 0, &mut |_| {}).unwrap();
    let mut rng = Rng::new(9);
    let image = |rng: &mut Rng| stylize::Image::new(16, 16, (0..3 * 256).map(|_| rng.uniform() as f32).collect());
    let (content, style) = (image(&mut rng), image(&mut rng));
    let options = stylize::Options {
        optimizer: stylize::Optimizer::Lbfgs,
        learning_rate: 1.0,
        lbfgs_history: 5,
        ..stylize::Options::default()
    };
    let mut transfer = stylize::StyleTransfer::new(ctx, &weights, &content, &style, &content, &options).unwrap();
    let mut totals = Vec::new();
    for _ in 0..5 {
        transfer.step();
        transfer.sync().unwrap();
        totals.push(transfer.losses().unwrap().total);
    }
    assert!(totals.iter().all(|t| t.is_finite()), "{totals:?}");
    assert!(totals[4] < totals[0], "the loss should fall: {totals:?}");
}

fn mid_tone_png(path: &Path, width: u32, height: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let img = image::RgbImage::from_fn(width, height, |_, _| {
        image::Rgb([0, 0, 0].map(|_: u8| (80.0 + rng.uniform() * 96.0) as u8))
    });
    img.save(path).unwrap();
}

fn rgb8(path: &Path) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn cli_several_styles_blend_and_scale() {
    if gpu_or_skip("cli_several_styles_blend_and_scale").is_none() {
        return;
    }
    let f = Fixture::new();
    let style2 = f.path("style2.png");
    let sbs = f.path("sbs.png");
    let style2_arg = style2.to_str().unwrap();
    f.run(
        "blend.png",
        &[
            "--style",
            style2_arg,
            "--style-blend-weights",
            "3,7",
            "--style-scale",
            "1.5",
            "--iterations",
            "2",
            "--side-by-side",
            sbs.to_str().unwrap(),
        ],
    );
    assert_eq!(rgb8(&f.path("blend.png")).dimensions(), (24, 20));
    // content | style 1 | style 2 | result
    assert_eq!(rgb8(&sbs).dimensions(), (96, 20));
    // One weight for two images is refused before any work.
    let out = stylize()
        .arg("--content")
        .arg(f.path("content.png"))
        .arg("--style")
        .arg(f.path("style.png"))
        .args(["--style", style2_arg, "--style-blend-weights", "1", "--weights"])
        .arg(tiny_weights())
        .arg("--output")
        .arg(f.path("refused.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--style-blend-weights"));
    assert!(!f.path("refused.png").exists());
}

/// Library level: blended Gram targets are the weighted sums of each style's Grams; weights 1,0
/// give style A's alone, and an image's style loss against an even blend is at most the mean of
/// its losses against each style (the loss is convex in the target).
#[test]
fn library_blended_style_grams() {
    let Some(ctx) = gpu_or_skip("library_blended_style_grams") else {
        return;
    };
    use stylize::net::{Execute, Executor, Plan};
    let weights = stylize::load_network_weights(Default::default(), tiny_weights().to_str(), 0, &mut |_| {}).unwrap();
    let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let options = stylize::Options::default();
    let plan = Plan::new(&stylize::net::vgg::VGG19, &widths, 16, 16, &options.loss_layers()).unwrap();
    let mut rng = Rng::new(11);
    let mut image =
        |w: u32, h: u32| stylize::Image::new(w, h, (0..3 * (w * h) as usize).map(|_| rng.uniform() as f32).collect());
    let (a, b, x) = (image(16, 16), image(16, 16), image(16, 16));
    let grams = |styles: &[stylize::Image], blend: &[f64]| {
        let blend = stylize::transfer::normalized_blend(blend, styles.len()).unwrap();
        stylize::net::style_grams::blended(&ctx, &weights, &plan, styles, &blend).unwrap()
    };
    let ga = grams(std::slice::from_ref(&a), &[]);
    let gb = grams(std::slice::from_ref(&b), &[]);
    assert_eq!(grams(&[a.clone(), b.clone()], &[1.0, 0.0]), ga);
    let blend = grams(&[a.clone(), b.clone()], &[3.0, 7.0]);
    for ((l, la), lb) in blend.iter().zip(&ga).zip(&gb) {
        for ((v, va), vb) in l.iter().zip(la).zip(lb) {
            let expected = 0.3 * *va as f64 + 0.7 * *vb as f64;
            assert!((*v as f64 - expected).abs() <= 1e-5 * (1.0 + expected.abs()), "{v} vs {expected}");
        }
    }
    // A style image at twice the size compares per position: its blended Gram stays of the same order.
    let big = stylize::image_io::resize_exact(&a, 32, 32);
    let gbig = grams(std::slice::from_ref(&big), &[]);
    let norm = |g: &[Vec<f32>]| g[0].iter().map(|v| (*v as f64).abs()).sum::<f64>();
    assert!((norm(&gbig) / norm(&ga) - 1.0).abs() < 0.5, "{} vs {}", norm(&gbig), norm(&ga));

    let executor = Executor::new(&ctx, plan.clone(), &weights).unwrap();
    let mut executor = executor;
    executor.set_content(&ctx, &x.data).unwrap();
    let mut style_loss = |g: &[Vec<f32>]| {
        executor.set_style_grams(&ctx, g).unwrap();
        executor.set_image(&ctx, &x.data).unwrap();
        executor.training_step().run(&ctx).unwrap();
        executor.read_losses(&ctx).unwrap().style
    };
    let (la, lb) = (style_loss(&ga), style_loss(&gb));
    let even = style_loss(&grams(&[a.clone(), b.clone()], &[]));
    assert!(even <= 0.5 * (la + lb) * (1.0 + 1e-4), "{even} vs {la}, {lb}");
    assert!(even > 0.0);
}

/// YIQ chroma (I, Q) of an 8-bit pixel.
fn chroma(p: &image::Rgb<u8>) -> [f64; 2] {
    let [r, g, b] = p.0.map(|v| v as f64 / 255.0);
    [0.596 * r - 0.274 * g - 0.322 * b, 0.211 * r - 0.523 * g + 0.312 * b]
}

#[test]
fn cli_preserve_colors_luminance_keeps_the_content_chroma() {
    if gpu_or_skip("cli_preserve_colors_luminance_keeps_the_content_chroma").is_none() {
        return;
    }
    let f = Fixture::new();
    mid_tone_png(&f.path("content.png"), 24, 20, 4);
    f.run("lum.png", &["--preserve-colors", "luminance", "--iterations", "3", "--learning-rate", "0.02"]);
    let (content, result) = (rgb8(&f.path("content.png")), rgb8(&f.path("lum.png")));
    let mut worst = 0.0f64;
    for (c, r) in content.pixels().zip(result.pixels()) {
        let (cc, rc) = (chroma(c), chroma(r));
        worst = worst.max((cc[0] - rc[0]).abs()).max((cc[1] - rc[1]).abs());
    }
    assert!(worst <= 2.0 / 255.0, "chroma moved by {worst}");
    // Histogram matching runs too (the style recoloured before the run).
    f.run("hist.png", &["--preserve-colors", "histogram", "--iterations", "1"]);
    assert!(f.path("hist.png").exists());
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.as_raw().len() as f64
}

#[test]
fn cli_average_decay_outputs_the_average_of_the_iterates() {
    if gpu_or_skip("cli_average_decay_outputs_the_average_of_the_iterates").is_none() {
        return;
    }
    let f = Fixture::new();
    mid_tone_png(&f.path("content.png"), 24, 20, 5);
    let common = ["--iterations", "5", "--learning-rate", "0.05"];
    f.run("last.png", &common);
    f.run("avg.png", &[&common[..], &["--average-decay", "0.9"][..]].concat());
    let content = rgb8(&f.path("content.png"));
    let (last, avg) = (rgb8(&f.path("last.png")), rgb8(&f.path("avg.png")));
    assert_ne!(last, avg);
    let (d_last, d_avg) = (mean_abs_diff(&last, &content), mean_abs_diff(&avg, &content));
    assert!(d_avg < d_last, "the average should lie closer to the start: {d_avg} vs {d_last}");
}

#[test]
fn cli_scales_run_coarse_to_fine() {
    if gpu_or_skip("cli_scales_run_coarse_to_fine").is_none() {
        return;
    }
    let f = Fixture::new();
    random_png(&f.path("content.png"), 32, 28, 6);
    let log = f.path("scales.csv");
    let out = f.run(
        "scales.png",
        &["--scales", "2", "--size", "32", "--iterations", "2", "--loss-log", log.to_str().unwrap()],
    );
    assert_eq!(rgb8(&f.path("scales.png")).dimensions(), (32, 28));
    let csv = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "scale,step,content,style,total");
    let scales: Vec<&str> = rows[1..].iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(scales, ["1", "1", "2", "2"], "{csv}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scale 1/2: 23x20") && stderr.contains("scale 2/2: 32x28"), "{stderr}");
    assert!(stderr.contains("after 4 steps"), "{stderr}");
    assert_eq!(stylize::scale_sizes(400, 3, None), [200, 283, 400]);
    assert_eq!(stylize::scale_sizes(400, 3, Some(100)), [100, 200, 400]);
    assert_eq!(stylize::scale_sizes(400, 1, None), [400]);
}

#[test]
fn cli_output_depth_16_writes_16_bit_samples() {
    if gpu_or_skip("cli_output_depth_16_writes_16_bit_samples").is_none() {
        return;
    }
    let f = Fixture::new();
    f.run("deep.png", &["--output-depth", "16", "--iterations", "1"]);
    let img = image::open(f.path("deep.png")).unwrap();
    assert_eq!(img.color(), image::ColorType::Rgb16);
    // JPEG has no 16-bit samples: refused before any work.
    let out = stylize()
        .arg("--content")
        .arg(f.path("content.png"))
        .arg("--style")
        .arg(f.path("style.png"))
        .arg("--output")
        .arg(f.path("deep.jpg"))
        .args(["--output-depth", "16"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!f.path("deep.jpg").exists());
}

#[test]
fn cli_runs_are_deterministic() {
    if gpu_or_skip("cli_runs_are_deterministic").is_none() {
        return;
    }
    let f = Fixture::new();
    let flags = ["--init", "random", "--seed", "5", "--iterations", "3"];
    f.run("first.png", &flags);
    f.run("second.png", &flags);
    let (first, second) = (std::fs::read(f.path("first.png")).unwrap(), std::fs::read(f.path("second.png")).unwrap());
    assert!(first == second, "two identical runs wrote different files");
}
